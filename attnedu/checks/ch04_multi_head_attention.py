"""Chapter 4's exercises, *Multi-head attention*, as records (see :mod:`attnedu.checks`). A projection matrix ``W``
of shape ``(d_in, E)`` acts as ``x @ W``, as NumPy writes it (``torch.nn.Linear`` stores the transpose)."""

import numpy as np
import torch

from .. import functional as F
from ..nn import mha_flops
from . import Case, Exercise, ExerciseSet, rows_sum_to_one

def _split_cases():
    x3, x = np.arange(12.0).reshape(1, 3, 4), np.random.default_rng(41).normal(size=(2, 5, 12))  # 3 tokens of 4
    return [Case(args, hint=hint) for args, hint in [
        ((x3, 2), "by hand, head 0 holds features 0-1 of every token, [[0, 1], [4, 5], [8, 9]], and head 1 features "
         "2-3; the result has shape (B, H, T, dh) = (1, 2, 3, 2)."), ((x3, 1), "with one head the result is x with a "
         "head axis of size 1: shape (B, 1, T, E)."), ((x3, 4), "compute dh = E // num_heads from the arguments; do "
         "not fix it in advance."), ((x, 3), "read B, T and E from x.shape; every batch element is split on its own."),
        ((x, 6), None)]]
def _split_hidden():
    x, a = np.random.default_rng(401).normal(size=(3, 7, 24)), np.arange(24.0).reshape(2, 2, 6)
    return [Case((x, h)) for h in (1, 2, 3, 4, 6, 8, 24)] + [Case((x[:1, :1], 4)), Case((a, 3))]
def _mha_cases():
    I2, I4, tiny, rng = np.eye(2), np.eye(4), np.array([[[1.0, 0.0], [0.0, 1.0]]]), np.random.default_rng(43)
    x, on = rng.normal(size=(1, 3, 4)), "x of shape (1, 3, 4), 2 heads, "
    S = [(a + a.T) / 2 for a in (rng.normal(size=(4, 4)) / 2 for _ in range(3))]  # symmetric
    W, xb = [rng.normal(size=(4, 4)) / 2 for _ in range(4)], rng.normal(size=(2, 5, 12))
    Wb, both = [rng.normal(size=(12, 12)) / np.sqrt(12) for _ in range(4)], F.padding_mask(np.array([5, 3]), 5)[:, None]
    return [Case((tiny, I2, I2, I2, I2, 1), about="x of shape (1, 2, 2), 1 head, identity matrices", hint="with one "
                 "head and identity matrices this is softmax(x @ x.T / sqrt(2)) @ x, with weights [[0.67, 0.33], "
                 "[0.33, 0.67]]; the weights have shape (B, H, T, T)."),
            Case((x, np.zeros((4, 4)), W[1], S[2], I4, 2), about=on + "W_q = 0, W_o = identity", hint="W_q = 0 makes "
                 "every weight 1/T whatever the scale, so what is left to get wrong is how x @ W_v is split into heads "
                 "and merged back: after the merge, token t's row is head 0's dh features, then head 1's."),
            Case((x, *S, I4, 2), about=on + "symmetric W_q, W_k, W_v, W_o = identity", hint="divide each head's scores "
                 "by sqrt(dh), with dh = E / num_heads = 2, not by sqrt(E)."),
            Case((x, *W[:3], I4, 2), about=on + "random W_q, W_k, W_v, W_o = identity", hint="the matrices act from "
                 "the right: queries = x @ W_q, keys = x @ W_k, values = x @ W_v."),
            Case((x, *W, 2), about=on + "four random matrices", hint="the merged heads go through the output "
                 "projection: (merged heads) @ W_o."),
            Case((x, *W, 2), {"mask": F.causal_mask(3)}, about=on + "a causal mask of shape (3, 3)", hint="pass `mask` "
                 "on to scaled_dot_product_attention (True = may attend)."),
            Case((xb, *Wb, 3), {"mask": F.causal_mask(5) & both}, about="x of shape (2, 5, 12), 3 heads, a causal and "
                 "padding mask of shape (2, 1, 5, 5)", hint="read B, T and E from x.shape; the mask broadcasts against "
                 "the (B, H, T, T) scores.")]
def _mha_hidden():
    rng, cases = np.random.default_rng(403), []
    for B, T, E, H in [(1, 4, 8, 1), (2, 6, 8, 2), (3, 5, 12, 4), (2, 7, 16, 8), (1, 1, 6, 3)]:
        x, W = rng.normal(size=(B, T, E)), [rng.normal(size=(E, E)) / np.sqrt(E) for _ in range(4)]
        masks = [F.causal_mask(T), F.causal_mask(T) & F.padding_mask(rng.integers(1, T + 1, B), T)[:, None]]
        cases += [Case((x, *W, H))] + [Case((x, *W, H), {"mask": m}) for m in masks]
    return cases
def _merge_with(x, how):  # (B, H, T, dh) -> (B, T, E): right, by a reshape alone, or with the features interleaved
    B, H, T, dh = x.shape
    return {"right": F.merge_heads(x), "reshape": x.reshape(B, T, H * dh),
            "interleaved": x.transpose(0, 2, 3, 1).reshape(B, T, H * dh)}[how]
def _mha_with(x, W_q, W_k, W_v, W_o, num_heads, mask=None, *, merge="right", by_E=False, use_mask=True, use_out=True,
              transposed=False):
    t = (lambda W: np.asarray(W).T) if transposed else np.asarray  # torch.nn.Linear's orientation
    q, k, v = (F.split_heads(x @ t(W), num_heads) for W in (W_q, W_k, W_v))  # (B, H, T, dh) each
    out, w = F.scaled_dot_product_attention(q, k, v, mask=mask if use_mask else None,
                                            scale=1 / np.sqrt(x.shape[-1]) if by_E else None)
    out = _merge_with(out, merge)  # (B, T, E)
    return (out @ t(W_o) if use_out else out), w
