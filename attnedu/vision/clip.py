r"""Text and images in one space: contrastive alignment in the style of CLIP (chapter 8).

CLIP (Radford et al., 2021) trains two encoders side by side: an **image encoder** (here a small
:class:`~attnedu.vision.vit.ViT`) and a **text encoder** (a Transformer encoder over the words of a
caption). Each ends in a linear projection to the same ``d_embed`` dimensions, and both outputs are
L2-normalised, so that the dot product of an image's vector and a caption's vector is their cosine
similarity. Nothing tells the model what a digit *is*: it only learns which caption goes with which image.

A batch holds ``B`` images and their ``B`` captions. The ``B x B`` matrix of similarities, scaled by a
learned temperature, is read twice: each row as a ``B``-way classification "which caption is mine?"
and each column as "which image is mine?"; the right answers are on the diagonal. The loss is the
mean of the two cross-entropies, the **symmetric InfoNCE** loss:

.. math::
    S = e^{t}\, I\, T^\top \in \mathbb{R}^{B\times B},\qquad
    \mathcal{L} = \tfrac12\Big(
        \underbrace{-\tfrac1B \sum_i \log \mathrm{softmax}(S_{i,:})_i}_{\text{image} \to \text{text}}
    + \underbrace{-\tfrac1B \sum_j \log \mathrm{softmax}(S_{:,j})_j}_{\text{text} \to \text{image}}\Big)

with ``I`` and ``T`` the ``(B, d_embed)`` normalised embeddings and ``t`` the log-parameterised
temperature :attr:`CLIP.logit_scale` (initialised, as in CLIP, to ``log(1 / 0.07)``: a scale of about 14).
When every similarity is equal the loss is ``log B``, chance. As in CLIP, a caption is a positive only
for its own image, even when another image of the batch shows the same digit. With ten digits that
happens all the time (about 13 images of each digit in a batch of 128), and the model cannot tell
those captions apart, so the loss stops near ``log 13 = 2.6``, not at 0.

The data are scikit-learn's digits (:func:`~attnedu.vision.images.digits_split`). Each training image
gets a caption from one of the :data:`TRAIN_TEMPLATES`, e.g. ``"a handwritten seven"``. The
:data:`TEST_TEMPLATES` are never seen in training (but use only words that are), and the held-out test
images neither: **zero-shot classification** (:func:`zero_shot_accuracy`) embeds each digit's prompts,
averages them, and gives each image the digit whose text is closest. No classifier head is trained.

The default model (:class:`CLIPConfig`) is small enough to train inside the chapter, in about 8 seconds
on one CPU thread: each encoder has two blocks of ``d_model = 32``; the ViT reads an ``8 x 8`` digit as
four ``4 x 4`` patches and a class token; both project to ``d_embed = 32``; 55,073 parameters in all.

* :data:`TRAIN_TEMPLATES`, :data:`TEST_TEMPLATES`, :func:`prompts`: the captions;
* :class:`TextVocab`, :data:`VOCAB`, :func:`tokenize`: words to padded ids;
* :class:`ImageEncoder`, :class:`TextEncoder`, :class:`CLIP`, :class:`CLIPConfig`: the model;
* :func:`contrastive_loss`: the loss above; :func:`train_clip`: training with it (seconds on one CPU thread);
* :func:`similarity`, :func:`zero_shot_accuracy`, :func:`text_to_image_recall_at_1`: what the model learned.
"""

from __future__ import annotations

import math
import numbers
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import dropout_rate, positive_int
from attnedu.nn import EncoderBlock
from attnedu.train import History, train
from .images import DIGIT_NAMES, digits_split
from .vit import ViT, ViTConfig

__all__ = ["TRAIN_TEMPLATES", "TEST_TEMPLATES", "prompts", "TextVocab", "VOCAB", "tokenize", "CLIPConfig",
           "ImageEncoder", "TextEncoder", "CLIP", "contrastive_loss", "clip_batches", "TRAIN_SETTINGS", "train_clip",
           "class_text_embeddings", "similarity", "zero_shot_accuracy", "text_to_image_recall_at_1"]

# ----------------------------------------------------------------------------- captions
#: The templates of the training captions; ``{}`` is replaced by a digit's name (``"seven"``).
TRAIN_TEMPLATES = (
    "a photo of the digit {}",
    "a handwritten {}",
    "the number {} written by hand",
    "a picture of a {}",
    "an image of the number {}",
    "a small blurry {}",
    "the digit {} in grey pixels",
    "a scan of a handwritten {}",
)

