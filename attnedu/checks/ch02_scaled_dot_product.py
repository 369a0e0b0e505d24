"""Visible checks for chapter 2, *Scaled dot-product attention*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first
small enough to check by hand) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found.
The expected answers come from :mod:`attnedu.functional`, or from
:func:`additive_scores_reference` for the additive compatibility function.

When a result has the wrong numbers, the check also tries the usual mistakes
(the scale forgotten, the mask's convention inverted, the mask applied after the
softmax, ...) through ``check_function(..., mistakes=...)``: if the learner's result
matches one of them exactly, the message names it ("Likely cause: ...") instead of
giving the case's hint.

Masks are boolean arrays (True = "may attend"), checked with ``boolean=True``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import functional as F
from .core import Case, check_function, rows_sum_to_one

__all__ = [
    "additive_scores_reference",
    "check_additive_scores",
    "check_causal_mask",
    "check_padding_mask",
    "check_scaled_dot_product_attention",
    "check_mask_function",
]


def check_mask_function(fn, name: str, cases: Sequence[Case], *, params: Sequence[str] = (),
                        quiet: bool = False) -> None:
    """Check a function that returns a boolean mask (True = "may attend"), as the hidden tests do.

    A numeric result is refused: a 0/1 float mask would be *added* to the scores by PyTorch.
    """
    check_function(fn, name, cases, params=params, boolean=True, quiet=quiet)


# ------------------------------------------------------------------ references
def additive_scores_reference(q, k, W_q, W_k, w) -> np.ndarray:
    r"""Additive (Bahdanau) scores :math:`s_{ij} = w^\top \tanh(W_q q_i + W_k k_j)`.

    q: (Tq, dq); k: (Tk, dk); W_q: (h, dq); W_k: (h, dk); w: (h,). Returns (Tq, Tk).

    Raises:
        ValueError: the shapes do not fit together (the message names them).
    """
    q, k = np.asarray(q, dtype=float), np.asarray(k, dtype=float)
    W_q, W_k, w = (np.asarray(a, dtype=float) for a in (W_q, W_k, w))
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


def _attention(q, k, v, mask=None, *, power=0.5, fill=-np.inf, after=False, axis=-1):
    """Scaled dot-product attention and its usual mistakes, for diagnosis.

    power: the scores are divided by d_k ** power (0: not scaled; 1: divided by d_k);
    fill: what masked scores become; after: multiply the weights by the mask after the
    softmax instead; axis: the softmax's axis.
    """
    q, k, v = (np.asarray(a, dtype=float) for a in (q, k, v))
    scores = q @ np.swapaxes(k, -1, -2) / q.shape[-1] ** power  # (..., Tq, Tk)
    if mask is not None and not after:
        scores = np.where(mask, scores, fill)
    weights = F.softmax(scores, axis=axis)
    if mask is not None and after:
        weights = weights * mask
    return weights @ v, weights


# ------------------------------------------------------------------ exercise: additive scores
def _no_tanh(q, k, W_q, W_k, w):
    return (q @ W_q.T)[:, None, :] @ w + ((k @ W_k.T) @ w)[None, :]


def _untransposed(q, k, W_q, W_k, w):  # raises (and is skipped) unless the shapes are square
    return additive_scores_reference(q, k, W_q.T, W_k.T, w)


def check_additive_scores(additive_scores) -> None:
    """Check ``additive_scores(q, k, W_q, W_k, w) -> (Tq, Tk)`` scores."""
    rng = np.random.default_rng(21)
    tiny = (np.array([[0.5, 0.0]]), np.array([[0.5, 0.0], [0.0, -0.5]]), np.eye(2), np.eye(2),
            np.array([1.0, 2.0]))
    square = tuple(rng.normal(size=s) for s in [(3, 3), (3, 3), (3, 3), (3, 3), (3,)])
    wide = tuple(rng.normal(size=s) for s in [(3, 4), (5, 2), (6, 4), (6, 2), (6,)])
    cases = [
        Case(tiny, additive_scores_reference(*tiny),
             about="the tiny example (1 query, 2 keys, W_q = W_k = identity, w = [1, 2])",
             hint="by hand, W_q q + W_k k is [1, 0] for key 0 and [0.5, -0.5] for key 1; "
                  "their tanh, dotted with w = [1, 2], gives the scores [[0.762, -0.462]], "
                  "of shape (Tq, Tk) = (1, 2)."),
        Case(square, additive_scores_reference(*square),
             hint="W_q has shape (h, dq), so W_q q_i for every query at once is q @ W_q.T."),
        Case(wide, additive_scores_reference(*wide),
             hint="broadcast the projected queries (Tq, 1, h) against the projected keys (1, Tk, h) "
                  "to get (Tq, Tk, h), then tanh, then @ w."),
    ]
    mistakes = [
        (_untransposed, "W_q and W_k are used untransposed: W_q has shape (h, dq), so W_q q_i for every "
                        "query at once is q @ W_q.T (and likewise for the keys)."),
        (_no_tanh, "the tanh is missing: apply np.tanh to W_q q + W_k k before the dot product with w."),
    ]
    check_function(additive_scores, "additive_scores", cases, params=["q", "k", "W_q", "W_k", "w"],
                   mistakes=mistakes)


# ------------------------------------------------------------------ exercise: causal mask
_OPPOSITE = ("it is exactly the opposite of the expected mask, the convention of torch.nn.MultiheadAttention "
             "(True = blocked); here True means 'may attend'.")


def check_causal_mask(causal_mask) -> None:
    """Check ``causal_mask(T) -> (T, T)`` booleans, True where query i may attend to key j <= i."""

    def lower(T, diagonal=0):
        return np.tril(np.ones((T, T), dtype=bool), diagonal)

    cases = [
        Case((3,), lower(3), hint="by hand: [[True, False, False], [True, True, False], [True, True, True]]."),
        Case((1,), lower(1), hint="with one token, that token may attend to itself: [[True]]."),
        Case((6,), lower(6)),
    ]
    mistakes = [
        (lambda T: ~lower(T), _OPPOSITE),
        (lambda T: lower(T).T, "it is transposed: row i is query i and column j is key j, and query i may "
                               "attend to the keys j <= i, on and below the diagonal (np.tril)."),
        (lambda T: lower(T, -1), "the diagonal is False: a token may attend to itself, "
                                 "so keys j <= i are allowed, not only j < i."),
    ]
    check_function(causal_mask, "causal_mask", cases, params=["T"], mistakes=mistakes, boolean=True)


# ------------------------------------------------------------------ exercise: padding mask
def check_padding_mask(padding_mask) -> None:
    """Check ``padding_mask(lengths, T) -> (B, 1, T)`` booleans, True for the real tokens."""

    def case(lengths, T, hint=None):
        lengths = np.asarray(lengths)
        return Case((lengths, T), F.padding_mask(lengths, T),
                    about=f"lengths = np.array({lengths.tolist()}), T = {T}", hint=hint)

    cases = [
        case([2], 3, hint="by hand: one sequence with 2 real tokens followed by 1 padding token gives "
                          "[[[True, True, False]]], of shape (1, 1, 3)."),
        case([3, 1, 0, 4], 4, hint="the shape is (B, 1, T): `np.arange(T) < lengths[:, None]` has shape (B, T), "
                                   "and `[:, None, :]` adds the middle axis, which lets the mask broadcast "
                                   "over the queries."),
        case([5, 2], 7),
    ]
    mistakes = [
        (lambda lengths, T: ~F.padding_mask(lengths, T),
         _OPPOSITE + " The real tokens are True, the padding is False."),
        (lambda lengths, T: F.padding_mask(np.minimum(lengths + 1, T), T),
         "one token too many is True: position t is a real token when t < lengths[b] (positions count from 0)."),
    ]
    check_function(padding_mask, "padding_mask", cases, params=["lengths", "T"], mistakes=mistakes, boolean=True)


# ------------------------------------------------------------------ exercise: attention
def _with(**mistake):
    """A wrong attention, ``scaled_dot_product_attention(q, k, v, mask=None)`` with ``mistake``."""
    return lambda q, k, v, mask=None: _attention(q, k, v, mask, **mistake)


_ATTENTION_MISTAKES = [
    (_with(fill=-1e9), "the fully masked query gets uniform weights: fill the masked scores with -np.inf, "
                       "not a large negative number, so that a query with nothing to attend to gets zero weights."),
    (lambda q, k, v, mask=None: _attention(q, k, v),
     "the mask is ignored: set the scores where mask is False to -np.inf before the softmax."),
    (lambda q, k, v, mask=None: _attention(q, k, v, None if mask is None else ~np.asarray(mask)),
     "the mask's convention is inverted: True means 'may attend', so keep the scores where mask is True "
     "and set the others to -np.inf (np.where(mask, scores, -np.inf))."),
    (_with(after=True), "the mask is applied after the softmax, so the weights no longer sum to 1: "
                        "set the masked scores to -np.inf before the softmax instead."),
    (_with(power=0), "the scale is missing: divide the scores by sqrt(d_k) = sqrt(q.shape[-1])."),
    (_with(power=1), "the scores are divided by d_k; divide them by sqrt(d_k) instead."),
    (_with(axis=-2), "the softmax runs over the queries (axis -2); each query's weights over the keys "
                     "must sum to 1: softmax(scores, axis=-1)."),
]


def check_scaled_dot_product_attention(scaled_dot_product_attention) -> None:
    """Check ``scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)``."""
    rng = np.random.default_rng(22)
    # the chapter's three-token example: d_k = 4, so the scores are divided by 2
    q3 = np.array([[1.0, 0, 1, 0], [0, 2, 0, 0], [1, 1, 1, 1]])
    k3 = np.array([[1.0, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]])
    v3 = np.array([[1.0, 0], [0, 1], [1, 1]])
    cross = (rng.normal(size=(2, 3)), rng.normal(size=(5, 3)), rng.normal(size=(5, 4)))
    batch = (rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 6, 8)), rng.normal(size=(2, 6, 3)))
    causal = (rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 4, 8)), rng.normal(size=(2, 4, 3)))
    causal_m = F.causal_mask(4)  # (4, 4)
    padded = (rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 4, 5)), rng.normal(size=(2, 4, 2)))
    padding_m = F.padding_mask(np.array([4, 2]), 4)  # (2, 1, 4)
    empty = (rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 2)))
    empty_m = np.array([[True, False, False], [False, False, False], [True, True, True]])
    big = (300 * rng.normal(size=(3, 4)), 300 * rng.normal(size=(5, 4)), rng.normal(size=(5, 2)))

    with_mask = "True means 'may attend': keep those scores and set the others to -np.inf, before the softmax."
    cases = [
        Case((q3, k3, v3), F.scaled_dot_product_attention(q3, k3, v3),
             about="the three-token example of the chapter",
             hint="by hand, q @ k.T = [[2, 0, 1], [0, 2, 2], [2, 2, 2]]; divide it by sqrt(d_k) = 2, "
                  "then take the softmax of each row."),
        Case(cross, F.scaled_dot_product_attention(*cross),
             hint="with 2 queries and 5 keys the scores q @ k.T have shape (Tq, Tk) = (2, 5), "
                  "and the output has shape (Tq, dv) = (2, 4)."),
        Case(batch, F.scaled_dot_product_attention(*batch),
             hint="with a batch axis, k.T reverses *all* the axes; swap only the last two: "
                  "np.swapaxes(k, -1, -2)."),
        Case(causal, F.scaled_dot_product_attention(*causal, causal_m), kwargs={"mask": causal_m},
             about="a batch of 2 sequences of 4 tokens with a causal mask of shape (4, 4)", hint=with_mask),
        Case(padded, F.scaled_dot_product_attention(*padded, padding_m), kwargs={"mask": padding_m},
             about="a batch of 2 sequences with a padding mask of shape (2, 1, 4)",
             hint="a mask of shape (B, 1, Tk) broadcasts over the queries, and "
                  "np.where(mask, scores, -np.inf) handles that by itself. " + with_mask),
        Case(empty, F.scaled_dot_product_attention(*empty, empty_m), kwargs={"mask": empty_m},
             about="a mask whose second query may attend to no key at all",
             hint="a query whose keys are all masked must get zero weights and a zero output: "
                  "the library's softmax (imported at the top) does that, where a hand-written "
                  "one computes 0 / 0 = NaN."),
        Case(big, F.scaled_dot_product_attention(*big), rtol=1e-5, atol=1e-6,
             hint="large scores need a stable softmax: use `softmax` from attnedu.functional."),
    ]
    check_function(scaled_dot_product_attention, "scaled_dot_product_attention", cases,
                   params=["q", "k", "v"], outputs=("output", "weights"),
                   properties=[rows_sum_to_one(allow_zero_rows=True)], mistakes=_ATTENTION_MISTAKES)
