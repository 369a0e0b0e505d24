"""Chapter 4's exercises, *Multi-head attention*, as records (see :mod:`attnedu.checks`). A projection matrix ``W``
of shape ``(d_in, E)`` acts as ``x @ W``, as NumPy writes it (``torch.nn.Linear`` stores the transpose)."""

import numpy as np
import torch

from .. import functional as F
from ..nn import mha_flops, mha_parameter_count
from . import Case, Exercise, ExerciseSet, rows_sum_to_one

def _split_cases():
    x3, x = np.arange(12.0).reshape(1, 3, 4), np.random.default_rng(41).normal(size=(2, 5, 12))  # 3 tokens of 4
    return [Case(args, hint=hint) for args, hint in [
        ((x3, 2), "by hand, head 0 holds features 0-1 of every token, [[0, 1], [4, 5], [8, 9]], and head 1 features "
         "2-3; the result has shape (B, H, T, dh) = (1, 2, 3, 2)."), ((x3, 1), "with one head the result is x with a "
         "head axis of size 1: shape (B, 1, T, E)."), ((x3, 4), "compute dh = E // num_heads from the arguments; do "
         "not fix it in advance."), ((x, 3), "read B, T and E from x.shape; every batch element is split on its own."),
        ((x, 6), None)]]
def _merge_cases():
    x3, y = np.arange(12.0).reshape(1, 3, 4), np.random.default_rng(42).normal(size=(2, 3, 5, 4))
    return [Case((F.split_heads(x3, H),), hint=hint) for H, hint in [
        (2, "merge_heads undoes split_heads: token 0's row is head 0's features, then head 1's, [0, 1, 2, 3]; "
            "transpose to (B, T, H, dh), then reshape to (B, T, H * dh)."), (1, "with one head, just drop the head "
            "axis."), (4, "read H and dh from x.shape.")]] + [Case((y,), hint="read B, H, T and dh from x.shape.")]
def _split_hidden():
    x, a = np.random.default_rng(401).normal(size=(3, 7, 24)), np.arange(24.0).reshape(2, 2, 6)
    return [Case((x, h)) for h in (1, 2, 3, 4, 6, 8, 24)] + [Case((x[:1, :1], 4)), Case((a, 3))]
def _merge_hidden():
    rng = np.random.default_rng(402)
    y, x = rng.normal(size=(3, 4, 6, 5)), rng.normal(size=(2, 5, 12))
    return [Case((a,)) for a in [y, y[:, :1], y[:, :, :1]] + [F.split_heads(x, H) for H in (1, 2, 3, 4, 6, 12)]]
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
                 "and merged back: use split_heads and merge_heads."),
            Case((x, *S, I4, 2), about=on + "symmetric W_q, W_k, W_v, W_o = identity", hint="divide each head's scores "
                 "by sqrt(dh), with dh = E / num_heads = 2, not by sqrt(E)."),
            Case((x, *W[:3], I4, 2), about=on + "random W_q, W_k, W_v, W_o = identity", hint="the matrices act from "
                 "the right: queries = x @ W_q, keys = x @ W_k, values = x @ W_v."),
            Case((x, *W, 2), about=on + "four random matrices", hint="the merged heads go through the output "
                 "projection: merge_heads(...) @ W_o."),
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
# the parameter count and the FLOPs, with the usual mistakes as switches
def _count_with(E, kdim=None, vdim=None, bias=True, *, biases=4, always=False, use_kv=True, square=False):
    kd, vd = (kdim or E, vdim or E) if use_kv else (E, E)
    return 2 * E * E + (kd * kd + vd * vd if square else (kd + vd) * E) + biases * E * (bias or always)
def _flops_with(B, T, E, H, *, factor=2, projections=4, products=2, per_head=True):
    return factor * (projections * B * T * E * E + products * B * T * T * E * (1 if per_head else H))
