r"""Images as sequences: patches (chapter 8).

A Vision Transformer reads an image the way a language model reads a sentence: as a sequence of
tokens. The tokens are **patches**: the image is cut into non-overlapping ``patch x patch``
squares, read in row-major order (left to right, then top to bottom, as text is read), and each
square is flattened into one vector of ``C * patch * patch`` numbers, channel first, then row,
then column.

An image of ``H x W`` pixels becomes ``N = (H / patch) * (W / patch)`` tokens, so the attention
matrix of one layer has ``N**2`` entries: halving the patch quadruples ``N`` and multiplies the
cost of attention by sixteen (chapter 9 measures it).

:func:`patchify` and :func:`unpatchify` are each other's inverse.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnedu._validate import positive_int

__all__ = ["patchify", "unpatchify", "patch_grid"]


def _check_images(images, patch: int, name: str = "images") -> Tensor:
    images = torch.as_tensor(images)
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got shape {tuple(images.shape)}: add a batch "
                         "axis with images[None] or a channel axis with images[:, None]")
    H, W = images.shape[-2:]
    if H % patch or W % patch:
        raise ValueError(f"{name} of {H}x{W} pixels cannot be cut into {patch}x{patch} patches: the height and "
                         f"the width must be multiples of patch (crop or pad the images, or choose another patch)")
    return images


def patch_grid(height: int, width: int, patch: int) -> tuple[int, int]:
    """How many patches fit down and across: ``(height // patch, width // patch)``."""
    patch = positive_int(patch, "patch")
    if height % patch or width % patch:
        raise ValueError(f"{height}x{width} pixels cannot be cut into {patch}x{patch} patches")
    return height // patch, width // patch


def patchify(images, patch: int) -> Tensor:
    """Cut images into flattened patches.

    Args:
        images: ``(B, C, H, W)``; ``H`` and ``W`` multiples of ``patch``.
        patch: the side of a square patch, in pixels.

    Returns:
        ``(B, N, C * patch * patch)`` with ``N = (H / patch) * (W / patch)``: patch ``n`` is the
        one in grid row ``n // (W / patch)`` and column ``n % (W / patch)``; its vector lists
        channel 0's ``patch x patch`` pixels row by row, then channel 1's, and so on.
    """
    patch = positive_int(patch, "patch")
    images = _check_images(images, patch)
    B, C, H, W = images.shape
    rows, cols = H // patch, W // patch
    x = images.reshape(B, C, rows, patch, cols, patch)  # (B, C, rows, p, cols, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, rows, cols, C, p, p): grid first, then one patch
    return x.reshape(B, rows * cols, C * patch * patch)  # (B, N, C*p*p)


def unpatchify(patches, patch: int, height: int, width: int) -> Tensor:
    """The inverse of :func:`patchify`: ``(B, N, C * patch * patch)`` back to ``(B, C, height, width)``."""
    patch = positive_int(patch, "patch")
    patches = torch.as_tensor(patches)
    rows, cols = patch_grid(height, width, patch)
    if patches.dim() != 3 or patches.shape[1] != rows * cols or patches.shape[2] % (patch * patch):
        raise ValueError(f"patches must have shape (B, {rows * cols}, C*{patch}*{patch}) for {height}x{width} "
                         f"images, got {tuple(patches.shape)}")
    B, C = patches.shape[0], patches.shape[2] // (patch * patch)
    x = patches.reshape(B, rows, cols, C, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(B, C, height, width)
