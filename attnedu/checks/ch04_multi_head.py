"""Visible checks for chapter 4, *Multi-head attention*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first
small enough to check by hand, each later one adding one new thing that can go
wrong) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found.
Because a failure on case ``k`` means that cases ``1 .. k-1`` passed, each case's
hint names the mistake that case is there to catch; a result that equals one of the
typical wrong implementations below is named instead (``Likely cause: ...``).

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value. Conventions are
NumPy's: a projection matrix ``W`` of shape ``(d_in, E)`` acts as ``x @ W``
(``torch.nn.Linear`` stores the transpose, ``(E, d_in)``).
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .core import Case, check_function, rows_sum_to_one

__all__ = [
    "split_heads_reference",
    "merge_heads_reference",
    "multi_head_attention_reference",
    "mha_parameter_count_reference",
    "mha_flops_reference",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
    "check_mha_parameter_count",
    "check_mha_flops",
]


# ------------------------------------------------------------------- references
def _heads(num_heads) -> int:
    if isinstance(num_heads, bool) or int(num_heads) != num_heads or num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
    return int(num_heads)


def split_heads_reference(x, num_heads: int) -> np.ndarray:
    """Split the features of ``x`` into heads: ``(B, T, E) -> (B, H, T, dh)``.

    Head ``h`` gets the contiguous block of features ``h * dh .. (h + 1) * dh - 1``
    of every token, with ``dh = E / H``.
    """
    x = np.asarray(x, dtype=float)
    H = _heads(num_heads)
    if x.ndim != 3 or x.shape[-1] % H:
        raise ValueError(f"x must be (B, T, E) with E divisible by num_heads={H}, got shape {x.shape}")
    B, T, E = x.shape
    return x.reshape(B, T, H, E // H).transpose(0, 2, 1, 3)  # (B, T, H, dh) -> (B, H, T, dh)


def merge_heads_reference(x) -> np.ndarray:
    """Concatenate the heads again: ``(B, H, T, dh) -> (B, T, H * dh)``; undoes :func:`split_heads_reference`."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 4:
        raise ValueError(f"x must be (B, H, T, dh), got shape {x.shape}")
    B, H, T, dh = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, H * dh)  # (B, T, H, dh) -> (B, T, E)


def multi_head_attention_reference(x, W_q, W_k, W_v, W_o, num_heads: int, mask=None):
    r"""Multi-head self-attention in NumPy, without biases.

    .. math::
        \mathrm{MHA}(X) = \mathrm{concat}(h_1, \dots, h_H)\, W_o, \quad
        h_i = \mathrm{softmax}\!\left(\frac{Q_i K_i^\top}{\sqrt{d_h}}\right) V_i, \quad
        Q_i = X W_q[:, i d_h : (i+1) d_h] \ \text{(and so on for } K_i, V_i)

    Args:
        x: ``(B, T, E)``.
        W_q, W_k, W_v, W_o: ``(E, E)`` matrices, applied as ``x @ W``.
        num_heads: ``H``, a divisor of ``E``.
        mask: optional boolean array broadcastable to ``(B, H, T, T)``; True = may attend.

    Returns:
        ``(output, weights)``: ``(B, T, E)`` and the weights of every head, ``(B, H, T, T)``.
    """
    x = np.asarray(x, dtype=float)
    q = split_heads_reference(x @ W_q, num_heads)  # (B, H, T, dh)
    k = split_heads_reference(x @ W_k, num_heads)  # (B, H, T, dh)
    v = split_heads_reference(x @ W_v, num_heads)  # (B, H, T, dh)
    out, weights = F.scaled_dot_product_attention(q, k, v, mask=mask)  # (B, H, T, dh), (B, H, T, T)
    return merge_heads_reference(out) @ W_o, weights  # (B, T, E), (B, H, T, T)


def mha_parameter_count_reference(embed_dim: int, kdim: int | None = None, vdim: int | None = None,
                                  bias: bool = True) -> int:
    """Number of parameters of ``torch.nn.MultiheadAttention(embed_dim, H, kdim=, vdim=, bias=)``.

    ``W_q`` is ``E x E``, ``W_k`` is ``kdim x E``, ``W_v`` is ``vdim x E``, ``W_o`` is ``E x E``,
    and each of the four projections has a bias of size ``E``. ``H`` does not appear.
    """
    E = int(embed_dim)
    kd = E if kdim is None else int(kdim)
    vd = E if vdim is None else int(vdim)
    return E * E + kd * E + vd * E + E * E + (4 * E if bias else 0)


