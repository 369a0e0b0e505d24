"""Chapter 3's exercises, *Self-attention*, as records (see :mod:`attnedu.checks`)."""

import numpy as np
import torch

from .. import functional as F
from ..nn import SelfAttention
from . import Case, CheckFailed, Exercise, ExerciseSet, register, rows_sum_to_one

def _normal(seed, *shapes):  # arrays of standard normal numbers, drawn in this order
    return [rng.normal(size=shape) for rng in [np.random.default_rng(seed)] for shape in shapes]
def _sa_with(x, W_q, W_k, W_v, *, by="d_k", power=0.5, swap=False, axis=-1, transposed=False, project=True):
    d = {"d_k": np.shape(W_k)[1], "d_model": np.shape(x)[-1], "d_v": np.shape(W_v)[1]}[by]  # scores / d ** power
    W_q, W_k, W_v = (np.asarray(W).T if transposed else np.asarray(W) for W in (W_q, W_k, W_v))
    scores = (x @ W_q if project else x) @ np.swapaxes(x @ W_k if project else x, -1, -2) / d ** power  # (..., T, T)
    weights = F.softmax(np.swapaxes(scores, -1, -2) if swap else scores, axis=axis)
    return weights @ (x @ W_v), weights
def _run(cls, x, *W):  # learner-side: cls(d_model, d_k, d_v) in float64 with the case's matrices as its layers
    module = cls(*np.shape(W[0]), np.shape(W[2])[1]).double()
    for name, M in zip(("W_q", "W_k", "W_v"), W):  # nn.Linear stores W.T
        getattr(module, name).weight.data.copy_(torch.tensor(np.asarray(M, float).T))
    return module(torch.tensor(np.asarray(x, float)))
def _no_gradient(cls, x):  # learner-side: the layers of cls(d_model, 3) to which output.sum() sends no gradient
    module = cls(x.shape[-1], 3).to(torch.from_numpy(x).dtype)
    output = module(torch.from_numpy(x))[0]
    if getattr(output, "requires_grad", False):  # an output cut off from the graph cannot backpropagate
        output.sum().backward()
    return [name for name in ("W_q", "W_k", "W_v") if getattr(module, name).weight.grad is None]
def _gradients_reach(got, case, lead, ex):
    if got:
        raise CheckFailed(f"`{ex.name}` gives the right numbers, but gradients do not flow back to W_q, W_k and W_v: "
                          "compute with torch operations inside forward (no NumPy, no .detach(), no .item()).")
register("gradients_reach", _gradients_reach, lambda a, b, ex=None: a == b)
_GRADIENTS = dict(call=_no_gradient, expected=[], compare="gradients_reach")
def _sa_cases(module=False):  # the module's hints say k.transpose and not where x goes; its gradients must flow
    x3, *W3 = map(np.array, ([[1.0, 0], [0, 1], [1, 1]], [[1.0, 0], [1, 1]], [[1.0, 0], [0, 2]], [[0.0, 1], [1, 0]]))
    x, *W, xb, x_big = _normal(3, (5, 4), (4, 3), (4, 3), (4, 2), (2, 5, 4), (6, 4))
    on_x = "" if module else " x has shape (T, d_model) and W_q has shape (d_model, d_k), so the queries are x @ W_q " \
                             "(x on the left)."
    return [Case(args, hint=hint) for args, hint in [
        ((x3, *W3), "by hand, q = x @ W_q = [[1, 0], [1, 1], [2, 1]] and k = x @ W_k = [[1, 0], [0, 2], [1, 2]], so "
         "the scores q @ k.T / sqrt(2) have first row [1, 0, 1] / sqrt(2)." + on_x), ((x, *W), "d_model = 4, d_k = 3 "
         "and d_v = 2 here: divide the scores by sqrt(d_k) = sqrt(W_k.shape[1])." + on_x), ((30 * x_big, *W), "large "
         "scores need a stable softmax, such as the library's `softmax`."), ((xb, *W), "with a batch axis in front, x "
         "is (B, T, d_model) and the keys are still on the last axis: transpose only the last two axes of k, with "
         f"{'k.transpose(-2, -1)' if module else 'np.swapaxes(k, -1, -2)'}; k.T would reverse all three axes. "
         "Normalise over axis=-1.")]] + ([Case((x,), **_GRADIENTS)] if module else [])
def _sa_hidden():
    x, W_q, W_k, W_v, xb, x1 = _normal(301, (9, 6), (6, 5), (6, 5), (6, 3), (3, 4, 6), (1, 6))
    return [Case((x, W_q, W_k, W_v)), Case((xb, W_q, W_k, W_v)), Case((x * 50, W_q, W_k, W_v)),
            Case((x1, W_q, W_k, W_v), expected=(x1 @ W_v, np.ones((1, 1)))), Case((x, W_q[:, :1], W_k[:, :1], W_v))]
