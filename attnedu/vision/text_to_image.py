r"""Text to image (chapter 8): a GPT that draws a digit pixel by pixel, after reading its caption.

DALL-E (Ramesh et al., 2021) turns an image into a sequence of tokens, puts them after the caption's
tokens, and trains one decoder-only Transformer to predict the next token of the whole sequence. To
draw, it reads a caption and samples the image's tokens one at a time, each conditioned, through
causal attention, on the caption and on every token drawn before it. This module does the same at the
scale of scikit-learn's 8x8 digits:

* **image tokens**: each pixel, quantised to one of :data:`LEVELS` grey levels, is one token, read in
  row-major order (:func:`quantise`, :func:`dequantise`): 64 tokens per image. (DALL-E's tokens are
  the codes of a discrete VAE, each for an 8x8 patch of a 256x256 image; ours are pixels.)
* **caption tokens**: one token per word of a caption such as ``"a handwritten seven"``
  (:data:`CAPTION_TEMPLATES`, :func:`caption_for`, :func:`caption_ids`), left-padded to
  :data:`CAPTION_LENGTH` words so that every pixel sits at the same position in every sequence;
* one **vocabulary** with disjoint ranges of ids: ids ``0 .. LEVELS-1`` are the grey levels (a level's
  id is the level itself), then ``<pad>``, ``<image>`` and the words (:data:`TOKENS`);
* the **sequence** ``[caption words..., <image>, pixel_0, ..., pixel_63]`` (:func:`sequences`), and
  the course's :class:`attnedu.models.GPT` trained on it with the next-token loss of the **pixels
  only** (:func:`inputs_and_targets`): the model is asked to draw, not to write captions.

With the prompt ``c = [caption..., <image>]`` and the pixels ``x_1 .. x_64``, the model factorises

.. math::
    p(x \mid c) = \prod_{i=1}^{64} p(x_i \mid c, x_1, \dots, x_{i-1}), \qquad
    \mathcal{L} = -\frac{1}{64} \sum_{i=1}^{64} \log p(x_i \mid c, x_{<i})

and :func:`sample_image` draws from it one pixel at a time: softmax over the :data:`LEVELS` pixel logits
of the last position only (a word can never be drawn), divided by a temperature. :func:`sample_image`
reruns the model on the whole sequence at every step, as a learner writes it; :func:`generate_images`
draws the same pixels faster with a KV cache, for captions given as text.

:func:`recognised_fraction` judges the drawings: the fraction that a digit classifier (chapter 8's ViT)
reads as the digit the caption asked for. The shipped model (``checkpoints.load("text-to-image")``) is
made by :func:`recipe`.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import non_negative_int, non_negative_number, positive_int
from attnedu.models import GPT, GPTConfig
from attnedu.nn import KVCache
from attnedu.train import train
from .images import DIGIT_NAMES, digits_split

__all__ = ["LEVELS", "N_PIXELS", "CAPTION_TEMPLATES", "CAPTION_LENGTH", "WORDS", "TOKENS", "PAD", "IMAGE",
           "VOCAB_SIZE", "PROMPT_LENGTH", "quantise", "dequantise", "caption_for", "caption_ids", "sequences",
           "inputs_and_targets", "sample_image", "generate_images", "recognised_fraction", "digit_judge", "load_model",
           "recipe"]

#: grey levels per pixel: a pixel's token is its level, ``0`` (no ink) .. ``LEVELS - 1`` (full ink)
LEVELS = 4
#: pixels (image tokens) per 8x8 image
N_PIXELS = 64
#: the captions' templates; ``{digit}`` is the digit's name (:data:`attnedu.vision.images.DIGIT_NAMES`)
CAPTION_TEMPLATES = ("a handwritten {digit}", "the digit {digit}", "a picture of the number {digit}")
#: the most words a caption may have (shorter captions are padded on the left)
CAPTION_LENGTH = 6
#: every word a caption may use
WORDS = ("a", "handwritten", "the", "digit", "picture", "of", "number") + DIGIT_NAMES
#: every token, by id: the grey levels, then ``<pad>`` and ``<image>``, then the words
TOKENS = tuple(f"<level {v}>" for v in range(LEVELS)) + ("<pad>", "<image>") + WORDS
#: the id of the padding token (in front of a short caption)
PAD = TOKENS.index("<pad>")
#: the id of the token that ends the caption: the pixels come next
IMAGE = TOKENS.index("<image>")
#: the number of tokens
VOCAB_SIZE = len(TOKENS)
#: the prompt's length: the padded caption and ``<image>``
PROMPT_LENGTH = CAPTION_LENGTH + 1
_WORD_IDS = {w: TOKENS.index(w) for w in WORDS}


# ----------------------------------------------------------------------------- image tokens
def _check_images(images) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        hint = " (one image? use images[None])" if isinstance(images, Tensor) and images.dim() == 3 else ""
        raise ValueError(f"images must be (B, 1, 8, 8) grey digits in [0, 1], got {got}{hint}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point in [0, 1], got dtype {images.dtype}")
    return images


def quantise(images: Tensor) -> Tensor:
    r"""Images ``(B, 1, 8, 8)`` in ``[0, 1]`` -> pixel tokens ``(B, 64)`` long, in row-major order.

    Each pixel becomes the nearest of :data:`LEVELS` evenly spaced grey levels,
    :math:`t = \mathrm{round}\big(x\,(L - 1)\big)` (values outside ``[0, 1]`` are clipped first).
    """
    images = _check_images(images)
    levels = torch.round(images.clamp(0, 1) * (LEVELS - 1)).long()  # (B, 1, 8, 8) in [0, LEVELS)
    return levels.flatten(1)  # (B, 64): row 0 left to right, then row 1, ...


def dequantise(tokens: Tensor) -> Tensor:
    r"""Pixel tokens ``(B, 64)`` -> images ``(B, 1, 8, 8)`` float in ``[0, 1]``: :math:`x = t / (L - 1)`.

    ``dequantise(quantise(x))`` is within ``0.5 / (LEVELS - 1)`` of ``x``.
    """
    if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.shape[1] != N_PIXELS:
        got = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be (B, {N_PIXELS}) pixel tokens, got {got}")
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be integer grey levels, got dtype {tokens.dtype}")
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= LEVELS):
        raise ValueError(f"pixel tokens must be in [0, LEVELS={LEVELS}), got min {int(tokens.min())}, "
                         f"max {int(tokens.max())}")
    return (tokens.float() / (LEVELS - 1)).view(-1, 1, 8, 8)  # (B, 1, 8, 8)


# ----------------------------------------------------------------------------- caption tokens
def caption_for(digit: int, template: int = 0) -> str:
    """The caption of ``digit`` (0-9) by :data:`CAPTION_TEMPLATES` number ``template``:
    ``caption_for(7) == "a handwritten seven"``."""
    if isinstance(digit, bool) or not isinstance(digit, numbers.Integral) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an integer from 0 to 9, got {digit!r}")
    if isinstance(template, bool) or not isinstance(template, numbers.Integral) \
            or not 0 <= template < len(CAPTION_TEMPLATES):
        raise ValueError(f"template must be an integer in [0, {len(CAPTION_TEMPLATES)}), got {template!r}: "
                         f"the templates are {CAPTION_TEMPLATES}")
    return CAPTION_TEMPLATES[template].format(digit=DIGIT_NAMES[digit])


def caption_ids(captions: list[str]) -> Tensor:
    """Captions -> prompts ``(B, PROMPT_LENGTH)`` long: ``[<pad>..., word ids..., <image>]``.

    A caption is split into lower-case words on spaces; every word must be one of :data:`WORDS`, and a
    caption may have at most :data:`CAPTION_LENGTH` words. Shorter captions are padded **on the left**,
    so every prompt has the same length and ends with ``<image>``, and the ``i``-th pixel is always at
    position ``PROMPT_LENGTH + i``.
    """
    if isinstance(captions, str) or not isinstance(captions, (list, tuple)) or not captions:
        hint = f" (one caption? use [{captions!r}])" if isinstance(captions, str) else ""
        raise ValueError(f"captions must be a non-empty list of strings, got {type(captions).__name__}{hint}")
    rows = []
    for caption in captions:
        if not isinstance(caption, str):
            raise ValueError(f"each caption must be a string, got {type(caption).__name__}: {caption!r}")
        words = caption.lower().split()
        unknown = [w for w in words if w not in _WORD_IDS]
        if unknown:
            raise ValueError(f"caption {caption!r} has words the model does not know: {unknown}; "
                             f"the known words are {', '.join(WORDS)}")
        if not 1 <= len(words) <= CAPTION_LENGTH:
            raise ValueError(f"caption {caption!r} has {len(words)} words: a caption needs 1 to "
                             f"CAPTION_LENGTH={CAPTION_LENGTH}")
        rows.append([PAD] * (CAPTION_LENGTH - len(words)) + [_WORD_IDS[w] for w in words] + [IMAGE])
    return torch.tensor(rows, dtype=torch.long)  # (B, PROMPT_LENGTH)


def _check_prompt(prompt) -> Tensor:
    if not isinstance(prompt, Tensor) or prompt.dim() != 2 or prompt.dtype != torch.long or prompt.shape[1] == 0:
        got = (f"{tuple(prompt.shape)} {prompt.dtype}" if isinstance(prompt, Tensor) else type(prompt).__name__)
        raise ValueError(f"prompt must be a (B, P) long tensor of caption ids ending with <image> "
                         f"(caption_ids makes one), got {got}")
    if not bool((prompt[:, -1] == IMAGE).all()):
        raise ValueError(f"every prompt must end with the <image> token (id {IMAGE}): the pixels come next; "
                         "make prompts with caption_ids(captions)")
    return prompt


# ----------------------------------------------------------------------------- training sequences
def sequences(captions: list[str], images: Tensor) -> Tensor:
    """Captions and their images -> token sequences ``(B, PROMPT_LENGTH + 64)``: ``[prompt, pixel_0 .. pixel_63]``."""
    prompts, pixels = caption_ids(captions), quantise(images)  # (B, P), (B, 64)
    if len(prompts) != len(pixels):
        raise ValueError(f"need one caption per image: got {len(prompts)} captions and images "
                         f"{tuple(images.shape)}")
    return torch.cat([prompts, pixels], dim=1)  # (B, P + 64)


def inputs_and_targets(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Sequences ``(B, T)`` -> the model's ``inputs`` ``(B, T-1)`` and next-token ``targets`` ``(B, T-1)``.

    ``targets[:, t] = ids[:, t + 1]``, except where that next token is part of the prompt (a word, a
    ``<pad>`` or ``<image>``): there it is ``-1``, which :func:`attnedu.models.next_token_loss` ignores.
    So the loss is the mean over the 64 pixel predictions only, the first of which is made at the
    ``<image>`` token.
    """
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.dtype != torch.long or ids.shape[1] < 2:
        got = f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
        raise ValueError(f"ids must be (B, T) long sequences with T >= 2 (sequences() makes them), got {got}")
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()  # (B, T-1) each
    targets[targets >= LEVELS] = -1  # a prompt token is not to be predicted: only the pixels count
    return inputs, targets