#: Templates never used in training, made only of words the training templates use: the prompts of zero-shot
#: classification, which test that the text encoder learned the digit's word, not the sentences it saw.
TEST_TEMPLATES = (
    "a photo of a {} written by hand",
    "an image of the handwritten digit {}",
    "a small picture of the number {}",
)


def _check_templates(templates, name: str = "templates") -> tuple[str, ...]:
    if isinstance(templates, str):
        raise ValueError(f"{name} must be a list of templates, got one string {templates!r}: "
                         f"wrap it as [{templates!r}]")
    templates = tuple(templates)
    if not templates:
        raise ValueError(f"{name} must hold at least one template such as 'a photo of the digit {{}}', got none")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(f"every template must be a string with exactly one '{{}}' where the digit's name goes, "
                             f"got {t!r}")
    return templates


def _check_digit(digit) -> int:
    if isinstance(digit, bool) or not isinstance(digit, numbers.Integral) or not 0 <= digit <= 9:
        raise ValueError(f"digit must be an integer from 0 to 9, got {digit!r}")
    return int(digit)


def prompts(templates, digit: int) -> list[str]:
    """The captions of ``digit`` (0 to 9), one per template.

    ``prompts(["a handwritten {}", "the number {} written by hand"], 7)`` is
    ``["a handwritten seven", "the number seven written by hand"]``.
    """
    templates = _check_templates(templates)
    name = DIGIT_NAMES[_check_digit(digit)]
    return [t.format(name) for t in templates]


# ----------------------------------------------------------------------------- words to ids
class TextVocab:
    """Words <-> ids: ``<pad>`` is 0, then every word of the templates and the ten digits' names, sorted.

    A text is lower-cased and split on spaces; a word outside the vocabulary raises ``ValueError``
    (the model has no vector for it).
    """

    PAD = 0

    def __init__(self, templates=TRAIN_TEMPLATES + TEST_TEMPLATES):
        words = {w for t in _check_templates(templates) for w in t.replace("{}", " ").lower().split()}
        self.itos = ["<pad>", *sorted(words | set(DIGIT_NAMES))]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """``"a handwritten seven"`` -> its words' ids (no padding)."""
        if not isinstance(text, str):
            raise ValueError(f"a text must be a string, got {type(text).__name__}")
        words = text.lower().split()
        if not words:
            raise ValueError("a text must hold at least one word, got an empty string")
        unknown = [w for w in words if w not in self.stoi]
        if unknown:
            raise ValueError(f"words not in the vocabulary: {unknown}; it has {self.itos[1:]}")
        return [self.stoi[w] for w in words]

    def decode(self, ids) -> str:
        """Ids back to words, skipping ``<pad>``."""
        return " ".join(self.itos[int(i)] for i in ids if int(i) != self.PAD)

    def batch(self, texts, length: int | None = None) -> Tensor:
        """Texts as a ``(B, L)`` ``torch.long`` tensor, each row padded with ``<pad>`` (0) to ``length``
        (default: the longest text's number of words)."""
        if isinstance(texts, str):
            texts = [texts]
        rows = [self.encode(t) for t in texts]
        if not rows:
            raise ValueError("texts must hold at least one text, got none")
        L = max(len(r) for r in rows) if length is None else positive_int(length, "length")
        if any(len(r) > L for r in rows):
            raise ValueError(f"a text has {max(len(r) for r in rows)} words, more than length={L}")
        return torch.tensor([r + [self.PAD] * (L - len(r)) for r in rows], dtype=torch.long)  # (B, L)


#: The vocabulary of chapter 8's CLIP: the words of every template and the digits' names.
VOCAB = TextVocab()


def tokenize(texts, length: int | None = None) -> Tensor:
    """Texts (a list of strings, or one string) -> ``(B, L)`` ids in :data:`VOCAB`, padded with 0 to the longest
    text (or to ``length``)."""
    return VOCAB.batch(texts, length)