def _module_hidden():  # and SelfAttention(5, 3) in float32, d_v by default: its gradients and its shapes
    x, *W, xb, x32 = _normal(302, (7, 5), (5, 4), (5, 4), (5, 6), (2, 3, 7, 5), (2, 4, 5))
    shapes, x32 = lambda cls, x: [tuple(t.shape) for t in cls(5, 3)(torch.from_numpy(x))], x32.astype(np.float32)
    return [Case((x, *W)), Case((xb, *W)), Case((x * 40, *W)), Case((x32,), **_GRADIENTS),
            Case((x32,), call=shapes, expected=[(2, 4, 3), (2, 4, 4)], compare="value")]
_NOT_BY = "divide by sqrt(d_k), the size of a key (W_k.shape[1]), not by sqrt"
_SA = dict(params=["x", "W_q", "W_k", "W_v"], outputs=("output", "weights"), properties=[rows_sum_to_one()],
           wrong=_sa_with, mistakes=[
    ({"power": 0}, "the scores were not scaled: divide q @ k.T by sqrt(d_k), where d_k = W_k.shape[1] is the size of "
     "a key."),
    ({"by": "d_model"}, f"{_NOT_BY}(d_model), the size of a token."),
    ({"by": "d_v"}, f"{_NOT_BY}(d_v), the size of a value."),
    ({"power": 1}, "divide the scores by the square root of d_k, not by d_k itself."),
    ({"swap": True}, "scores[i, j] is the query of token i dotted with the key of token j: q @ k.T with q = x @ W_q "
     "and k = x @ W_k (not k @ q.T, nor W_q and W_k swapped)."),
    ({"axis": -2}, "the softmax normalises each query's scores over the keys: the last axis, axis=-1."),
    ({"transposed": True}, "the projections are x @ W_q, x @ W_k and x @ W_v, with the weight matrices as given (not "
     "transposed)."),
    ({"project": False, "by": "d_model"}, "the queries and keys must be projected too: q = x @ W_q and k = x @ W_k.")])
_CHOICES = ("a", "b", "c", "d")  # predict_word_order: the answers, as the notebook words them
def _word_order():  # the experiment, small: self-attention on "dog bites man" and on "man bites dog"
    x, W_q, W_k, W_v = _normal(33, (3, 4), (4, 3), (4, 3), (4, 2))  # rows: dog, bites, man
    out1, _ = F.self_attention(x, W_q, W_k, W_v)
    out2, _ = F.self_attention(x[[2, 1, 0]], W_q, W_k, W_v)  # man, bites, dog
    if np.allclose(out1, out2):
        return "d"  # every row as it was
    if np.allclose(out1[0], out2[2]):
        return "b"  # "dog" keeps its output, in another row
    return "c" if np.allclose(out1[1], out2[1]) else "a"
_WORD_ORDER = lambda: [Case(mistakes=[  # noqa: E731
    ("a", "a token's output depends only on its own query and on the keys and values of all the tokens, and that "
     "set is the same in both sentences: nothing in the computation knows where a token stands."),
    ("c", "\"dog\" keeps its output too: nothing in the computation depends on where a token stands, so every word "
     "keeps its output, in whichever row it lands."),
    ("d", "the rows are not left as they were: row 0 holds \"dog\" in one sentence and \"man\" in the other, and "
     "each output moves with its token (reordered like the input: equivariant, not invariant).")])]
def _sinusoids_with(T, d, *, power=2.0, start=0, cos_first=False, blocks=False, own_column_freq=False):
    pe = F.sinusoidal_positions(T + start, d, base=10000.0 ** (power / 2))[start:]  # frequencies 10000 ** (-power*i/d)
    if own_column_freq:  # column 2i+1 is cos(p * 10000 ** (-(2i + 1) / d)): column 4i+3 of the table of width 2d
        pe[:, 1::2] = F.sinusoidal_positions(T, 2 * d)[:, 3::4]
    pe = pe[:, np.arange(d) ^ 1] if cos_first else pe
    return np.concatenate([pe[:, 0::2], pe[:, 1::2]], axis=1) if blocks else pe
def _rope_with(x, positions, *, power=2.0, sign=1.0, given=True, half_split=False, own_feature_freq=False):
    pos = sign * (np.asarray(positions, dtype=float) if given else np.arange(len(x)))  # angles pos * theta_i
    order = np.arange(x.shape[1]).reshape(2, -1).T.ravel() if half_split else np.arange(x.shape[1])  # pairs (i, i+d/2)
    out = F.apply_rope(x[:, order], pos, base=10000.0 ** (power / 2))[:, np.argsort(order)]  # 10000 ** (-power*i/d)
    if own_feature_freq:  # feature 2i+1 turned by p * 10000 ** (-(2i + 1) / d)
        out[:, 1::2] = F.apply_rope(x, pos * 10000.0 ** (-1 / x.shape[1]))[:, 1::2]
    return out
