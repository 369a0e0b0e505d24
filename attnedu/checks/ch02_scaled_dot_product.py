"""Visible checks for chapter 2, *Scaled dot-product attention*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first
small enough to check by hand) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found.
The expected answers come from :mod:`attnedu.functional`, or from
:func:`additive_scores_reference` for the additive compatibility function.

When a result has the wrong numbers, the check also tries the usual mistakes
(the scale forgotten, the mask's convention inverted, the mask applied after the
softmax, ...): if the learner's result matches one of them exactly, the message
names that mistake instead of giving a general hint.

Masks are boolean arrays (True = "may attend"), which the core machinery does not
compare; :func:`check_mask_function` converts them, and says so when a mask is not
boolean at all.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from .. import functional as F
from .core import Case, CheckFailed, check_function, rows_sum_to_one

__all__ = [
    "additive_scores_reference",
    "check_additive_scores",
    "check_causal_mask",
    "check_padding_mask",
    "check_scaled_dot_product_attention",
    "check_mask_function",
    "Mistake",
    "DiagnosedCase",
]


# ------------------------------------------------------------------ machinery
@dataclass
class Mistake:
    """A typical wrong answer: what a function that makes it returns, and what to say."""

    expected: object
    explanation: str


@dataclass
class DiagnosedCase(Case):
    """A :class:`Case` that also knows the results of typical mistakes on it."""

    mistakes: list = field(default_factory=list)


#: Words of NumPy's errors about shapes: when the learner's function raises one of those,
#: the case's hint (which says what the shapes should be) is added to the message.
_SHAPE_WORDS = ("matmul", "broadcast", "shape", "aligned", "dimension")


def _about_the_call(failure: CheckFailed) -> bool:
    """True when the function never returned a result (stub, endless loop)."""
    text = str(failure)
    return "is not written yet" in text or "ran for more than" in text


def _made(fn, name: str, case: Case, mistake: Mistake, params, outputs) -> bool:
    """Does ``fn`` return exactly what ``mistake`` predicts on ``case``?"""
    probe = Case(case.args, mistake.expected, kwargs=case.kwargs, rtol=1e-6, atol=1e-9)
    try:
        check_function(fn, name, [probe], params=params, outputs=outputs, quiet=True)
    except CheckFailed:
        return False
    return True


def _run(
    fn,
    name: str,
    cases: Sequence[Case],
    *,
    params: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    properties: Sequence[Callable] = (),
    quiet: bool = False,
) -> None:
    """Like :func:`~attnedu.checks.core.check_function`, with diagnosed mistakes.

    A case's hint is added to a wrong result, and to an error about shapes (a matmul error
    from transposed keys is the usual one); when the function returned wrong numbers that
    match one of the case's mistakes, the mistake's explanation replaces the hint.
    """
    if not callable(fn):
        check_function(fn, name, [], params=params)  # raises the standard message
    for case in cases:
        plain = replace(case, hint=None)
        try:
            check_function(fn, name, [plain], params=params, outputs=outputs,
                           properties=properties, quiet=True)
        except CheckFailed as failure:
            if _about_the_call(failure) or not failure.about_values:
                raise
            extra = f"Hint: {case.hint}" if case.hint else ""
            if failure.learner_traceback is not None:  # it raised
                error = failure.learner_traceback.strip().splitlines()[-1]  # "ValueError: matmul: ..."
                if not any(word in error for word in _SHAPE_WORDS):
                    raise
            else:  # it returned a wrong result
                for mistake in getattr(case, "mistakes", []):
                    if _made(fn, name, case, mistake, params, outputs):
                        extra = mistake.explanation
                        break
            if not extra:
                raise
            raise CheckFailed(f"{failure} {extra}", failure.learner_traceback) from None
    if not quiet:
        print(f"\u2713 `{name}` passes all {len(cases)} checks.")


class _NotBoolean(BaseException):
    """Raised by the wrapper of :func:`check_mask_function` when a mask is not boolean.

    A ``BaseException``, so that the core machinery does not report it as the learner's
    function raising.
    """


def _as_numbers_if_boolean(fn, name: str):
    """Wrap ``fn`` so that a boolean result comes back as 0.0 / 1.0 for the comparison."""

    def call(*args, **kwargs):
        out = fn(*args, **kwargs)
        if out is None or callable(out):
            return out  # the core machinery explains these
        if hasattr(out, "detach") and hasattr(out, "numpy"):  # a torch tensor
            out = out.detach().cpu().numpy()
        try:
            arr = np.asarray(out)
        except Exception:
            return out  # ragged: the core machinery explains it
        if arr.dtype == bool:
            return arr.astype(np.float64)
        if arr.dtype.kind in "iuf":
            raise _NotBoolean(
                f"`{name}` returned numbers of dtype {arr.dtype}; a mask must be boolean, True where "
                "a query may attend: build it with a comparison (such as `j <= i`) or add `.astype(bool)`."
            )
        return out

    return call


def _floats(mask) -> np.ndarray:
    return np.asarray(mask, dtype=np.float64)


def check_mask_function(fn, name: str, cases: Sequence[Case], *, params: Sequence[str] = (),
                        quiet: bool = False) -> None:
    """Check a function that returns a boolean mask (True = "may attend").

    The expected results of ``cases`` are boolean arrays (or 0/1 numbers). A result that
    is numeric but not boolean fails with an explanation: a 0/1 float mask would be
    *added* to the scores by PyTorch, not used to select them.
    """
    if not callable(fn):
        check_function(fn, name, [], params=params)  # raises the standard message
    as_numbers = []
    for c in cases:
        c = replace(c, expected=_floats(c.expected))
        if isinstance(c, DiagnosedCase):
            c = replace(c, mistakes=[replace(m, expected=_floats(m.expected)) for m in c.mistakes])
        as_numbers.append(c)
    try:
        _run(_as_numbers_if_boolean(fn, name), name, as_numbers, params=params, quiet=True)
    except _NotBoolean as exc:
        raise CheckFailed(str(exc), about_values=False) from None
    except CheckFailed as failure:
        if not failure.learner_traceback:
            raise
        # leave out the frame of the wrapper above, so that only the learner's code shows
        here = re.escape(os.path.basename(__file__))
        tb = re.sub(rf'  File "[^"]*{here}".*\n(    .*\n)*', "", failure.learner_traceback)
        raise CheckFailed(str(failure), tb, about_values=failure.about_values) from None
    if not quiet:
        print(f"\u2713 `{name}` passes all {len(cases)} checks.")


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


def _attention(q, k, v, mask=None, *, scale=None, fill=-np.inf, after=False, axis=-1):
    """Scaled dot-product attention and its usual mistakes, for diagnosis.

    scale: the factor of the scores (default 1/sqrt(dk)); fill: what masked scores become;
    after: multiply the weights by the mask after the softmax instead; axis: softmax axis.
    """
    q, k, v = (np.asarray(a, dtype=float) for a in (q, k, v))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ np.swapaxes(k, -1, -2) * scale  # (..., Tq, Tk)
    if mask is not None and not after:
        scores = np.where(mask, scores, fill)
    weights = F.softmax(scores, axis=axis)
    if mask is not None and after:
        weights = weights * mask
    return weights @ v, weights


# ------------------------------------------------------------------ exercise: additive scores
def check_additive_scores(additive_scores) -> None:
    """Check ``additive_scores(q, k, W_q, W_k, w) -> (Tq, Tk)`` scores."""
    rng = np.random.default_rng(21)
    tiny = (np.array([[0.5, 0.0]]), np.array([[0.5, 0.0], [0.0, -0.5]]), np.eye(2), np.eye(2),
            np.array([1.0, 2.0]))
    square = tuple(rng.normal(size=s) for s in [(3, 3), (3, 3), (3, 3), (3, 3), (3,)])
    wide = tuple(rng.normal(size=s) for s in [(3, 4), (5, 2), (6, 4), (6, 2), (6,)])

    def no_tanh(q, k, W_q, W_k, w):
        return (q @ W_q.T)[:, None, :] @ w + ((k @ W_k.T) @ w)[None, :]

    forgot_tanh = "It looks like the tanh is missing: apply np.tanh to W_q q + W_k k before the dot product with w."
    cases = [
        DiagnosedCase(tiny, additive_scores_reference(*tiny),
                      about="the tiny example (1 query, 2 keys, W_q = W_k = identity, w = [1, 2])",
                      hint="by hand, W_q q + W_k k is [1, 0] for key 0 and [0.5, -0.5] for key 1; "
                           "their tanh, dotted with w = [1, 2], gives the scores [[0.762, -0.462]], "
                           "of shape (Tq, Tk) = (1, 2).",
                      mistakes=[Mistake(no_tanh(*tiny), forgot_tanh)]),
        DiagnosedCase(square, additive_scores_reference(*square),
                      hint="W_q has shape (h, dq), so W_q q_i for every query at once is q @ W_q.T.",
                      mistakes=[
                          Mistake(additive_scores_reference(square[0], square[1], square[2].T, square[3].T,
                                                            square[4]),
                                  "It looks like W_q and W_k are used untransposed: W_q has shape (h, dq), "
                                  "so W_q q_i for every query at once is q @ W_q.T (and likewise for the keys)."),
                          Mistake(no_tanh(*square), forgot_tanh),
                      ]),
        DiagnosedCase(wide, additive_scores_reference(*wide),
                      hint="broadcast the projected queries (Tq, 1, h) against the projected keys (1, Tk, h) "
                           "to get (Tq, Tk, h), then tanh, then @ w."),
    ]
    _run(additive_scores, "additive_scores", cases, params=["q", "k", "W_q", "W_k", "w"])


# ------------------------------------------------------------------ exercise: causal mask
_OPPOSITE = ("It is exactly the opposite of the expected mask, the convention of torch.nn.MultiheadAttention "
             "(True = blocked); here True means 'may attend'.")


def check_causal_mask(causal_mask) -> None:
    """Check ``causal_mask(T) -> (T, T)`` booleans, True where query i may attend to key j <= i."""

    def case(T, hint=None):
        good = np.tril(np.ones((T, T), dtype=bool))
        mistakes = [
            Mistake(~good, _OPPOSITE),
            Mistake(good.T, "It is transposed: row i is query i and column j is key j, and query i may "
                            "attend to the keys j <= i, on and below the diagonal (np.tril)."),
        ]
        if T > 1:
            mistakes.append(Mistake(np.tril(good, -1), "The diagonal is False: a token may attend to itself, "
                                                       "so keys j <= i are allowed, not only j < i."))
        return DiagnosedCase((T,), good, hint=hint, mistakes=mistakes)

    cases = [
        case(3, hint="by hand: [[True, False, False], [True, True, False], [True, True, True]]."),
        case(1, hint="with one token, that token may attend to itself: [[True]]."),
        case(6),
    ]
    check_mask_function(causal_mask, "causal_mask", cases, params=["T"])


# ------------------------------------------------------------------ exercise: padding mask
def check_padding_mask(padding_mask) -> None:
    """Check ``padding_mask(lengths, T) -> (B, 1, T)`` booleans, True for the real tokens."""

    def case(lengths, T, hint=None):
        lengths = np.asarray(lengths)
        good = F.padding_mask(lengths, T)
        mistakes = [
            Mistake(~good, _OPPOSITE + " The real tokens are True, the padding is False."),
            Mistake(F.padding_mask(np.minimum(lengths + 1, T), T),
                    "One token too many is True: position t is a real token when t < lengths[b] "
                    "(positions count from 0)."),
        ]
        return DiagnosedCase((lengths, T), good, about=f"lengths = np.array({lengths.tolist()}), T = {T}",
                             hint=hint, mistakes=mistakes)

    cases = [
        case([2], 3, hint="by hand: one sequence with 2 real tokens followed by 1 padding token gives "
                          "[[[True, True, False]]], of shape (1, 1, 3)."),
        case([3, 1, 0, 4], 4, hint="the shape is (B, 1, T): `np.arange(T) < lengths[:, None]` has shape (B, T), "
                                   "and `[:, None, :]` adds the middle axis, which lets the mask broadcast "
                                   "over the queries."),
        case([5, 2], 7),
    ]
    check_mask_function(padding_mask, "padding_mask", cases, params=["lengths", "T"])


# ------------------------------------------------------------------ exercise: attention
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

    def mask_mistakes(args, mask):
        return [
            Mistake(_attention(*args), "It looks like the mask is ignored: set the scores where "
                                             "mask is False to -np.inf before the softmax."),
            Mistake(_attention(*args, ~mask), "The mask's convention is inverted: True means 'may attend', "
                                              "so keep the scores where mask is True and set the others "
                                              "to -np.inf (np.where(mask, scores, -np.inf))."),
            Mistake(_attention(*args, mask, after=True),
                    "The mask is applied after the softmax, so the weights no longer sum to 1: "
                    "set the masked scores to -np.inf before the softmax instead."),
        ]

    with_mask = "True means 'may attend': keep those scores and set the others to -np.inf, before the softmax."
    scale_mistakes = [
        Mistake(_attention(q3, k3, v3, scale=1.0),
                "It looks like the scale is missing: divide the scores by sqrt(d_k) = sqrt(q.shape[-1])."),
        Mistake(_attention(q3, k3, v3, scale=1 / 4),
                "The scores are divided by d_k; divide them by sqrt(d_k) instead."),
        Mistake(_attention(q3, k3, v3, axis=-2),
                "The softmax runs over the queries (axis -2); each query's weights over the keys "
                "must sum to 1: softmax(scores, axis=-1)."),
    ]
    cases = [
        DiagnosedCase((q3, k3, v3), F.scaled_dot_product_attention(q3, k3, v3),
                      about="the three-token example of the chapter",
                      hint="by hand, q @ k.T = [[2, 0, 1], [0, 2, 2], [2, 2, 2]]; divide it by sqrt(d_k) = 2, "
                           "then take the softmax of each row.",
                      mistakes=scale_mistakes),
        Case(cross, F.scaled_dot_product_attention(*cross),
             hint="with 2 queries and 5 keys the scores q @ k.T have shape (Tq, Tk) = (2, 5), "
                  "and the output has shape (Tq, dv) = (2, 4)."),
        Case(batch, F.scaled_dot_product_attention(*batch),
             hint="with a batch axis, k.T reverses *all* the axes; swap only the last two: "
                  "np.swapaxes(k, -1, -2)."),
        DiagnosedCase(causal, F.scaled_dot_product_attention(*causal, causal_m), kwargs={"mask": causal_m},
                      about="a batch of 2 sequences of 4 tokens with a causal mask of shape (4, 4)",
                      hint=with_mask, mistakes=mask_mistakes(causal, causal_m)),
        DiagnosedCase(padded, F.scaled_dot_product_attention(*padded, padding_m), kwargs={"mask": padding_m},
                      about="a batch of 2 sequences with a padding mask of shape (2, 1, 4)",
                      hint="a mask of shape (B, 1, Tk) broadcasts over the queries, and "
                           "np.where(mask, scores, -np.inf) handles that by itself. " + with_mask,
                      mistakes=mask_mistakes(padded, padding_m)),
        DiagnosedCase(empty, F.scaled_dot_product_attention(*empty, empty_m), kwargs={"mask": empty_m},
                      about="a mask whose second query may attend to no key at all",
                      hint="a query whose keys are all masked must get zero weights and a zero output: "
                           "the library's softmax (imported at the top) does that, where a hand-written "
                           "one computes 0 / 0 = NaN.",
                      mistakes=[Mistake(_attention(*empty, empty_m, fill=-1e9),
                                        "The fully masked query gets uniform weights: fill the masked scores "
                                        "with -np.inf, not a large negative number, so that a query with "
                                        "nothing to attend to gets zero weights.")]
                      + mask_mistakes(empty, empty_m)),
        Case(big, F.scaled_dot_product_attention(*big), rtol=1e-5, atol=1e-6,
             hint="large scores need a stable softmax: use `softmax` from attnedu.functional."),
    ]
    _run(scaled_dot_product_attention, "scaled_dot_product_attention", cases,
         params=["q", "k", "v"], outputs=("output", "weights"),
         properties=[rows_sum_to_one(allow_zero_rows=True)])