# ----------------------------------------------------------------------------- the model
@dataclass
class CLIPConfig:
    """The shape of a :class:`CLIP`.

    Attributes:
        d_embed: the size of the shared space both encoders project to.
        image_size, patch: the images (``image_size x image_size``, grey) and the ViT's patch side.
        d_model, n_head, n_layer, d_ff: each encoder's Transformer (``d_ff`` default ``4 * d_model``).
        vocab_size: the text encoder's vocabulary (default ``len(VOCAB)``).
        context: the longest text, in words (the text encoder's position embeddings).
        dropout: dropout in both encoders.
    """

    d_embed: int = 32
    image_size: int = 8
    patch: int = 4
    d_model: int = 32
    n_head: int = 4
    n_layer: int = 2
    d_ff: int | None = None
    vocab_size: int | None = None
    context: int = 12
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("d_embed", "image_size", "patch", "d_model", "n_head", "n_layer", "context"):
            positive_int(getattr(self, name), f"CLIPConfig.{name}")
        if self.vocab_size is None:
            self.vocab_size = len(VOCAB)
        positive_int(self.vocab_size, "CLIPConfig.vocab_size")
        self.d_ff = 4 * self.d_model if self.d_ff is None else positive_int(self.d_ff, "CLIPConfig.d_ff")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        dropout_rate(self.dropout, "CLIPConfig.dropout")


class ImageEncoder(nn.Module):
    """A ViT without a head, read at its class token, then projected.

    ``(B, 1, H, W) -> (B, d_embed)``, not yet normalised (:meth:`CLIP.encode_image` normalises).
    """

    def __init__(self, config: CLIPConfig):
        super().__init__()
        c = config
        self.vit = ViT(ViTConfig(image_size=c.image_size, patch=c.patch, channels=1, d_model=c.d_model,
                                 n_head=c.n_head, n_layer=c.n_layer, d_ff=c.d_ff, n_classes=None, dropout=c.dropout))
        self.proj = nn.Linear(c.d_model, c.d_embed, bias=False)

    def forward(self, images: Tensor) -> Tensor:
        tokens = self.vit(images)  # (B, 1 + N, d_model), after the final layer norm
        return self.proj(tokens[:, 0])  # the class token: (B, d_model) -> (B, d_embed)


class TextEncoder(nn.Module):
    """Token and position embeddings, encoder blocks that ignore the padding, the mean over the real
    tokens, a projection: ``(B, L)`` ids -> ``(B, d_embed)`` (not normalised)."""

    def __init__(self, config: CLIPConfig):
        super().__init__()
        c = config
        self.tok = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = nn.Parameter(0.02 * torch.randn(1, c.context, c.d_model))  # learned, one per place
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout) for _ in range(c.n_layer))
        self.norm = nn.LayerNorm(c.d_model)
        self.proj = nn.Linear(c.d_model, c.d_embed, bias=False)

    def forward(self, ids: Tensor) -> Tensor:
        L = ids.shape[1]
        real = ids != TextVocab.PAD  # (B, L): True for the words, False for the padding
        x = self.drop(self.tok(ids) + self.pos[:, :L])  # (B, L, d_model)
        for block in self.blocks:
            x = block(x, padding_mask=real)  # no word attends to the padding
        x = self.norm(x)  # (B, L, d_model)
        w = real.unsqueeze(-1).to(x.dtype)  # (B, L, 1)
        pooled = (x * w).sum(dim=1) / w.sum(dim=1)  # (B, d_model): the mean over the real words
        return self.proj(pooled)  # (B, d_embed)