# ----------------------------------------------------------------------------- drawing
def sample_image(model: GPT, prompt: Tensor, n_pixels: int = N_PIXELS, generator: torch.Generator | None = None,
                 temperature: float = 1.0) -> Tensor:
    """Draw ``n_pixels`` pixel tokens after ``prompt``, one at a time: ``(B, P)`` -> ``(B, n_pixels)`` long.

    At every step the model reads the whole sequence so far, and only its **last** position's logits
    are used, restricted to the pixel ids ``0 .. LEVELS-1`` (so a word is never drawn); the next pixel is
    drawn from ``softmax(logits / temperature)`` with ``generator``, or is the argmax at
    ``temperature = 0``. The readable loop: no cache, the model reruns on everything at every step.

    Args:
        model: the text-to-image :class:`~attnedu.models.GPT`.
        prompt: ``(B, P)`` long caption ids ending with ``<image>`` (:func:`caption_ids`).
        n_pixels: how many pixels to draw, ``1 .. 64``.
        generator: a seeded ``torch.Generator`` for reproducible drawings (``None``: torch's global one).
        temperature: ``> 0`` divides the logits; ``0`` takes the most likely level.
    """
    prompt = _check_prompt(prompt)
    n_pixels = positive_int(n_pixels, "n_pixels")
    if n_pixels > N_PIXELS:
        raise ValueError(f"n_pixels must be at most {N_PIXELS} (an 8x8 image), got {n_pixels}")
    temperature = non_negative_number(temperature, "temperature")
    ids = prompt
    with torch.no_grad():
        for _ in range(n_pixels):
            logits, _ = model(ids)  # (B, T, V): rerun on the whole sequence
            logits = logits[:, -1, :LEVELS]  # (B, LEVELS): the last position, pixel ids only
            if temperature == 0:
                next_pixel = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)  # (B, LEVELS)
                next_pixel = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            ids = torch.cat([ids, next_pixel], dim=1)  # (B, T + 1)
    return ids[:, prompt.shape[1]:]  # (B, n_pixels)


