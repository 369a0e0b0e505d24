r"""Image to image with attention (chapter 8): super-resolution and denoising with one architecture.

A classifier reads an image and says one word; here the model reads an image and *returns an image*
of the same size. The input is a damaged photo and the target the clean one:

* **super-resolution x2**: the photo is shrunk to half its size (:func:`downsample`, each 2x2 block
  averaged) and blown up again by bicubic interpolation (:func:`bicubic_upsample`): sharp edges and
  fine texture are lost, and the model must put them back;
* **denoising**: Gaussian noise of standard deviation ``sigma = 0.1`` is added to every pixel
  (:func:`add_noise`), and the model must take it away.

The :class:`PatchTransformer` is a Vision Transformer without a class token and with a pixel head: the
``S x S`` input is cut into ``p x p`` patches (:func:`~attnedu.vision.patches.patchify`), each patch is
embedded by one linear map and given a learned position, chapter 5's encoder blocks let every patch
attend to every other, and one linear map turns each final token back into ``p x p`` pixels
(:func:`~attnedu.vision.patches.unpatchify`). The model predicts a **residual**, the correction added
to its input:

.. math::
    \hat y = x + \mathrm{unpatchify}\big(\mathrm{LN}(z_L)\, W_\mathrm{out}\big),
    \qquad z_0 = [x_1 E;\ \dots;\ x_N E] + E_\mathrm{pos},\qquad z_\ell = \mathrm{Block}_\ell(z_{\ell-1})

``W_out`` starts at zero, so the untrained model returns its input: it starts at the baseline (bicubic
for super-resolution, the noisy photo for denoising) and training can only learn what is *missing*.
Nothing but attention moves information between patches: there is no convolution.

Why attention helps: to denoise a patch, average it with the patches that *look like it*, wherever they
are in the image. That is **non-local means** (Buades, Coll and Morel, 2005), and it is attention with
patches as queries, keys and values: the weights are a softmax of the patches' similarities. The same
for super-resolution: a blurred edge is sharpened the way the model has seen other edges sharpened, and
nearby patches tell it which way the edge runs.

The quality measure is the **peak signal-to-noise ratio**, in decibels (:func:`psnr`):

.. math::
    \mathrm{PSNR} = 10 \log_{10} \frac{\mathrm{max}^2}{\mathrm{MSE}}

(+10 dB is ten times less squared error, +3 dB half of it). Noise of ``sigma = 0.1`` is exactly 20 dB
(MSE ``sigma^2 = 0.01``).

Data: random ``32 x 32`` crops (flipped and turned at random) of every bundled photo
(:mod:`attnedu.vision.images`) but one, :data:`HELD_OUT` (``"astronaut"``), which the model never sees in
training and which :func:`evaluate` judges it on (a centre region of ``128 x 128`` pixels). The images
are RGB: attention costs the same per token whatever a patch holds, and colour is what the chapter shows.

:func:`apply` runs a model over a photo of any size by overlapping tiles, blended so that no tile edge
shows. One more seam remains: each token writes its own ``p x p`` patch, and its small errors are shared
by its whole patch, so the patch grid shows faintly in the output (most in denoising, where a patch's
mean brightness is guessed from noisy pixels). :func:`apply` therefore runs the model on ``shifts``
copies of the grid moved along the diagonal and averages them: each grid's patch edges fall inside the
others' patches. Measured on the held-out region (``evaluate`` keeps both numbers): denoising 27.9 dB with
one grid, 29.0 dB with four; super-resolution 29.53 dB with one, 29.68 dB with two (its grids move by even
steps only, since its input is made of 2x2 blocks). A 3x3 convolution after :func:`unpatchify`, tried
first, added 0.1 dB and did not remove the grid, so the model has none.

The shipped models (:mod:`attnedu.vision.checkpoints`) come from :func:`superres_recipe` and
:func:`denoise_recipe`: the same architecture and settings trained twice, 2,000 steps of 32 crops each, on
the mean absolute error :math:`\frac{1}{n}\sum |\hat y - y|` (which reached a higher PSNR than the squared
error here, as it does in the super-resolution literature).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import non_negative_int, positive_int, positive_number
from attnedu.nn import EncoderBlock
from attnedu.train import train
from .images import PHOTOS, photo
from .patches import patch_grid, patchify, unpatchify

__all__ = ["TASKS", "HELD_OUT", "CROP", "EVAL_SIZE", "SIGMA", "SHIFTS", "psnr", "downsample", "bicubic_upsample",
           "add_noise", "box_blur", "degrade", "PatchTransformerConfig", "PatchTransformer", "apply",
           "training_photos", "training_batches", "held_out_pair", "evaluate", "superres_recipe",
           "denoise_recipe", "load_model"]

#: the two tasks, each a damage the model learns to undo
TASKS = ("superres", "denoise")
#: the photo never trained on, only judged on
HELD_OUT = "astronaut"
#: the side of a training crop, in pixels (the model's input size)
CROP = 32
#: the side of the held-out region that :func:`evaluate` judges, in pixels
EVAL_SIZE = 128
#: the noise of the denoising task, on [0, 1] images
SIGMA = 0.1
FACTOR = 2  # the super-resolution factor
#: how many shifted patch grids :func:`evaluate` averages: super-resolution's input is made of 2x2 blocks,
#: so its grids move by even steps only (0 and 2 pixels); denoising's by 0, 1, 2 and 3
SHIFTS = {"superres": 2, "denoise": 4}


# ----------------------------------------------------------------------------- images, damage, measures
def _check_batch(images, name: str = "images") -> Tensor:
    images = torch.as_tensor(images)
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor of shape (B, C, H, W), got shape {tuple(images.shape)} "
                         f"and dtype {images.dtype}: add a batch axis with image[None]")
    return images


def psnr(pred, target, max_value: float = 1.0) -> float:
    r"""The peak signal-to-noise ratio of ``pred`` against ``target``, in dB: ``10 log10(max^2 / MSE)``.

    Args:
        pred, target: tensors (or arrays) of the same shape, any number of axes.
        max_value: the largest possible pixel value (1 for images in ``[0, 1]``).

    Returns:
        A float; ``inf`` when the two are equal.
    """
    pred, target = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if pred.numel() == 0:
        raise ValueError("pred and target are empty: PSNR needs at least one pixel")
    max_value = positive_number(max_value, "max_value")
    mse = float(((pred - target) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)


def downsample(images, factor: int = FACTOR) -> Tensor:
    """Shrink by ``factor``, each ``factor x factor`` block averaged: ``(B, C, H, W) -> (B, C, H/f, W/f)``."""
    factor = positive_int(factor, "factor")
    images = _check_batch(images)
    H, W = images.shape[-2:]
    if H % factor or W % factor:
        raise ValueError(f"images of {H}x{W} pixels cannot be shrunk by factor={factor}: crop them to multiples "
                         f"of {factor} first")
    return F.avg_pool2d(images, factor)  # (B, C, H/f, W/f)


def bicubic_upsample(images, factor: int = FACTOR) -> Tensor:
    """Enlarge by ``factor`` with bicubic interpolation, clamped to ``[0, 1]``: ``(B, C, h, w) -> (B, C, fh, fw)``.

    This is the baseline of super-resolution: the best a fixed smooth interpolation does.
    """
    factor = positive_int(factor, "factor")
    images = _check_batch(images)
    up = F.interpolate(images, scale_factor=factor, mode="bicubic", align_corners=False)  # (B, C, fh, fw)
    return up.clamp(0.0, 1.0)


def add_noise(images, sigma: float = SIGMA, generator: torch.Generator | None = None) -> Tensor:
    """``images + sigma * n`` with ``n`` standard Gaussian noise, one draw per pixel; not clamped, so that
    the noisy images are exactly ``20 log10(1 / sigma)`` dB from the clean ones on average (20 dB for 0.1)."""
    images = torch.as_tensor(images)
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor, got dtype {images.dtype}")
    sigma = positive_number(sigma, "sigma")
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return images + sigma * noise


def box_blur(images, size: int = 3) -> Tensor:
    """Each pixel replaced by the mean of the ``size x size`` pixels around it (edges replicated):
    the simplest denoiser, a second baseline. ``(B, C, H, W)`` in and out."""
    size = positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd, so that the box is centred on its pixel, got {size}")
    images = _check_batch(images)
    padded = F.pad(images, [size // 2] * 4, mode="replicate")
    return F.avg_pool2d(padded, size, stride=1)  # (B, C, H, W)


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(repr, TASKS))}, got {task!r}")
    return task


def degrade(images, task: str, generator: torch.Generator | None = None) -> Tensor:
    """The damage a model of ``task`` learns to undo: ``(B, C, H, W)`` in and out.

    ``"superres"``: :func:`downsample` then :func:`bicubic_upsample` (``H`` and ``W`` even);
    ``"denoise"``: :func:`add_noise` with ``sigma = 0.1``.
    """
    if _check_task(task) == "superres":
        return bicubic_upsample(downsample(images, FACTOR), FACTOR)
    return add_noise(_check_batch(images), SIGMA, generator)


# ----------------------------------------------------------------------------- the model
@dataclass
class PatchTransformerConfig:
    """The shape of a :class:`PatchTransformer`.

    Attributes:
        image_size: ``S``, the side of the square crops it reads and returns (a multiple of ``patch``).
        patch: ``p``, the side of a patch: ``N = (S / p)**2`` tokens.
        channels: ``C``, 3 for colour.
        d_model, n_head, n_layer, d_ff: the encoder's sizes (``d_ff`` default ``4 * d_model``).
    """

    image_size: int = CROP
    patch: int = 4
    channels: int = 3
    d_model: int = 64
    n_head: int = 4
    n_layer: int = 3
    d_ff: int | None = None

    def __post_init__(self):
        for name in ("image_size", "patch", "channels", "d_model", "n_head", "n_layer"):
            positive_int(getattr(self, name), f"PatchTransformerConfig.{name}")
        patch_grid(self.image_size, self.image_size, self.patch)  # raises if the patches do not tile the crop
        self.d_ff = 4 * self.d_model if self.d_ff is None else positive_int(self.d_ff, "PatchTransformerConfig.d_ff")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    @property
    def n_patches(self) -> int:
        rows, cols = patch_grid(self.image_size, self.image_size, self.patch)
        return rows * cols


class PatchTransformer(nn.Module):
    """Patch tokens in, pixels out: ``forward(images) -> images + residual``, ``(B, C, S, S)`` in and out.

    With ``need_weights=True`` each block's per-head attention weights ``(B, n_head, N, N)`` are kept in
    :attr:`attention_weights` (which patches each patch drew on).
    """

    def __init__(self, config: PatchTransformerConfig):
        super().__init__()
        self.config = c = config
        patch_dim = c.channels * c.patch * c.patch
        self.embed = nn.Linear(patch_dim, c.d_model)  # one map for every patch
        self.pos = nn.Parameter(0.02 * torch.randn(1, c.n_patches, c.d_model))  # learned, one per place
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.d_ff) for _ in range(c.n_layer))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, patch_dim)  # each token back to its p x p pixels
        nn.init.zeros_(self.head.weight)  # the residual starts at zero: the untrained model is the baseline
        nn.init.zeros_(self.head.bias)
        self.attention_weights: list[Tensor] = []

    def _check(self, images: Tensor) -> None:
        c = self.config
        if images.dim() != 4 or images.shape[1] != c.channels or tuple(images.shape[2:]) != (c.image_size,) * 2:
            raise ValueError(f"this PatchTransformer takes crops of shape (B, {c.channels}, {c.image_size}, "
                             f"{c.image_size}), got {tuple(images.shape)}: cut bigger images with apply()")

    def residual(self, images: Tensor, need_weights: bool = False) -> Tensor:
        """The correction the model adds to ``images``: ``(B, C, S, S)``."""
        self._check(images)
        c = self.config
        x = self.embed(patchify(images, c.patch)) + self.pos  # (B, N, d_model): what and where
        self.attention_weights = []
        for block in self.blocks:
            x = block(x, need_weights=need_weights)  # (B, N, d_model): every patch attends to every patch
            if need_weights:
                self.attention_weights.append(block.attn_weights)  # (B, n_head, N, N)
        out = self.head(self.norm(x))  # (B, N, C*p*p)
        return unpatchify(out, c.patch, c.image_size, c.image_size)  # (B, C, S, S)

    def forward(self, images: Tensor, need_weights: bool = False) -> Tensor:
        return images + self.residual(images, need_weights)  # (B, C, S, S)


def _tiled(model: PatchTransformer, image: Tensor, crop: int, overlap: int, batch_size: int) -> Tensor:
    """One pass of overlapping tiles over ``image`` ``(C, H, W)``, blended: ``(C, H, W)``."""
    C, H, W = image.shape
    stride = crop - overlap
    # pad (repeating the edges) so that whole tiles, every ``stride`` pixels, cover the image exactly
    Hp, Wp = (crop + math.ceil(max(n - crop, 0) / stride) * stride for n in (H, W))
    padded = F.pad(image[None], [0, Wp - W, 0, Hp - H], mode="replicate")[0]  # (C, Hp, Wp)
    corners = [(y, x) for y in range(0, Hp - crop + 1, stride) for x in range(0, Wp - crop + 1, stride)]
    # the blending window: 1 inside, ramping down to 1/(2 * overlap) at the tile's edges
    ramp = torch.ones(crop) if overlap == 0 else \
        ((torch.minimum(torch.arange(crop), torch.arange(crop).flip(0)) + 0.5) / overlap).clamp(max=1.0)
    window = ramp[:, None] * ramp[None, :]  # (crop, crop)
    total = torch.zeros_like(padded)  # (C, Hp, Wp): the weighted sum of the tiles' outputs
    weight = torch.zeros(Hp, Wp)  # (Hp, Wp): the sum of the weights
    for i in range(0, len(corners), batch_size):
        chunk = corners[i : i + batch_size]
        tiles = torch.stack([padded[:, y : y + crop, x : x + crop] for y, x in chunk])  # (b, C, crop, crop)
        for (y, x), tile in zip(chunk, model(tiles)):  # tile: (C, crop, crop)
            total[:, y : y + crop, x : x + crop] += window * tile
            weight[y : y + crop, x : x + crop] += window
    return (total / weight)[:, :H, :W]  # (C, H, W)


@torch.no_grad()
def apply(model: PatchTransformer, image, crop: int | None = None, overlap: int | None = None, shifts: int = 2,
          batch_size: int = 64) -> Tensor:
    """Run ``model`` over a whole photo of any size, by tiles: ``(C, H, W) -> (C, H, W)``.

    The photo is cut into ``crop x crop`` tiles, one every ``crop - overlap`` pixels (the photo is first
    padded, repeating its edges, so that whole tiles cover it); each tile's output is weighted by a window
    that ramps linearly from its edges over ``overlap`` pixels, and each pixel is the weighted mean of the
    tiles that cover it, so tiles fade into each other. This is done ``shifts`` times, the photo moved
    by ``k * patch // shifts`` pixels down and right for ``k = 0 .. shifts - 1``, and the passes averaged, so
    that the patch grid's edges fall in different places and no seam shows.

    The result is not clamped, so that an untrained model returns ``image`` (to float rounding); clamp it to
    ``[0, 1]`` to show it.

    Args:
        model: a :class:`PatchTransformer` (left in eval mode).
        image: ``(C, H, W)``, the damaged photo (for super-resolution, already bicubic-upsampled).
        crop: the tile side; the model's ``image_size`` (the default), since its learned positions fix it.
        overlap: pixels shared by neighbouring tiles, in ``[0, crop)`` (default ``crop // 4``).
        shifts: how many shifted grids to average, from 1 to ``patch`` (default 2: half a patch apart).
        batch_size: tiles per forward pass.
    """
    c = model.config
    crop = c.image_size if crop is None else positive_int(crop, "crop")
    if crop != c.image_size:
        raise ValueError(f"crop={crop} but this model reads {c.image_size}x{c.image_size} crops (its learned "
                         f"positions fix the size): pass crop={c.image_size} or leave it out")
    overlap = crop // 4 if overlap is None else non_negative_int(overlap, "overlap")
    if overlap >= crop:
        raise ValueError(f"overlap={overlap} must be smaller than crop={crop}")
    shifts, batch_size = positive_int(shifts, "shifts"), positive_int(batch_size, "batch_size")
    if shifts > c.patch:
        raise ValueError(f"shifts={shifts} must be at most patch={c.patch}: a grid moved by a whole patch is "
                         "the same grid")
    image = torch.as_tensor(image)
    if image.dim() != 3 or image.shape[0] != c.channels or not image.is_floating_point():
        raise ValueError(f"image must be a float tensor of shape ({c.channels}, H, W), got shape "
                         f"{tuple(image.shape)} and dtype {image.dtype}")
    C, H, W = image.shape
    was_training = model.training
    model.eval()
    try:
        out = torch.zeros_like(image)  # (C, H, W)
        for k in range(shifts):
            s = k * c.patch // shifts  # move the photo s pixels down and right: the grid moves s pixels up-left
            moved = F.pad(image[None], [s, 0, s, 0], mode="replicate")[0]  # (C, H + s, W + s)
            out += _tiled(model, moved, crop, overlap, batch_size)[:, s:, s:] / shifts
    finally:
        model.train(was_training)
    return out  # (C, H, W)


# ----------------------------------------------------------------------------- data
def _even(img: Tensor) -> Tensor:
    return img[:, : img.shape[1] // 2 * 2, : img.shape[2] // 2 * 2]  # (C, H, W), H and W even


def _photo_tensor(name: str) -> Tensor:
    return _even(torch.from_numpy(photo(name)).permute(2, 0, 1).contiguous())  # (3, H, W) in [0, 1]


def training_photos(held_out: str = HELD_OUT) -> dict[str, Tensor]:
    """Every bundled photo but ``held_out``, each ``(3, H, W)`` in ``[0, 1]`` (``H``, ``W`` cut to even)."""
    if held_out not in PHOTOS:
        raise ValueError(f"held_out must be one of the photos {', '.join(PHOTOS)}, got {held_out!r}")
    return {name: _photo_tensor(name) for name in PHOTOS if name != held_out}


def training_batches(task: str, batch_size: int = 32, crop: int = CROP, held_out: str = HELD_OUT):
    """The batch function of ``task``, for :func:`attnedu.train.train`: ``batch_fn(generator) -> (inputs, targets)``,
    each ``(batch_size, 3, crop, crop)``.

    Each crop comes from a photo drawn uniformly from :func:`training_photos` (never ``held_out``), at a
    random place, flipped and turned by a random multiple of 90 degrees. For super-resolution the whole
    photo is degraded once and the input cut from it at an even offset (aligned with the 2x2 blocks that
    were averaged), as :func:`evaluate` cuts it; for denoising fresh noise is drawn for every batch.
    """
    _check_task(task)
    batch_size, crop = positive_int(batch_size, "batch_size"), positive_int(crop, "crop")
    clean = list(training_photos(held_out).values())
    if any(min(img.shape[1:]) < crop for img in clean):
        raise ValueError(f"crop={crop} is larger than a training photo")
    damaged = [degrade(img[None], "superres")[0] for img in clean] if task == "superres" else None
    step = FACTOR if task == "superres" else 1

    def batch_fn(generator: torch.Generator) -> tuple[Tensor, Tensor]:
        which = torch.randint(len(clean), (batch_size,), generator=generator).tolist()
        where = torch.rand(batch_size, 2, generator=generator)
        turns = torch.randint(8, (batch_size,), generator=generator).tolist()  # 4 rotations x 2 flips
        inputs, targets = [], []
        for i, (u, v), t in zip(which, where.tolist(), turns):
            H, W = clean[i].shape[1:]
            y, x = int(u * ((H - crop) // step + 1)) * step, int(v * ((W - crop) // step + 1)) * step
            pair = [clean[i][:, y : y + crop, x : x + crop]]  # (3, crop, crop)
            if damaged is not None:
                pair.append(damaged[i][:, y : y + crop, x : x + crop])
            pair = [torch.rot90(p, t % 4, dims=(1, 2)) for p in pair]
            if t >= 4:
                pair = [p.flip(2) for p in pair]
            targets.append(pair[0])
            if damaged is not None:
                inputs.append(pair[1])
        targets = torch.stack(targets)  # (B, 3, crop, crop)
        inputs = torch.stack(inputs) if damaged is not None else add_noise(targets, SIGMA, generator)
        return inputs, targets

    return batch_fn


def held_out_pair(task: str, photo_name: str | None = None, size: int = EVAL_SIZE,
                  seed: int = 0) -> tuple[Tensor, Tensor]:
    """The judged region: ``(damaged, clean)``, each ``(3, size, size)``, the centre of ``photo_name``
    (default :data:`HELD_OUT`). For super-resolution the whole photo is degraded and the region cut from it
    (so that its edges are not those of a small image); the noise of denoising is seeded by ``seed``."""
    _check_task(task)
    photo_name = HELD_OUT if photo_name is None else photo_name
    if photo_name not in PHOTOS:
        raise ValueError(f"photo_name must be one of {', '.join(PHOTOS)}, got {photo_name!r}")
    size = positive_int(size, "size")
    clean = _photo_tensor(photo_name)  # (3, H, W)
    H, W = clean.shape[1:]
    if size > min(H, W):
        raise ValueError(f"size={size} is larger than the photo {photo_name!r} ({H}x{W})")
    y, x = (H - size) // 2 // 2 * 2, (W - size) // 2 // 2 * 2  # even: aligned with the 2x2 blocks
    if task == "superres":
        damaged = degrade(clean[None], task)[0][:, y : y + size, x : x + size]
    else:
        damaged = degrade(clean[None, :, y : y + size, x : x + size], task, torch.Generator().manual_seed(seed))[0]
    return damaged, clean[:, y : y + size, x : x + size]


def evaluate(model: PatchTransformer, task: str, photo_name: str | None = None, size: int = EVAL_SIZE,
             seed: int = 0) -> dict[str, float]:
    """``model`` judged on the centre ``size x size`` region of ``photo_name`` (default :data:`HELD_OUT`).

    The model runs through :func:`apply` with ``SHIFTS[task]`` shifted grids (2 for super-resolution, 4
    for denoising).

    Returns:
        ``{"psnr_model", "psnr_baseline", "gain_db", "psnr_one_grid"}`` in dB, the baseline being the damaged
        input (bicubic for ``"superres"``, the noisy photo for ``"denoise"``), the gain ``psnr_model -
        psnr_baseline``, and ``psnr_one_grid`` the model through :func:`apply` with ``shifts=1``; for
        ``"denoise"`` also ``"psnr_box_blur"``, a 3x3 :func:`box_blur` of the noisy photo.
    """
    damaged, clean = held_out_pair(task, photo_name, size, seed)  # (3, size, size) each
    restored = apply(model, damaged, shifts=SHIFTS[task])
    result = {"psnr_model": psnr(restored, clean), "psnr_baseline": psnr(damaged, clean),
              "psnr_one_grid": psnr(apply(model, damaged, shifts=1), clean)}
    result["gain_db"] = result["psnr_model"] - result["psnr_baseline"]
    if task == "denoise":
        result["psnr_box_blur"] = psnr(box_blur(damaged[None])[0], clean)
    return {k: round(v, 4) for k, v in result.items()}


# ----------------------------------------------------------------------------- recipes and checkpoints
#: the settings of the two recipes: the same model, trained twice (``loss``: :func:`_l1`, the mean absolute error)
RECIPE = {"superres": dict(iters=2000, batch_size=32, lr=2e-3, warmup=100, loss="l1", seed=0),
          "denoise": dict(iters=2000, batch_size=32, lr=2e-3, warmup=100, loss="l1", seed=0)}
MODEL = dict(image_size=CROP, patch=4, channels=3, d_model=64, n_head=4, n_layer=3)


def _l1(model: nn.Module, batch) -> Tensor:
    """The mean absolute error of ``model(inputs)`` against ``targets``. It trained to a higher PSNR than the
    squared error (super-resolution, 1,500 steps: +0.8 dB over bicubic against +0.4 dB; Lim et al. 2017
    found the same), perhaps because a few large errors (strong edges, JPEG blocks) do not dominate its
    gradient."""
    inputs, targets = batch  # (B, C, S, S) each
    return F.l1_loss(model(inputs), targets)


def _recipe(task: str, stop_after: int | None, progress: bool) -> tuple[PatchTransformer, dict]:
    settings = RECIPE[task]
    torch.manual_seed(settings["seed"])
    config = PatchTransformerConfig(**MODEL)
    model = PatchTransformer(config)
    batch_fn = training_batches(task, settings["batch_size"], config.image_size)
    history = train(model, batch_fn, iters=settings["iters"], lr=settings["lr"], warmup=settings["warmup"],
                    loss_fn=_l1, seed=settings["seed"], progress=progress, stop_after=stop_after)
    record = {"config": asdict(config), "task": task, "held_out": HELD_OUT, "eval_size": EVAL_SIZE,
              **settings, "steps": len(history.loss), "first_losses": history.loss[:20],
              "final_loss": sum(history.loss[-50:]) / len(history.loss[-50:])}
    if stop_after is None:  # measured as saved: float16 weights
        model.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                               for k, v in model.state_dict().items()})
        record["metrics"] = evaluate(model.eval(), task)
    return model.eval(), record


def superres_recipe(stop_after: int | None = None, progress: bool = True) -> tuple[PatchTransformer, dict]:
    """Train the shipped super-resolution model (x2): ``(model, record)`` (see :mod:`attnedu.vision.checkpoints`)."""
    return _recipe("superres", stop_after, progress)


def denoise_recipe(stop_after: int | None = None, progress: bool = True) -> tuple[PatchTransformer, dict]:
    """Train the shipped denoising model (``sigma = 0.1``): ``(model, record)``."""
    return _recipe("denoise", stop_after, progress)


def load_model(data: dict) -> PatchTransformer:
    """Rebuild a shipped model from :func:`attnedu.vision.checkpoints.load`'s ``data`` (config and float32 weights)."""
    model = PatchTransformer(PatchTransformerConfig(**data["config"]))
    model.load_state_dict(data["state_dict"])
    return model.eval()