class CLIP(nn.Module):
    r"""An image encoder and a text encoder that map to one space of ``d_embed`` dimensions.

    * ``encode_image(images)``: ``(B, 1, H, W)`` -> ``(B, d_embed)``, unit vectors;
    * ``encode_text(ids)``: ``(B, L)`` ids (:func:`tokenize`) -> ``(B, d_embed)``, unit vectors;
    * ``forward(images, ids)``: the ``(B, B)`` logits :math:`e^{t}\, I T^\top`, row ``i`` image ``i``'s
      scaled similarity to every text;
    * ``logit_scale``: the learned log temperature ``t``, initialised to ``log(1 / 0.07)``; :meth:`scale` is
      ``e^t``, capped at 100 as in CLIP so that the logits cannot grow without bound.
    """

    #: the cap on ``exp(logit_scale)``
    MAX_SCALE = 100.0

    def __init__(self, config: CLIPConfig | None = None):
        super().__init__()
        self.config = config if config is not None else CLIPConfig()
        self.image_encoder = ImageEncoder(self.config)
        self.text_encoder = TextEncoder(self.config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def clamped_logit_scale(self) -> Tensor:
        """``logit_scale``, capped at ``log(MAX_SCALE)`` (a scalar tensor)."""
        return self.logit_scale.clamp(max=math.log(self.MAX_SCALE))

    def scale(self) -> Tensor:
        """The temperature's inverse, ``exp(logit_scale)`` (capped at :attr:`MAX_SCALE`)."""
        return self.clamped_logit_scale().exp()

    def encode_image(self, images) -> Tensor:
        """``(B, 1, H, W)`` images -> ``(B, d_embed)`` unit vectors."""
        c = self.config
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, c.image_size, c.image_size):
            hint = ": add the channel axis with images[:, None]" if images.dim() == 3 else ""
            raise ValueError(f"images must have shape (B, 1, {c.image_size}, {c.image_size}), got "
                             f"{tuple(images.shape)}{hint}")
        return F.normalize(self.image_encoder(images), dim=-1)  # (B, d_embed), unit rows

    def encode_text(self, ids) -> Tensor:
        """``(B, L)`` token ids (:func:`tokenize`, padded with 0) -> ``(B, d_embed)`` unit vectors."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool or ids.shape[1] == 0:
            raise ValueError(f"ids must be a (B, L) tensor of integer token ids (tokenize(texts) makes one), got "
                             f"shape {tuple(ids.shape)} and dtype {ids.dtype}")
        if ids.shape[1] > self.config.context:
            raise ValueError(f"ids has L={ids.shape[1]} positions; this text encoder reads at most "
                             f"context={self.config.context} words")
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got ids from {int(ids.min())} "
                             f"to {int(ids.max())}")
        if not (ids != TextVocab.PAD).any(dim=1).all():
            raise ValueError("every text needs at least one word: a row of ids is all padding (0)")
        return F.normalize(self.text_encoder(ids.long()), dim=-1)  # (B, d_embed), unit rows

    def forward(self, images, ids) -> Tensor:
        """``B`` images and their ``B`` texts -> the ``(B, B)`` logits ``exp(logit_scale) * img @ txt.T``."""
        if len(images) != len(ids):
            raise ValueError(f"{len(images)} images but {len(ids)} texts: forward pairs them, one text per image")
        img, txt = self.encode_image(images), self.encode_text(ids)  # (B, d_embed) each
        return self.scale() * img @ txt.T  # (B, B)


# ----------------------------------------------------------------------------- the loss
def contrastive_loss(image_emb: Tensor, text_emb: Tensor, logit_scale) -> Tensor:
    r"""CLIP's symmetric InfoNCE loss over a batch of ``B`` matching (image, text) pairs.

    .. math::
        S = e^{t}\, I\, T^\top,\qquad
        \mathcal{L} = \tfrac12\big(\mathrm{CE}(S, y) + \mathrm{CE}(S^\top, y)\big),\qquad y = (0, 1, \dots, B-1)

    Row ``i`` of ``S`` asks "which text is image ``i``'s?" and column ``j`` "which image is text ``j``'s?";
    the right answers are on the diagonal.

    Args:
        image_emb, text_emb: ``(B, d)`` embeddings (normalised, as :class:`CLIP` makes them); row ``i`` of
            each is one matching pair.
        logit_scale: the log temperature ``t``, a number or a scalar tensor (:attr:`CLIP.logit_scale`).

    Returns:
        A scalar tensor; ``log B`` when every similarity is equal.
    """
    for name, emb in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not isinstance(emb, Tensor) or emb.dim() != 2 or not emb.is_floating_point():
            got = tuple(emb.shape) if isinstance(emb, Tensor) else type(emb).__name__
            raise ValueError(f"{name} must be a (B, d) floating-point tensor, got {got}")
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)} must have the "
                         "same shape (B, d): row i of each is one matching pair")
    if len(image_emb) == 0:
        raise ValueError("the loss of an empty batch is undefined: image_emb and text_emb have no rows")
    logit_scale = torch.as_tensor(logit_scale, dtype=image_emb.dtype)
    if logit_scale.numel() != 1:
        raise ValueError(f"logit_scale must be one number (the log temperature), got shape {tuple(logit_scale.shape)}")
    logits = logit_scale.reshape(()).exp() * image_emb @ text_emb.T  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)  # pair i sits on the diagonal
    image_to_text = F.cross_entropy(logits, targets)  # each row: which text?
    text_to_image = F.cross_entropy(logits.T, targets)  # each column: which image?
    return (image_to_text + text_to_image) / 2


# ----------------------------------------------------------------------------- training
def clip_batches(images: Tensor, labels: Tensor, batch_size: int, templates=TRAIN_TEMPLATES,
                 length: int | None = None) -> Callable[[torch.Generator], tuple[Tensor, Tensor]]:
    """The batch function of CLIP, for :func:`attnedu.train.train`: ``batch_fn(generator) -> (images, ids)``,
    ``(B, 1, H, W)`` random training images (drawn with replacement) and ``(B, L)`` ids, each image's
    caption from a random template."""
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if images.dim() != 4 or labels.shape != (len(images),) or len(images) == 0:
        raise ValueError(f"images must be (N, C, H, W) and labels (N,), N >= 1, got {tuple(images.shape)} and "
                         f"{tuple(labels.shape)}")
    positive_int(batch_size, "batch_size")
    templates = _check_templates(templates)
    captions = [p for d in range(10) for p in prompts(templates, d)]
    table = tokenize(captions, length).reshape(10, len(templates), -1)  # (10, n_templates, L)

    def batch_fn(generator: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(len(images), (batch_size,), generator=generator)  # (B,)
        which = torch.randint(len(templates), (batch_size,), generator=generator)  # (B,): a template each
        return images[idx], table[labels[idx], which]  # (B, 1, H, W), (B, L)

    return batch_fn


def _clip_loss(loss_fn: Callable) -> Callable:
    """``loss_fn(image_emb, text_emb, logit_scale)`` as the loop's ``loss(model, batch)``."""

    def loss(model: CLIP, batch) -> Tensor:
        images, ids = batch
        return loss_fn(model.encode_image(images), model.encode_text(ids), model.clamped_logit_scale())

    return loss


