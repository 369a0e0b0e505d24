"""Attention as plain functions on NumPy arrays.

Chapter 1 (weighted sums) puts here what every later chapter builds on:

* :func:`softmax`: turn any real scores into weights that are positive and sum to 1;
* :func:`weighted_average` and :func:`weighted_sum`: pool values with those weights;
* :data:`KERNELS`, :func:`attention_pool` and :func:`leave_one_out_mse`:
  Nadaraya-Watson kernel regression, the oldest attention mechanism there is.

Chapter 2 adds :func:`scaled_dot_product_attention` with :func:`causal_mask` and
:func:`padding_mask` (both at once: :func:`attention_mask`), and :func:`saturating_dk`, where an
unscaled softmax saturates; chapter 3 adds :func:`self_attention`, :func:`sinusoidal_positions` and
:func:`apply_rope`; chapter 4 adds :func:`split_heads`, :func:`merge_heads` and
:func:`multi_head_attention`; chapter 5 adds :func:`attention_pattern`, who may attend to whom in
BERT, GPT and T5.

Shapes follow one convention throughout the course: ``Tq`` queries attend over
``Tk`` keys, and each key carries a value of size ``dv``. A weight matrix is
``(Tq, Tk)``: one row per query, one column per key, each row summing to 1.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ._validate import as_float_array, non_negative_int, normalize_axis, positive_int, positive_number, probability

__all__ = [
    "softmax",
    "weighted_average",
    "weighted_sum",
    "KERNELS",
    "kernel_scores",
    "attention_pool",
    "leave_one_out_mse",
    "soft_lookup",
    "additive_scores",
    "causal_mask",
    "padding_mask",
    "attention_mask",
    "saturating_dk",
    "PATTERN_KINDS",
    "attention_pattern",
    "scaled_dot_product_attention",
    "sinusoidal_positions",
    "apply_rope",
    "self_attention",
    "split_heads",
    "merge_heads",
    "multi_head_attention",
]


# --------------------------------------------------------------------------- softmax
def softmax(x, axis: int = -1, temperature: float = 1.0) -> np.ndarray:
    r"""Softmax of ``x`` along ``axis``, at a given temperature.

    .. math:: \mathrm{softmax}(x)_i = \frac{\exp(x_i / T)}{\sum_j \exp(x_j / T)}

    The row maximum is subtracted before exponentiating. This changes nothing
    mathematically (softmax is invariant to adding a constant to a row) but keeps
    ``exp`` from overflowing: the largest exponent is then exactly 0.

    Scores of ``-inf`` mean "masked": they get weight 0. A row in which every score
    is ``-inf`` has nothing to attend to and gets all-zero weights, silently.

    Args:
        x: scores, any shape ``(..., n, ...)``; integers are converted to float64.
        axis: the axis that is normalised (default: the last one).
        temperature: ``T > 0``. ``T > 1`` flattens the weights towards uniform,
            ``T < 1`` sharpens them towards a one-hot on the maximum.

    Returns:
        An array of the same shape (and floating dtype) as ``x`` whose entries are
        in ``[0, 1]`` and sum to 1 along ``axis`` (or to 0 for a fully masked row).

    Raises:
        ValueError: ``x`` is not numeric, is empty along ``axis``, contains NaN or
            ``+inf``, or ``temperature`` is not a positive number.
    """
    x = as_float_array(x, "x", min_ndim=1)
    ax = normalize_axis(axis, x.ndim, shape=x.shape)
    t = positive_number(temperature, "temperature")
    if x.shape[ax] == 0:
        raise ValueError(f"softmax over an empty axis: x has shape {x.shape} and axis={axis}")
    z = x / t if t != 1.0 else x
    m = np.max(z, axis=ax, keepdims=True)  # NaN and +inf anywhere in a row show up here
    if np.isnan(m).any() or np.isposinf(m).any():
        raise ValueError(
            f"x of shape {x.shape} contains NaN or +inf; softmax needs finite scores "
            "(use -inf only to mask a position out)"
        )
    m[~np.isfinite(m)] = 0  # a fully masked row has max -inf: shift it by 0 instead
    e = np.subtract(z, m)  # (same shape as x); a fresh array, so the rest works in place
    np.exp(e, out=e)  # the largest entry of each row is exactly exp(0) = 1
    total = np.sum(e, axis=ax, keepdims=True)
    total[total == 0] = 1  # a fully masked row sums to 0: divide by 1, so its weights stay 0
    e /= total
    return e


# --------------------------------------------------------------------- weighted sums
def weighted_average(values, weights) -> np.ndarray:
    r"""The weighted average :math:`\sum_i w_i v_i / \sum_i w_i` of ``values``.

    Args:
        values: ``(n,)`` numbers or ``(n, d)`` vectors.
        weights: ``(n,)`` non-negative weights, not all zero. They need not sum to 1:
            dividing by their sum is what makes this an *average*.

    Returns:
        A scalar (for ``(n,)`` values) or a ``(d,)`` vector.
    """
    v = as_float_array(values, "values", min_ndim=1, max_ndim=2)
    w = as_float_array(weights, "weights", min_ndim=1, max_ndim=1)
    if w.shape[0] != v.shape[0]:
        raise ValueError(f"weights has shape {w.shape} but values has shape {v.shape}: need one weight per value")
    if (w < 0).any():
        raise ValueError("weights must be non-negative for a weighted average")
    total = w.sum()
    if not total > 0:
        raise ValueError("weights sum to 0: a weighted average needs at least one positive weight")
    return (w / total) @ v  # (n,) @ (n,) -> () or (n,) @ (n, d) -> (d,)


def weighted_sum(weights, values) -> np.ndarray:
    r"""Pool ``values`` with a matrix of weights: :math:`o_q = \sum_k w_{qk} v_k`.

    This is the last step of every attention mechanism in the course.

    Args:
        weights: ``(..., Tq, Tk)``, one row of weights per query.
        values: ``(..., Tk, dv)`` or ``(Tk,)`` (one number per key).

    Returns:
        ``(..., Tq, dv)``, or ``(..., Tq)`` for ``(Tk,)`` values.
    """
    w = as_float_array(weights, "weights", min_ndim=2)
    v = as_float_array(values, "values", min_ndim=1)
    if v.ndim == 1:
        if w.shape[-1] != v.shape[0]:
            raise ValueError(f"weights has shape {w.shape} (Tk={w.shape[-1]}) but values has shape {v.shape}")
        return w @ v  # (..., Tq, Tk) @ (Tk,) -> (..., Tq)
    if w.shape[-1] != v.shape[-2]:
        raise ValueError(
            f"weights has shape {w.shape} (Tk={w.shape[-1]}) but values has shape {v.shape} "
            f"(Tk={v.shape[-2]}): the key axes must match"
        )
    try:
        np.broadcast_shapes(w.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"batch dimensions of weights {w.shape} and values {v.shape} do not broadcast") from None
    return w @ v  # (..., Tq, Tk) @ (..., Tk, dv) -> (..., Tq, dv)


# ------------------------------------------------------------------------- kernels
def _gaussian(u: np.ndarray) -> np.ndarray:
    return -0.5 * u**2  # log of exp(-u^2 / 2)


def _laplace(u: np.ndarray) -> np.ndarray:
    return -np.abs(u)  # log of exp(-|u|)


def _log_of(kernel: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def log_kernel(u: np.ndarray) -> np.ndarray:
        k = kernel(u)
        with np.errstate(divide="ignore"):
            return np.log(k)  # zero kernel -> -inf score -> zero weight

    return log_kernel


#: Kernels as *log-kernels*: ``KERNELS[name](u)`` is ``log K(u)`` for the scaled
#: distance ``u = |q - k| / width``. Working with logs means the Nadaraya-Watson
#: weights ``K(u_i) / sum_j K(u_j)`` are exactly ``softmax(log K(u))``.
KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gaussian": _gaussian,
    "laplace": _laplace,
    "boxcar": _log_of(lambda u: (np.abs(u) <= 1).astype(float)),
    "epanechnikov": _log_of(lambda u: np.maximum(0.0, 1.0 - u**2)),
}


def _as_points(x, name: str) -> np.ndarray:
    """``(n,)`` scalars or ``(n, d)`` vectors -> ``(n, d)``."""
    a = as_float_array(x, name, min_ndim=1, max_ndim=2)
    return a[:, None] if a.ndim == 1 else a


def kernel_scores(queries, keys, width: float = 1.0, kernel: str = "gaussian") -> np.ndarray:
    """Attention scores ``log K(|q - k| / width)`` for every query-key pair.

    Args:
        queries: ``(Tq,)`` or ``(Tq, d)``.
        keys: ``(Tk,)`` or ``(Tk, d)``, with the same ``d`` as the queries.
        width: the kernel width (bandwidth) ``h > 0``.
        kernel: a name in :data:`KERNELS`.

    Returns:
        ``(Tq, Tk)`` scores; ``softmax`` over the last axis gives the weights.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {sorted(KERNELS)}")
    h = positive_number(width, "width")
    q = _as_points(queries, "queries")  # (Tq, d)
    k = _as_points(keys, "keys")  # (Tk, d)
    if q.shape[1] != k.shape[1]:
        raise ValueError(
            f"queries have shape {np.shape(queries)} and keys have shape {np.shape(keys)}: "
            "their last dimension (the feature size d) must match"
        )
    diff = q[:, None, :] - k[None, :, :]  # (Tq, Tk, d)
    u = np.sqrt(np.sum(diff**2, axis=-1)) / h  # (Tq, Tk) scaled distances
    return KERNELS[kernel](u)


