r"""Tiled attention: softmax attention without the ``(T, T)`` score matrix (FlashAttention's idea).

Plain attention computes every score, :math:`S = QK^\top/\sqrt{d}`, a ``(T, T)`` matrix, then
its softmax, then :math:`PV`. For ``T = 8192`` the scores alone take 256 MiB in float32, per head:
memory grows as :math:`T^2`. The output, though, is only ``(T, d)``.

The online softmax (Milakov & Gimelshein 2018) says a query never needs all its scores at once.
Split the keys into blocks. For one block, keep three numbers per query: the largest score
:math:`m`, the sum :math:`\ell = \sum_j e^{s_j - m}` and the *unnormalised* output
:math:`o = \sum_j e^{s_j - m} v_j`. Two blocks merge exactly:

.. math::
    m = \max(m_1, m_2), \quad
    \ell = \ell_1 e^{m_1 - m} + \ell_2 e^{m_2 - m}, \quad
    o = o_1 e^{m_1 - m} + o_2 e^{m_2 - m},

and after the last block the attention output is :math:`o / \ell`. FlashAttention (Dao et al.
2022) loops over tiles of queries and, inside, over tiles of keys, merging as it goes: the largest
thing it holds is one ``(tile, tile)`` block of scores. Causal attention skips the key tiles that
lie entirely in a query tile's future, about half of them.

Here:

* NumPy, for reading: :func:`partial_attention` (one key block), :func:`online_softmax_merge`
  (two blocks into one), :func:`tiled_attention` (the loops), equal to
  :func:`attnedu.functional.scaled_dot_product_attention`;
* PyTorch, for measuring: :func:`flash_attention` (the same loops on ``(B, H, T, d)`` tensors,
  equal to ``torch.nn.functional.scaled_dot_product_attention``), :func:`plain_attention` (the
  explicit ``(T, T)`` path) and :func:`tile_counts` (how many tiles causal attention computes).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .._validate import as_float_array, positive_int
from ..functional import causal_mask

__all__ = [
    "partial_attention",
    "online_softmax_merge",
    "tiled_attention",
    "flash_attention",
    "plain_attention",
    "tile_counts",
]


# ------------------------------------------------------------------ NumPy: the idea
def partial_attention(q, k, v, mask=None):
    r"""Attention of every query over one block of keys, *before* normalising: ``(m, l, o)``.

    .. math:: s = qk^\top/\sqrt{d}, \quad m = \max_j s_j, \quad
              \ell = \sum_j e^{s_j - m}, \quad o = \sum_j e^{s_j - m} v_j

    Args:
        q: ``(Tq, d)`` queries; k: ``(Tk, d)`` keys of this block; v: ``(Tk, dv)`` their values.
        mask: optional boolean ``(Tq, Tk)``, True = may attend.

    Returns:
        ``m`` ``(Tq,)``, ``l`` ``(Tq,)``, ``o`` ``(Tq, dv)``. A query that may attend to no key of
        the block gets ``m = -inf``, ``l = 0``, ``o = 0``: the block adds nothing to it.
    """
    q, k, v = (as_float_array(a, name, min_ndim=2, max_ndim=2) for a, name in ((q, "q"), (k, "k"), (v, "v")))
    if q.shape[1] != k.shape[1] or k.shape[0] != v.shape[0]:
        raise ValueError(f"need q (Tq, d), k (Tk, d), v (Tk, dv); got q {q.shape}, k {k.shape}, v {v.shape}")
    s = q @ k.T / np.sqrt(q.shape[1])  # (Tq, Tk)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != s.shape:
            raise ValueError(f"mask must be boolean of shape (Tq, Tk) = {s.shape}, got {mask.dtype} {mask.shape}")
        s = np.where(mask, s, -np.inf)
    m = s.max(axis=1)  # (Tq,); -inf where the whole row is masked
    shift = np.where(np.isneginf(m), 0.0, m)  # shift a masked row by 0, so that exp(-inf - 0) = 0, not NaN
    p = np.exp(s - shift[:, None])  # (Tq, Tk), the largest entry of a row is 1
    return m, p.sum(axis=1), p @ v  # (Tq,), (Tq,), (Tq, dv)


def online_softmax_merge(m1, l1, o1, m2, l2, o2):
    r"""Merge two partial results over disjoint key blocks, for the same queries, into one.

    .. math:: m = \max(m_1, m_2), \quad \ell = \ell_1 e^{m_1 - m} + \ell_2 e^{m_2 - m}, \quad
              o = o_1 e^{m_1 - m} + o_2 e^{m_2 - m}

    Each block's numbers were computed relative to its own maximum; rescaling by
    :math:`e^{m_i - m}` puts both relative to the common maximum. The result is exactly what
    :func:`partial_attention` gives on the union of the two blocks.

    Args:
        m1, l1: ``(Tq,)``; o1: ``(Tq, dv)``; the same for block 2. A block that was fully
            masked for a query has ``m = -inf, l = 0, o = 0`` and leaves the other unchanged.

    Returns:
        ``(m, l, o)`` of shapes ``(Tq,)``, ``(Tq,)``, ``(Tq, dv)``.
    """
    m1, l1, m2, l2 = (as_float_array(a, n, min_ndim=1, max_ndim=1)
                      for a, n in ((m1, "m1"), (l1, "l1"), (m2, "m2"), (l2, "l2")))
    o1, o2 = as_float_array(o1, "o1", min_ndim=2, max_ndim=2), as_float_array(o2, "o2", min_ndim=2, max_ndim=2)
    Tq = m1.shape[0]
    if {m1.shape, l1.shape, m2.shape, l2.shape} != {(Tq,)} or o1.shape != o2.shape or o1.shape[0] != Tq:
        raise ValueError(f"need m and l of shape (Tq,) and o of shape (Tq, dv) for both blocks; got "
                         f"m1 {m1.shape}, l1 {l1.shape}, o1 {o1.shape}, m2 {m2.shape}, l2 {l2.shape}, o2 {o2.shape}")
    m = np.maximum(m1, m2)  # (Tq,)
    shift = np.where(np.isneginf(m), 0.0, m)  # both blocks masked: exp(-inf - 0) = 0 rather than exp(nan)
    a1, a2 = np.exp(m1 - shift), np.exp(m2 - shift)  # (Tq,) each, at most 1
    return m, l1 * a1 + l2 * a2, o1 * a1[:, None] + o2 * a2[:, None]


def tiled_attention(q, k, v, tile: int = 32, causal: bool = False) -> np.ndarray:
    r"""Softmax attention, :math:`\mathrm{softmax}(qk^\top/\sqrt{d})\,v`, one ``(tile, tile)`` block at a time.

    For each tile of queries, start from the empty result (``m = -inf, l = 0, o = 0``), merge
    in the :func:`partial_attention` of each tile of keys, then divide: ``o / l``. With
    ``causal=True`` query ``i`` sees only the keys ``j <= i``, and the key tiles that start after
    a query tile ends are skipped.

    Args:
        q: ``(Tq, d)``; k: ``(Tk, d)``; v: ``(Tk, dv)``; ``causal`` needs ``Tq == Tk``.
        tile: rows per tile, for queries and keys alike; it need not divide ``Tq`` or ``Tk``.

    Returns:
        ``(Tq, dv)``, equal to ``scaled_dot_product_attention(q, k, v, mask)[0]``.
    """
    q, k, v = (as_float_array(a, name, min_ndim=2, max_ndim=2) for a, name in ((q, "q"), (k, "k"), (v, "v")))
    tile = positive_int(tile, "tile")
    if causal and q.shape[0] != k.shape[0]:
        raise ValueError(f"causal attention needs as many queries as keys; got q {q.shape} and k {k.shape}")
    Tq, Tk = q.shape[0], k.shape[0]
    out = np.zeros((Tq, v.shape[1]), dtype=np.result_type(q, k, v))
    for i in range(0, Tq, tile):
        qi = q[i:i + tile]  # (tq, d)
        m, l, o = np.full(len(qi), -np.inf), np.zeros(len(qi)), np.zeros((len(qi), v.shape[1]))
        for j in range(0, Tk, tile):
            if causal and j > i + len(qi) - 1:
                break  # this key tile, and every later one, lies in the future of every query of the tile
            mask = None
            if causal:
                mask = np.arange(j, j + len(k[j:j + tile]))[None, :] <= np.arange(i, i + len(qi))[:, None]
            m, l, o = online_softmax_merge(m, l, o, *partial_attention(qi, k[j:j + tile], v[j:j + tile], mask))
        out[i:i + tile] = o / np.where(l == 0, 1.0, l)[:, None]  # (tq, dv); a query that sees nothing gets 0
    return out


# ----------------------------------------------------------------- PyTorch: measuring it
def _check_qkv(q, k, v, causal: bool):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor (B, H, T, d), "
                             f"got {type(t).__name__} of shape {tuple(getattr(t, 'shape', ()))}")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"need q (B, H, T, d), k (B, H, S, d) and v (B, H, S, dv); "
                         f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[2] == 0 or k.shape[2] == 0:
        raise ValueError(f"need at least one query and one key; got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs T == S (queries and keys of one sequence); got "
                         f"q {tuple(q.shape)} and k {tuple(k.shape)}: pass causal=False for cross-attention")


def plain_attention(q, k, v, causal: bool = False) -> torch.Tensor:
    r"""The explicit path, :math:`\mathrm{softmax}(QK^\top/\sqrt{d})\,V`, with its ``(B, H, T, S)`` scores.

    q: ``(B, H, T, d)``; k: ``(B, H, S, d)``; v: ``(B, H, S, dv)``; returns ``(B, H, T, dv)``.
    """
    _check_qkv(q, k, v, causal)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, T, S): the T^2 memory
    if causal:
        T = q.shape[2]
        future = ~torch.from_numpy(causal_mask(T)).to(q.device)  # (T, T), True = hidden
        scores = scores.masked_fill(future, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v  # (B, H, T, dv)


def flash_attention(q, k, v, *, causal: bool = False, tile: int = 128) -> torch.Tensor:
    r"""Softmax attention by tiles, never holding more than ``(B, H, tile, tile)`` scores.

    For each tile of queries, keep the running maximum ``m`` ``(B, H, tq)``, the running sum
    ``l`` ``(B, H, tq)`` and the unnormalised output ``o`` ``(B, H, tq, dv)``; for each tile of
    keys, compute its scores, take the new maximum and rescale what was kept by
    :math:`e^{m_\mathrm{old} - m_\mathrm{new}}` (the merge of :func:`online_softmax_merge`).
    With ``causal=True`` the key tiles above the diagonal are never computed
    (:func:`tile_counts`).

    Args:
        q: ``(B, H, T, d)``; k: ``(B, H, S, d)``; v: ``(B, H, S, dv)``; ``causal`` needs ``T == S``.
        causal: query ``i`` sees keys ``j <= i``.
        tile: rows per tile (queries and keys); it need not divide ``T``.

    Returns:
        ``(B, H, T, dv)``, equal to ``torch.nn.functional.scaled_dot_product_attention(q, k, v,
        is_causal=causal)``.
    """
    _check_qkv(q, k, v, causal)
    tile = positive_int(tile, "tile")
    T, S = q.shape[2], k.shape[2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype, device=q.device)  # (B, H, T, dv)
    for i in range(0, T, tile):
        qi = q[:, :, i:i + tile] * scale  # (B, H, tq, d), scaled once rather than every score
        tq = qi.shape[2]
        m = torch.full(qi.shape[:-1], float("-inf"), dtype=q.dtype, device=q.device)  # (B, H, tq)
        l = torch.zeros_like(m)  # (B, H, tq)
        o = torch.zeros(qi.shape[:-1] + v.shape[-1:], dtype=q.dtype, device=q.device)  # (B, H, tq, dv)
        for j in range(0, i + tq if causal else S, tile):  # causal: stop at the tile holding the diagonal
            s = qi @ k[:, :, j:j + tile].transpose(-2, -1)  # (B, H, tq, tk): the only scores held
            if causal and j + tile > i:  # a tile crossing the diagonal: hide each query's future
                keys = torch.arange(j, j + s.shape[-1], device=q.device)  # (tk,) key positions
                queries = torch.arange(i, i + tq, device=q.device)  # (tq,) query positions
                s = s.masked_fill(keys > queries[:, None], float("-inf"))  # (tq, tk) True = future
            # m stays finite after the first key tile: tile 0 holds key 0, which every query may see
            m_new = torch.maximum(m, s.amax(dim=-1))  # (B, H, tq)
            p = torch.exp(s - m_new[..., None])  # (B, H, tq, tk)
            alpha = torch.exp(m - m_new)  # (B, H, tq): rescales what was kept; exp(-inf) = 0 at the start
            l = l * alpha + p.sum(dim=-1)
            o = o * alpha[..., None] + p @ v[:, :, j:j + tile]  # (B, H, tq, dv)
            m = m_new
        out[:, :, i:i + tq] = o / l[..., None]
    return out


def tile_counts(T: int, tile: int, causal: bool) -> tuple[int, int]:
    """``(computed, total)``: the ``(tile, tile)`` blocks of scores :func:`flash_attention` computes
    for ``T`` queries and ``T`` keys, and all ``n * n`` of them, ``n = ceil(T / tile)``.

    Non-causal attention computes all ``n^2``; causal attention only those on or below the
    diagonal, ``n (n + 1) / 2``: about half, and exactly the fraction ``(n + 1) / (2n)``.
    """
    T, tile = positive_int(T, "T"), positive_int(tile, "tile")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    n = -(-T // tile)  # ceil(T / tile)
    return (n * (n + 1) // 2 if causal else n * n), n * n
