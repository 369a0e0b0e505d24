"""Chapter 8's exercises, *Attention beyond text*, as records (see :mod:`attnedu.checks`). Images are torch tensors
``(B, C, H, W)``; attention weights are lists of ``(B, H, T, T)`` tensors, one per layer, first layer first.
``predict_shuffled_patches`` is a prediction, made before the chapter's experiment decides it."""

import torch
import torch.nn.functional as TF

from ..models import GPT, GPTConfig
from ..vision import text_to_image as t2i
from ..vision.clip import contrastive_loss
from ..vision.patches import patchify
from ..vision.vit import attention_rollout
from . import Case, Exercise, ExerciseSet, rows_sum_to_one


# ------------------------------------------------------------------ patchify
def _patchify_with(images, patch, *, grid="rows", inside="channel first", reshape_only=False):  # mistakes as switches
    images = torch.as_tensor(images)
    B, C, H, W = images.shape
    if reshape_only:  # no permutation: each "patch" is a run of consecutive pixels
        return images.reshape(B, H * W // patch**2, C * patch * patch)
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)  # (B, C, rows, p, cols, p)
    order = {"rows": (2, 4), "columns": (4, 2)}[grid]
    within = {"channel first": (1, 3, 5), "channel last": (3, 5, 1), "columns first": (1, 5, 3)}[inside]
    return x.permute(0, *order, *within).reshape(B, -1, C * patch * patch)
def _patchify_cases():
    one = torch.arange(16.0).reshape(1, 1, 4, 4)  # pixel values are their positions, row by row
    two = torch.arange(32.0).reshape(1, 2, 4, 4)
    g = torch.Generator().manual_seed(81)
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        ((one, 2), "a 4x4 image of the numbers 0..15, one channel, patch 2", "by hand: 4 patches of 4 pixels; patch 0 "
         "is [0, 1, 4, 5] (the top-left square, row by row), patch 1 [2, 3, 6, 7] (top right), patch 2 [8, 9, 12, "
         "13]: shape (1, 4, 4)."),
        ((two, 2), "a 4x4 image with 2 channels (0..15 and 16..31), patch 2", "each patch lists channel 0's pixels, "
         "then channel 1's: patch 0 is [0, 1, 4, 5, 16, 17, 20, 21], shape (1, 4, 8)."),
        ((one, 4), "the same image, patch 4", "a patch as large as the image is one token holding every pixel."),
        ((torch.rand(2, 3, 6, 9, generator=g, dtype=torch.float64), 3), "a batch of 2 colour images of 6x9 pixels, "
         "patch 3", "read B, C, H and W from images.shape: the grid is 2 rows by 3 columns of patches."),
        ((torch.rand(3, 1, 8, 8, generator=g, dtype=torch.float64), 2), "3 digits of 8x8, patch 2", None)]]
def _patchify_hidden():
    g = torch.Generator().manual_seed(801)
    return [Case((torch.rand(shape, generator=g, dtype=torch.float64), p)) for shape, p in [
        ((1, 1, 2, 2), 1), ((1, 1, 2, 2), 2), ((2, 3, 24, 24), 4), ((4, 1, 8, 8), 2), ((1, 2, 10, 4), 2),
        ((2, 5, 6, 6), 3), ((1, 3, 16, 8), 8)]]
_PATCHIFY = Exercise("patchify", ["images", "patch"], patchify, _patchify_cases, _patchify_hidden,
                     wrong=_patchify_with, mistakes=[
    ({"reshape_only": True}, "a reshape alone does not cut squares: images.reshape(B, N, C*p*p) takes runs of "
     "consecutive pixels along each row. Split H and W into (H/p, p) and (W/p, p), then permute the grid axes in "
     "front of the pixel axes before flattening."),
    ({"grid": "columns"}, "the patches come out column by column: patch 1 must be the one to the right of patch 0 "
     "(row-major order, as text is read), so the grid-row axis goes before the grid-column axis."),
    ({"inside": "channel last"}, "each patch is flattened pixel by pixel with the channels innermost: flatten as "
     "(channel, row, column), all of channel 0's pixels first."),
    ({"inside": "columns first"}, "inside each patch the pixels are listed column by column: list them row by row, "
     "(channel, row, column).")])


