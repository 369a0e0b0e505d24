"""Chapter 5's exercises, *The Transformer*, as records (see :mod:`attnedu.checks`). The blocks and the
cross-attention take and return torch tensors (float64 in the checks); a memory mask and an attention pattern are
boolean masks (True = may attend). ``predict_norm_placement`` is a prediction, made before the chapter's
experiment decides it."""

import math

import numpy as np
import torch
from torch import nn

from .. import functional as F
from ..nn import FeedForward, MultiHeadAttention, cross_attention, decoder_block, encoder_block
from . import Case, Exercise, ExerciseSet, rows_sum_to_one

_f64 = lambda *arrays: tuple(torch.tensor(a, dtype=torch.float64) for a in arrays)  # noqa: E731
def _block_with(x, attn, ff, norm1, norm2, norm_first=True, *, residual=True, from_norm=False, swap=False,
                norm_output=False, one_norm=False, feed=True, post_norm1=True):  # the usual mistakes as switches
    def sublayer(x, f, norm, normed=True):
        keep = x if residual else 0
        if norm_first != swap:  # pre-norm
            return keep + norm(f(x)) if norm_output else (norm(x) if from_norm else keep) + f(norm(x))
        return norm(keep + f(x)) if normed else keep + f(x)
    x = sublayer(x, lambda h: attn(h, h, h, need_weights=False)[0], norm1, post_norm1)
    return sublayer(x, ff, norm1 if one_norm else norm2) if feed else x
def _parts(seed, d, h, d_ff):  # self-attention, feed-forward and two layer norms, random weights, float64
    g = torch.Generator().manual_seed(seed)
    parts = [m.double().eval() for m in (MultiHeadAttention(d, h), FeedForward(d, d_ff), *map(nn.LayerNorm, [d, d]))]
    with torch.no_grad():
        for p in [p for m in parts[:2] for p in m.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / np.sqrt(p.shape[-1]))
        for norm in parts[2:]:  # gamma around 1, beta around 0, different for the two norms
            norm.weight.copy_(1 + 0.5 * torch.randn(d, generator=g, dtype=torch.float64))
            norm.bias.copy_(0.5 * torch.randn(d, generator=g, dtype=torch.float64))
    return tuple(parts)
def _block_cases():
    g, tiny, big = torch.Generator().manual_seed(52), _parts(520, 4, 1, 8), _parts(521, 8, 2, 16)
    x1, x2 = (2 * torch.randn(s, generator=g, dtype=torch.float64) + c for s, c in [((1, 3, 4), 1), ((2, 5, 8), -1)])
    return [Case((x, *parts), {} if nf else {"norm_first": False}, about=f"x of shape {tuple(x.shape)}, {heads}, "
                 f"norm_first={nf}", hint=hint, rtol=1e-6, atol=1e-8) for x, parts, heads, nf, hint in [
        (x1, tiny, "1 head", True, "pre-norm: x = x + attn(h, h, h)[0] with h = norm1(x), then x + ff(norm2(x)); attn "
         "returns a tuple (output, weights)."),
        (x1, tiny, "1 head", False, "post-norm: x = norm1(x + attn(x, x, x)[0]), then norm2(x + ff(x))."),
        (x2, big, "2 heads", True, "read nothing from the shapes: the modules know their sizes."),
        (x2, big, "2 heads", False, None)]]
def _block_hidden():  # the last one's parts are torch's own layer's: they follow the same conventions
    cases = []
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(502)
        for d, h, d_ff, B, T, theirs in [(4, 1, 4, 1, 1, 0), (8, 2, 32, 3, 6, 0), (12, 3, 24, 2, 9, 0),
                                         (8, 4, 16, 2, 5, 1)]:
            L = nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, batch_first=True).double() if theirs else None
            parts = ([L.self_attn, nn.Sequential(L.linear1, nn.ReLU(), L.linear2), L.norm1, L.norm2] if theirs else
                     [m.double() for m in (MultiHeadAttention(d, h), FeedForward(d, d_ff), *map(nn.LayerNorm, [d, d]))])
            for p in nn.ModuleList(parts).parameters():
                p.add_(0.3 * torch.randn_like(p))  # non-trivial norms and biases
            x = torch.randn(B, T, d, dtype=torch.float64) * 2
            cases += [Case((x, *parts), {"norm_first": nf}, rtol=1e-6, atol=1e-8) for nf in (True, False)]
    return cases