def attention_pool(queries, keys, values, width: float = 1.0, kernel: str = "gaussian"):
    r"""Nadaraya-Watson kernel regression, read as attention pooling.

    .. math::

        f(q) = \sum_i \alpha(q, k_i)\, v_i, \qquad
        \alpha(q, k_i) = \frac{K((q - k_i)/h)}{\sum_j K((q - k_j)/h)}
                       = \mathrm{softmax}_i\big(\log K((q - k_i)/h)\big)

    A query that has no key inside the kernel's support (possible for ``boxcar`` and
    ``epanechnikov``) gets all-zero weights and output 0, like a fully masked row.

    Args:
        queries: ``(Tq,)`` or ``(Tq, d)``: where to predict.
        keys: ``(Tk,)`` or ``(Tk, d)``: where the observations are.
        values: ``(Tk,)`` or ``(Tk, dv)``: what was observed there.
        width: kernel width ``h > 0``; small widths follow the data closely.
        kernel: a name in :data:`KERNELS`.

    Returns:
        ``(output, weights)``: ``output`` is ``(Tq,)`` or ``(Tq, dv)``; ``weights``
        is ``(Tq, Tk)`` with rows summing to 1.
    """
    v = as_float_array(values, "values", min_ndim=1, max_ndim=2)
    k_len = _as_points(keys, "keys").shape[0]
    if v.shape[0] != k_len:
        raise ValueError(
            f"keys have shape {np.shape(keys)} but values have shape {v.shape}: need one value per key"
        )
    weights = softmax(kernel_scores(queries, keys, width, kernel), axis=-1)  # (Tq, Tk)
    return weights @ v, weights  # (Tq, Tk) @ (Tk[, dv]) -> (Tq[, dv])