def mha_flops_reference(batch: int, seq_len: int, embed_dim: int, num_heads: int) -> int:
    """Floating-point operations of the matrix products in one self-attention forward pass.

    A product of an ``(m, k)`` and a ``(k, n)`` matrix costs ``2 m k n`` FLOPs (one multiply
    and one add per term). With ``B, T, E, H`` and ``dh = E / H``:

    * the four projections (q, k, v and the output): ``4 * 2 B T E^2``;
    * the scores ``Q K^T`` of every head: ``2 B H T^2 dh = 2 B T^2 E``;
    * the weighted sums of the values: the same again.

    Softmax, scaling and biases are ignored: they grow like ``B H T^2`` or ``B T E``, not
    like a product of three sizes.
    """
    B, T, E, H = int(batch), int(seq_len), int(embed_dim), _heads(num_heads)
    if E % H:
        raise ValueError(f"embed_dim={E} is not divisible by num_heads={H}")
    dh = E // H
    projections = 4 * 2 * B * T * E * E
    attention = 2 * (2 * B * H * T * T * dh)  # scores, then the weighted sum
    return projections + attention


# ------------------------------------------------------------ typical mistakes
# Wrong implementations with the learner's signature, each with the sentence that names it
# (shown after "Likely cause:"). One that happens to be right on a case is never named there.
_SPLIT_MISTAKES = [
    (lambda x, H: x.reshape(x.shape[0], H, x.shape[1], x.shape[2] // H),
     "the result equals x.reshape(B, H, T, dh): a reshape alone puts features of different tokens "
     "into one head's rows; reshape to (B, T, H, dh) first, then swap axes 1 and 2."),
    (lambda x, H: x.reshape(*x.shape[:2], x.shape[2] // H, H).transpose(0, 3, 1, 2),
     "each head takes every H-th feature: head h must take the contiguous block "
     "x[..., h*dh:(h+1)*dh], so reshape to (B, T, H, dh), not (B, T, dh, H)."),
]

_MERGE_MISTAKES = [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1),
     "the result equals x.reshape(B, T, H * dh): a reshape alone mixes the tokens up; transpose "
     "to (B, T, H, dh) first, then reshape."),
    (lambda x: x.transpose(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
     "the heads' features are interleaved: each head's dh features must stay together, so "
     "transpose to (B, T, H, dh), not (B, T, dh, H)."),
]


def _weights(E, kdim=None, vdim=None):
    return 2 * E * E + (kdim or E) * E + (vdim or E) * E


_COUNT_MISTAKES = [
    (lambda E, kdim=None, vdim=None, bias=True: _weights(E, kdim, vdim),
     "it counts the weight matrices only: each of the four projections also has a bias vector of E numbers."),
    (lambda E, kdim=None, vdim=None, bias=True: _weights(E, kdim, vdim) + 3 * E * bias,
     "it counts three bias vectors: the output projection has a bias too, so there are 4 * E bias numbers."),
    (lambda E, kdim=None, vdim=None, bias=True: _weights(E, kdim, vdim) + 4 * E,
     "it counts biases although bias=False."),
    (lambda E, kdim=None, vdim=None, bias=True: 4 * E * E + 4 * E * bias,
     "it ignores kdim and vdim: W_k is kdim x E and W_v is vdim x E."),
    (lambda E, kdim=None, vdim=None, bias=True: 2 * E * E + (kdim or E) ** 2 + (vdim or E) ** 2 + 4 * E * bias,
     "it counts as if W_k were kdim x kdim: every projection outputs E features, so W_k is kdim x E "
     "and W_v is vdim x E."),
]

_FLOP_MISTAKES = [
    (lambda B, T, E, H: (8 * B * T * E * E + 4 * B * T * T * E) / 2,
     "it is half the expected count: a product of (m, k) and (k, n) matrices costs 2*m*k*n FLOPs, "
     "one multiply and one add per term."),
    (lambda B, T, E, H: 6 * B * T * E * E + 4 * B * T * T * E,
     "it leaves out the output projection, another 2*B*T*E*E."),
    (lambda B, T, E, H: 8 * B * T * E * E + 2 * B * T * T * E,
     "it counts the scores but not the weighted sum of the values, which costs as much again."),
    (lambda B, T, E, H: 8 * B * T * E * E,
     "it counts the projections only: the scores and the weighted sum cost 2*B*H*T*T*dh each."),
    (lambda B, T, E, H: 8 * B * T * E * E + 4 * B * H * T * T * E,
     "it is H times too large in the attention part: each head works on dh = E / H features, not E."),
    (lambda B, T, E, H: 6 * B * T * E * E + 4 * B * H * T * T * E,
     "it leaves out the output projection and counts each head as if it had E features, not dh = E / H."),
]


# ------------------------------------------------------------------- checks
def check_split_heads(split_heads) -> None:
    """Check ``split_heads(x, num_heads)``: ``(B, T, E) -> (B, H, T, dh)``."""
    x3 = np.arange(12.0).reshape(1, 3, 4)  # 3 tokens of 4 features: 0-3, 4-7, 8-11
    rng = np.random.default_rng(41)
    x = rng.normal(size=(2, 5, 12))
    cases = [
        Case((x3, 2), split_heads_reference(x3, 2),
             hint="by hand, head 0 holds features 0-1 of every token, [[0, 1], [4, 5], [8, 9]], "
                  "and head 1 features 2-3; the result has shape (B, H, T, dh) = (1, 2, 3, 2)."),
        Case((x3, 1), split_heads_reference(x3, 1),
             hint="with one head the result is x with a head axis of size 1: shape (B, 1, T, E)."),
        Case((x3, 4), split_heads_reference(x3, 4),
             hint="compute dh = E // num_heads from the arguments; do not fix it in advance."),
        Case((x, 3), split_heads_reference(x, 3),
             hint="read B, T and E from x.shape; every batch element is split on its own."),
        Case((x, 6), split_heads_reference(x, 6)),
    ]
    check_function(split_heads, "split_heads", cases, params=["x", "num_heads"], mistakes=_SPLIT_MISTAKES)


def check_merge_heads(merge_heads) -> None:
    """Check ``merge_heads(x)``: ``(B, H, T, dh) -> (B, T, H * dh)``."""
    x3 = np.arange(12.0).reshape(1, 3, 4)
    rng = np.random.default_rng(42)
    y = rng.normal(size=(2, 3, 5, 4))
    cases = [
        Case((split_heads_reference(x3, 2),), x3,
             hint="merge_heads undoes split_heads: token 0's row is head 0's features, then head 1's, "
                  "[0, 1, 2, 3]; transpose to (B, T, H, dh), then reshape to (B, T, H * dh)."),
        Case((split_heads_reference(x3, 1),), x3, hint="with one head, just drop the head axis."),
        Case((split_heads_reference(x3, 4),), x3, hint="read H and dh from x.shape."),
        Case((y,), merge_heads_reference(y), hint="read B, H, T and dh from x.shape."),
    ]
    check_function(merge_heads, "merge_heads", cases, params=["x"], mistakes=_MERGE_MISTAKES)


def _symmetric(rng, E):
    a = rng.normal(size=(E, E)) / np.sqrt(E)
    return (a + a.T) / 2


def check_multi_head_attention(multi_head_attention) -> None:
    """Check ``multi_head_attention(x, W_q, W_k, W_v, W_o, num_heads, mask=None) -> (output, weights)``."""
    ref = multi_head_attention_reference
    I2, I4 = np.eye(2), np.eye(4)
    tiny = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    rng = np.random.default_rng(43)
    x = rng.normal(size=(1, 3, 4))
    S = [_symmetric(rng, 4) for _ in range(3)]
    W = [rng.normal(size=(4, 4)) / 2 for _ in range(4)]
    causal = F.causal_mask(3)
    xb = rng.normal(size=(2, 5, 12))
    Wb = [rng.normal(size=(12, 12)) / np.sqrt(12) for _ in range(4)]
    both = F.causal_mask(5) & F.padding_mask(np.array([5, 3]), 5)[:, None]  # (2, 1, 5, 5)
    cases = [
        Case((tiny, I2, I2, I2, I2, 1), ref(tiny, I2, I2, I2, I2, 1),
             about="x of shape (1, 2, 2), 1 head, identity matrices",
             hint="with one head and identity matrices this is softmax(x @ x.T / sqrt(2)) @ x, with "
                  "weights [[0.67, 0.33], [0.33, 0.67]]; the weights have shape (B, H, T, T)."),
        Case((x, np.zeros((4, 4)), W[1], S[2], I4, 2), ref(x, np.zeros((4, 4)), W[1], S[2], I4, 2),
             about="x of shape (1, 3, 4), 2 heads, W_q = 0, W_o = identity",
             hint="W_q = 0 makes every weight 1/T whatever the scale, so what is left to get wrong is "
                  "how x @ W_v is split into heads and merged back: use split_heads and merge_heads."),
        Case((x, S[0], S[1], S[2], I4, 2), ref(x, S[0], S[1], S[2], I4, 2),
             about="x of shape (1, 3, 4), 2 heads, symmetric W_q, W_k, W_v, W_o = identity",
             hint="divide each head's scores by sqrt(dh), with dh = E / num_heads = 2, not by sqrt(E)."),
        Case((x, W[0], W[1], W[2], I4, 2), ref(x, W[0], W[1], W[2], I4, 2),
             about="x of shape (1, 3, 4), 2 heads, random W_q, W_k, W_v, W_o = identity",
             hint="the matrices act from the right: queries = x @ W_q, keys = x @ W_k, values = x @ W_v."),
        Case((x, W[0], W[1], W[2], W[3], 2), ref(x, W[0], W[1], W[2], W[3], 2),
             about="x of shape (1, 3, 4), 2 heads, four random matrices",
             hint="the merged heads go through the output projection: merge_heads(...) @ W_o."),
        Case((x, W[0], W[1], W[2], W[3], 2), ref(x, W[0], W[1], W[2], W[3], 2, mask=causal),
             kwargs={"mask": causal}, about="x of shape (1, 3, 4), 2 heads, a causal mask of shape (3, 3)",
             hint="pass `mask` on to scaled_dot_product_attention (True = may attend)."),
        Case((xb, *Wb, 3), ref(xb, *Wb, 3, mask=both), kwargs={"mask": both},
             about="x of shape (2, 5, 12), 3 heads, a causal and padding mask of shape (2, 1, 5, 5)",
             hint="read B, T and E from x.shape; the mask broadcasts against the (B, H, T, T) scores."),
    ]
    check_function(multi_head_attention, "multi_head_attention", cases,
                   params=["x", "W_q", "W_k", "W_v", "W_o", "num_heads"],
                   outputs=("output", "weights"), properties=[rows_sum_to_one()])


def check_mha_parameter_count(mha_parameter_count) -> None:
    """Check ``mha_parameter_count(embed_dim, kdim=None, vdim=None, bias=True)``."""
    ref = mha_parameter_count_reference
    cases = [
        Case((4,), ref(4), hint="by hand: four 4 x 4 matrices (64 numbers) and four biases of 4 (16)."),
        Case((4,), ref(4, bias=False), kwargs={"bias": False},
             hint="with bias=False only the four weight matrices remain."),
        Case((512,), ref(512)),
        Case((8,), ref(8, kdim=3, vdim=5), kwargs={"kdim": 3, "vdim": 5},
             hint="W_k turns keys of kdim features into E features (kdim x E), W_v values of vdim "
                  "features (vdim x E); the biases still have E numbers each."),
        Case((8,), ref(8, kdim=3), kwargs={"kdim": 3}, hint="vdim=None means vdim = embed_dim."),
        Case((6,), ref(6, kdim=2, vdim=9, bias=False), kwargs={"kdim": 2, "vdim": 9, "bias": False}),
    ]
    check_function(mha_parameter_count, "mha_parameter_count", cases, params=["embed_dim"],
                   mistakes=_COUNT_MISTAKES)


def check_mha_flops(mha_flops) -> None:
    """Check ``mha_flops(batch, seq_len, embed_dim, num_heads)`` (matrix products only)."""
    ref = mha_flops_reference
    cases = [
        Case((1, 3, 2, 1), ref(1, 3, 2, 1),
             hint="by hand: four projections of 2*B*T*E*E = 2*1*3*2*2 = 24 FLOPs each (96), then the "
                  "scores and the weighted sum, 2*B*H*T*T*dh = 2*1*1*3*3*2 = 36 each (72): 168 in all."),
        Case((2, 3, 4, 2), ref(2, 3, 4, 2),
             hint="with H heads each head has dh = E / H features: the scores cost 2*B*H*T*T*dh."),
        Case((8, 1024, 768, 12), ref(8, 1024, 768, 12)),
        Case((1, 4096, 64, 4), ref(1, 4096, 64, 4)),
    ]
    check_function(mha_flops, "mha_flops", cases, params=["batch", "seq_len", "embed_dim", "num_heads"],
                   mistakes=_FLOP_MISTAKES)
