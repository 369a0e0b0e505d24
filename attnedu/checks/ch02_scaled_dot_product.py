"""Chapter 2's exercises, *Scaled dot-product attention*, as records (see :mod:`attnedu.checks`). Masks are
boolean (True = "may attend") and compared as such: a 0/1 float mask would be *added* to the scores by PyTorch."""

import numpy as np

from .. import functional as F
from . import Case, Exercise, ExerciseSet, rows_sum_to_one

def _normal(rng, *shapes):  # arrays of standard normal numbers, drawn in this order
    return tuple(rng.normal(size=s) for s in shapes)
# ------------------------------------------------------------------ additive scores
def _additive_with(q, k, W_q, W_k, w, *, tanh=True, transposed=True):  # untransposed raises unless shapes are square
    W_q, W_k = (W_q, W_k) if transposed else (np.asarray(W_q).T, np.asarray(W_k).T)
    return F.additive_scores(q, k, W_q, W_k, w) if tanh else (q @ W_q.T)[:, None, :] @ w + ((k @ W_k.T) @ w)[None, :]
def _additive_cases():
    rng = np.random.default_rng(21)
    tiny = (np.array([[0.5, 0.0]]), np.array([[0.5, 0.0], [0.0, -0.5]]), np.eye(2), np.eye(2), np.array([1.0, 2.0]))
    return [Case(tiny, about="the tiny example (1 query, 2 keys, W_q = W_k = identity, w = [1, 2])", hint="by hand, "
                 "W_q q + W_k k is [1, 0] for key 0 and [0.5, -0.5] for key 1; their tanh, dotted with w = [1, 2], "
                 "gives the scores [[0.762, -0.462]], of shape (Tq, Tk) = (1, 2)."),
            Case(_normal(rng, (3, 3), (3, 3), (3, 3), (3, 3), (3,)),
                 hint="W_q has shape (h, dq), so W_q q_i for every query at once is q @ W_q.T."),
            Case(_normal(rng, (3, 4), (5, 2), (6, 4), (6, 2), (6,)), hint="broadcast the projected queries "
                 "(Tq, 1, h) against the projected keys (1, Tk, h) to get (Tq, Tk, h), then tanh, then @ w.")]
def _additive_hidden():
    rng, sizes = np.random.default_rng(212), [(1, 1, 1, 1, 1), (4, 7, 3, 5, 6), (6, 6, 8, 8, 16), (2, 9, 10, 3, 4)]
    cases = [_normal(rng, (tq, dq), (tk, dk), (h, dq), (h, dk), (h,)) for tq, tk, dq, dk, h in sizes]
    return [Case(a) for a in cases] + [Case((100 * a[0], 100 * a[1]) + a[2:]) for a in cases[-1:]]  # a saturated tanh
# ------------------------------------------------------------------ masks
_OPPOSITE = ("it is exactly the opposite of the expected mask, the convention of torch.nn.MultiheadAttention "
             "(True = blocked); here True means 'may attend'.")
def _padding_case(lengths, T, hint=None):
    lengths = np.asarray(lengths)
    return Case((lengths, T), about=f"lengths = np.array({lengths.tolist()}), T = {T}", hint=hint)
def _padding_cases():
    return [_padding_case([2], 3, "by hand: one sequence with 2 real tokens followed by 1 padding token gives "
                                  "[[[True, True, False]]], of shape (1, 1, 3)."),
            _padding_case([3, 1, 0, 4], 4, "the shape is (B, 1, T): `np.arange(T) < lengths[:, None]` has shape "
                          "(B, T), and `[:, None, :]` adds the middle axis, which lets the mask broadcast over the "
                          "queries."), _padding_case([5, 2], 7)]
def _padding_hidden():
    lengths = [np.array([0]), np.array([1, 1]), np.array([9, 0, 4, 9]), np.array([3, 5, 2], np.int32), np.arange(12)]
    return [_padding_case(n, max(int(n.max()), 1)) for n in lengths] + [_padding_case([2, 4], 10)]
# ------------------------------------------------------------------ attention
def _attention_with(q, k, v, mask=None, *, power=0.5, fill=-np.inf, after=False, axis=-1, use_mask=True,
                    invert=False):  # attention with the usual mistakes as switches
    q, k, v = (np.asarray(a, dtype=float) for a in (q, k, v))
    mask = None if mask is None or not use_mask else (~np.asarray(mask) if invert else mask)
    scores = q @ np.swapaxes(k, -1, -2) / q.shape[-1] ** power  # (..., Tq, Tk)
    weights = F.softmax(np.where(mask, scores, fill) if mask is not None and not after else scores, axis=axis)
    weights = weights * mask if mask is not None and after else weights
    return weights @ v, weights