def _sample_with_cache(model: GPT, prompt: Tensor, n_pixels: int, generator: torch.Generator | None,
                       temperature: float, top_k: int | None) -> Tensor:
    """:func:`sample_image`, fast: a :class:`~attnedu.nn.KVCache` per block keeps the keys and values of the
    positions already read (as :meth:`GPT.generate` does), so each step feeds in only the newest pixel.
    The same draws from the same generator: the same pixels (up to float rounding of the logits)."""
    caches = [KVCache() for _ in model.blocks]
    h = model._hidden(prompt, caches)  # the prompt, read once: (B, P, C)
    pixels = []
    for step in range(n_pixels):
        logits = model.lm_head(h[:, -1])[:, :LEVELS]  # (B, LEVELS)
        if temperature == 0:
            next_pixel = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < LEVELS:
                kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
                logits = logits.masked_fill(logits < kth, float("-inf"))
            next_pixel = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
        pixels.append(next_pixel)
        if step + 1 < n_pixels:
            h = model._hidden(next_pixel, caches)  # only the newest pixel: (B, 1, C)
    return torch.cat(pixels, dim=1)  # (B, n_pixels)


def generate_images(model: GPT, captions: list[str], temperature: float = 1.0, top_k: int | None = None,
                    seed: int = 0) -> Tensor:
    """Draw one digit per caption: ``captions`` (``B`` strings) -> images ``(B, 1, 8, 8)`` in ``[0, 1]``.

    Batched and seeded: the same captions and ``seed`` draw the same images. The pixels are drawn as by
    :func:`sample_image` (with a generator seeded by ``seed``), with a KV cache; ``top_k`` samples among
    the ``top_k`` most likely grey levels only (``None``: all ``LEVELS``); ``temperature = 0`` draws the
    most likely image, the same for every seed.
    """
    prompt = caption_ids(captions)  # (B, P)
    temperature = non_negative_number(temperature, "temperature")
    if top_k is not None:
        positive_int(top_k, "top_k")
    generator = torch.Generator().manual_seed(non_negative_int(seed, "seed"))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            pixels = _sample_with_cache(model, prompt, N_PIXELS, generator, temperature, top_k)  # (B, 64)
    finally:
        model.train(was_training)
    return dequantise(pixels.clone())  # (B, 1, 8, 8)