def leave_one_out_mse(x, y, width: float, kernel: str = "gaussian") -> float:
    """Mean squared error of kernel regression when each point is predicted from the others.

    Every training point is a query whose own key is masked out (score ``-inf``), so
    the estimate cannot simply copy its own value: the error then measures how well
    ``width`` generalises, and its minimum is a data-driven choice of width.

    Args:
        x: ``(n,)`` or ``(n, d)`` inputs, ``n >= 2``.
        y: ``(n,)`` targets.
        width: kernel width ``h > 0``.
        kernel: a name in :data:`KERNELS`.

    Returns:
        The mean of ``(y_i - f_{-i}(x_i))**2`` over all ``i``.
    """
    pts = _as_points(x, "x")
    t = as_float_array(y, "y", min_ndim=1, max_ndim=1)
    if t.shape[0] != pts.shape[0]:
        raise ValueError(f"x has shape {np.shape(x)} but y has shape {t.shape}: need one target per input")
    if t.shape[0] < 2:
        raise ValueError(f"leave-one-out needs at least 2 points, got x of shape {np.shape(x)}")
    scores = kernel_scores(pts, pts, width, kernel)  # (n, n)
    np.fill_diagonal(scores, -np.inf)  # a point may not look at itself
    pred = softmax(scores, axis=-1) @ t  # (n,)
    return float(np.mean((t - pred) ** 2))