_WITH_MASK = "True means 'may attend': keep those scores and set the others to -np.inf, before the softmax."
def _attention_cases():
    rng = np.random.default_rng(22)
    q3 = np.array([[1.0, 0, 1, 0], [0, 2, 0, 0], [1, 1, 1, 1]])  # the chapter's example: d_k = 4, scale 1/2
    k3, v3 = np.array([[1.0, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0]]), np.array([[1.0, 0], [0, 1], [1, 1]])
    cross, batch = _normal(rng, (2, 3), (5, 3), (5, 4)), _normal(rng, (2, 4, 8), (2, 6, 8), (2, 6, 3))
    causal, padded = _normal(rng, (2, 4, 8), (2, 4, 8), (2, 4, 3)), _normal(rng, (2, 3, 5), (2, 4, 5), (2, 4, 2))
    empty, (bq, bk, bv) = _normal(rng, (3, 4), (3, 4), (3, 2)), _normal(rng, (3, 4), (5, 4), (5, 2))
    return [Case((q3, k3, v3), about="the three-token example of the chapter", hint="by hand, q @ k.T = [[2, 0, 1], "
                 "[0, 2, 2], [2, 2, 2]]; divide it by sqrt(d_k) = 2, then take the softmax of each row."),
            Case(cross, hint="with 2 queries and 5 keys the scores q @ k.T have shape (Tq, Tk) = (2, 5), and the "
                 "output has shape (Tq, dv) = (2, 4)."),
            Case(batch, hint="with a batch axis, k.T reverses *all* the axes; swap only the last two: "
                 "np.swapaxes(k, -1, -2)."),
            Case(causal, {"mask": F.causal_mask(4)}, hint=_WITH_MASK,
                 about="a batch of 2 sequences of 4 tokens with a causal mask of shape (4, 4)"),
            Case(padded, {"mask": F.padding_mask(np.array([4, 2]), 4)}, about="a batch of 2 sequences with a padding "
                 "mask of shape (2, 1, 4)", hint="a mask of shape (B, 1, Tk) broadcasts over the queries, and "
                 "np.where(mask, scores, -np.inf) handles that by itself. " + _WITH_MASK),
            Case(empty, {"mask": np.array([[True, False, False], [False, False, False], [True, True, True]])},
                 about="a mask whose second query may attend to no key at all", hint="a query whose keys are all "
                 "masked must get zero weights and a zero output: the library's softmax (imported at the top) does "
                 "that, where a hand-written one computes 0 / 0 = NaN."),
            Case((300 * bq, 300 * bk, bv), atol=1e-6,
                 hint="large scores need a stable softmax: use `softmax` from attnedu.functional.")]
def _attention_hidden():
    rng = np.random.default_rng(2024)
    B, H, T, dk, dv = 2, 3, 6, 8, 5
    (q, k), v = rng.normal(size=(2, B, H, T, dk)), rng.normal(size=(B, H, T, dv))
    c, p = F.causal_mask(T), F.padding_mask(np.array([6, 0]), T)[:, None]  # (T, T), (B, 1, 1, T)
    qx, kx, vx, f32 = q[0, 0, :4], k[0, 0], v[0, 0], tuple(a.astype(np.float32) for a in (q, k, v))  # Tq = 4, Tk = 6
    return [Case((q, k, v))] + [Case((q, k, v), {"mask": m}) for m in (c, p, c & p)] + [
        Case((qx, kx, vx), {"mask": rng.random((4, T)) < 0.5}), Case((qx * 50, kx * 50, vx)),
        Case(f32, {"mask": c}, rtol=1e-4, atol=1e-5), Case((qx, kx, vx), {"mask": None})]

EXERCISES = ExerciseSet(
    Exercise("additive_scores", ["q", "k", "W_q", "W_k", "w"], F.additive_scores, _additive_cases, _additive_hidden,
             wrong=_additive_with, mistakes=[
        ({"transposed": False}, "W_q and W_k are used untransposed: W_q has shape (h, dq), so W_q q_i for every query "
         "at once is q @ W_q.T (and likewise for the keys)."),
        ({"tanh": False}, "the tanh is missing: apply np.tanh to W_q q + W_k k before the dot product with w.")]),
    Exercise("causal_mask", ["T"], F.causal_mask, lambda: [
        Case((3,), hint="by hand: [[True, False, False], [True, True, False], [True, True, True]]."),
        Case((1,), hint="with one token, that token may attend to itself: [[True]]."), Case((6,))],
        lambda: [Case((T,)) for T in (1, 2, 5, 17, 64)], compare="mask", mistakes=[
            (lambda T: ~F.causal_mask(T), _OPPOSITE),
            (lambda T: F.causal_mask(T).T, "it is transposed: row i is query i and column j is key j, and query i may "
             "attend to the keys j <= i, on and below the diagonal (np.tril)."),
            (lambda T: np.tril(np.ones((T, T), dtype=bool), -1), "the diagonal is False: a token may attend to itself, "
             "so keys j <= i are allowed, not only j < i.")]),
    Exercise("padding_mask", ["lengths", "T"], F.padding_mask, _padding_cases, _padding_hidden, compare="mask",
             mistakes=[
        (lambda *args: ~F.padding_mask(*args), _OPPOSITE + " The real tokens are True, the padding is False."),
        (lambda lengths, T: F.padding_mask(np.minimum(lengths + 1, T), T), "one token too many is True: position t is "
         "a real token when t < lengths[b] (positions count from 0).")]),
    Exercise("scaled_dot_product_attention", ["q", "k", "v"], F.scaled_dot_product_attention, _attention_cases,
             _attention_hidden, outputs=("output", "weights"), properties=[rows_sum_to_one(allow_zero_rows=True)],
             wrong=_attention_with, mistakes=[
        ({"fill": -1e9}, "the fully masked query gets uniform weights: fill the masked scores with -np.inf, not a "
         "large negative number, so that a query with nothing to attend to gets zero weights."),
        ({"use_mask": False}, "the mask is ignored: set the scores where mask is False to -np.inf before the "
         "softmax."),
        ({"invert": True}, "the mask's convention is inverted: True means 'may attend', so keep the scores where mask "
         "is True and set the others to -np.inf (np.where(mask, scores, -np.inf))."),
        ({"after": True}, "the mask is applied after the softmax, so the weights no longer sum to 1: set the masked "
         "scores to -np.inf before the softmax instead."),
        ({"power": 0}, "the scale is missing: divide the scores by sqrt(d_k) = sqrt(q.shape[-1])."),
        ({"power": 1}, "the scores are divided by d_k; divide them by sqrt(d_k) instead."),
        ({"axis": -2}, "the softmax runs over the queries (axis -2); each query's weights over the keys must sum to 1: "
         "softmax(scores, axis=-1).")]),
)
check = EXERCISES.check
