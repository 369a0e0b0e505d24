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
# ------------------------------------------------------------------ why divide by sqrt(d_k): predict, then measure
def _spread_answer():  # the chapter's experiment, small: how much wider q . k spreads at d_k = 256 than at 64
    rng = np.random.default_rng(0)
    std = {d: np.sum(rng.normal(size=(4000, d)) * rng.normal(size=(4000, d)), axis=-1).std() for d in (64, 256)}
    growth = {"a": 1, "b": 2, "c": 4, "d": 16}
    return min(growth, key=lambda c: abs(np.log(growth[c] * std[64] / std[256])))
def _spread_cases():
    return [Case(mistakes=[
        ("a", "the products do cancel on average, so q . k stays centred on 0, but the variances of independent terms "
              "add up: Var(q . k) = d_k, and the typical size grows like sqrt(d_k)."),
        ("c", "4 times is how the variance grows (it equals d_k); the standard deviation is its square root, so it "
              "grows sqrt(4) = 2 times."),
        ("d", "q . k is a sum of d_k terms, not of d_k squared: its variance grows 4 times, its standard deviation 2 "
              "times.")])]
def _saturating_with(q, k, threshold, *, scaled=False, each=True, axis=-1, step=None, first=True):  # the mistakes
    q, k = np.asarray(q, dtype=float), np.asarray(k, dtype=float)
    D, d_k = q.shape[1], 1
    while d_k <= D:
        cut = slice(None, d_k) if first else slice(D - d_k, None)
        scores = np.einsum("nd,nmd->nm", q[:, cut], k[:, :, cut]) / (np.sqrt(d_k) if scaled else 1.0)
        weights = F.softmax(scores, axis=axis)
        if (weights.max(axis=-1).mean() if each else weights.max()) > threshold:
            return d_k
        d_k = d_k + step if step else 2 * d_k
    return None
def _saturation_case(seed, n, m, D, threshold, hint=None):
    rng = np.random.default_rng(seed)
    return Case((rng.normal(size=(n, D)), rng.normal(size=(n, m, D)), threshold), hint=hint,
                about=f"{n} queries of {m} random keys each, D = {D}, threshold = {threshold}")
_TINY_Q, _TINY_K = np.array([[1.0, 1.0]]), np.array([[[1.0, 1.0], [0.0, 0.0]]])
def _saturation_cases():
    return [Case((_TINY_Q, _TINY_K, 0.8), about="q = [[1, 1]], k = [[[1, 1], [0, 0]]], threshold = 0.8", hint="by "
                 "hand: at d_k = 1 the scores are [1, 0] and the largest weight is 0.731; at d_k = 2 they are [2, 0] "
                 "and it is 0.881, the first above 0.8: the answer is 2."),
            _saturation_case(23, 200, 16, 256, 0.5, "take each query's largest weight, then the mean over the "
                             "queries."),
            _saturation_case(23, 200, 16, 256, 0.85, "the scores are the raw dot products, not divided by sqrt(d_k)."),
            _saturation_case(23, 200, 16, 256, 0.95, "no width up to D reaches the threshold here: return None.")]
def _saturation_hidden():
    return [Case((_TINY_Q, _TINY_K, 0.7)), _saturation_case(230, 300, 4, 128, 0.7),
            _saturation_case(231, 100, 64, 512, 0.9), _saturation_case(231, 100, 64, 512, 0.35),
            _saturation_case(232, 50, 16, 100, 0.75), _saturation_case(232, 50, 16, 100, 0.85),
            _saturation_case(233, 1, 8, 32, 0.6)]
# ------------------------------------------------------------------ masks
_OPPOSITE = ("it is exactly the opposite of the expected mask, the convention of torch.nn.MultiheadAttention "
             "(True = blocked); here True means 'may attend'.")
def _mask_with(lengths, T, causal=False, *, invert=False, transposed=False, diagonal=True, extra=0, queries=False,
               use_causal=True, use_padding=True, always_causal=False):  # a batch's mask with the usual mistakes
    lengths = np.asarray(lengths)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]  # (T, 1) queries, (1, T) keys
    real = np.arange(T)[None, :] < np.minimum(lengths[:, None] + extra, T)  # (B, T)
    mask = real[:, None, :] if use_padding else np.ones((len(lengths), 1, T), dtype=bool)  # (B, 1, T)
    if queries:
        mask = mask & real[:, :, None]  # (B, T, T): padding queries hidden too
    if (causal and use_causal) or always_causal:
        blocked = (j < i) if transposed else (j > i)  # (T, T): the future (the past, transposed)
        mask = mask & ~(blocked | (i == j) if not diagonal else blocked)
    mask = np.broadcast_to(mask, (len(lengths), T, T))
    return ~mask if invert else mask.copy()
def _mask_case(lengths, T, causal, hint=None):
    lengths = np.asarray(lengths)
    return Case((lengths, T), {"causal": causal}, hint=hint,
                about=f"lengths = np.array({lengths.tolist()}), T = {T}, causal={causal}")
def _mask_cases():
    return [_mask_case([2], 3, True, "by hand: [[[True, False, False], [True, True, False], [True, True, False]]], of "
                       "shape (B, T, T) = (1, 3, 3): key 2 is padding, and the third query, padding itself, still sees "
                       "the two real keys."),
            _mask_case([2], 3, False, "without the causal part every query of a sequence gets the same row, its real "
                       "keys: [[True, True, False]] three times, still of shape (1, 3, 3)."),
            _mask_case([3, 1, 0, 4], 4, True, "entry [b, i, j] is True when j < lengths[b] and j <= i; a sequence of "
                       "length 0 has no key at all."), _mask_case([5, 2], 7, False)]
