"""Chapter 9's exercises, *The cost of attention*, as records (see :mod:`attnedu.checks`): where a block's quadratic
part overtakes the rest (a measurement, judged also on the learner's own), the online-softmax merge and the tiled
loop on NumPy arrays (queries ``(Tq, d)``, keys ``(Tk, d)``, values ``(Tk, dv)``, partial results ``(m, l, o)`` of
shapes ``(Tq,)``, ``(Tq,)``, ``(Tq, dv)``), a KV cache's bytes, and sliding-window attention with a rolling buffer."""

import numpy as np

from ..efficient.kv_cache import kv_cache_bytes
from ..efficient.measure import crossover_length
from ..efficient.tiled import online_softmax_merge, partial_attention, tiled_attention
from ..efficient.window import rolling_buffer_attention
from . import Case, Exercise, ExerciseSet


# ------------------------------------------------------------------ where the quadratic part takes over (measure)
def _crossover_with(Ts, attention_s, rest_s, *, lasting=True, ties=False, give="T", swap=False, order=True):
    Ts, a, b = (np.asarray(x, dtype=float) for x in (Ts, attention_s, rest_s))
    if swap:
        a, b = b, a
    idx = np.argsort(Ts) if order else np.arange(len(Ts))
    dearer = (a >= b) if ties else (a > b)
    picks = [int(i) for i in idx if dearer[i]]
    if lasting:
        picks = []
        for i in idx[::-1]:
            if not dearer[i]:
                break
            picks.insert(0, int(i))
    if not picks:
        return None
    i = picks[0]
    return i if give == "index" else int(Ts[i]) if float(Ts[i]).is_integer() else float(Ts[i])
def _crossover_cases():
    noisy = ([64, 128, 256, 512, 1024, 2048], [0.10, 0.31, 0.52, 1.9, 6.8, 26.0], [0.30, 0.30, 0.61, 1.2, 2.5, 5.1])
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        (([100, 200, 400], [1.0, 3.0, 9.0], [2.0, 2.0, 2.0]), "Ts = [100, 200, 400], attention_s = [1, 3, 9], "
         "rest_s = [2, 2, 2]", "by hand: attention takes longer from T = 200 on (3 > 2, 9 > 2): the answer is 200."),
        (noisy, "a noisy measurement: attention is dearer at T = 128, cheaper again at 256, dearer from 512 on",
         "a crossover is where attention stays dearer: one lucky T before it does not count. Walk down from the "
         "longest T while attention is dearer."),
        (([512, 64, 256, 128], [4.0, 0.1, 1.5, 0.4], [2.0, 0.3, 1.0, 0.5]), "the same kind of data, Ts not in order",
         "sort by T first (np.argsort), and carry the times along."),
        (([64, 128, 256], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0]), "attention never takes longer", "return None when "
         "attention is not dearer even at the longest T."),
        (([32, 64, 128], [1.0, 2.0, 4.0], [1.0, 2.0, 3.0]), "a tie at T = 32 and 64", "a tie is not 'longer': the "
         "answer is 128."),
        (([16, 32, 64, 128], [5.0, 6.0, 7.0, 8.0], [1.0, 1.0, 1.0, 1.0]), "attention dearer everywhere", "then the "
         "crossover is at (or before) the shortest T measured.")]]
def _crossover_hidden():
    rng = np.random.default_rng(909)
    cases = []
    for n, at in [(1, 0), (1, 1), (2, 1), (7, 3), (9, 9), (12, 5)]:
        Ts = 2 ** np.arange(4, 4 + n)
        rest = Ts * rng.uniform(0.8, 1.2, n) / 100
        attention = Ts ** 2 * rng.uniform(0.8, 1.2, n) / (100 * float(Ts[min(at, n - 1)]))
        attention[:at] = rest[:at] * rng.uniform(0.5, 0.99, at)  # cheaper before ...
        attention[at:] = np.maximum(attention[at:], rest[at:] * 1.01)  # ... and dearer from `at` on
        if at >= 2:
            attention[at - 2] = rest[at - 2] * 1.5  # one noisy win before the crossover
        perm = rng.permutation(n)
        cases.append(Case(([int(t) for t in Ts[perm]], attention[perm].tolist(), rest[perm].tolist())))
    return cases + [Case(([10, 20, 30, 40], [1.0, 2.5, 3.0, 5.0], [1.0, 2.0, 3.0, 4.0]))]  # a tie at 10 and at 30
