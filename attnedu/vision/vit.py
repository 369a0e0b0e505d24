r"""The Vision Transformer (chapter 8): an image as a sequence of patch tokens.

Dosovitskiy et al. (2021), "An image is worth 16x16 words", in four steps:

1. :func:`~attnedu.vision.patches.patchify` cuts the image into ``N`` patches, each a vector of
   ``C * p * p`` pixels;
2. a **patch embedding**, one linear map shared by all patches, turns each into a ``d_model``
   vector (the same as a convolution with kernel and stride ``p``);
3. a learned **class token** is put in front, and a learned **position embedding** is added, one
   per place in the sequence: without it, attention could not tell where a patch came from
   (self-attention is permutation-equivariant, chapter 3);
4. chapter 5's encoder blocks mix the tokens, a final layer norm follows, and a linear head reads
   the class token's final vector.

.. math::
    z_0 = [x_\mathrm{cls};\ x_1 E;\ \dots;\ x_N E] + E_\mathrm{pos},\qquad
    z_\ell = \mathrm{Block}_\ell(z_{\ell-1}),\qquad
    y = \mathrm{head}\big(\mathrm{LN}(z_L)_0\big)

With ``class_token=False`` and ``n_classes=None`` the model is an image *encoder*: it returns one
vector per patch, which a caption decoder attends to (:mod:`attnedu.vision.captions`).

:func:`attention_rollout` (Abnar and Zuidema, 2020) follows the attention through all layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnedu._validate import dropout_rate, positive_int
from attnedu.nn import EncoderBlock
from .patches import patch_grid, patchify

__all__ = ["ViTConfig", "ViT", "PatchEmbedding", "attention_rollout", "MLPClassifier"]


@dataclass
class ViTConfig:
    """The shape of a :class:`ViT`.

    Attributes:
        image_size: ``(H, W)`` in pixels (or one number for a square).
        patch: the side of a patch; ``H`` and ``W`` must be multiples of it.
        channels: ``C``, 1 for grey images, 3 for colour.
        d_model, n_head, n_layer, d_ff: the encoder's sizes (``d_ff`` default ``4 * d_model``).
        n_classes: the head's outputs; ``None``: no head, the model returns the tokens.
        class_token: put a learned class token in front of the patches.
        positions: add learned position embeddings (``False``: the model cannot tell where a patch was).
        dropout: dropout in the blocks and on the embeddings.
    """

    image_size: int | tuple[int, int]
    patch: int
    channels: int = 1
    d_model: int = 64
    n_head: int = 4
    n_layer: int = 2
    d_ff: int | None = None
    n_classes: int | None = 10
    class_token: bool = True
    positions: bool = True
    dropout: float = 0.0

    def __post_init__(self):
        if isinstance(self.image_size, int):
            self.image_size = (self.image_size, self.image_size)
        self.image_size = tuple(int(s) for s in self.image_size)
        for name in ("patch", "channels", "d_model", "n_head", "n_layer"):
            positive_int(getattr(self, name), f"ViTConfig.{name}")
        patch_grid(*self.image_size, self.patch)  # raises if the patches do not tile the image
        self.d_ff = 4 * self.d_model if self.d_ff is None else positive_int(self.d_ff, "ViTConfig.d_ff")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.n_classes is not None:
            positive_int(self.n_classes, "ViTConfig.n_classes")
        dropout_rate(self.dropout, "ViTConfig.dropout")

    @property
    def n_patches(self) -> int:
        rows, cols = patch_grid(*self.image_size, self.patch)
        return rows * cols

    @property
    def grid(self) -> tuple[int, int]:
        return patch_grid(*self.image_size, self.patch)


class PatchEmbedding(nn.Module):
    """Patches to vectors: ``(B, C, H, W)`` -> ``(B, N, d_model)``, one linear map for every patch."""

    def __init__(self, channels: int, patch: int, d_model: int):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(channels * patch * patch, d_model)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(patchify(images, self.patch))  # (B, N, C*p*p) -> (B, N, d_model)


class ViT(nn.Module):
    """A Vision Transformer: ``forward(images) -> logits (B, n_classes)``, or tokens when ``n_classes`` is None.

    ``encode(images, need_weights=False) -> (B, T, d_model)``: the final tokens after the last layer norm,
    ``T = N + 1`` with a class token (at position 0), ``N`` without. With ``need_weights=True`` each
    block's per-head attention weights ``(B, n_head, T, T)`` are kept in :attr:`attention_weights`.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.embed = PatchEmbedding(c.channels, c.patch, c.d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d_model)) if c.class_token else None
        T = c.n_patches + int(c.class_token)
        # learned, one per place; without them the model sees a bag of patches
        self.pos = nn.Parameter(0.02 * torch.randn(1, T, c.d_model)) if c.positions else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout) for _ in range(c.n_layer))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_classes) if c.n_classes is not None else None
        self.attention_weights: list[Tensor] = []

    def _check(self, images: Tensor) -> None:
        c = self.config
        if images.dim() != 4 or images.shape[1] != c.channels or tuple(images.shape[2:]) != c.image_size:
            raise ValueError(f"this ViT takes images of shape (B, {c.channels}, {c.image_size[0]}, "
                             f"{c.image_size[1]}), got {tuple(images.shape)}")

    def encode(self, images: Tensor, need_weights: bool = False) -> Tensor:
        self._check(images)
        x = self.embed(images)  # (B, N, d_model)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1)  # (B, 1 + N, d_model)
        if self.pos is not None:
            x = x + self.pos  # the positions: where each patch came from
        x = self.drop(x)
        self.attention_weights = []
        for block in self.blocks:
            x = block(x, need_weights=need_weights)  # (B, T, d_model)
            if need_weights:
                self.attention_weights.append(block.attn_weights)  # (B, n_head, T, T)
        return self.norm(x)

    def forward(self, images: Tensor, need_weights: bool = False) -> Tensor:
        tokens = self.encode(images, need_weights)  # (B, T, d_model)
        if self.head is None:
            return tokens
        # the class token's final vector, or the mean of the patches' when there is none
        pooled = tokens[:, 0] if self.cls is not None else tokens.mean(dim=1)  # (B, d_model)
        return self.head(pooled)  # (B, n_classes)