def soft_lookup(query, keys, values, temperature: float = 1.0):
    r"""A dictionary lookup made soft: blend the ``values`` by how well their ``keys`` match.

    .. math:: \alpha = \mathrm{softmax}(K q / T), \qquad \mathrm{output} = \alpha^\top V

    A hard lookup returns the value of the one key equal to the query; here every key
    gets a weight, larger for keys with a larger dot product with the query. As the
    temperature ``T`` goes to 0 the weights become one-hot on the best key (a hard lookup).

    Args:
        query: ``(d,)``.
        keys: ``(n, d)``, one key per row.
        values: ``(n, dv)``, one value per key.
        temperature: ``T > 0``.

    Returns:
        ``(output, weights)`` of shapes ``(dv,)`` and ``(n,)``.
    """
    q = as_float_array(query, "query", min_ndim=1, max_ndim=1)
    k = as_float_array(keys, "keys", min_ndim=2, max_ndim=2)
    v = as_float_array(values, "values", min_ndim=1, max_ndim=2)
    if k.shape[1] != q.shape[0] or v.shape[0] != k.shape[0]:
        raise ValueError(f"need keys (n, d) for a query (d,) and one value per key; got query {q.shape}, "
                         f"keys {k.shape}, values {v.shape}")
    weights = softmax(k @ q, temperature=temperature)  # (n,)
    return weights @ v, weights  # (dv,), (n,)


# ------------------------------------------------- chapter 2: scaled dot-product attention
def causal_mask(T: int, past: int = 0) -> np.ndarray:
    """``(T, past + T)`` boolean mask, True where query ``i`` may attend to key ``j``.

    Query ``i`` sits at the absolute position ``past + i`` and may attend to every key at or
    before it: ``j <= past + i``. With ``past = 0`` (the default) this is the ``(T, T)``
    lower-triangular mask of chapter 2. With ``past > 0`` the ``T`` queries are new tokens
    that follow ``past`` tokens already in a KV cache (chapter 6): they see all of those, and
    each other causally.

    The convention is the course's, and that of ``torch.nn.functional.scaled_dot_product_attention``:
    True means "may attend". (``torch.nn.MultiheadAttention`` uses the opposite; the blocks
    of :mod:`attnedu.nn` convert once, where they call it.) This is the only causal mask of
    the library: PyTorch code uses it as ``torch.from_numpy(causal_mask(T, past)).to(device)``.
    """
    T = positive_int(T, "T")
    past = non_negative_int(past, "past")
    return np.tril(np.ones((T, past + T), dtype=bool), k=past)


def padding_mask(lengths, T: int) -> np.ndarray:
    """``(B, 1, T)`` boolean mask, True for the real (non-padding) keys of each sequence.

    Sequence ``b`` has ``lengths[b]`` real tokens followed by padding. The middle axis of
    size 1 lets the mask broadcast against scores of shape ``(B, Tq, T)``; for scores with a
    head axis, ``(B, H, Tq, T)``, use ``padding_mask(lengths, T)[:, None]``.
    """
    lens = np.asarray(lengths)
    if lens.ndim != 1 or lens.dtype.kind not in "iu":
        raise ValueError(f"lengths must be a 1-D array of integers, got shape {lens.shape} and dtype {lens.dtype}")
    T = positive_int(T, "T")
    if (lens < 0).any() or (lens > T).any():
        raise ValueError(f"every length must lie in [0, T={T}], got {lens.tolist()}")
    return (np.arange(T)[None, :] < lens[:, None])[:, None, :]  # (B, 1, T)


