r"""Sliding-window attention: each token attends to the last ``window`` tokens only (chapter 9).

Causal attention lets query ``i`` see every key ``j <= i``, which costs ``T^2`` scores and a KV
cache that grows with ``T``. A sliding window (Longformer's local attention, Mistral 7B's
``sliding_window``) keeps only the keys ``i - w + 1 <= j <= i``:

.. math::
    \mathrm{out}_i = \sum_{j = \max(0,\, i - w + 1)}^{i}
        \frac{\exp(q_i \cdot k_j / \sqrt d)}{\sum_{j'} \exp(q_i \cdot k_{j'} / \sqrt d)}\, v_j

The scores fall from ``T^2`` to about ``T w``, and a generator needs only the last ``w`` keys and
values: a :class:`RollingKVCache` of fixed size, which overwrites its oldest slot. The price is
reach: one layer sees ``w`` tokens (itself and ``w - 1`` before it), and information travels
``w - 1`` positions further with every layer, so ``L`` stacked layers see
:func:`receptive_field` ``= L (w - 1) + 1`` tokens.

* :func:`sliding_window_mask`, :func:`sliding_window_attention` (an explicit path, the
  fused ``scaled_dot_product_attention`` path, and a banded path that never builds the ``(T, T)``
  matrix);
* :class:`RollingKVCache`, :func:`window_attention_step`, :func:`rolling_window_attention`
  (generation with the rolling cache equals sliding-window attention), and
  :func:`cache_bytes_by_length` (the rolling cache's memory stays flat, a plain cache's grows);
* :func:`receptive_field` and :func:`perturbation_reach`, on chapter 3's "Ada ... she" passage
  (:func:`chapter3_passage`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from attnedu._validate import as_float_array, positive_int

__all__ = ["sliding_window_mask", "sliding_window_attention", "RollingKVCache", "window_attention_step",
           "rolling_window_attention", "rolling_buffer_attention", "cache_bytes_by_length", "receptive_field", "chapter3_passage",
           "perturbation_reach"]

_PATHS = ("explicit", "sdpa", "banded")


def sliding_window_mask(T: int, window: int) -> np.ndarray:
    """``(T, T)`` boolean mask, True where query ``i`` may attend to key ``j``: ``i - window < j <= i``.

    The causal mask (:func:`attnedu.functional.causal_mask`) with the far past removed: each query
    sees itself and the ``window - 1`` keys before it. ``window >= T`` gives the causal mask;
    ``window = 1`` lets each token see only itself. True means "may attend", as everywhere in
    the course (and in ``scaled_dot_product_attention``).
    """
    T, window = positive_int(T, "T"), positive_int(window, "window")
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]  # (T, 1), (1, T)
    return (j <= i) & (i - j < window)


def _check_qkv(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or x.dim() != 4 or not torch.is_floating_point(x):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a floating-point (B, H, T, d) tensor, got {got}")
    if k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must share (B, H, T), "
                         "and k must have the shape of q (self-attention over one sequence)")


def sliding_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int, path: str = "explicit") -> Tensor:
    r"""Causal attention restricted to the last ``window`` keys: ``(B, H, T, d)`` -> ``(B, H, T, d_v)``.

    Args:
        q, k: ``(B, H, T, d)`` queries and keys; v: ``(B, H, T, d_v)`` values.
        window: ``w``, how many keys each query sees (itself included); ``w >= T`` is causal attention.
        path: how to compute it (all three give the same result):

            * ``"explicit"``: the equation: ``(T, T)`` scores, :func:`sliding_window_mask`, softmax;
            * ``"sdpa"``: ``scaled_dot_product_attention`` with that mask (the fused kernel);
            * ``"banded"``: only the ``w`` scores each query needs, ``(B, H, T, w)``, from the keys
              unfolded into overlapping windows: ``T w`` work and memory instead of ``T^2``.
    """
    _check_qkv(q, k, v)
    window = positive_int(window, "window")
    if path not in _PATHS:
        raise ValueError(f"path must be one of {_PATHS}, got {path!r}")
    B, H, T, d = q.shape
    if path == "banded":
        return _banded(q, k, v, min(window, T))
    allowed = torch.from_numpy(sliding_window_mask(T, window)).to(q.device)  # (T, T), True = may attend
    if path == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, H, T, d_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T)
    scores = scores.masked_fill(~allowed, float("-inf"))  # outside the window: probability 0
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, T), at most w non-zero per row
    return weights @ v  # (B, H, T, d_v)


def _banded(q: Tensor, k: Tensor, v: Tensor, w: int) -> Tensor:
    """Sliding-window attention from ``(B, H, T, w)`` scores: query ``t``'s slot ``s`` is key ``t - w + 1 + s``."""
    B, H, T, d = q.shape
    # w - 1 zero positions in front, so every query has w slots; the slots before key 0 are masked below.
    k_win = F.pad(k, (0, 0, w - 1, 0)).unfold(2, w, 1)  # (B, H, T + w - 1, d) -> (B, H, T, d, w)
    v_win = F.pad(v, (0, 0, w - 1, 0)).unfold(2, w, 1)  # (B, H, T, d_v, w)
    scores = (q.unsqueeze(-2) @ k_win).squeeze(-2) / math.sqrt(d)  # (B, H, T, 1, d) @ (B, H, T, d, w) -> (B, H, T, w)
    t, s = torch.arange(T, device=q.device)[:, None], torch.arange(w, device=q.device)[None, :]
    real = t - w + 1 + s >= 0  # (T, w): False for the padding slots of the first w - 1 queries
    weights = torch.softmax(scores.masked_fill(~real, float("-inf")), dim=-1)  # (B, H, T, w)
    return (v_win @ weights.unsqueeze(-1)).squeeze(-1)  # (B, H, T, d_v, w) @ (B, H, T, w, 1) -> (B, H, T, d_v)


