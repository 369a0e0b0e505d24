"""Chapter 9's exercises, *The cost of attention*, as records (see :mod:`attnedu.checks`). Written before the
chapter's notebook: the online-softmax merge and the tiled loop work on NumPy arrays (queries ``(Tq, d)``, keys
``(Tk, d)``, values ``(Tk, dv)``, partial results ``(m, l, o)`` of shapes ``(Tq,)``, ``(Tq,)``, ``(Tq, dv)``), and
``kv_cache_bytes`` counts a KV cache's bytes."""

import numpy as np

from ..efficient.kv_cache import kv_cache_bytes
from ..efficient.tiled import online_softmax_merge, partial_attention, tiled_attention
from . import Case, Exercise, ExerciseSet


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

EXERCISES = ExerciseSet(_MERGE, _TILED, _KV)
check = EXERCISES.check
reveal = EXERCISES.reveal