#: The three families of Transformer (chapter 5), as :func:`attention_pattern` names them.
PATTERN_KINDS = ("encoder", "decoder", "encoder-decoder")


def attention_pattern(kind: str, n_in: int, n_out: int) -> np.ndarray:
    """``(T, T)`` boolean mask, ``T = n_in + n_out``: which position may attend to which over ``n_in`` input
    tokens followed by ``n_out`` output tokens, True where query (row) ``i`` may attend to key (column) ``j``.

    * ``"encoder"`` (BERT): every position sees every position;
    * ``"decoder"`` (GPT): position ``i`` sees the positions ``j <= i`` (:func:`causal_mask`);
    * ``"encoder-decoder"`` (T5): inputs see all inputs and no output (the encoder); outputs see every
      input (cross-attention) and the outputs up to themselves (causal self-attention in the decoder).
    """
    if kind not in PATTERN_KINDS:
        raise ValueError(f"kind must be one of {PATTERN_KINDS}, got {kind!r}")
    n_in, n_out = non_negative_int(n_in, "n_in"), non_negative_int(n_out, "n_out")
    T = n_in + n_out
    if T == 0:
        raise ValueError("n_in + n_out must be at least 1")
    if kind == "encoder":
        return np.ones((T, T), dtype=bool)
    if kind == "decoder":
        return causal_mask(T)
    mask = np.zeros((T, T), dtype=bool)
    mask[:, :n_in] = True  # the encoder (inputs see every input) and cross-attention (outputs see every input)
    if n_out:
        mask[n_in:, n_in:] = causal_mask(n_out)  # the decoder: causal among the outputs
    return mask


def additive_scores(q, k, W_q, W_k, w) -> np.ndarray:
    r"""Additive (Bahdanau) compatibility scores :math:`s_{ij} = w^\top \tanh(W_q q_i + W_k k_j)`.

    A small one-layer network scores each (query, key) pair; queries and keys may have
    different sizes, since each is first projected to the hidden size ``h``.

    Args:
        q: ``(Tq, dq)``; k: ``(Tk, dk)``; W_q: ``(h, dq)``; W_k: ``(h, dk)``; w: ``(h,)``.

    Returns:
        ``(Tq, Tk)`` scores.
    """
    q, k = as_float_array(q, "q"), as_float_array(k, "k")
    W_q, W_k, w = as_float_array(W_q, "W_q"), as_float_array(W_k, "W_k"), as_float_array(w, "w")
    shapes = f"q {q.shape}, k {k.shape}, W_q {W_q.shape}, W_k {W_k.shape}, w {w.shape}"
    if (q.ndim, k.ndim, W_q.ndim, W_k.ndim, w.ndim) != (2, 2, 2, 2, 1):
        raise ValueError(f"additive scores need 2-D q, k, W_q, W_k and a 1-D w, got {shapes}")
    if W_q.shape != (w.shape[0], q.shape[1]) or W_k.shape != (w.shape[0], k.shape[1]):
        raise ValueError(f"additive scores need W_q of shape (h, dq), W_k of shape (h, dk) "
                         f"and w of shape (h,), got {shapes}")
    qp = q @ W_q.T  # (Tq, h): W_q q_i for every query
    kp = k @ W_k.T  # (Tk, h): W_k k_j for every key
    hidden = np.tanh(qp[:, None, :] + kp[None, :, :])  # (Tq, Tk, h)
    return hidden @ w  # (Tq, Tk)


