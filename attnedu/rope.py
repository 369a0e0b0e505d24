r"""Rotary position embedding (RoPE) on PyTorch tensors (chapters 3 and 7).

Chapter 3 builds RoPE in NumPy (:func:`attnedu.functional.apply_rope`); a pretrained Llama
needs it on tensors, inside every attention layer, at every generated token. This module is
its PyTorch twin, with a precomputed table for speed (:class:`RotaryEmbedding`).

Each pair of features of a query or key vector at position :math:`p` is rotated by the angle
:math:`p\,\theta_i`, :math:`\theta_i = \mathrm{base}^{-2i/d}`:

.. math::
    \begin{pmatrix} y_a \\ y_b \end{pmatrix} =
    \begin{pmatrix} \cos p\theta_i & -\sin p\theta_i \\ \sin p\theta_i & \cos p\theta_i \end{pmatrix}
    \begin{pmatrix} x_a \\ x_b \end{pmatrix}

Which features form pair :math:`i` is a convention, the *layout*:

* ``"adjacent"``: features ``(2i, 2i+1)``, as in the RoFormer paper, chapter 3, llama.cpp and
  GGUF files;
* ``"halves"``: features ``(i, i + d/2)``, as in Hugging Face ``transformers`` ("rotate_half")
  and Meta's original Llama checkpoints converted to it.

The two are the same rotation applied to differently ordered features. llama.cpp's converter
reorders the rows of :math:`W_q` and :math:`W_k` inside each head (see
:func:`attnedu.pretrained.gguf.permute_qk`) so that the halves-layout pairs of a Hugging Face
checkpoint become adjacent. Because queries and keys are reordered the same way, every dot
product :math:`q \cdot k` -- and so every attention weight -- is unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnedu._validate import positive_int, positive_number

__all__ = ["rope_frequencies", "rope_cos_sin", "rotate", "apply_rope", "RotaryEmbedding"]

LAYOUTS = ("adjacent", "halves")


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def rope_frequencies(d: int, base: float = 10000.0) -> Tensor:
    r"""The ``d/2`` angular frequencies :math:`\theta_i = \mathrm{base}^{-2i/d}`, float32.

    Computed in float32 in the same order of operations as ``transformers``, so that the
    angles (and therefore the logits of a pretrained model) agree to the last bit.
    """
    if positive_int(d, "d") % 2:
        raise ValueError(f"RoPE needs an even feature size d >= 2, got d={d!r}")
    positive_number(base, "base")
    return 1.0 / (base ** (torch.arange(0, int(d), 2, dtype=torch.int64).float() / d))  # (d/2,)


def rope_cos_sin(positions: Tensor, d: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``cos`` and ``sin`` of the angles ``positions[:, None] * theta``, each ``(T, d/2)``, float32."""
    angles = positions.float()[:, None] * rope_frequencies(d, base).to(positions.device)[None, :]  # (T, d/2)
    return angles.cos(), angles.sin()


def rotate(x: Tensor, cos: Tensor, sin: Tensor, layout: str = "adjacent") -> Tensor:
    """Rotate the feature pairs of ``x`` ``(..., T, d)`` by the angles whose ``cos``/``sin`` are ``(T, d/2)``."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if layout == "adjacent":
        a, b = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each: pair i = features (2i, 2i+1)
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)  # (..., T, d)
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]  # pair i = features (i, i + d/2)
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)  # (..., T, d)


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0,
               layout: str = "adjacent") -> Tensor:
    """Rotary position embedding of ``x`` ``(..., T, d)``; the PyTorch twin of
    :func:`attnedu.functional.apply_rope` (which is the ``"adjacent"`` layout).

    ``positions``: ``(T,)``, default ``0..T-1``. Returns a tensor shaped like ``x``.
    """
    _check_layout(layout)
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] % 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"apply_rope needs a tensor (..., T, d) with d even, got {shape}")
    T = x.shape[-2]
    if positions is None:
        positions = torch.arange(T, device=x.device)
    if positions.shape != (T,):
        raise ValueError(f"positions has shape {tuple(positions.shape)} but x has shape {tuple(x.shape)}: "
                         "need one position per row")
    cos, sin = rope_cos_sin(positions, x.shape[-1], base)
    return rotate(x, cos, sin, layout)


def _complex_viewable(x: Tensor) -> bool:
    """Can ``x``'s feature pairs be viewed as complex numbers without a copy?"""
    return x.stride(-1) == 1 and x.storage_offset() % 2 == 0 and all(s % 2 == 0 for s in x.stride()[:-1])


class RotaryEmbedding(nn.Module):
    """RoPE with the ``cos``/``sin`` table computed once for positions ``0..context-1``.

    ``rope(x, start=0)`` rotates ``x`` ``(B, H, T, d)`` as if its rows sat at positions
    ``start .. start+T-1`` -- during generation with a KV cache, ``start`` is the number of
    cached positions. This is the ``rope`` callable :class:`attnedu.llama.GroupedQueryAttention`
    takes. ``context`` is the model's context length, the most positions it rotates.
    """

    def __init__(self, head_dim: int, context: int, base: float = 10000.0, layout: str = "adjacent"):
        super().__init__()
        _check_layout(layout)
        self.head_dim, self.context = positive_int(head_dim, "head_dim"), positive_int(context, "context")
        self.base, self.layout = positive_number(base, "base"), layout
        cos, sin = rope_cos_sin(torch.arange(self.context), self.head_dim, self.base)  # (context, d/2)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        # e^{i p theta}, (context, d/2): a plain attribute, not a buffer, so that ``model.to(dtype)``
        # (which would cast a complex buffer to a real dtype) leaves it alone; it follows x's device.
        self._cis = torch.complex(cos, sin)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        T = x.shape[-2]
        if start + T > self.context:
            raise ValueError(f"positions {start}..{start + T - 1} are past this RotaryEmbedding's "
                             f"context={self.context} (the model's context length)")
        if self.layout == "adjacent" and x.dtype == torch.float32 and _complex_viewable(x):
            # The fast path, same bits: read the pair (a, b) as the complex number a + ib;
            # multiplying it by e^{i p theta} rotates it by p theta. (Meta's Llama code does this.)
            if self._cis.device != x.device:
                self._cis = self._cis.to(x.device)
            z = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # (..., T, d/2), complex
            return torch.view_as_real(z * self._cis[start : start + T]).flatten(-2)  # (..., T, d)
        return rotate(x, self.cos[start : start + T], self.sin[start : start + T], self.layout)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, context={self.context}, base={self.base}, layout={self.layout!r}"