def recognised_fraction(classifier: nn.Module, images: Tensor, digits) -> float:
    """The fraction of ``images`` ``(B, 1, 8, 8)`` that ``classifier`` (images -> ``(B, 10)`` logits) reads as
    the digit asked for, ``digits`` ``(B,)`` (a tensor or a list of ints 0-9)."""
    images = _check_images(images)
    digits = torch.as_tensor(digits)
    if digits.shape != (len(images),) or digits.is_floating_point():
        raise ValueError(f"digits must be (B,) = ({len(images)},) integers, one per image, got shape "
                         f"{tuple(digits.shape)} and dtype {digits.dtype}")
    if len(images) == 0:
        raise ValueError("images is empty: the fraction of no images is undefined")
    was_training = classifier.training
    classifier.eval()
    try:
        with torch.no_grad():
            predicted = classifier(images).argmax(dim=-1)  # (B,)
    finally:
        classifier.train(was_training)
    return (predicted == digits.long()).float().mean().item()


# ----------------------------------------------------------------------------- the shipped model
def load_model(data: dict) -> GPT:
    """The GPT that ``checkpoints.save`` wrote: ``data = {"name", "config", "state_dict"}``."""
    model = GPT(GPTConfig(**data["config"]))
    model.load_state_dict(data["state_dict"])
    return model.eval()


#: the shipped model's sizes: 4 blocks of width 64 over the 70 tokens of a prompt and an image
_MODEL = dict(vocab_size=VOCAB_SIZE, context=PROMPT_LENGTH + N_PIXELS, n_layer=4, n_head=4, d_model=64,
              dropout=0.1)
#: the recipe's training settings (chapter 6's AdamW settings, nanoGPT's)
_TRAINING = dict(iters=1000, batch_size=64, lr=3e-3, warmup=50, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0,
                 seed=0)
#: the temperatures the recipe measures, and the images per digit it draws at each
_TEMPERATURES = (1.0, 0.8, 0.7, 0.5, 0.0)
_PER_DIGIT = 100