def scaled_dot_product_attention(q, k, v, mask=None, scale=None):
    r"""Scaled dot-product attention, :math:`\mathrm{softmax}(QK^\top / \sqrt{d_k})\,V`.

    Args:
        q: queries ``(..., Tq, dk)``.
        k: keys ``(..., Tk, dk)``.
        v: values ``(..., Tk, dv)``.
        mask: optional boolean array broadcastable to ``(..., Tq, Tk)``; True means "may
            attend" (the convention of ``torch.nn.functional.scaled_dot_product_attention``).
            A query whose keys are all masked gets zero weights and a zero output.
        scale: multiplies the scores; defaults to ``1 / sqrt(dk)``.

    Returns:
        ``(output, weights)``: ``(..., Tq, dv)`` and ``(..., Tq, Tk)``.
    """
    q = as_float_array(q, "q", min_ndim=2)
    k = as_float_array(k, "k", min_ndim=2)
    v = as_float_array(v, "v", min_ndim=2)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q has shape {q.shape} and k has shape {k.shape}: their last axis (dk) must match")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k has shape {k.shape} and v has shape {v.shape}: they need the same number of keys (Tk)")
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise ValueError(f"the batch axes of q {q.shape}, k {k.shape} and v {v.shape} do not broadcast") from None
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ np.swapaxes(k, -1, -2)) * float(scale)  # (..., Tq, Tk); float keeps float32 as is
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise ValueError(
                f"mask must be boolean (True = may attend), got dtype {m.dtype}; "
                "build it with causal_mask, padding_mask or a comparison"
            )
        target = batch + scores.shape[-2:]
        try:
            fits = np.broadcast_shapes(m.shape, target) == target
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"mask of shape {m.shape} does not broadcast to the scores' shape {target}")
        scores = np.where(m, scores, -np.inf)
    weights = softmax(scores, axis=-1)  # (..., Tq, Tk)
    return weights @ v, weights  # (..., Tq, dv), (..., Tq, Tk)


# -------------------------------------------------------------- chapter 3: self-attention
def self_attention(x, W_q, W_k, W_v):
    r"""Single-head self-attention: every token of a sequence attends to every token of it.

    .. math::
        \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V, \qquad
        Q = X W_q, \quad K = X W_k, \quad V = X W_v

    Args:
        x: ``(..., T, d_model)``, one row per token.
        W_q, W_k: ``(d_model, d_k)``, applied as ``x @ W`` (the token on the left).
        W_v: ``(d_model, d_v)``.

    Returns:
        ``(output, weights)`` of shapes ``(..., T, d_v)`` and ``(..., T, T)``.
    """
    x = as_float_array(x, "x", min_ndim=2)
    W = {name: as_float_array(M, name) for name, M in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v))}
    for name, M in W.items():
        if M.ndim != 2 or M.shape[0] != x.shape[-1]:
            raise ValueError(f"{name} has shape {M.shape} but x has shape {x.shape}: {name} must be "
                             f"(d_model, ...) with d_model = x.shape[-1] = {x.shape[-1]}")
    if W["W_q"].shape[1] != W["W_k"].shape[1]:
        raise ValueError(f"W_q {W['W_q'].shape} and W_k {W['W_k'].shape} need the same number of columns (d_k)")
    return scaled_dot_product_attention(x @ W["W_q"], x @ W["W_k"], x @ W["W_v"])  # (..., T, d_v), (..., T, T)


# ------------------------------------------------------ chapter 3: positional information
def sinusoidal_positions(T: int, d: int, base: float = 10000.0) -> np.ndarray:
    r"""The sinusoidal position encodings of "Attention Is All You Need", ``(T, d)``.

    .. math::
        PE_{p, 2i} = \sin(p\,\omega_i), \quad PE_{p, 2i+1} = \cos(p\,\omega_i),
        \quad \omega_i = \mathrm{base}^{-2i/d}

    Each pair of columns is a clock turning at its own frequency, from one turn every
    :math:`2\pi` positions down to one every :math:`2\pi \cdot \mathrm{base}` positions.
    For odd ``d`` the last column is a sine.
    """
    T, d = positive_int(T, "T"), positive_int(d, "d")
    positions = np.arange(T)[:, None]  # (T, 1)
    omega = positive_number(base, "base") ** (-np.arange(0, d, 2) / d)  # (ceil(d/2),)
    angles = positions * omega  # (T, ceil(d/2))
    pe = np.empty((T, d))
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : d // 2])
    return pe