_BLOCK = Exercise("encoder_block", ["x", "attn", "ff", "norm1", "norm2"], encoder_block, _block_cases, _block_hidden,
                  wrong=_block_with, mistakes=[
    ({"residual": False}, "the residual connections are missing: each sublayer's output is added to its input, "
     "x + sublayer(...)."),
    ({"from_norm": True}, "it adds the sublayer's output to norm(x) instead of x: in pre-norm only the sublayer's "
     "input is normalised, and the residual path carries x untouched."),
    ({"swap": True}, "pre-norm and post-norm are swapped: norm_first=True means x + sublayer(norm(x)), "
     "norm_first=False means norm(x + sublayer(x))."),
    ({"norm_output": True}, "it normalises the sublayer's output, x + norm(sublayer(x)): pre-norm normalises the "
     "sublayer's input, x + sublayer(norm(x))."),
    ({"one_norm": True}, "it uses norm1 for both sublayers: the feed-forward sublayer has its own norm, norm2."),
    ({"feed": False}, "the feed-forward sublayer is missing: after the attention, x + ff(norm2(x)) (pre-norm) or "
     "norm2(x + ff(x)) (post-norm)."),
    ({"post_norm1": False}, "in post-norm it skips norm1: the attention sublayer's sum is normalised too, norm1(x "
     "+ attn(x)), before the feed-forward sublayer.")])
def _random_(modules, g, scale=1.0):  # every parameter random, ~ 1/sqrt(fan-in), in place
    with torch.no_grad():
        for p in [p for m in modules for p in m.parameters()]:
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=torch.float64) / np.sqrt(p.shape[-1]))
def _norms(d, g, n):  # n layer norms, gamma around 1 and beta around 0, different for each
    norms = [nn.LayerNorm(d).double() for _ in range(n)]
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(1 + 0.5 * torch.randn(d, generator=g, dtype=torch.float64))
            norm.bias.copy_(0.5 * torch.randn(d, generator=g, dtype=torch.float64))
    return norms
class _Projections(MultiHeadAttention):
    """The cross-attention exercise's ``attn``: its projections work, its forward refuses (the learner writes it)."""
    def forward(self, *args, **kwargs):
        raise RuntimeError("here you write the attention yourself: use attn's projections (attn.q_proj, attn.k_proj, "
                           "attn.v_proj, attn.out_proj) and attn.num_heads, not attn(...)")
def _mha(d, h, g, kind=MultiHeadAttention):  # a MultiHeadAttention with random weights, float64, no dropout
    attn = kind(d, h).double().eval()
    _random_([attn], g)
    return attn
def _mask(lengths, S):  # (B, S) booleans, True for the first lengths[b] positions (the real ones)
    return torch.from_numpy(F.padding_mask(np.asarray(lengths), S)[:, 0])