#: the settings of :func:`train_clip` (the chapter's run)
TRAIN_SETTINGS = {"batch_size": 128, "lr": 5e-3, "warmup": 20, "weight_decay": 0.05}


def train_clip(loss_fn: Callable = contrastive_loss, iters: int = 200, seed: int = 0, progress: bool = True,
               max_seconds: float | None = None, config: CLIPConfig | None = None) -> tuple[CLIP, History]:
    """Train a :class:`CLIP` on the digits' training images with captions from :data:`TRAIN_TEMPLATES`.

    Each step draws ``TRAIN_SETTINGS["batch_size"]`` random training images, each with a caption from a
    random training template (:func:`clip_batches`), and takes one AdamW step on
    ``loss_fn(model.encode_image(images), model.encode_text(ids), logit_scale)``, through
    :func:`attnedu.train.train` (which honours ``$ATTNEDU_MAX_TRAIN_SECONDS``).

    Args:
        loss_fn: ``loss_fn(image_emb, text_emb, logit_scale) -> scalar tensor``, e.g. :func:`contrastive_loss`.
        iters: optimisation steps (the default 200 take about 8 seconds on one CPU thread).
        seed: seeds the initial weights and the batches.
        progress: show a progress bar.
        max_seconds: stop early after this many seconds.
        config: the model's shape (default :class:`CLIPConfig` ``()``).

    Returns:
        ``(model, history)``: the trained model in eval mode and the run's :class:`~attnedu.train.History`;
        ``history.zero_shot`` is the zero-shot accuracy on the test images (:data:`TEST_TEMPLATES`) before
        and after training.
    """
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a function loss_fn(image_emb, text_emb, logit_scale), got "
                         f"{type(loss_fn).__name__}")
    iters = positive_int(iters, "iters")
    split = digits_split()
    with torch.random.fork_rng(devices=[]):  # the initial weights depend on seed only
        torch.manual_seed(seed)
        model = CLIP(config)
    s = TRAIN_SETTINGS
    # ids padded to the longest caption (7 words), not to the context
    batch_fn = clip_batches(split.train_images, split.train_labels, s["batch_size"])

    def eval_fn() -> dict[str, float]:
        return {"zero_shot": zero_shot_accuracy(model, split.test_images, split.test_labels)}

    history = train(model, batch_fn, iters=iters, lr=s["lr"], warmup=min(s["warmup"], iters),
                    weight_decay=s["weight_decay"], betas=(0.9, 0.98), grad_clip=1.0, loss_fn=_clip_loss(loss_fn),
                    eval_fn=eval_fn, seed=seed, progress=progress, max_seconds=max_seconds)
    return model, history


# ----------------------------------------------------------------------------- what it learned
def _check_model(model) -> None:
    if not isinstance(model, CLIP):
        raise ValueError(f"model must be a CLIP (train_clip makes one), got {type(model).__name__}")