def apply_rope(x, positions=None, base: float = 10000.0) -> np.ndarray:
    r"""Rotary position embedding (RoPE): rotate each pair of features by an angle
    proportional to the position.

    Features ``(2i, 2i+1)`` of the vector at position ``p`` are rotated by the angle
    :math:`p\,\theta_i` with :math:`\theta_i = \mathrm{base}^{-2i/d}` (adjacent pairs, as in
    the RoFormer paper and llama.cpp). Because rotations compose, the dot product of a
    rotated query at position ``m`` and a rotated key at position ``n`` depends on the
    positions only through ``n - m``.

    Args:
        x: ``(..., T, d)`` with ``d`` even.
        positions: ``(T,)`` positions (or broadcastable to ``(..., T)``); default ``0..T-1``.
        base: the frequency base.

    Returns:
        The rotated array, same shape as ``x``.
    """
    x = as_float_array(x, "x", min_ndim=2)
    T, d = x.shape[-2], x.shape[-1]
    if d % 2:
        raise ValueError(f"apply_rope needs an even feature size, got x of shape {x.shape}")
    pos = np.arange(T) if positions is None else as_float_array(positions, "positions", min_ndim=1)
    if pos.shape[-1] != T:
        raise ValueError(f"positions has shape {pos.shape} but x has shape {x.shape}: need one position per row")
    theta = positive_number(base, "base") ** (-np.arange(0, d, 2) / d)  # (d/2,)
    angles = pos[..., None] * theta  # (..., T, d/2)
    cos, sin = np.cos(angles), np.sin(angles)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each
    out = np.empty(np.broadcast_shapes(x.shape, angles.shape[:-1] + (d,)), dtype=x.dtype)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


# ---------------------------------------------------------- chapter 4: multi-head attention
def split_heads(x, num_heads: int) -> np.ndarray:
    """Split the features of ``x`` into heads: ``(B, T, E) -> (B, H, T, dh)``, with ``dh = E / H``.

    Head ``h`` gets the contiguous block of features ``h * dh .. (h + 1) * dh - 1`` of every token,
    ``out[b, h, t, j] = x[b, t, h * dh + j]``: reshape to ``(B, T, H, dh)``, then swap the token and head axes.
    """
    x = as_float_array(x, "x")
    H = positive_int(num_heads, "num_heads")
    if x.ndim != 3 or x.shape[-1] % H:
        raise ValueError(f"x must be (B, T, E) with E divisible by num_heads={H}, got shape {x.shape}")
    B, T, E = x.shape
    return x.reshape(B, T, H, E // H).transpose(0, 2, 1, 3)  # (B, T, H, dh) -> (B, H, T, dh)


def merge_heads(x) -> np.ndarray:
    """Concatenate the heads again: ``(B, H, T, dh) -> (B, T, H * dh)``, ``out[b, t, h * dh + j] = x[b, h, t, j]``;
    undoes :func:`split_heads`."""
    x = as_float_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"x must be (B, H, T, dh), got shape {x.shape}")
    B, H, T, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * dh)  # (B, T, H, dh) -> (B, T, E)