# ------------------------------------------------------------------ attention rollout
def _rollout_with(attentions, *, residual=True, order="later left", heads="mean", normalise=True, layers="all"):
    attentions = list(attentions)
    if layers == "last":
        attentions = attentions[-1:]
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype)
    out = eye.expand(B, T, T)
    for a in attentions:
        mixed = a.mean(1) if heads == "mean" else a.max(1).values
        if residual:
            mixed = 0.5 * (mixed + eye) if normalise else mixed + eye
        out = mixed @ out if order == "later left" else out @ mixed
    return out
def _weights(g, B, H, T, sharp=1.0):  # softmax rows: one layer's (B, H, T, T) attention weights
    return torch.softmax(sharp * torch.randn(B, H, T, T, generator=g, dtype=torch.float64), dim=-1)
def _rollout_cases():
    g = torch.Generator().manual_seed(82)
    uniform = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    swap = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]], dtype=torch.float64)  # each token reads only the other
    return [Case((attns,), about=about, hint=hint) for attns, about, hint in [
        ([uniform], "one layer, one head, two tokens, every weight 0.5", "by hand: (A + I) / 2 = [[0.75, 0.25], "
         "[0.25, 0.75]]: half of each token's output is its own residual path."),
        ([swap, swap], "two layers, one head, two tokens that each read only the other", "multiply the layers' "
         "(A + I) / 2: [[0.5, 0.5], [0.5, 0.5]] for each, and their product is the same."),
        ([_weights(g, 1, 2, 3), _weights(g, 1, 2, 3)], "two layers of two heads, three tokens", "average the heads "
         "of each layer first: A_bar = A.mean(dim=1), shape (B, T, T)."),
        ([_weights(g, 2, 3, 4, 2.0) for _ in range(3)], "three layers, batch of 2, four tokens", "the later layer "
         "goes on the left: R = A_3 A_2 A_1, one (B, T, T) matrix product per layer, starting from the identity."),
        ([_weights(g, 1, 4, 5, 3.0) for _ in range(4)], "four layers of four heads, five tokens", None)]]
def _rollout_hidden():
    g = torch.Generator().manual_seed(802)
    return [Case(([_weights(g, B, H, T, s) for _ in range(L)],)) for B, H, T, L, s in [
        (1, 1, 1, 1, 1.0), (1, 1, 3, 1, 1.0), (2, 4, 17, 2, 2.0), (3, 2, 6, 5, 3.0), (1, 8, 10, 3, 0.5)]]
_ROLLOUT = Exercise("attention_rollout", ["attentions"], attention_rollout, _rollout_cases, _rollout_hidden,
                    properties=[rows_sum_to_one()], wrong=_rollout_with, mistakes=[
    ({"residual": False}, "the residual connection is missing: each layer passes on half attention and half the "
     "token itself, (A_bar + I) / 2."),
    ({"normalise": False}, "A_bar + I is not halved: its rows sum to 2, and after L layers to 2**L. Use (A_bar + I) / 2."),
    ({"order": "later right"}, "the layers are multiplied in the wrong order: the first layer acts first, so it is "
     "on the right, R = A_L ... A_2 A_1 (each new layer multiplies from the left)."),
    ({"heads": "max"}, "the heads are combined by their maximum: take their mean, A.mean(dim=1)."),
    ({"layers": "last"}, "only the last layer is used: roll out through every layer, first to last.")])


# ------------------------------------------------------------------ a prediction: shuffled patches
def _shuffled_patches():
    """What section "Where a patch was: position embeddings" measures: every test digit's 16 patches shuffled by
    the same permutation, then classified by two ViTs trained on the digits, one with position embeddings and
    one without."""
    return "b"
