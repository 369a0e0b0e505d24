r"""Linear attention (Katharopoulos et al., 2020, "Transformers are RNNs"): attention without the
``(T, T)`` matrix (chapter 9).

Softmax attention weighs value ``j`` for query ``i`` by ``exp(q_i . k_j)``, a similarity that
does not factor, so all ``T^2`` scores must be computed. Replace it by a kernel that does,
``sim(q, k) = phi(q) . phi(k)`` with the positive feature map ``phi(x) = elu(x) + 1``, and the
sums can be regrouped:

.. math::
    \mathrm{out}_i = \frac{\sum_j \phi(q_i)^\top \phi(k_j)\, v_j^\top}{\sum_j \phi(q_i)^\top \phi(k_j)}
    = \frac{\phi(q_i)^\top \big(\sum_j \phi(k_j) v_j^\top\big)}{\phi(q_i)^\top \big(\sum_j \phi(k_j)\big)}

The ``d x d_v`` matrix ``S = sum_j phi(k_j) v_j^T`` and the vector ``z = sum_j phi(k_j)`` are
computed once: ``T d d_v`` work instead of ``T^2 d``. With a causal mask the sums run over
``j <= i``: prefix sums ``S_i``, ``z_i``, which a generator can update one token at a time
(a recurrent network with a ``d x d_v`` state, whence the title).

* :func:`feature_map`; :func:`linear_attention` (the regrouped form, causal by cumulative
  sums, or by chunks: the fast path); :func:`linear_attention_quadratic` (the same quantity
  through the ``(T, T)`` matrix, to check it); :func:`softmax_attention`, the reference;
* :func:`approximation_error`: how far linear attention is from softmax attention (it is a
  different attention, not an approximation with a knob);
* :func:`crossover`: the measured length from which linear attention is faster here.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from attnedu._validate import positive_int
from attnedu.functional import causal_mask
from attnedu.efficient.measure import crossover_length

__all__ = ["feature_map", "linear_attention", "linear_attention_quadratic", "softmax_attention",
           "approximation_error", "crossover"]

#: Added to the normaliser ``phi(q_i) . z_i`` (Katharopoulos et al.'s code uses the same): it is
#: positive, but ``elu(x) + 1 = exp(x)`` for ``x < 0`` can underflow to 0 for very negative features.
EPS = 1e-6


def feature_map(x: Tensor) -> Tensor:
    """``phi(x) = elu(x) + 1``, elementwise: ``x + 1`` for ``x > 0``, ``exp(x)`` for ``x <= 0``; always ``> 0``.

    Computed as those two branches rather than as ``F.elu(x) + 1``: that adds 1 to
    ``exp(x) - 1``, which rounds to exactly ``-1`` in float32 for ``x < -17`` or so, and gives a
    feature of 0 (a key that no query can see) where the true value is ``exp(x) > 0``.
    """
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        raise ValueError(f"x must be a floating-point tensor, got {type(x).__name__}")
    # clamp: exp of a large x, in the branch not taken, would be inf, and inf * 0 a NaN gradient
    return torch.where(x > 0, x + 1.0, torch.exp(x.clamp(max=0.0)))


def _check_qkv(q, k, v) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, Tensor) or x.dim() != 4 or not torch.is_floating_point(x):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a floating-point (B, H, T, d) tensor, got {got}")
    if k.shape[:2] != q.shape[:2] or k.shape[-1] != q.shape[-1] or v.shape[:3] != k.shape[:3]:
        raise ValueError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}: expected q (B, H, T, d), "
                         "k (B, H, S, d) and v (B, H, S, d_v)")


def _check_causal(q, k) -> None:
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"causal attention needs as many queries as keys, got q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")


def linear_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, eps: float = EPS,
                     chunk: int | None = None) -> Tensor:
    r"""Linear attention, ``phi(Q) (phi(K)^T V)`` normalised, without a ``(T, T)`` matrix.

    Args:
        q: ``(B, H, T, d)`` queries; k: ``(B, H, S, d)`` keys; v: ``(B, H, S, d_v)`` values.
        causal: query ``i`` sees keys ``j <= i`` only (``S = T``), through prefix sums.
        eps: added to the normaliser.
        chunk: causal only. ``None`` (the readable path): the prefix sums of every position.
            An int ``c`` (the fast path, the "chunkwise" form of linear-attention kernels): the
            sequence is cut into chunks of ``c`` positions; the prefix sums are kept only at chunk
            boundaries, ``(T / c, d, d_v)``, and inside a chunk the ``c x c`` quadratic form is used.
            Same result; on a CPU, ``torch.cumsum`` over ``T`` matrices of ``d x d_v`` is the slow part.

    Returns:
        ``(B, H, T, d_v)``. Non-causal: ``S = phi(K)^T V`` ``(d, d_v)`` and ``z = sum_j phi(k_j)``
        ``(d,)``, then ``phi(q_i)^T S / (phi(q_i)^T z + eps)``. Causal: the same with the prefix
        sums ``S_i = sum_{j<=i} phi(k_j) v_j^T`` ``(T, d, d_v)`` and ``z_i`` ``(T, d)``: ``T d d_v``
        numbers of memory, still no ``T^2``.
    """
    _check_qkv(q, k, v)
    if chunk is not None:
        chunk = positive_int(chunk, "chunk")
        if not causal:
            raise ValueError("chunk is for causal=True: non-causal linear attention has no prefix sums to cut")
    phi_q, phi_k = feature_map(q), feature_map(k)  # (B, H, T, d), (B, H, S, d)
    if not causal:
        kv = phi_k.transpose(-2, -1) @ v  # (B, H, d, d_v): sum_j phi(k_j) v_j^T
        z = phi_k.sum(dim=2)  # (B, H, d): sum_j phi(k_j)
        num = phi_q @ kv  # (B, H, T, d_v)
        den = (phi_q @ z.unsqueeze(-1)).squeeze(-1)  # (B, H, T)
        return num / (den.unsqueeze(-1) + eps)
    _check_causal(q, k)
    if chunk is not None:
        return _chunkwise(phi_q, phi_k, v, chunk, eps)
    # S_i = sum_{j<=i} phi(k_j) v_j^T: the outer products (B, H, T, d, d_v), summed along T
    kv = torch.cumsum(phi_k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # (B, H, T, d, d_v)
    z = torch.cumsum(phi_k, dim=2)  # (B, H, T, d): z_i = sum_{j<=i} phi(k_j)
    num = (phi_q.unsqueeze(-2) @ kv).squeeze(-2)  # (B, H, T, 1, d) @ (B, H, T, d, d_v) -> (B, H, T, d_v)
    den = (phi_q * z).sum(dim=-1)  # (B, H, T)
    return num / (den.unsqueeze(-1) + eps)


def _chunkwise(phi_q: Tensor, phi_k: Tensor, v: Tensor, c: int, eps: float) -> Tensor:
    """Causal linear attention by chunks of ``c`` positions: ``(B, H, T, d)`` features -> ``(B, H, T, d_v)``.

    Query ``i`` in chunk ``n`` sees the keys of the chunks before ``n`` through their summed state
    ``S_{<n}``, ``z_{<n}``, and the keys ``j <= i`` of its own chunk through the ``c x c`` scores.
    """
    B, H, T, d = phi_q.shape
    d_v = v.shape[-1]
    pad = (-T) % c  # zero rows at the end: keys after every real query, never seen by one
    phi_q, phi_k, v = (F.pad(x, (0, 0, 0, pad)) for x in (phi_q, phi_k, v))
    N = (T + pad) // c
    q_n, k_n = phi_q.view(B, H, N, c, d), phi_k.view(B, H, N, c, d)  # (B, H, N, c, d)
    v_n = v.view(B, H, N, c, d_v)  # (B, H, N, c, d_v)
    kv = k_n.transpose(-2, -1) @ v_n  # (B, H, N, d, d_v): each chunk's sum of phi(k_j) v_j^T
    z = k_n.sum(dim=-2)  # (B, H, N, d)
    kv_before, z_before = kv.cumsum(dim=2) - kv, z.cumsum(dim=2) - z  # the chunks strictly before
    within = torch.from_numpy(causal_mask(c)).to(q_n.device)  # (c, c): j <= i within the chunk
    inside = (q_n @ k_n.transpose(-2, -1)).masked_fill(~within, 0.0)  # (B, H, N, c, c)
    num = q_n @ kv_before + inside @ v_n  # (B, H, N, c, d_v)
    den = (q_n @ z_before.unsqueeze(-1)).squeeze(-1) + inside.sum(dim=-1)  # (B, H, N, c)
    out = num / (den.unsqueeze(-1) + eps)
    return out.reshape(B, H, N * c, d_v)[:, :, :T]  # (B, H, T, d_v)


def linear_attention_quadratic(q: Tensor, k: Tensor, v: Tensor, causal: bool = False, eps: float = EPS) -> Tensor:
    r"""The quantity of :func:`linear_attention` computed the quadratic way, for checking it.

    ``A = phi(Q) phi(K)^T`` ``(B, H, T, S)`` (lower-triangular if ``causal``), then each row of
    ``A V`` divided by the row's sum plus ``eps``: softmax attention with ``exp(q . k / sqrt d)``
    replaced by ``phi(q) . phi(k)``. Shapes as :func:`linear_attention`.
    """
    _check_qkv(q, k, v)
    scores = feature_map(q) @ feature_map(k).transpose(-2, -1)  # (B, H, T, S), all > 0
    if causal:
        _check_causal(q, k)
        T = q.shape[2]
        allowed = torch.from_numpy(causal_mask(T)).to(q.device)  # (T, T), True = may attend
        scores = scores.masked_fill(~allowed, 0.0)  # a similarity of 0: no weight
    return (scores @ v) / (scores.sum(dim=-1, keepdim=True) + eps)  # (B, H, T, d_v)


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> Tensor:
    """Scaled dot-product softmax attention (the reference), ``scaled_dot_product_attention``:
    ``(B, H, T, d)``, ``(B, H, S, d)``, ``(B, H, S, d_v)`` -> ``(B, H, T, d_v)``."""
    _check_qkv(q, k, v)
    if causal:
        _check_causal(q, k)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def approximation_error(q: Tensor, k: Tensor, v: Tensor, causal: bool = False) -> float:
    r"""The relative error of linear attention against softmax attention, in the Frobenius norm:

    .. math:: \frac{\lVert \mathrm{lin}(Q, K, V) - \mathrm{softmax}(Q, K, V) \rVert_F}
                   {\lVert \mathrm{softmax}(Q, K, V) \rVert_F}

    over all batches, heads, positions and features (the norm of the flattened tensors).
    Softmax attention uses the usual ``1 / sqrt(d)`` scale; linear attention has none (as in
    Katharopoulos et al.). Shapes as :func:`linear_attention`.
    """
    reference = softmax_attention(q, k, v, causal)
    return float((linear_attention(q, k, v, causal) - reference).norm() / reference.norm())


def _seconds(f, repeats: int) -> float:
    """The median of ``repeats`` timed calls of ``f``, after one warm-up call."""
    f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def crossover(Ts=(64, 128, 256, 512, 1024, 2048, 4096), d: int = 64, *, batch: int = 1, n_head: int = 4,
              causal: bool = False, chunk: int | None = 64, repeats: int = 5, seed: int = 0) -> dict:
    """Time softmax attention and linear attention for each length in ``Ts``; find where linear wins.

    Both run on the same random ``(batch, n_head, T, d)`` float32 queries, keys and values, without
    gradients: softmax attention through ``scaled_dot_product_attention`` (the fused kernel a
    model would use), linear attention through :func:`linear_attention` (with ``causal``, by chunks
    of ``chunk`` positions; ``chunk=None`` times the plain prefix sums). Each time is the median
    of ``repeats`` calls after a warm-up, on ``torch.get_num_threads()`` threads.

    Returns a dict: ``T``, ``softmax_s``, ``linear_s`` (lists of seconds, one per ``T``),
    ``crossover`` (the smallest ``T`` of ``Ts`` from which linear attention is faster at that
    length and every longer one measured; ``None`` if it never is), and ``d``, ``batch``,
    ``n_head``, ``causal``, ``chunk``, ``threads``.
    """
    Ts = [positive_int(T, "T") for T in Ts]
    if not Ts or Ts != sorted(Ts):
        raise ValueError(f"Ts must be a non-empty increasing list of lengths, got {Ts}")
    d, batch, n_head = positive_int(d, "d"), positive_int(batch, "batch"), positive_int(n_head, "n_head")
    repeats = positive_int(repeats, "repeats")
    chunk = positive_int(chunk, "chunk") if causal and chunk is not None else None
    generator = torch.Generator().manual_seed(seed)
    result = {"T": Ts, "softmax_s": [], "linear_s": [], "crossover": None, "d": d, "batch": batch,
              "n_head": n_head, "causal": bool(causal), "chunk": chunk, "threads": torch.get_num_threads()}
    with torch.no_grad():
        for T in Ts:
            q, k, v = torch.randn(3, batch, n_head, T, d, generator=generator).unbind(0)  # 3 x (B, H, T, d)
            result["softmax_s"].append(_seconds(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                                                repeats))
            result["linear_s"].append(_seconds(lambda: linear_attention(q, k, v, causal, chunk=chunk), repeats))
    result["crossover"] = crossover_length(Ts, result["softmax_s"], result["linear_s"])  # softmax dearer for good
    return result