def multi_head_attention(x, W_q, W_k, W_v, W_o, num_heads: int, mask=None):
    r"""Multi-head self-attention in NumPy, without biases.

    .. math::
        \mathrm{MHA}(X) = \mathrm{concat}(h_1, \dots, h_H)\, W_o, \quad
        h_i = \mathrm{softmax}\!\left(\frac{Q_i K_i^\top}{\sqrt{d_h}}\right) V_i, \quad
        Q_i = X W_q[:, i d_h : (i+1) d_h] \ \text{(and so on for } K_i, V_i)

    Args:
        x: ``(B, T, E)``.
        W_q, W_k, W_v, W_o: ``(E, E)`` matrices, applied as ``x @ W`` (``torch.nn.Linear`` stores the transpose).
        num_heads: ``H``, a divisor of ``E``; each head has ``d_h = E / H`` features.
        mask: optional boolean array broadcastable to ``(B, H, T, T)``; True = may attend.

    Returns:
        ``(output, weights)``: ``(B, T, E)`` and the weights of every head, ``(B, H, T, T)``.
    """
    x = as_float_array(x, "x")
    if x.ndim != 3:
        raise ValueError(f"x must be (B, T, E), got shape {x.shape}")
    E = x.shape[-1]
    W = {name: as_float_array(M, name) for name, M in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v), ("W_o", W_o))}
    for name, M in W.items():
        if M.shape != (E, E):
            raise ValueError(f"{name} must be (E, E) = ({E}, {E}) for x of shape {x.shape}, got shape {M.shape}")
    q, k, v = (split_heads(x @ W[name], num_heads) for name in ("W_q", "W_k", "W_v"))  # (B, H, T, dh) each
    out, weights = scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, dh), (B, H, T, T)
    return merge_heads(out) @ W["W_o"], weights  # (B, T, E), (B, H, T, T)


# ------------------------------------- chapter 2, its exercises: a batch's mask, saturation
def attention_mask(lengths, T: int, causal: bool = False) -> np.ndarray:
    """``(B, T, T)`` boolean mask of a padded batch, True where query ``i`` of sequence ``b`` may attend to key ``j``.

    Key ``j`` must be a real token of sequence ``b``, ``j < lengths[b]`` (:func:`padding_mask`), and
    with ``causal=True`` it must not lie in the future, ``j <= i`` (:func:`causal_mask`). Padding
    hides keys, not queries: the row of a padding query still lists the real keys (its output is
    computed, then ignored). Equal to ``causal_mask(T) & padding_mask(lengths, T)``, or to
    ``padding_mask(lengths, T)`` alone, broadcast to the full shape.
    """
    if not isinstance(causal, (bool, np.bool_)):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    mask = padding_mask(lengths, T)  # (B, 1, T): the real keys
    if causal:
        mask = mask & causal_mask(T)  # (B, T, T): and not the future
    return np.broadcast_to(mask, (mask.shape[0], T, T)).copy()  # (B, T, T)


def saturating_dk(q, k, threshold: float):
    r"""The smallest width ``d_k`` at which the *unscaled* softmax saturates (chapter 2's measurement).

    Query ``i``, ``q[i]``, has its own ``m`` keys, the rows of ``k[i]``. At each width
    ``d_k = 1, 2, 4, ...`` up to ``D``, the first ``d_k`` coordinates of every vector give the
    scores :math:`s_{ij} = q_i \cdot k_{ij}`, *not* divided by :math:`\sqrt{d_k}`, and their
    softmax over the ``m`` keys gives the weights of query ``i``. The result is the smallest
    width at which the mean, over the queries, of each query's largest weight exceeds
    ``threshold``; ``None`` if no width up to ``D`` does. (Taking the first coordinates of one
    draw, rather than a new draw per width, makes the answer a function of the data alone.)

    Args:
        q: ``(n, D)``, one query per row.
        k: ``(n, m, D)``, the ``m`` keys of each query.
        threshold: in ``(0, 1]``; ``1 / m`` is uniform weights, 1 a one-hot.

    Returns:
        An ``int``, a power of 2 no larger than ``D``, or ``None``.
    """
    q = as_float_array(q, "q", min_ndim=2, max_ndim=2)
    k = as_float_array(k, "k", min_ndim=3, max_ndim=3)
    if k.shape[0] != q.shape[0] or k.shape[2] != q.shape[1]:
        raise ValueError(f"need q (n, D) and k (n, m, D); got q {q.shape} and k {k.shape}")
    threshold = probability(threshold, "threshold")
    d_k = 1
    while d_k <= q.shape[1]:
        scores = np.einsum("nd,nmd->nm", q[:, :d_k], k[:, :, :d_k])  # (n, m), unscaled
        if softmax(scores, axis=-1).max(axis=-1).mean() > threshold:
            return d_k
        d_k *= 2
    return None