_CROSSOVER = Exercise("crossover_length", ["Ts", "attention_s", "rest_s"], crossover_length, _crossover_cases,
                      _crossover_hidden, compare="value", options={"none_allowed": True}, kind="measure",
                      wrong=_crossover_with, mistakes=[
    ({"lasting": False}, "it returns the first T where attention takes longer: timings are noisy, so the crossover "
     "is the smallest T from which attention stays dearer at every longer T."),
    ({"ties": True}, "a tie counts as 'longer': compare with >, so that equal times are not a crossover."),
    ({"give": "index"}, "it returns the position in the list: return the length T itself."),
    ({"swap": True}, "it finds where the rest of the block takes longer than attention: the question is where "
     "attention (the T^2 part) overtakes the rest."),
    ({"order": False}, "it walks the lists in the order given: sort by T first, the lengths need not be in order.")])

# ------------------------------------------------------------------ the online-softmax merge
def _merge_with(m1, l1, o1, m2, l2, o2, *, rescale_l=True, rescale_o=True, use="max", guard=True):
    m1, l1, o1, m2, l2, o2 = (np.asarray(a, dtype=np.float64) for a in (m1, l1, o1, m2, l2, o2))
    m = np.maximum(m1, m2) if use == "max" else np.minimum(m1, m2)
    shift = np.where(np.isneginf(m), 0.0, m) if guard else m
    with np.errstate(invalid="ignore"):
        a1, a2 = np.exp(m1 - shift), np.exp(m2 - shift)
    ones = np.ones_like(a1)
    l = l1 * (a1 if rescale_l else ones) + l2 * (a2 if rescale_l else ones)
    o = o1 * (a1 if rescale_o else ones)[:, None] + o2 * (a2 if rescale_o else ones)[:, None]
    return m, l, o
def _blocks(seed, Tq, Tk1, Tk2, d, dv, scale=1.0, mask2=None):  # two partial results over disjoint key blocks
    rng = np.random.default_rng(seed)
    q, k, v = rng.normal(size=(Tq, d)) * scale, rng.normal(size=(Tk1 + Tk2, d)), rng.normal(size=(Tk1 + Tk2, dv))
    first = partial_attention(q, k[:Tk1], v[:Tk1])
    second = partial_attention(q, k[Tk1:], v[Tk1:], mask=mask2)
    return (*first, *second)
def _merge_cases():
    one = (np.array([0.0]), np.array([1.0]), np.array([[2.0]]), np.array([np.log(3.0)]), np.array([1.0]),
           np.array([[5.0]]))  # block 1: one key, score 0; block 2: one key, score ln 3
    masked = np.zeros((2, 3), dtype=bool)  # block 2 hidden from both queries
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        (one, "one query; block 1: m = 0, l = 1, o = [2]; block 2: m = ln 3, l = 1, o = [5]", "by hand: m = ln 3; "
         "block 1 is rescaled by e^(0 - ln 3) = 1/3, so l = 1/3 + 1 = 4/3 and o = [2/3 + 5] = [5.667]; o / l is "
         "then the softmax average of the two values, (2 + 3 * 5) / 4 = 4.25."),
        (_blocks(91, 3, 4, 5, 8, 2), "3 queries, blocks of 4 and 5 keys", "rescale BOTH l and o of each block by "
         "e^(m_i - m), with m the larger of the two maxima."),
        (_blocks(92, 4, 2, 6, 4, 3, scale=8.0), "large scores (up to about 100)", "use the maxima as given: every "
         "exponent is then <= 0 and nothing overflows."),
        (_blocks(93, 2, 3, 3, 4, 2, mask2=masked), "block 2 fully masked (m2 = -inf, l2 = 0, o2 = 0)", "a block with "
         "m = -inf adds nothing: e^(-inf - m) = 0. Make sure -inf - (-inf) never appears (it is NaN)."),
        (_blocks(94, 5, 7, 1, 16, 4), "5 queries, blocks of 7 keys and 1 key", None),
        ((np.full(2, -np.inf), np.zeros(2), np.zeros((2, 3)), np.full(2, -np.inf), np.zeros(2), np.zeros((2, 3))),
         "both blocks fully masked for both queries", "nothing seen yet: m = -inf, l = 0, o = 0, with no NaN.")]]