# ----------------------------------------------------------------------------- the rolling cache
class RollingKVCache:
    """The keys and values of the last ``window`` positions, in a buffer of fixed size.

    A plain KV cache (:class:`attnedu.nn.KVCache`) appends every position and grows with ``T``.
    Under sliding-window attention the newest query needs only the last ``window`` keys, so
    this cache keeps a buffer of ``window`` slots and writes position ``p`` into slot
    ``p mod window``: once full, each new position overwrites the oldest one (Mistral 7B's
    "rolling buffer cache"). Its memory, :attr:`nbytes`, stops growing when the window fills.

    >>> cache = RollingKVCache(window=4)
    >>> for p in range(6):
    ...     cache.append(torch.full((1, 1, 1, 2), float(p)), torch.full((1, 1, 1, 2), float(p)))
    >>> cache.keys()[0, 0, :, 0].tolist()  # positions 2..5, oldest first
    [2.0, 3.0, 4.0, 5.0]
    """

    def __init__(self, window: int):
        self.window = positive_int(window, "window")
        self._k: Tensor | None = None  # (B, H, window, d)
        self._v: Tensor | None = None  # (B, H, window, d_v)
        self._n = 0  # positions appended so far

    def __len__(self) -> int:
        """The positions held: ``min(positions appended, window)``."""
        return min(self._n, self.window)

    @property
    def position(self) -> int:
        """How many positions have been appended in all (the next one's position)."""
        return self._n

    @property
    def nbytes(self) -> int:
        """Bytes of the key and value buffers: ``2 * B * H * window * d * bytes per number`` once
        the first position is in (0 before), whatever the number of positions appended."""
        if self._k is None:
            return 0
        return self._k.untyped_storage().nbytes() + self._v.untyped_storage().nbytes()

    def append(self, k: Tensor, v: Tensor) -> None:
        """Store the key and value of one new position, ``(B, H, 1, d)`` and ``(B, H, 1, d_v)``,
        in slot ``position mod window`` (overwriting the oldest position once the buffer is full)."""
        for name, x in (("k", k), ("v", v)):
            if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[2] != 1:
                got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"{name} must be (B, H, 1, d): one new position, got {got}")
        if k.shape[:2] != v.shape[:2]:
            raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must share (B, H)")
        if self._k is None:
            self._k = k.new_empty(*k.shape[:2], self.window, k.shape[-1])  # (B, H, window, d)
            self._v = v.new_empty(*v.shape[:2], self.window, v.shape[-1])
        elif k.shape[:2] + k.shape[3:] != self._k.shape[:2] + self._k.shape[3:] or \
                v.shape[:2] + v.shape[3:] != self._v.shape[:2] + self._v.shape[3:]:
            raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} do not fit the cached "
                             f"{tuple(self._k.shape)} and {tuple(self._v.shape)} (B, H, window, d)")
        slot = self._n % self.window
        self._k[:, :, slot] = k[:, :, 0]  # (B, H, d)
        self._v[:, :, slot] = v[:, :, 0]
        self._n += 1

    def _ordered(self, buffer: Tensor | None) -> Tensor:
        if buffer is None:
            raise ValueError("the cache is empty: append a position first")
        if self._n <= self.window:
            return buffer[:, :, : self._n]  # not yet wrapped around: already in order
        oldest = self._n % self.window  # the slot the next position will overwrite
        return torch.cat([buffer[:, :, oldest:], buffer[:, :, :oldest]], dim=2)  # (B, H, window, d)

    def keys(self) -> Tensor:
        """The keys of the last ``len(self)`` positions, oldest first: ``(B, H, len(self), d)``."""
        return self._ordered(self._k)

    def values(self) -> Tensor:
        """The values of the last ``len(self)`` positions, oldest first: ``(B, H, len(self), d_v)``."""
        return self._ordered(self._v)