# ------------------------------------------------------------------ cross-attention
def _cross_with(x, memory, attn, memory_mask=None, *, swap=False, values_from_x=False, mask="keys", scale="head",
                split=True, transpose=True, project=True, axis=-1):  # the usual mistakes as switches
    B, T, d = x.shape
    H = attn.num_heads if split else 1
    queries, keys, values = (memory, x, x) if swap else (x, memory, x if values_from_x else memory)
    heads = lambda t: t.reshape(B, t.shape[1], H, d // H).transpose(1, 2)  # noqa: E731
    q, k, v = heads(attn.q_proj(queries)), heads(attn.k_proj(keys)), heads(attn.v_proj(values))
    scores = q @ k.transpose(-2, -1) / {"head": math.sqrt(d // H), "model": math.sqrt(d), None: 1.0}[scale]
    m = None if memory_mask is None or mask is None else memory_mask.bool()
    if m is not None and mask in ("keys", "inverted", "zero"):
        scores = scores.masked_fill(m[:, None, None, :] if mask == "inverted" else ~m[:, None, None, :],
                                    0.0 if mask == "zero" else float("-inf"))
    elif m is not None and mask == "queries":
        scores = scores.masked_fill(~m[:, None, :, None], float("-inf"))
    elif m is not None and mask == "added":
        scores = scores + m[:, None, None, :]
    weights = torch.softmax(scores, dim=axis)
    if m is not None and mask == "after":
        weights = weights * m[:, None, None, :]
    out = weights @ v  # (B, H, T, dh)
    out = (out.transpose(1, 2) if transpose else out).reshape(B, out.shape[2], d)
    return (attn.out_proj(out) if project else out), weights
def _identity_attention():  # d_model = 2, one head, every projection the identity: checkable by hand
    attn = _Projections(2, 1).double().eval()
    with torch.no_grad():
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            linear.weight.copy_(torch.eye(2, dtype=torch.float64))
            linear.bias.zero_()
    return attn
def _no_padding(arr, case):  # a property of the weights: zero at the padded memory positions
    mask = case.kwargs.get("memory_mask")
    if mask is None or arr.ndim != 4 or arr.shape[0] != mask.shape[0] or arr.shape[-1] != mask.shape[-1]:
        return None
    leak = np.abs(arr * ~np.asarray(mask, dtype=bool)[:, None, None, :]).max(initial=0.0)
    return (f"that gives weight (up to {leak:.3g}) to padded memory positions, where memory_mask is False: their "
            "scores must be -inf before the softmax, so that their weights are 0.") if leak > 1e-12 else None
def _cross_cases():
    g = torch.Generator().manual_seed(54)
    x0, m0 = _f64(np.zeros((1, 3, 2)), [[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    a1, a2 = _mha(4, 1, g, _Projections), _mha(8, 2, g, _Projections)
    r = lambda *shape: 2 * torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x1, m1, x2, m2, x3, m3 = r(1, 2, 4), r(1, 3, 4), r(2, 3, 8), r(2, 5, 8), r(2, 4, 8), r(2, 4, 8)
    return [Case(args, kw, about=about, hint=hint, rtol=1e-6, atol=1e-9) for args, kw, about, hint in [
        ((x0, m0, _identity_attention()), {"memory_mask": torch.tensor([[True, True, False]])},
         "x = three queries [0, 0], memory = [[1, 0], [0, 1], [5, 5]], memory_mask = [[True, True, False]], one "
         "head, identity projections", "by hand: every query is 0, so every score is 0; the two real positions share "
         "the weight, [0.5, 0.5, 0], and each output is their mean, [0.5, 0.5]. Without the mask it would be [2, 2]."),
        ((x1, m1, a1), {}, "x of shape (1, 2, 4), memory of shape (1, 3, 4), one head, no mask",
         "the queries come from x, the keys and the values from memory: weights of shape (B, H, T, S) = (1, 1, 2, 3); "
         "memory_mask=None means every memory position is real."),
        ((x2, m2, a2), {"memory_mask": _mask([5, 3], 5)}, "x of shape (2, 3, 8), memory of shape (2, 5, 8), 2 heads, "
         "memory_mask hiding the last 2 positions of sequence 1", "split d_model = 8 into attn.num_heads = 2 heads "
         "of 4, divide the scores by sqrt(4), and put the heads side by side again before attn.out_proj."),
        ((x3, m3, a2), {"memory_mask": _mask([2, 4], 4)}, "x and memory both of shape (2, 4, 8), 2 heads, "
         "memory_mask hiding the last 2 positions of sequence 0", "with T = S, shapes cannot tell x and memory "
         "apart: queries from x, keys and values from memory, and the mask hides keys (the last axis).")]]
def _cross_hidden():
    g, cases = torch.Generator().manual_seed(504), []
    for B, T, S, d, h, lengths in [(1, 1, 1, 4, 1, None), (1, 1, 6, 4, 2, [2]), (2, 5, 1, 6, 3, None),
                                   (3, 4, 7, 8, 2, [7, 1, 4]), (2, 6, 6, 12, 4, [3, 6]), (4, 2, 9, 16, 4, [9, 5, 2, 8]),
                                   (2, 7, 3, 8, 8, [1, 3])]:
        x, m = (2 * torch.randn(B, L, d, generator=g, dtype=torch.float64) for L in (T, S))
        kw = {} if lengths is None else {"memory_mask": _mask(lengths, S)}
        cases.append(Case((x, m, _mha(d, h, g, _Projections)), kw, rtol=1e-6, atol=1e-9))
    return cases
_CROSS = Exercise("cross_attention", ["x", "memory", "attn"], cross_attention, _cross_cases, _cross_hidden,
                  outputs=("output", "weights"), properties=[rows_sum_to_one(), _no_padding], wrong=_cross_with,
                  mistakes=[
    ({"swap": True}, "the queries come from memory and the keys and values from x: it is the decoder that asks "
     "(queries from x) and the encoder's output that answers (keys and values from memory)."),
    ({"values_from_x": True}, "the values come from x: the keys and the values both come from memory, since what a "
     "query finds in the encoder's output is what it reads."),
    ({"mask": None}, "memory_mask is ignored: the padded memory positions get weight; set their scores to -inf "
     "before the softmax."),
    ({"mask": "inverted"}, "the mask is inverted: memory_mask is True where a query may attend (the course's "
     "convention), so the scores of the False positions become -inf, not those of the True ones."),
    ({"mask": "queries"}, "the mask hides queries (rows) instead of keys (columns): a padded memory position is a "
     "key, the last axis of the (B, H, T, S) scores; reshape the (B, S) mask to (B, 1, 1, S)."),
    ({"mask": "zero"}, "the padded scores are set to 0 instead of -inf: a score of 0 still gets the weight exp(0) "
     "after the softmax; use float('-inf')."),
    ({"mask": "added"}, "it adds the boolean mask to the scores (True counts as 1): hide the padded positions with "
     "scores.masked_fill(~mask, float('-inf')) instead."),
    ({"mask": "after"}, "it masks the weights after the softmax, so the rows no longer sum to 1: mask the scores "
     "before the softmax."),
    ({"scale": "model"}, "it divides the scores by sqrt(d_model): each head divides by the square root of its own "
     "size, sqrt(d_model / n_head)."),
    ({"scale": None}, "it does not scale the scores: divide them by sqrt(d_head), d_head = d_model / n_head."),
    ({"split": False}, "it attends with one head of size d_model: split the queries, keys and values into "
     "attn.num_heads heads."),
    ({"transpose": False}, "it merges the heads without transposing: (B, H, T, d_head) must become (B, T, H, d_head) "
     "(transpose(1, 2)) before the reshape to (B, T, d_model), or heads and positions get mixed up."),
    ({"project": False}, "it leaves out the output projection: pass the merged heads through attn.out_proj."),
    ({"axis": -2}, "the softmax runs over the queries (axis -2): each query's weights over the memory positions "
     "sum to 1, so take the softmax over the last axis.")])

# ------------------------------------------------------------------ decoder block
def _decoder_with(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None, *, causal=True,
                  converted=True, residual=True, from_norm=False, post=False, cross="memory", norm_memory=False,
                  use_mask=True, order="self cross ff", norms=(1, 2, 3), feed=True, cross_module=True, fast=True):
    T = x.shape[1]  # the usual mistakes as switches
    allowed = torch.from_numpy(F.causal_mask(T))
    mask = (~allowed if converted else allowed) if causal else None
    def attend_self(h):
        return self_attn(h, h, h, attn_mask=mask, need_weights=not fast)[0]  # the paths differ on a row all masked
    def attend_memory(h):
        m = norm_of[2](memory) if norm_memory else memory
        q, kv = {"memory": (h, m), "x": (h, h), "swapped": (m, h)}[cross]
        return cross_attention(q, kv, cross_attn if cross_module else self_attn, memory_mask if use_mask else None)[0]
    norm_of = {1: norm1, 2: norm2, 3: norm3}
    norm_of = {i: norm_of[n] for i, n in zip((1, 2, 3), norms)}
    sublayers = {"self": (attend_self, norm_of[1]), "cross": (attend_memory, norm_of[2]), "ff": (ff, norm_of[3])}
    for name in order.split():
        if name == "ff" and not feed:
            continue
        f, norm = sublayers[name]
        if post:
            x = norm(x + f(x))
        else:
            h = norm(x)
            x = (h if from_norm else x if residual else 0) + f(h)
    return x
def _decoder_parts(d, h, d_ff, g):  # self-attention, cross-attention, feed-forward, three layer norms
    parts = [_mha(d, h, g), _mha(d, h, g), FeedForward(d, d_ff).double().eval()]
    _random_(parts[2:], g)
    return tuple(parts + _norms(d, g, 3))
def _decoder_cases():
    g = torch.Generator().manual_seed(55)
    tiny, big = _decoder_parts(4, 1, 8, g), _decoder_parts(8, 2, 16, g)
    r = lambda *shape: 2 * torch.randn(*shape, generator=g, dtype=torch.float64) + 0.5  # noqa: E731
    return [Case((x, m, *parts), kw, about=about, hint=hint, rtol=1e-6, atol=1e-8) for x, m, parts, kw, about, hint in [
        (r(1, 3, 4), r(1, 3, 4), tiny, {}, "x and memory of shape (1, 3, 4), 1 head, memory_mask=None",
         "three pre-norm sublayers in turn, each x = x + sublayer(norm(x)): causal self-attention (norm1), "
         "cross-attention to memory (norm2), feed-forward (norm3). attn and cross_attention return a tuple (output, "
         "weights); memory_mask=None means no padding."),
        (r(2, 4, 8), r(2, 6, 8), big, {"memory_mask": _mask([6, 2], 6)}, "x of shape (2, 4, 8), memory of shape "
         "(2, 6, 8), 2 heads, memory_mask hiding 4 positions of sequence 1", "pass memory_mask on to the "
         "cross-attention: padded memory positions must get no weight."),
        (r(2, 5, 8), r(2, 5, 8), big, {"memory_mask": _mask([3, 5], 5)}, "x and memory both of shape (2, 5, 8), "
         "2 heads, memory_mask hiding 2 positions of sequence 0", "with T = S, shapes cannot tell x and memory "
         "apart: the cross-attention's queries come from the decoder's stream, its keys and values from memory."),
        (r(1, 1, 8), r(1, 3, 8), big, {}, "one position, x of shape (1, 1, 8), memory of shape (1, 3, 8)",
         "one position may attend to itself: the causal mask keeps the diagonal."),
        (r(1, 3, 4), r(1, 5, 4), tiny, {}, "x of shape (1, 3, 4), memory of shape (1, 5, 4), 1 head, no mask",
         "the causal mask is (T, T), from x's length; the memory may be longer or shorter than x.")]]
def _decoder_hidden():  # the last one's parts come from torch's own decoder layer: the same conventions
    g, cases = torch.Generator().manual_seed(505), []
    for B, T, S, d, h, d_ff, lengths, theirs in [(1, 2, 2, 4, 1, 4, None, 0), (3, 6, 4, 8, 2, 32, [4, 1, 3], 0),
                                                 (2, 3, 9, 12, 3, 24, [9, 5], 0), (2, 7, 7, 8, 4, 16, [7, 6], 0),
                                                 (2, 5, 6, 8, 2, 16, [6, 3], 1)]:
        if theirs:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(505)
                L = nn.TransformerDecoderLayer(d, h, d_ff, dropout=0.0, batch_first=True, norm_first=True).double()
                with torch.no_grad():
                    for p in L.parameters():
                        p.add_(0.3 * torch.randn_like(p))  # non-trivial norms and biases
            parts = (*(MultiHeadAttention.from_torch(a).eval() for a in (L.self_attn, L.multihead_attn)),
                     nn.Sequential(L.linear1, nn.ReLU(), L.linear2), L.norm1, L.norm2, L.norm3)
        else:
            parts = _decoder_parts(d, h, d_ff, g)
        x, m = (2 * torch.randn(B, L_, d, generator=g, dtype=torch.float64) for L_ in (T, S))
        cases.append(Case((x, m, *parts), {} if lengths is None else {"memory_mask": _mask(lengths, S)},
                          rtol=1e-6, atol=1e-8))
    return cases
_DECODER = Exercise("decoder_block", ["x", "memory", "self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3"],
                    decoder_block, _decoder_cases, _decoder_hidden, wrong=_decoder_with, mistakes=[
    ({"causal": False}, "the self-attention has no causal mask: position t sees the positions after it, which do "
     "not exist yet when it is generated."),
    *[({"converted": False, "fast": fast}, "the causal mask is passed in the course's convention (True = may "
       "attend), but MultiHeadAttention takes torch's (True = blocked): pass ~mask, as chapter 4 does.")
      for fast in (True, False)],
    ({"residual": False}, "the residual connections are missing: each sublayer's output is added to its input, "
     "x + sublayer(norm(x))."),
    ({"from_norm": True}, "it adds the sublayer's output to norm(x) instead of x: only the sublayer's input is "
     "normalised, and the residual path carries x untouched."),
    ({"post": True}, "it is post-norm, norm(x + sublayer(x)): this block is pre-norm, x + sublayer(norm(x))."),
    ({"cross": "x"}, "the cross-attention takes its keys and values from the decoder's stream, which makes it a "
     "second self-attention: they come from memory, the encoder's output."),
    ({"cross": "swapped"}, "the cross-attention's queries come from memory: the queries come from the decoder's "
     "stream (norm2(x)), the keys and values from memory."),
    ({"norm_memory": True}, "it normalises the memory with norm2: norm2 is the decoder's, for the queries' side; "
     "the memory is used as the encoder gives it."),
    ({"use_mask": False}, "it ignores memory_mask: pass it on to the cross-attention, so that the padded memory "
     "positions get no weight."),
    ({"order": "cross self ff"}, "the cross-attention comes before the self-attention: the order is causal "
     "self-attention, cross-attention, feed-forward."),
    ({"norms": (1, 1, 1)}, "it uses norm1 for every sublayer: each sublayer has its own norm, norm1, norm2, norm3."),
    ({"norms": (1, 3, 2)}, "norm2 and norm3 are swapped: norm2 goes before the cross-attention, norm3 before the "
     "feed-forward."),
    ({"feed": False}, "the feed-forward sublayer is missing: after the cross-attention, x + ff(norm3(x))."),
    ({"cross_module": False}, "the cross-attention uses self_attn's weights: use cross_attn, the module with the "
     "cross-attention's own projections.")])

# ------------------------------------------------------------------ a prediction: where the norm goes
def _norm_placement():
    """What section "Deeper models: pre-norm against post-norm" measures: with 8 blocks, a constant learning rate
    of 1e-2 and no warm-up, the pre-norm model learns the reversal and the post-norm one stays at ln 10."""
    return "b"
_PLACEMENT = Exercise("predict_norm_placement", [], _norm_placement, lambda: [Case(mistakes=[
    ("a", "both train, you said; without warm-up only pre-norm does: the post-norm model's first steps are too "
     "large, and it settles for guessing (loss ln 10)."),
    ("c", "post-norm is the one that fails here: every path from a block to the output crosses the layer norms "
     "above it, which makes its first gradients too large without a warm-up."),
    ("d", "pre-norm does train: its residual stream gives every block an untouched path to the output, so a "
     "constant learning rate of 1e-2 is fine from the first step.")])], compare="choice",
                    options={"choices": ("a", "b", "c", "d")}, kind="predict", explain=(
    "Only the pre-norm model learns: its loss falls to almost 0, while the post-norm model's stays at ln 10, "
    "guessing. In pre-norm, x + f(LN(x)), every block has a path to the output that no norm touches; in post-norm, "
    "LN(x + f(x)), every path crosses the norms above it, and at initialisation that makes the gradients near the "
    "output large (Xiong et al., 2020), so the first steps at 1e-2 overshoot unless a warm-up starts them small."))

def _pattern_with(kind, n_in, n_out, *, transposed=False, diagonal=0, all_causal=False, outputs_causal=True,
                  inputs_see_outputs=False, cross=True):  # the usual mistakes as switches
    m = F.attention_pattern("decoder" if all_causal and kind == "encoder-decoder" else kind, n_in, n_out)
    if kind == "decoder":
        m = np.tri(len(m), k=diagonal, dtype=bool)
    elif kind == "encoder-decoder" and not all_causal:
        m[n_in:, n_in:] = np.tri(n_out, k=diagonal, dtype=bool) if outputs_causal else True
        m[:n_in, n_in:], m[n_in:, :n_in] = inputs_see_outputs, cross
    return m.T if transposed else m
_PATTERNS = [Case(args, hint=hint) for args, hint in [  # the visible cases
    (("encoder", 2, 1), "encoder-only: every position may attend to every position, itself included: all "
     "True, shape (n_in + n_out, n_in + n_out)."),
    (("decoder", 2, 1), "decoder-only: row i (a query) may attend to the columns j <= i: the lower triangle "
     "with the diagonal, [[T, F, F], [T, T, F], [T, T, T]]."),
    (("encoder-decoder", 2, 2), "encoder-decoder: the 2 input rows see the 2 input columns only; the 2 output "
     "rows see every input column and, causally, the output columns up to themselves."),
    (("decoder", 5, 4), "the causal pattern covers the prompt too."),
    (("encoder-decoder", 5, 4), "use n_in and n_out from the arguments: T = n_in + n_out."),
    (("encoder-decoder", 3, 0), "with no output yet, only the encoder's block is left: all True."),
    (("encoder", 1, 6), None)]]
_PATTERN = Exercise("attention_pattern", ["kind", "n_in", "n_out"], F.attention_pattern, lambda: _PATTERNS, lambda: [
    Case((k, *n)) for k in F.PATTERN_KINDS for n in [(1, 0), (0, 1), (1, 1), (4, 0), (0, 4), (3, 5), (7, 2), (10, 10)]],
                    compare="mask", wrong=_pattern_with, mistakes=[
    ({"transposed": True}, "the pattern is transposed: row i is the query and column j the key, so position i "
     "may attend to the columns j <= i (the lower triangle), not j >= i."),
    ({"diagonal": -1}, "a position may not attend to itself here: the causal pattern includes the diagonal, j <= i."),
    ({"all_causal": True}, "the inputs are read causally: in an encoder-decoder the encoder sees all of the "
     "input at once, so the input rows see every input column."),
    ({"outputs_causal": False}, "the outputs see later outputs: the decoder is causal, so output i sees the "
     "outputs up to itself only (and every input)."),
    ({"inputs_see_outputs": True}, "the inputs attend to the outputs: the encoder never sees the output, so "
     "the top-right block (input rows, output columns) is False."),
    ({"cross": False}, "the outputs cannot see the inputs: cross-attention lets every output position attend "
     "to every input position, so the bottom-left block is True.")])
EXERCISES = ExerciseSet(_BLOCK, _CROSS, _DECODER, _PLACEMENT, _PATTERN)
check = EXERCISES.check
reveal = EXERCISES.reveal