def digit_judge(seed: int = 0) -> nn.Module:
    """The digit classifier that the recipe's metrics use: chapter 8's ViT on the training digits, 600 steps."""
    from .vit import ViT, ViTConfig  # here: the module itself needs no classifier

    split = digits_split()
    torch.manual_seed(seed)
    vit = ViT(ViTConfig(8, 4, d_model=64, n_head=4, n_layer=2))

    def batch_fn(generator):
        i = torch.randint(len(split.train_images), (64,), generator=generator)
        return split.train_images[i], split.train_labels[i]

    train(vit, batch_fn, iters=600, lr=3e-3, warmup=50, loss_fn=lambda m, b: F.cross_entropy(m(b[0]), b[1]),
          progress=False, seed=seed)
    return vit.eval()


def _metrics(model: GPT) -> dict:
    """What the recipe records about ``model``: its pixel loss on the held-out digits, and the fraction of its
    drawings (``_PER_DIGIT`` per digit, the templates in turn) that the judge recognises at each temperature."""
    split = digits_split()
    prompts = caption_ids([caption_for(int(d)) for d in split.test_labels])  # (N, P)
    with torch.no_grad():
        _, test_loss = model(*inputs_and_targets(torch.cat([prompts, quantise(split.test_images)], dim=1)))
    judge = digit_judge()
    with torch.no_grad():
        accuracy = (judge(split.test_images).argmax(-1) == split.test_labels).float().mean().item()
        requantised = dequantise(quantise(split.test_images))
        quantised_accuracy = (judge(requantised).argmax(-1) == split.test_labels).float().mean().item()
    digits = torch.arange(10).repeat_interleave(_PER_DIGIT)  # (1000,)
    captions = [caption_for(int(d), i % len(CAPTION_TEMPLATES)) for i, d in enumerate(digits)]
    recognised = {}
    for temperature in _TEMPERATURES:
        images = generate_images(model, captions, temperature=temperature, seed=0)
        recognised[f"{temperature:g}"] = round(recognised_fraction(judge, images, digits), 4)
    # the chapter draws at the highest temperature whose drawings are still recognised 90% of the time
    chapter_temperature = next((t for t in _TEMPERATURES if recognised[f"{t:g}"] >= 0.9), 0.0)
    return {"test_pixel_loss": round(test_loss.item(), 4), "judge_test_accuracy": round(accuracy, 4),
            "judge_quantised_test_accuracy": round(quantised_accuracy, 4), "recognised": recognised,
            "images_per_temperature": len(digits), "chapter_temperature": chapter_temperature,
            "chapter_recognised": recognised[f"{chapter_temperature:g}"]}


def recipe(stop_after: int | None = None, progress: bool = True) -> tuple[GPT, dict]:
    """Train the shipped text-to-image GPT on the training digits; returns ``(model, record)``.

    Each batch draws ``batch_size`` training digits and, for each, one of the :data:`CAPTION_TEMPLATES`;
    the loss is the next-token loss of the pixels only (:func:`inputs_and_targets`). The record's metrics
    are measured after a float16 round trip of the weights, as the checkpoint stores them. ``stop_after=n``
    trains the first ``n`` steps only (and measures nothing).
    """
    s = _TRAINING
    split = digits_split()
    pixels, labels = quantise(split.train_images), split.train_labels  # (N, 64), (N,)
    prompts = torch.stack([caption_ids([caption_for(d, k) for k in range(len(CAPTION_TEMPLATES))])
                           for d in range(10)])  # (10, n_templates, P): every digit's every caption

    def batch_fn(generator):
        i = torch.randint(len(pixels), (s["batch_size"],), generator=generator)  # which digits
        k = torch.randint(len(CAPTION_TEMPLATES), (s["batch_size"],), generator=generator)  # which captions
        return inputs_and_targets(torch.cat([prompts[labels[i], k], pixels[i]], dim=1))  # (B, P + 63) each

    torch.manual_seed(s["seed"])
    config = GPTConfig(**_MODEL)
    model = GPT(config)
    history = train(model, batch_fn, iters=s["iters"], lr=s["lr"], warmup=s["warmup"],
                    weight_decay=s["weight_decay"], betas=s["betas"], grad_clip=s["grad_clip"], seed=s["seed"],
                    progress=progress, stop_after=stop_after)
    rec = {"config": asdict(config),
           "first_losses": history.loss[:20], "steps": len(history.loss), "training": s,
           "levels": LEVELS, "caption_templates": list(CAPTION_TEMPLATES), "final_loss": history.loss[-1],
           "parameters": model.num_parameters()}
    if stop_after is None:
        model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})  # as saved
        rec["metrics"] = _metrics(model.eval())
    return model.eval(), rec