def window_attention_step(q: Tensor, cache: RollingKVCache) -> Tensor:
    """The newest position's attention over the rolling cache: ``q`` ``(B, H, 1, d)`` -> ``(B, H, 1, d_v)``.

    The newest query sees every key in the cache, which are exactly the keys of its window (its
    own included, so append its key and value first): no mask is needed.
    """
    if not isinstance(cache, RollingKVCache):
        raise ValueError(f"cache must be a RollingKVCache, got {type(cache).__name__}")
    k, v = cache.keys(), cache.values()  # (B, H, S, d), (B, H, S, d_v), S = len(cache) <= window
    if not isinstance(q, Tensor) or q.dim() != 4 or q.shape[2] != 1 or q.shape[:2] != k.shape[:2] \
            or q.shape[-1] != k.shape[-1]:
        got = tuple(q.shape) if isinstance(q, Tensor) else type(q).__name__
        raise ValueError(f"q must be (B, H, 1, d) = ({k.shape[0]}, {k.shape[1]}, 1, {k.shape[-1]}), got {got}")
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)  # (B, H, 1, S)
    return weights @ v  # (B, H, 1, d_v)


def rolling_window_attention(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Sliding-window attention computed as a generator does: one position at a time, with a
    :class:`RollingKVCache` of ``window`` slots. ``(B, H, T, d)`` -> ``(B, H, T, d_v)``; equal to
    ``sliding_window_attention(q, k, v, window)``."""
    _check_qkv(q, k, v)
    cache = RollingKVCache(window)
    outs = []
    for t in range(q.shape[2]):
        cache.append(k[:, :, t:t + 1], v[:, :, t:t + 1])  # (B, H, 1, d): the newest position
        outs.append(window_attention_step(q[:, :, t:t + 1], cache))  # (B, H, 1, d_v)
    return torch.cat(outs, dim=2)  # (B, H, T, d_v)


def rolling_buffer_attention(q, k, v, window: int) -> np.ndarray:
    """Sliding-window attention for one sequence in NumPy, computed as a generator does: position by
    position, with keys and values in a ring buffer of ``window`` slots (chapter 9's exercise).

    q, k: ``(T, d)``; v: ``(T, d_v)``; returns ``(T, d_v)``, equal to :func:`sliding_window_attention`.
    Position ``t`` first writes its key and value into slot ``t mod window`` (overwriting position
    ``t - window``), then its query attends over the filled slots: ``min(t + 1, window)`` of them.
    The slots are not in time order once the buffer wraps around, and need not be: attention is a
    weighted average over a *set* of keys, and the positions are already inside the vectors.
    """
    q = as_float_array(q, "q", min_ndim=2, max_ndim=2)
    k = as_float_array(k, "k", min_ndim=2, max_ndim=2)
    v = as_float_array(v, "v", min_ndim=2, max_ndim=2)
    window = positive_int(window, "window")
    if k.shape != q.shape or v.shape[0] != q.shape[0]:
        raise ValueError(f"q {q.shape}, k {k.shape} and v {v.shape} must be (T, d), (T, d) and (T, d_v)")
    T, d = q.shape
    buffer_k, buffer_v = np.zeros((window, d)), np.zeros((window, v.shape[1]))  # (window, d), (window, d_v)
    out = np.empty((T, v.shape[1]))
    for t in range(T):
        buffer_k[t % window], buffer_v[t % window] = k[t], v[t]  # overwrite the oldest slot
        filled = min(t + 1, window)  # slots 0 .. filled - 1 hold real positions
        scores = buffer_k[:filled] @ q[t] / math.sqrt(d)  # (filled,)
        weights = np.exp(scores - scores.max())
        out[t] = weights @ buffer_v[:filled] / weights.sum()  # (d_v,)
    return out


def cache_bytes_by_length(Ts, window: int, *, batch: int = 1, n_head: int = 4, head_dim: int = 32,
                          dtype: torch.dtype = torch.float32) -> dict[str, list[int]]:
    """Bytes of a plain (growing) KV cache and of a rolling one after ``T`` positions, for each ``T`` in ``Ts``.

    One layer's keys and values ``(batch, n_head, 1, head_dim)`` are appended one position at a
    time to an :class:`attnedu.nn.KVCache` and to a :class:`RollingKVCache` of ``window`` slots.

    Returns ``{"T": [...], "growing": [...], "growing_allocated": [...], "rolling": [...]}``:
    ``growing`` is what the plain cache holds (``2 * batch * n_head * T * head_dim`` numbers),
    ``growing_allocated`` the storage behind it (it doubles when full), ``rolling`` the rolling
    cache's :attr:`RollingKVCache.nbytes` (flat from ``T = 1``: its buffer is allocated whole).
    """
    from attnedu.nn import KVCache

    Ts = [positive_int(T, "T") for T in Ts]
    if not Ts or Ts != sorted(Ts):
        raise ValueError(f"Ts must be a non-empty increasing list of lengths, got {Ts}")
    window = positive_int(window, "window")
    shape = (positive_int(batch, "batch"), positive_int(n_head, "n_head"), 1, positive_int(head_dim, "head_dim"))
    growing, rolling = KVCache(), RollingKVCache(window)
    out = {"T": Ts, "growing": [], "growing_allocated": [], "rolling": []}
    generator = torch.Generator().manual_seed(0)
    for t in range(1, Ts[-1] + 1):
        k = torch.randn(shape, generator=generator).to(dtype)  # (B, H, 1, d)
        v = torch.randn(shape, generator=generator).to(dtype)
        growing.update(k, v)
        rolling.append(k, v)
        if t in Ts:
            out["growing"].append(growing.k.nbytes + growing.v.nbytes)
            out["growing_allocated"].append(growing.k.untyped_storage().nbytes() + growing.v.untyped_storage().nbytes())
            out["rolling"].append(rolling.nbytes)
    return out


# ----------------------------------------------------------------------------- reach
def receptive_field(n_layer: int, window: int) -> int:
    """How many tokens the last position of ``n_layer`` stacked sliding-window layers can depend on:
    ``n_layer * (window - 1) + 1``. Each layer reaches ``window - 1`` positions further back."""
    return positive_int(n_layer, "n_layer") * (positive_int(window, "window") - 1) + 1


def chapter3_passage(T: int = 64, d: int = 16, d_k: int = 8, seed: int = 3) -> tuple[Tensor, Tensor, Tensor]:
    """Chapter 3's "Ada ... she" passage (section ch03-long-range-dependencies), float64 tensors.

    ``(X, W_q, W_k)``: ``X`` ``(T, d)`` random token vectors with feature 0 "I am a name" set only
    for "Ada" (position 0) and feature 1 "I need a name" only for "she" (position ``T - 1``);
    ``W_q``, ``W_k`` ``(d, d_k)`` small random matrices that copy those features into the first
    coordinate of the queries and keys. Drawn exactly as chapter 3 draws them (same seed, same order).
    """
    T, d, d_k = positive_int(T, "T"), positive_int(d, "d"), positive_int(d_k, "d_k")
    if d < 2:
        raise ValueError(f"d={d}: the passage needs 2 features at least (name, needs a name)")
    rng = np.random.default_rng(seed)
    X = 0.5 * rng.normal(size=(T, d))  # (T, d)
    X[:, :2] = 0.0
    X[0, 0] = 3.0  # "Ada": I am a name
    X[-1, 1] = 3.0  # "she": I need a name
    W_q = 0.1 * rng.normal(size=(d, d_k))
    W_q[1, 0] = 1.5  # "I need a name" -> query coordinate 0
    W_k = 0.1 * rng.normal(size=(d, d_k))
    W_k[0, 0] = 1.5  # "I am a name" -> key coordinate 0
    return torch.from_numpy(X), torch.from_numpy(W_q), torch.from_numpy(W_k)


def perturbation_reach(n_layer: int, window: int, T: int = 64) -> Tensor:
    r"""How much each output of ``n_layer`` stacked sliding-window layers changes when token 0 changes.

    The input is chapter 3's passage (:func:`chapter3_passage`); every layer is chapter 3's
    attention (its ``W_q``, ``W_k``, and ``W_v`` the identity) with the window,
    :math:`x \leftarrow \mathrm{SWA}(x W_q, x W_k, x)`: each output is a weighted average of the
    vectors in its window, so the scale stays put however many layers are stacked (with a residual
    connection and no normalisation it doubles every layer, and the softmax saturates to exact
    zeros and ones after a few). Token 0, "Ada", is perturbed by removing its "I am a name" feature,
    and the whole stack runs again.

    Returns ``(T,)`` float64: :math:`\lVert \Delta\, \mathrm{out}_t \rVert` for every position ``t``.
    It is exactly 0 for ``t >= receptive_field(n_layer, window)`` (those outputs never see token 0)
    and positive before, though small near the edge: what crosses ``L`` windows is averaged ``L`` times
    (with ``window = 8``: 0.49 at position 7 after one layer, 3e-8 at position 63 after nine).
    """
    n_layer, window = positive_int(n_layer, "n_layer"), positive_int(window, "window")
    X, W_q, W_k = chapter3_passage(T)

    def stack(x: Tensor) -> Tensor:  # (T, d) -> (T, d)
        for _ in range(n_layer):
            q, k = x @ W_q, x @ W_k  # (T, d_k) each
            x = sliding_window_attention(q[None, None], k[None, None], x[None, None], window)[0, 0]
        return x

    perturbed = X.clone()
    perturbed[0, 0] = 0.0  # "Ada" is no longer a name
    return (stack(perturbed) - stack(X)).norm(dim=-1)  # (T,)