def _mask_hidden():
    cases = [([0], 1, False), ([0], 1, True), ([1, 1], 2, True), ([9, 0, 4, 9], 9, True), ([9, 0, 4, 9], 9, False),
             ([2, 4], 10, True), (np.array([3, 5, 2], np.int32), 5, True), (np.arange(12), 12, True)]
    return [_mask_case(*c) for c in cases]
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

# ------------------------------------------------------------------ debug: a leak from the future
def _masked_self_attention(x, **mistake):  # the fixed function; each mistake a setting of _attention_with
    x = np.asarray(x, dtype=float)
    return _attention_with(x, x, x, F.causal_mask(len(x)), **mistake)
def _leak_cases():
    rng = np.random.default_rng(26)
    return [Case((np.array([[1.0, 0.0], [1.0, 1.0]]),), about="x = [[1, 0], [1, 1]]", hint="by hand: the first token "
                 "may see only itself, so its weights are [1, 0] and its output is x[0] = [1, 0]; the second token's "
                 "scores are [0.707, 1.414], its weights [0.330, 0.670]."),
            Case((rng.normal(size=(5, 8)),), hint="each query's weights over the keys it may see must sum to 1."),
            Case((rng.normal(size=(7, 3)) * 20,), hint="large scores need a stable softmax.")]
def _leak_hidden():
    rng = np.random.default_rng(262)
    return [Case((rng.normal(size=(1, 4)),)), Case((rng.normal(size=(12, 16)),)),
            Case((rng.normal(size=(6, 5)).astype(np.float32),), rtol=1e-4, atol=1e-5),
            Case((np.ones((4, 2)),), expected=(np.ones((4, 2)), np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]))]

EXERCISES = ExerciseSet(
    Exercise("additive_scores", ["q", "k", "W_q", "W_k", "w"], F.additive_scores, _additive_cases, _additive_hidden,
             wrong=_additive_with, mistakes=[
        ({"transposed": False}, "W_q and W_k are used untransposed: W_q has shape (h, dq), so W_q q_i for every query "
         "at once is q @ W_q.T (and likewise for the keys)."),
        ({"tanh": False}, "the tanh is missing: apply np.tanh to W_q q + W_k k before the dot product with w.")]),
    Exercise("predict_spread", [], _spread_answer, _spread_cases, _spread_cases, compare="choice",
             options={"choices": ("a", "b", "c", "d")}, kind="predict", explain=(
        "Each product q_i k_i has mean 0 and variance 1, and the variances of independent terms add up: "
        "Var(q . k) = d_k. The standard deviation, its square root, doubles when d_k grows 4 times; dividing the "
        "scores by sqrt(d_k), not by d_k, brings it back to 1 at every width.")),
    Exercise("saturating_dk", ["q", "k", "threshold"], F.saturating_dk, _saturation_cases, _saturation_hidden,
             compare="value", options={"none_allowed": True}, kind="measure", wrong=_saturating_with, mistakes=[
        ({"scaled": True}, "the scores are divided by sqrt(d_k): that measures scaled attention, which does not "
         "saturate; the question is about the raw dot products."),
        ({"each": False}, "it compares the largest weight of all the queries together; take each query's largest "
         "weight (over its keys), then the mean over the queries."),
        ({"axis": 0}, "the softmax runs over the queries (axis 0); each query's weights over its own keys must sum to "
         "1: softmax(scores, axis=-1)."),
        ({"step": 1}, "it tries every width 1, 2, 3, ...; try only the powers of 2: 1, 2, 4, 8, ... up to D."),
        ({"first": False}, "it uses the last d_k coordinates of each vector; use the first ones, q[:, :d_k].")]),
    Exercise("attention_mask", ["lengths", "T"], F.attention_mask, _mask_cases, _mask_hidden, compare="mask",
             wrong=_mask_with, mistakes=[
        ({"invert": True}, _OPPOSITE + " The real, visible keys are True."),
        ({"transposed": True}, "the causal part is transposed: row i is query i and column j is key j, and query i may "
         "attend to the keys j <= i, on and below the diagonal (np.tril), not to the future."),
        ({"diagonal": False}, "the diagonal is False: a token may attend to itself, so keys j <= i are allowed, not "
         "only j < i."),
        ({"extra": 1}, "one key too many is True: key j is a real token when j < lengths[b] (positions count from 0)."),
        ({"queries": True}, "the rows of the padding queries are hidden too: a padding mask hides keys (columns), not "
         "queries; a padding query still sees the real keys, and its output is ignored later."),
        ({"use_causal": False}, "causal=True is ignored: also hide the future, the keys j > i."),
        ({"always_causal": True}, "the causal part is applied even when causal=False."),
        ({"use_padding": False}, "the padding is ignored: key j of sequence b is padding when j >= lengths[b].")]),
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
    Exercise("masked_self_attention", ["x"], _masked_self_attention, _leak_cases, _leak_hidden,
             outputs=("output", "weights"), properties=[rows_sum_to_one()], wrong=_masked_self_attention,
             kind="debug", mistakes=[
        ({"axis": 0}, "the softmax normalises each column, over the queries (axis 0): key j's weight is shared out "
         "among the queries that may see it, so the weights of query 0 depend on every later query, a leak the mask "
         "cannot stop. Normalise each query's row over the keys: softmax(scores, axis=-1)."),
        ({"use_mask": False}, "the mask is not applied: set the scores of the future keys (j > i) to -np.inf before "
         "the softmax."),
        ({"power": 0}, "the scale is missing: divide the scores by sqrt(d) = sqrt(x.shape[-1])."),
        ({"after": True}, "the mask is applied after the softmax, so the weights no longer sum to 1: set the masked "
         "scores to -np.inf before the softmax instead.")]),
)
check = EXERCISES.check
reveal = EXERCISES.reveal