def attention_rollout(attentions, residual: bool = True) -> Tensor:
    r"""How much each output token draws on each input token, through all layers (Abnar and Zuidema, 2020).

    Args:
        attentions: one tensor per layer, first layer first, each ``(B, H, T, T)`` (rows are queries).
        residual: account for the residual connection: each layer's mixing is taken as
            :math:`\tfrac12 (A + I)`, half attention and half the token's own path.

    Returns:
        ``(B, T, T)``: :math:`R = \bar A_L \cdots \bar A_2 \bar A_1`, with :math:`\bar A_\ell` the mean over
        heads (plus the identity, halved, when ``residual``); every row sums to 1. Row 0 of a ViT with a
        class token says how much the class token's final vector draws on each patch.
    """
    attentions = list(attentions)
    if not attentions:
        raise ValueError("attentions must hold at least one layer's weights, each (B, H, T, T)")
    shape = attentions[0].shape
    for i, a in enumerate(attentions):
        if a.dim() != 4 or a.shape[-1] != a.shape[-2] or a.shape != shape:
            raise ValueError(f"every layer's weights must have the same shape (B, H, T, T); layer {i} has "
                             f"{tuple(a.shape)}, layer 0 {tuple(shape)}")
    B, _, T, _ = shape
    eye = torch.eye(T, dtype=attentions[0].dtype)
    rollout = eye.expand(B, T, T)
    for a in attentions:  # first layer first: R <- A_l R
        mixed = a.mean(dim=1)  # (B, T, T): the heads' average
        if residual:
            mixed = 0.5 * (mixed + eye)
        rollout = mixed @ rollout  # (B, T, T)
    return rollout


class MLPClassifier(nn.Module):
    """The baseline: the image's pixels, flattened, through a two-layer perceptron. ``(B, C, H, W) -> (B, n_classes)``."""

    def __init__(self, n_inputs: int, hidden: int, n_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(n_inputs, hidden), nn.GELU(), nn.Linear(hidden, n_classes))

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)
