r"""From token vectors to one sentence vector (chapter 7).

An encoder gives one vector per token, ``(B, T, E)``; a sentence embedding is one vector per
sentence, ``(B, E)``. Sentence-transformers models such as all-MiniLM-L6-v2 average the
vectors of the real tokens (padding excluded) and scale the result to unit length, so that
the dot product of two embeddings is their cosine similarity:

.. math::
    s = \frac{\sum_t m_t\, h_t}{\sum_t m_t}, \qquad \hat s = \frac{s}{\lVert s \rVert_2}

where :math:`m_t` is 1 for a real token and 0 for padding.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["mean_pool", "l2_normalize"]


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The mean of the real tokens' vectors: ``hidden (B, T, E)``, ``mask (B, T)`` -> ``(B, E)``.

    ``mask`` is 1 (or True) on real tokens and 0 on padding, like a tokenizer's
    ``attention_mask``. Padding positions still hold vectors (the encoder computes them), so
    they must be left out of the average, or a sentence's embedding would depend on how long
    the other sentences in its batch were.
    """
    if not isinstance(hidden, Tensor) or not isinstance(mask, Tensor):
        raise ValueError(f"hidden and mask must be torch tensors, got {type(hidden).__name__} and {type(mask).__name__}")
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (B, T, E) and mask (B, T), got {tuple(hidden.shape)} and {tuple(mask.shape)}")
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    total = (hidden * m).sum(dim=1)  # (B, E)
    # A sequence with no real token would divide by zero; the clamp (sentence-transformers'
    # value) returns zeros for it instead.
    count = m.sum(dim=1).clamp(min=1e-9)  # (B, 1)
    return total / count  # (B, E)


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale each row of ``x (..., E)`` to unit Euclidean length (a zero row stays zero)."""
    if not isinstance(x, Tensor):
        raise ValueError(f"x must be a torch tensor, got {type(x).__name__}")
    return F.normalize(x, p=2.0, dim=-1, eps=eps)  # x / max(||x||, eps)