def _merge_hidden():
    both = np.zeros((3, 2), dtype=bool)
    cases = [Case(_blocks(s, Tq, a, b, d, dv, sc)) for s, Tq, a, b, d, dv, sc in [
        (901, 1, 1, 1, 2, 1, 1.0), (902, 6, 3, 9, 8, 8, 3.0), (903, 8, 16, 16, 32, 4, 1.0), (904, 2, 5, 2, 4, 6, 20.0)]]
    m1, l1, o1, _, _, _ = _blocks(905, 3, 4, 2, 4, 2)
    empty = (np.full(3, -np.inf), np.zeros(3), np.zeros((3, 2)))
    return cases + [Case((*empty, m1, l1, o1)), Case((*empty, *empty))]  # a masked first block; both masked
_MERGE = Exercise("online_softmax_merge", ["m1", "l1", "o1", "m2", "l2", "o2"], online_softmax_merge, _merge_cases,
                  _merge_hidden, outputs=("m", "l", "o"), wrong=_merge_with, mistakes=[
    ({"rescale_o": False}, "o1 and o2 are added as they are: each was computed relative to its own block's maximum, "
     "so rescale each by e^(m_i - m) before adding, as for l."),
    ({"rescale_l": False}, "l1 and l2 are added as they are: rescale each by e^(m_i - m), as for o."),
    ({"rescale_l": False, "rescale_o": False}, "nothing is rescaled: l and o of each block are relative to its own "
     "maximum; multiply them by e^(m_i - m) with m = max(m1, m2)."),
    ({"use": "min"}, "m is the smaller maximum: take the larger, np.maximum(m1, m2), so that every rescaling "
     "factor e^(m_i - m) is at most 1."),
    ({"guard": False}, "a fully masked block (m = -inf) gives NaN: when both maxima are -inf, m - m is -inf - (-inf) "
     "= NaN. Subtract 0 instead of m where m is -inf (np.where(np.isneginf(m), 0, m)).")])


# ------------------------------------------------------------------ the tiled loop
def _tiled_with(q, k, v, tile=32, causal=False, *, normalise="end", skip="after"):
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    Tq, Tk = len(q), len(k)
    out = np.zeros((Tq, v.shape[1]))
    for i in range(0, Tq, tile):
        qi = q[i:i + tile]
        m, l, o = np.full(len(qi), -np.inf), np.zeros(len(qi)), np.zeros((len(qi), v.shape[1]))
        parts = []
        for j in range(0, Tk, tile):
            if causal and (j > i + len(qi) - 1 if skip == "after" else j >= i):
                break
            mask = None
            if causal:
                mask = np.arange(i, i + len(qi))[:, None] >= np.arange(j, min(j + tile, Tk))[None, :]
            part = partial_attention(qi, k[j:j + tile], v[j:j + tile], mask)
            parts.append(part)
            m, l, o = online_softmax_merge(m, l, o, *part)
        if normalise == "end":
            with np.errstate(invalid="ignore", divide="ignore"):  # a query that saw no key: 0/0, as the mistake gives
                out[i:i + tile] = o / l[:, None]
        elif normalise == "never":
            out[i:i + tile] = o
        else:  # each tile normalised on its own, then averaged
            out[i:i + tile] = np.mean([p[2] / np.maximum(p[1], 1e-300)[:, None] for p in parts], axis=0)
    return out