def _rope_cases():
    (x4, x8, x16), x2, p3 = _normal(4, (3, 4), (6, 8), (40, 16)), np.array([[1.0, 0], [1, 0], [0, 1]]), np.arange(3)
    return [Case(args, hint=hint) for args, hint in [
        ((x2, p3), "by hand, with d = 2 the row at position p turns by p radians: [1, 0] at position 1 becomes [cos 1, "
         "sin 1] = [0.540, 0.841], and [0, 1] at position 2 becomes [-sin 2, cos 2]."), ((x4, p3), "with d = 4 the "
         "pairs are the adjacent features (0, 1), turned by p * 1, and (2, 3), turned by p / 100."),
        ((x8, np.array([3, 0, 7, 7, 1, 10])), "turn row t by positions[t] * theta_i: the positions need not be 0, 1, "
         "2, ..."), ((x16, np.arange(40)), _THETA + ".")]]
def _rope_hidden():
    rng = np.random.default_rng(304)
    x, p, pf = rng.normal(size=(12, 10)), rng.integers(0, 500, 12), rng.uniform(0, 50, 12)
    return [Case((x, p)), Case((x, np.arange(12))), Case((x, pf)), Case((x[:1], np.array([0])), expected=x[:1]),
            Case((rng.normal(size=(64, 32)), np.arange(64)))]
_FREQ = "the frequency of pair i (columns 2i and 2i+1) is 10000 ** (-2 * i / d), for i = 0, 1, ..., d/2 - 1"
_THETA = "theta_i = 10000 ** (-2 * i / d), for the pair i = 0, 1, ..., d/2 - 1"
_SLOW = "; yours fall too slowly (did you drop the 2 in the exponent?)."
_FAST = "; yours fall too fast (did you put the {} index 2i where the formula has i?)."

EXERCISES = ExerciseSet(
    Exercise("self_attention", reference=F.self_attention, cases=_sa_cases, hidden=_sa_hidden, **_SA),
    Exercise("SelfAttention", reference=SelfAttention, run=_run, cases=lambda: _sa_cases(module=True),
             hidden=_module_hidden, grade_id="self-attention-module", **_SA),
    Exercise("predict_word_order", [], _word_order, _WORD_ORDER, _WORD_ORDER, compare="choice",
             options={"choices": _CHOICES}, kind="predict", explain="Each word gets the same output vector in both "
             "sentences, in the row where the word now stands: without positions self-attention is permutation "
             "equivariant, SelfAttention(PX) = P SelfAttention(X), because it treats the keys and values as a set. "
             "Only positional information can tell \"dog bites man\" from \"man bites dog\"."),
    Exercise("sinusoidal_positions", ["T", "d"], F.sinusoidal_positions, lambda: [
        Case((3, 2), hint="by hand, with d = 2 row p is [sin(p), cos(p)]: row 0 is [0, 1], row 1 is [0.841, 0.540]."),
        Case((3, 4), hint="with d = 4, row p is [sin(p), cos(p), sin(p / 100), cos(p / 100)]."),
        Case((50, 16), hint=_FREQ + "."), Case((7, 128))],
        lambda: [Case(s) for s in [(1, 2), (10, 6), (128, 64), (1000, 8), (5, 256)]], wrong=_sinusoids_with, mistakes=[
            ({"cos_first": True}, "the even columns hold sines and the odd columns cosines: you have them the other "
             "way round."),
            ({"blocks": True}, "sines and cosines must alternate, column by column (sin, cos, sin, cos, ...): you put "
             "all the sines first and then all the cosines."),
            ({"cos_first": True, "blocks": True}, "the columns must alternate sin, cos, sin, cos, ...: you put all the "
             "cosines first, then the sines."),
            ({"power": 1.0}, _FREQ + _SLOW),
            ({"power": 4.0}, _FREQ + _FAST.format("column")),
            ({"start": 1}, "positions start at 0, so row 0 is [0, 1, 0, 1, ...]."),
            ({"power": -2.0}, f"{_FREQ}: divide the position by 10000 ** (2i / d) rather than multiplying by it."),
            ({"own_column_freq": True}, "columns 2i and 2i+1 share one frequency, 10000 ** (-2i / d): your cosine "
             "columns use a frequency of their own.")]),
    Exercise("apply_rope", ["x", "positions"], F.apply_rope, _rope_cases, _rope_hidden, wrong=_rope_with, mistakes=[
        ({"half_split": True}, "you rotated the pairs (i, i + d/2), the half-split layout of GPT-NeoX and Hugging "
         "Face's Llama; this exercise pairs adjacent features (2i, 2i+1)."),
        ({"sign": -1.0}, "you rotated the wrong way: the pair (a, b) becomes (a cos - b sin, a sin + b cos)."),
        ({"given": False}, "rotate row t by the angle positions[t] * theta_i: you used t itself instead of the "
         "positions given."),
        ({"power": 1.0}, _THETA + _SLOW),
        ({"power": 4.0}, _THETA + _FAST.format("feature")),
        ({"power": -2.0}, f"{_THETA}: the angles shrink from p down to about p / 10000, so use a negative exponent."),
        ({"own_feature_freq": True}, "both features of a pair are rotated by the same angle, p * 10000 ** "
         "(-2i / d).")]),
)
check = EXERCISES.check
reveal = EXERCISES.reveal