def _eight_heads():  # the experiment: what PyTorch allocates for 8 heads of a layer 64 features wide
    return sum(p.numel() for p in torch.nn.MultiheadAttention(64, 8).parameters())
_EIGHT_HEADS = lambda: [Case(rtol=0, atol=0.5, mistakes=[  # noqa: E731
    (8 * 16_640, "the heads do not bring matrices of their own: each head's W_q is 8 of the 64 columns of the one "
     "64 x 64 matrix (and so for W_k and W_v), so eight heads are eight slices of the same four matrices."),
    (16_640 // 8, "the layer does not shrink either: the eight heads of 8 features together use all 64 columns of each "
     "matrix, as the one head of 64 features did.")])]
def _flops_with(B, T, E, H, *, factor=2, projections=4, products=2, per_head=True):
    return factor * (projections * B * T * E * E + products * B * T * T * E * (1 if per_head else H))
_OUT = "it leaves out the output projection"
_FLOPS = [Case((1, 3, 2, 1), hint="by hand: four projections of 2*B*T*E*E = 2*1*3*2*2 = 24 FLOPs each (96), then the "
               "scores and the weighted sum, 2*B*H*T*T*dh = 2*1*1*3*3*2 = 36 each (72): 168 in all."),
          Case((2, 3, 4, 2), hint="with H heads each head has dh = E / H features: the scores cost 2*B*H*T*T*dh."),
          Case((8, 1024, 768, 12)), Case((1, 4096, 64, 4))]

EXERCISES = ExerciseSet(
    Exercise("split_heads", ["x", "num_heads"], F.split_heads, _split_cases, _split_hidden, kind="debug", mistakes=[
        (lambda x, H: x.reshape(x.shape[0], H, x.shape[1], x.shape[2] // H), "this is the given code's bug: "
         "x.reshape(B, H, T, dh) pours the numbers into the new shape in memory order, so one head's rows mix features "
         "of different tokens: a reshape alone cannot move the head axis in front of the tokens."),
        (lambda x, H: x.reshape(*x.shape[:2], x.shape[2] // H, H).transpose(0, 3, 1, 2),
         "each head takes every H-th feature: head h must take the contiguous block x[..., h*dh:(h+1)*dh], so reshape "
         "to (B, T, H, dh), not (B, T, dh, H).")]),
    Exercise("multi_head_attention", ["x", "W_q", "W_k", "W_v", "W_o", "num_heads"], F.multi_head_attention,
             _mha_cases, _mha_hidden, outputs=("output", "weights"), properties=[rows_sum_to_one()], wrong=_mha_with,
             mistakes=[
        ({"merge": "reshape"}, "the heads were merged with a reshape alone: read in memory order, (B, H, T, dh) "
         "mixes the tokens up; bring the token axis back in front of the head axis, (B, T, H, dh), then reshape to "
         "(B, T, E)."),
        ({"merge": "interleaved"}, "the heads' features are interleaved: token t's row must hold head 0's dh "
         "features, then head 1's, and so on, so transpose to (B, T, H, dh), not (B, T, dh, H), before the reshape."),
        ({"by_E": True}, "each head's scores are divided by sqrt(dh), the size of one head's keys (dh = E / "
         "num_heads), not by sqrt(E)."),
        ({"use_out": False}, "the merged heads still go through the output projection: (merged heads) @ W_o."),
        ({"transposed": True}, "the matrices act from the right as given, x @ W_q (not x @ W_q.T, which is how "
         "torch.nn.Linear stores its weight)."),
        ({"use_mask": False}, "the mask was left out: pass it on to scaled_dot_product_attention (True = may "
         "attend).")]),
    Exercise("predict_eight_heads", [], _eight_heads, _EIGHT_HEADS, _EIGHT_HEADS, compare="number", kind="predict",
             explain="torch.nn.MultiheadAttention(64, 8) has 16,640 parameters, as many as one head: 4E^2 + 4E "
             "whatever the number of heads. Each head's projection is a slice of the same four E x E matrices, so more "
             "heads mean more, smaller slices, not more numbers."),
    Exercise("mha_flops", ["batch", "seq_len", "embed_dim", "num_heads"], mha_flops, lambda: _FLOPS,
             lambda: [Case(c) for c in [(1, 1, 1, 1), (3, 7, 6, 3), (2, 5, 8, 8), (4, 128, 64, 4), (1, 8192, 4096, 32),
                                        (16, 512, 768, 12), (1, 100, 10, 2)]], wrong=_flops_with, mistakes=[
        ({"factor": 1}, "it is half the expected count: a product of (m, k) and (k, n) matrices costs 2*m*k*n FLOPs, "
         "one multiply and one add per term."),
        ({"projections": 3}, f"{_OUT}, another 2*B*T*E*E."),
        ({"products": 1}, "it counts the scores but not the weighted sum of the values, which costs as much again."),
        ({"products": 0}, "it counts the projections only: the scores and the weighted sum cost 2*B*H*T*T*dh each."),
        ({"per_head": False}, "it is H times too large in the attention part: each head works on dh = E / H features, "
         "not E."),
        ({"projections": 3, "per_head": False}, f"{_OUT} and counts each head as if it had E features, not "
         "dh = E / H.")]),
)
check = EXERCISES.check
reveal = EXERCISES.reveal