def _qkv(seed, T, d, dv, S=None):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(T, d)), rng.normal(size=(S or T, d)), rng.normal(size=(S or T, dv))
def _tiled_cases():
    return [Case(args, kwargs, about=about, hint=hint, rtol=1e-7, atol=1e-9) for args, kwargs, about, hint in [
        (_qkv(95, 4, 2, 2), {"tile": 2}, "4 queries and keys, tiles of 2", "for each tile of queries: start from m = "
         "-inf, l = 0, o = 0; merge in partial_attention of every tile of keys; at the end divide o by l."),
        (_qkv(96, 7, 4, 3), {"tile": 3}, "T = 7, tiles of 3 (the last tile is shorter)", "slices past the end are "
         "simply shorter: q[i:i + tile]."),
        (_qkv(97, 6, 4, 2), {"tile": 2, "causal": True}, "T = 6, tiles of 2, causal", "causal: query i sees keys "
         "j <= i; give partial_attention the mask of this tile pair, and skip the key tiles that start after the "
         "query tile ends."),
        (_qkv(98, 5, 3, 2, S=9), {"tile": 4}, "5 queries, 9 keys, tiles of 4", "the key loop runs over the keys' "
         "length, the query loop over the queries'."),
        (_qkv(99, 16, 8, 4), {"tile": 5, "causal": True}, "T = 16, tiles of 5, causal", None)]]
def _tiled_hidden():
    return [Case(_qkv(s, T, d, dv, S), {"tile": t, "causal": c}, rtol=1e-7, atol=1e-9) for s, T, S, d, dv, t, c in [
        (991, 1, None, 2, 1, 1, False), (992, 1, None, 2, 1, 4, True), (993, 9, None, 4, 4, 3, True),
        (994, 12, 20, 8, 2, 7, False), (995, 33, None, 8, 8, 8, True), (996, 10, None, 4, 2, 10, True)]]
_TILED = Exercise("tiled_attention", ["q", "k", "v"], tiled_attention, _tiled_cases, _tiled_hidden,
                  wrong=_tiled_with, mistakes=[
    ({"normalise": "never"}, "o is returned without dividing by l: the merged o is a sum of e^(s - m) v, and the "
     "softmax divides it by the sum of the weights, o / l[:, None], once, after the last key tile."),
    ({"normalise": "each"}, "each key tile is normalised on its own and the tiles averaged: a tile's softmax over "
     "its keys is not a share of the whole row. Keep (m, l, o) unnormalised, merge, and divide once at the end."),
    ({"skip": "diagonal"}, "causal: the key tile on the diagonal is skipped, so the queries in it miss the keys at "
     "and before them in that tile (and the first tile's queries see no key at all). Skip only the key tiles that "
     "start after the query tile's last query.")])


# ------------------------------------------------------------------ the KV cache's bytes
def _kv_with(n_layer, n_kv_head, head_dim, tokens=1, batch=1, bytes_per_number=2, *, pair=True, per_layer=False):
    layers = 1 if per_layer else n_layer
    return (2 if pair else 1) * layers * n_kv_head * head_dim * tokens * batch * bytes_per_number
def _kv_cases():
    return [Case(args, kwargs, about=about, hint=hint) for args, kwargs, about, hint in [
        ((1, 1, 4), {"tokens": 1, "bytes_per_number": 4}, "1 layer, 1 KV head of 4 numbers, 1 token, float32", "by "
         "hand: a key and a value of 4 numbers, 8 numbers of 4 bytes: 32 bytes."),
        ((30, 3, 64), {"tokens": 8192}, "SmolLM2's shape (30 layers, 3 KV heads of 64), 8192 tokens, float16", "every "
         "layer caches its own keys and values: multiply by n_layer."),
        ((2, 4, 8), {"tokens": 10, "batch": 3, "bytes_per_number": 4}, "2 layers, 4 KV heads of 8, 10 tokens, a batch "
         "of 3, float32", "every sequence of the batch has its own cache: multiply by batch."),
        ((32, 8, 128), {"tokens": 4096, "bytes_per_number": 2}, "a Llama-3-8B-like shape, 4096 tokens, float16", None)]]
def _kv_hidden():
    return [Case(a, k) for a, k in [((1, 1, 1), {}), ((12, 12, 64), {"tokens": 1024, "bytes_per_number": 4}),
                                    ((24, 2, 64), {"tokens": 100, "batch": 7, "bytes_per_number": 1}),
                                    ((80, 8, 128), {"tokens": 131072})]]
_KV = Exercise("kv_cache_bytes", ["n_layer", "n_kv_head", "head_dim"], kv_cache_bytes, _kv_cases, _kv_hidden,
               compare="number", wrong=_kv_with, mistakes=[
    ({"pair": False}, "only the keys are counted: the cache holds a key AND a value for every token, the factor 2."),
    ({"per_layer": True}, "one layer's cache: every layer keeps its own keys and values, multiply by n_layer.")])