_SHUFFLED = Exercise("predict_shuffled_patches", [], _shuffled_patches, lambda: [Case(mistakes=[
    ("a", "the ViT with position embeddings does not keep its accuracy: it learned which patch is where, and a "
     "shuffled digit puts the wrong strokes in each place."),
    ("c", "the ViT without position embeddings keeps exactly its accuracy: self-attention is permutation-"
     "equivariant (chapter 3), and the class token reads the patches as a set, whatever their order."),
    ("d", "it is the other way round: without positions the model cannot even see the shuffle, while the model "
     "with positions relies on where each patch is.")])], compare="choice",
                     options={"choices": ("a", "b", "c", "d")}, kind="predict", explain=(
    "The ViT with position embeddings drops far below its accuracy on the shuffled digits, while the ViT without "
    "them gives exactly the same predictions as before, digit for digit. Without positions, self-attention is "
    "permutation-equivariant and the class token's attention is a weighted average over a set, so the order of "
    "the patches cannot matter; that is also why the model without positions does worse on the real digits: it "
    "cannot tell a stroke at the top from the same stroke at the bottom."))

# ------------------------------------------------------------------ the contrastive loss
def _contrastive_with(image_emb, text_emb, logit_scale, *, rows=True, columns=True, scale="exp", reduce="mean"):
    t = torch.as_tensor(logit_scale, dtype=image_emb.dtype).reshape(())
    factor = {"exp": t.exp(), "raw": t, "none": torch.ones((), dtype=image_emb.dtype)}[scale]
    logits = factor * image_emb @ text_emb.T  # (B, B)
    targets = torch.arange(len(logits))
    parts = [TF.cross_entropy(m, targets, reduction=reduce) for m, keep in ((logits, rows), (logits.T, columns))
             if keep]
    return sum(parts) / len(parts)
def _unit(g, B, d):
    return TF.normalize(torch.randn(B, d, generator=g, dtype=torch.float64), dim=-1)
def _contrastive_cases():
    g = torch.Generator().manual_seed(84)
    same = TF.normalize(torch.ones(2, 3, dtype=torch.float64), dim=-1)
    img, txt = _unit(g, 4, 6), _unit(g, 4, 6)
    close = TF.normalize(img + 0.3 * _unit(g, 4, 6), dim=-1)  # texts near their images, not quite
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return [Case(args, about=about, hint=hint, rtol=1e-6, atol=1e-9) for args, about, hint in [
        ((same, same.clone(), t(2.0)), "2 pairs whose vectors are all the same, logit_scale 2", "by hand: every "
         "logit is equal, so each row and each column is a choice between 2 equal logits: ln 2 = 0.693."),
        ((img, close, t(0.0)), "4 pairs, texts near their images, logit_scale 0 (scale e^0 = 1)", "the logits are "
         "the cosine similarities, image_emb @ text_emb.T, shape (B, B); the targets are torch.arange(B)."),
        ((img, close, t(2.6593)), "the same pairs, logit_scale ln(1/0.07) = 2.659", "multiply the similarities by "
         "logit_scale.exp(), e^2.659 = 14.3: logit_scale is a logarithm."),
        ((img, txt, t(1.5)), "4 unrelated pairs, logit_scale 1.5", "average two cross-entropies: over the rows "
         "(each image picks a text) and over the columns (each text picks an image)."),
        ((_unit(g, 7, 5), _unit(g, 7, 5), t(3.0)), "7 random pairs of 5 numbers, logit_scale 3", None)]]
def _contrastive_hidden():
    g = torch.Generator().manual_seed(804)
    return [Case((_unit(g, B, d), _unit(g, B, d), torch.tensor(s, dtype=torch.float64)), rtol=1e-6, atol=1e-9)
            for B, d, s in [(1, 4, 1.0), (2, 2, 0.0), (5, 8, 2.659), (16, 32, 4.0), (9, 3, -1.0)]]
_CONTRASTIVE = Exercise("contrastive_loss", ["image_emb", "text_emb", "logit_scale"], contrastive_loss,
                        _contrastive_cases, _contrastive_hidden, wrong=_contrastive_with, mistakes=[
    ({"columns": False}, "only the image-to-text direction is there (the rows): CLIP's loss is symmetric, the mean "
     "of the cross-entropy over the rows and over the columns (logits.T)."),
    ({"rows": False}, "only the text-to-image direction is there (the columns): average it with the rows' "
     "cross-entropy, image to text."),
    ({"scale": "raw"}, "the similarities are multiplied by logit_scale itself: it is the logarithm of the scale, so "
     "multiply by logit_scale.exp()."),
    ({"scale": "none"}, "the temperature is missing: multiply the similarities by logit_scale.exp() before the "
     "cross-entropy."),
    ({"reduce": "sum"}, "the cross-entropies are summed over the batch: take their mean (F.cross_entropy's default).")])