def _check_labels(images, labels) -> tuple[Tensor, Tensor]:
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if labels.dim() != 1 or images.dim() < 1 or len(labels) != len(images) or labels.is_floating_point():
        raise ValueError(f"labels must be (N,) integer digits, one per image; got labels {tuple(labels.shape)} "
                         f"for images {tuple(images.shape)}")
    if len(labels) == 0:
        raise ValueError("images and labels are empty: nothing to measure")
    if int(labels.min()) < 0 or int(labels.max()) > 9:
        raise ValueError(f"labels must be digits from 0 to 9, got values from {int(labels.min())} "
                         f"to {int(labels.max())}")
    return images, labels.long()


@contextmanager
def _evaluating(model: nn.Module):
    """Run ``model`` in eval mode (no dropout) and without gradients, then restore its mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def class_text_embeddings(model: CLIP, templates=TEST_TEMPLATES) -> Tensor:
    """``(10, d_embed)``: for each digit, the mean of its prompts' embeddings (one per template), normalised again."""
    _check_model(model)
    templates = _check_templates(templates)
    with _evaluating(model):
        emb = model.encode_text(tokenize([p for d in range(10) for p in prompts(templates, d)]))  # (10 * n, d_embed)
    return F.normalize(emb.reshape(10, len(templates), -1).mean(dim=1), dim=-1)  # (10, d_embed)


def similarity(model: CLIP, images, texts) -> Tensor:
    """The cosine similarities of ``images`` ``(N, 1, H, W)`` and ``texts`` (a list of strings).

    Returns ``(N, n_texts)``, each in ``[-1, 1]``: ``encode_image(images) @ encode_text(tokenize(texts)).T``.
    """
    _check_model(model)
    ids = tokenize(texts)
    with _evaluating(model):
        return model.encode_image(images) @ model.encode_text(ids).T  # (N, n_texts)


def zero_shot_accuracy(model: CLIP, images, labels, templates=TEST_TEMPLATES) -> float:
    """The fraction of ``images`` ``(N, 1, H, W)`` whose digit ``labels`` ``(N,)`` is the one whose text is most
    similar: each digit's text is the normalised mean of its prompts' embeddings (:func:`class_text_embeddings`)."""
    images, labels = _check_labels(images, labels)
    text = class_text_embeddings(model, templates)  # (10, d_embed)
    with _evaluating(model):
        pred = (model.encode_image(images) @ text.T).argmax(dim=1)  # (N,)
    return (pred == labels).double().mean().item()


def text_to_image_recall_at_1(model: CLIP, images, labels, templates=TEST_TEMPLATES, n_galleries: int = 200,
                              seed: int = 0) -> float:
    """Text-to-image retrieval: does each prompt find its digit among ten images, one of each digit?

    A **gallery** is ten of ``images``, one per digit, drawn at random (seeded by ``seed``). For each of
    ``n_galleries`` galleries, each digit ``d`` and each template, the prompt ``template.format(name of d)``
    retrieves the gallery's image most similar to it; recall@1 is the fraction of these
    ``n_galleries * 10 * len(templates)`` retrievals that return the image of digit ``d``. Chance is 0.1.

    ``images`` ``(N, 1, H, W)`` and ``labels`` ``(N,)`` must hold every digit at least once.
    """
    images, labels = _check_labels(images, labels)
    positive_int(n_galleries, "n_galleries")
    templates = _check_templates(templates)
    missing = sorted(set(range(10)) - set(labels.tolist()))
    if missing:
        raise ValueError(f"a gallery needs an image of every digit; labels has none of {missing}")
    _check_model(model)
    with _evaluating(model):
        img = model.encode_image(images)  # (N, d_embed)
        txt = model.encode_text(tokenize([p for d in range(10) for p in prompts(templates, d)]))  # (10 * n, d_embed)
    txt = txt.reshape(10, len(templates), -1)  # (10 digits, n_templates, d_embed)
    rng = random.Random(seed)
    by_digit = [torch.nonzero(labels == d).flatten().tolist() for d in range(10)]
    galleries = torch.tensor([[rng.choice(by_digit[d]) for d in range(10)] for _ in range(n_galleries)])  # (G, 10)
    sims = torch.einsum("gid,ktd->gikt", img[galleries], txt)  # (G, 10 images, 10 digits, n_templates)
    found = sims.argmax(dim=1)  # (G, 10 digits, n_templates): the gallery's image each prompt retrieves
    return (found == torch.arange(10)[None, :, None]).double().mean().item()