_OUT = "it leaves out the output projection"
_FLOPS = [Case((1, 3, 2, 1), hint="by hand: four projections of 2*B*T*E*E = 2*1*3*2*2 = 24 FLOPs each (96), then the "
               "scores and the weighted sum, 2*B*H*T*T*dh = 2*1*1*3*3*2 = 36 each (72): 168 in all."),
          Case((2, 3, 4, 2), hint="with H heads each head has dh = E / H features: the scores cost 2*B*H*T*T*dh."),
          Case((8, 1024, 768, 12)), Case((1, 4096, 64, 4))]

EXERCISES = ExerciseSet(
    Exercise("split_heads", ["x", "num_heads"], F.split_heads, _split_cases, _split_hidden, mistakes=[
        (lambda x, H: x.reshape(x.shape[0], H, x.shape[1], x.shape[2] // H), "the result equals x.reshape(B, H, T, "
         "dh): a reshape alone puts features of different tokens into one head's rows; reshape to (B, T, H, dh) first, "
         "then swap axes 1 and 2."),
        (lambda x, H: x.reshape(*x.shape[:2], x.shape[2] // H, H).transpose(0, 3, 1, 2),
         "each head takes every H-th feature: head h must take the contiguous block x[..., h*dh:(h+1)*dh], so reshape "
         "to (B, T, H, dh), not (B, T, dh, H).")]),
    Exercise("merge_heads", ["x"], F.merge_heads, _merge_cases, _merge_hidden, mistakes=[
        (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "the result equals x.reshape(B, T, H * dh): a reshape alone "
         "mixes the tokens up; transpose to (B, T, H, dh) first, then reshape."),
        (lambda x: x.transpose(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "the heads' features are interleaved: "
         "each head's dh features must stay together, so transpose to (B, T, H, dh), not (B, T, dh, H).")]),
    Exercise("multi_head_attention", ["x", "W_q", "W_k", "W_v", "W_o", "num_heads"], F.multi_head_attention,
             _mha_cases, _mha_hidden, outputs=("output", "weights"), properties=[rows_sum_to_one()]),
    Exercise("mha_parameter_count", ["embed_dim"], mha_parameter_count, lambda: [
        Case((4,), hint="by hand: four 4 x 4 matrices (64 numbers) and four biases of 4 (16)."),
        Case((4,), {"bias": False}, hint="with bias=False only the four weight matrices remain."), Case((512,)),
        Case((8,), {"kdim": 3, "vdim": 5}, hint="W_k turns keys of kdim features into E features (kdim x E), W_v "
             "values of vdim features (vdim x E); the biases still have E numbers each."),
        Case((8,), {"kdim": 3}, hint="vdim=None means vdim = embed_dim."),
        Case((6,), {"kdim": 2, "vdim": 9, "bias": False})],
        lambda: [Case((E,), {"kdim": k, "vdim": v, "bias": b}) for E, k, v, b in [
            (1, None, None, True), (3, None, None, False), (768, None, None, True), (12, 7, None, True),
            (12, None, 7, True), (10, 4, 9, False), (64, 1, 1, True)]] + [Case((20,), {"kdim": 6}, expected=sum(
                p.numel() for p in torch.nn.MultiheadAttention(20, 4, kdim=6).parameters()))],
        wrong=_count_with, mistakes=[
            ({"biases": 0}, "it counts the weight matrices only: each of the four projections also has a bias vector "
             "of E numbers."),
            ({"biases": 3}, "it counts three bias vectors: the output projection has a bias too, so there are 4 * E "
             "bias numbers."),
            ({"always": True}, "it counts biases although bias=False."),
            ({"use_kv": False}, "it ignores kdim and vdim: W_k is kdim x E and W_v is vdim x E."),
            ({"square": True}, "it counts as if W_k were kdim x kdim: every projection outputs E features, so W_k is "
             "kdim x E and W_v is vdim x E.")]),
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