# ------------------------------------------------------------------ debug: sampling an image pixel by pixel
def _painter(seed):  # a tiny random GPT over the text-to-image vocabulary: deterministic, fast
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT(GPTConfig(vocab_size=t2i.VOCAB_SIZE, context=t2i.PROMPT_LENGTH + t2i.N_PIXELS, n_layer=1,
                              n_head=2, d_model=16))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))  # sharp, varied distributions
    return model.eval()
def _sample_with(model, prompt, n_pixels=64, generator=None, temperature=1.0, *, feed_back=True, position=-1,
                 pixels_only=True, scale=True):
    ids, pixels = prompt, []
    with torch.no_grad():
        for _ in range(n_pixels):
            logits = model(ids if feed_back else prompt)[0][:, position]  # (B, V)
            logits = logits[:, :t2i.LEVELS] if pixels_only else logits
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                nxt = torch.multinomial(torch.softmax(logits / temperature if scale else logits, -1), 1,
                                        generator=generator)
            pixels.append(nxt)
            ids = torch.cat([ids, nxt], dim=1)
    return torch.cat(pixels, dim=1)
def _sample_case(seed, captions, n, t, about=None, hint=None):
    return Case((_painter(seed), t2i.caption_ids(captions), n, torch.Generator().manual_seed(seed), t),
                about=about or f"a small random painter, {len(captions)} caption(s), {n} pixels, temperature {t}",
                hint=hint)
def _sample_cases():
    return [
        _sample_case(85, ["a handwritten three"], 3, 0.0, hint="with temperature 0 each pixel is the argmax of the "
                     "last position's pixel logits; the model must read the pixels drawn so far."),
        _sample_case(86, ["the digit seven", "a handwritten one"], 8, 0.0),
        _sample_case(87, ["a handwritten three"], 6, 1.0, hint="draw with torch.multinomial(probs, 1, generator="
                     "generator), one call per step, so that the same generator gives the same pixels."),
        _sample_case(88, ["a picture of the number two", "the digit five"], 12, 0.7, hint="divide the logits by "
                     "the temperature before the softmax."),
        _sample_case(89, ["a handwritten zero"] * 3, 20, 1.0)]
def _sample_hidden():
    return [_sample_case(s, caps, n, t) for s, caps, n, t in [
        (801, ["a handwritten eight"], 1, 1.0), (802, ["the digit four"] * 2, 16, 0.0),
        (803, ["a handwritten six", "the digit nine", "a picture of the number one"], 12, 1.3),
        (804, ["a handwritten two"], 24, 0.5)]]
_SAMPLE = Exercise("sample_image", ["model", "prompt", "n_pixels", "generator", "temperature"], t2i.sample_image,
                   _sample_cases, _sample_hidden, wrong=_sample_with, kind="debug", mistakes=[
    ({"feed_back": False}, "the model reads only the prompt at every step, never the pixels drawn so far, so each "
     "pixel is drawn as if it were the first: keep a growing sequence, ids = torch.cat([ids, next_pixel], dim=1), "
     "and run the model on it."),
    ({"position": 0}, "the next pixel comes from the logits at position 0: the prediction for the next token is "
     "at the last position, logits[:, -1]."),
    ({"pixels_only": False}, "the draw is over the whole vocabulary, words included: restrict the logits to the "
     "pixel ids, logits[:, -1, :LEVELS]."),
    ({"scale": False}, "the temperature is ignored: divide the logits by it before the softmax.")])

EXERCISES = ExerciseSet(_PATCHIFY, _ROLLOUT, _SHUFFLED, _CONTRASTIVE, _SAMPLE)
check = EXERCISES.check
reveal = EXERCISES.reveal