# ------------------------------------------------------------------ the rolling buffer
def _rolling_with(q, k, v, window, *, attend_first=False, unfilled=False, extra=0, scaled=True):
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    T, d = q.shape
    slots = window + extra
    bk, bv = np.zeros((slots, d)), np.zeros((slots, v.shape[1]))
    out = np.zeros((T, v.shape[1]))
    for t in range(T):
        if not attend_first:
            bk[t % slots], bv[t % slots] = k[t], v[t]
        n = slots if unfilled else min(t + (0 if attend_first else 1), slots)
        if n:
            s = bk[:n] @ q[t] / (np.sqrt(d) if scaled else 1.0)
            w = np.exp(s - s.max())
            out[t] = w @ bv[:n] / w.sum()
        if attend_first:
            bk[t % slots], bv[t % slots] = k[t], v[t]
    return out
def _rolling_cases():
    rng = np.random.default_rng(190)
    one = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return [Case(args, kwargs, about=about, hint=hint, rtol=1e-7, atol=1e-9) for args, kwargs, about, hint in [
        ((one, one, np.array([[1.0], [2.0], [3.0]]), 2), {}, "q = k = [[1, 0], [0, 1], [1, 1]], v = [[1], [2], [3]], "
         "window = 2", "by hand: position 0 sees only itself (output 1); position 2 sees keys 1 and 2, scores "
         "[1, 2] / sqrt(2), so its output is (2 + 3 e^0.707) / (1 + e^0.707) = 2.670, and key 0 is gone."),
        ((rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3)), 3), {}, "T = 6, window = 3",
         "write position t into slot t % window first, then attend over the filled slots only."),
        ((rng.normal(size=(5, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2)), 8), {}, "window = 8 longer than "
         "T = 5 (plain causal attention)", "before the buffer fills, only min(t + 1, window) slots hold keys."),
        ((rng.normal(size=(9, 8)), rng.normal(size=(9, 8)), rng.normal(size=(9, 4)), 1), {}, "window = 1",
         "a window of 1: each position sees only itself, so the output is its own value."),
        ((rng.normal(size=(20, 8)) * 3, rng.normal(size=(20, 8)), rng.normal(size=(20, 4)), 4), {},
         "T = 20, window = 4, large scores", None)]]
def _rolling_hidden():
    rng = np.random.default_rng(1909)
    return [Case((rng.normal(size=(T, d)) * sc, rng.normal(size=(T, d)), rng.normal(size=(T, dv)), w), rtol=1e-7,
                 atol=1e-9) for T, d, dv, w, sc in [(1, 2, 1, 1, 1.0), (1, 3, 2, 4, 1.0), (7, 4, 4, 7, 1.0),
                                                    (16, 8, 2, 5, 2.0), (33, 16, 8, 8, 1.0), (12, 4, 3, 2, 10.0)]]
_ROLLING = Exercise("rolling_buffer_attention", ["q", "k", "v", "window"], rolling_buffer_attention, _rolling_cases,
                    _rolling_hidden, wrong=_rolling_with, mistakes=[
    ({"attend_first": True}, "each query attends before its own key and value are written: write position t into "
     "slot t % window first, then attend (a token sees itself)."),
    ({"unfilled": True}, "the query attends over all window slots, also those not yet written: until the buffer is "
     "full, only the first min(t + 1, window) slots hold keys (the others are zeros, not keys)."),
    ({"extra": 1}, "the buffer has window + 1 slots: a window of w is the position itself and the w - 1 before it, "
     "w slots."),
    ({"scaled": False}, "the scores are not divided by sqrt(d): scaled dot-product attention, q . k / sqrt(d)."),
    ({"attend_first": True, "unfilled": True}, "the query attends before writing its own key, and over slots not "
     "yet written: write first, then attend over the min(t + 1, window) filled slots.")])

EXERCISES = ExerciseSet(_CROSSOVER, _MERGE, _TILED, _KV, _ROLLING)
check = EXERCISES.check
reveal = EXERCISES.reveal
