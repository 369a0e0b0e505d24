"""Chapter 5's exercises, *The Transformer*, as records (see :mod:`attnedu.checks`). Layer norm and the encoder
block take and return torch tensors; an attention pattern is a boolean mask (True = may attend)."""

import numpy as np
import torch
from torch import nn

from .. import functional as F
from ..nn import FeedForward, MultiHeadAttention, encoder_block, layer_norm
from ..train import sequence_accuracy
from . import Case, Exercise, ExerciseSet

def _ln_with(x, gamma, beta, eps=1e-5, *, ddof=0, eps_where="var", axis=-1, affine=True, swap=False, center=True,
             fixed_eps=None):  # the usual mistakes as switches
    eps, mean = eps if fixed_eps is None else fixed_eps, x.mean(dim=axis, keepdim=True) if center else 0
    var = ((x - mean) ** 2).sum(dim=axis, keepdim=True) / max(x.shape[axis] - ddof, 1)
    y = (x - mean) / {"var": torch.sqrt(var + eps), "std": torch.sqrt(var) + eps, None: torch.sqrt(var)}[eps_where]
    return (y * beta + gamma if swap else y * gamma + beta) if affine else y
_f64 = lambda *arrays: tuple(torch.tensor(a, dtype=torch.float64) for a in arrays)  # noqa: E731
_plain = lambda d: _f64(np.ones(d), np.zeros(d))  # gamma = ones, beta = zeros  # noqa: E731
def _ln_cases():
    x1, flat = _f64([[1.0, 2.0, 3.0, 6.0]], [[4.0, 4.0, 4.0, 4.0, 4.0], [1.0, 1.001, 0.999, 1.0, 1.0]])
    rng = np.random.default_rng(51)
    x3, g5, b5 = _f64(rng.normal(2.0, 3.0, size=(2, 3, 5)), rng.normal(1.0, 0.5, 5), rng.normal(0, 0.5, 5))
    return [Case(args, kwargs, about=about, hint=hint) for args, kwargs, about, hint in [
        ((x1, *_plain(4)), {}, "x = [[1, 2, 3, 6]], gamma = ones, beta = zeros", "by hand: the mean is 3 and the "
         "variance 3.5 (the squared deviations 4, 1, 0, 9 divided by d = 4), so the result is (x - 3) / sqrt(3.5 + "
         "1e-5), about [-1.069, -0.535, 0, 1.604]."),
        ((x1, *_f64([0.5, -1.0, 2.0, 1.0], [0.1, 0.0, -0.3, 2.0])), {}, "x = [[1, 2, 3, 6]], other gamma and beta",
         "scale by gamma and shift by beta after normalising: (x - mean) / sqrt(var + eps) * gamma + beta."),
        ((x3, g5, b5), {}, "x of shape (2, 3, 5), random gamma and beta", "normalise each row on its own: mean and "
         "variance over the last axis only, with keepdim=True so they broadcast back against x."),
        ((flat, *_plain(5)), {}, "rows with no spread, [4, 4, 4, 4, 4], and very little, [1, 1.001, 0.999, 1, 1]",
         "eps belongs inside the square root, added to the variance: sqrt(var + eps). It keeps a row with variance 0 "
         "finite and damps rows with almost none."),
        ((x3, g5, b5), {"eps": 0.5}, "x of shape (2, 3, 5), random gamma and beta, eps = 0.5",
         "use the eps argument rather than a fixed 1e-5.")]]
def _ln_hidden():
    cases, kw = [], dict(generator=torch.Generator().manual_seed(501), dtype=torch.float64)
    for shape in [(1, 1), (3, 7), (2, 4, 16), (2, 3, 4, 5)]:
        args = (torch.randn(shape, **kw) * 5 + 3, *(torch.randn(shape[-1], **kw) for _ in "gb"))  # x, gamma, beta
        cases += [Case(args)] + [Case(args, {"eps": eps}) for eps in (1e-3, 2.0)]
    big, one, zero = torch.randn(4, 6, **kw) * 1e4 - 5e4, *_plain(6)
    return cases + [Case((big, one, zero), expected=torch.nn.functional.layer_norm(big, (6,), one, zero, 1e-5))]
_LN = Exercise("layer_norm", ["x", "gamma", "beta"], layer_norm, _ln_cases, _ln_hidden, wrong=_ln_with, mistakes=[
    ({"ddof": 1}, "it divides the squared deviations by d - 1: torch.var and Tensor.std do that by default; layer "
     "norm divides by d, so use ((x - mean)**2).mean(...) or x.var(..., unbiased=False)."),
    ({"eps_where": "std"}, "it adds eps to the standard deviation: add it to the variance, inside the square "
     "root, sqrt(var + eps)."),
    ({"eps_where": None}, "it leaves out eps: a row whose entries are all equal has variance 0, and 0 / 0 is NaN; "
     "divide by sqrt(var + eps)."),
    ({"axis": 0}, "it normalises each feature over the batch (axis 0), which is batch norm: layer norm normalises "
     "each row over its own features, the last axis."),
    ({"affine": False}, "it forgets gamma and beta: multiply the normalised x by gamma, then add beta."),
    ({"swap": True}, "gamma and beta are swapped: gamma is the scale (multiply), beta the shift (add)."),
    ({"center": False}, "it divides x by its root mean square without subtracting the mean: that is RMSNorm (used "
     "by Llama), not layer norm; subtract the mean first and use the variance."),
    ({"fixed_eps": 1e-5}, "it ignores the eps argument and always uses 1e-5.")])
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
def _accuracy_with(pred, target, *, rows=np.all, total=np.mean, err=False):  # the usual mistakes as switches
    right = np.asarray(pred) == np.asarray(target)  # (B, T)
    share = float(total(rows(right, axis=1) if rows else right))
    return 1.0 - share if err else share
def _accuracy_cases():
    g, target = torch.Generator().manual_seed(53), torch.tensor([[1, 2, 3], [1, 2, 3], [3, 2, 1]])
    pred, t = torch.tensor([[1, 2, 3], [1, 2, 0], [3, 2, 1]]), torch.randint(0, 10, (50, 8), generator=g)
    p = torch.where(torch.rand(50, 8, generator=g) < 0.03, (t + 1) % 10, t)  # about 3% of the tokens wrong
    return [Case((pred, target), about="3 sequences of 3 tokens, 2 of them right", hint="by hand: rows 0 and 2 match "
                 "the target at every position, row 1 does not, so 2 of 3 sequences are right: 0.667. Compare along "
                 "dim=1 (the positions of a row)."),
            Case((target, target), expected=1.0, about="pred equal to target"),
            Case((target + torch.tensor([1, 0, 0]), target), expected=0.0, about="every sequence wrong "
                 "at its first position", hint="one wrong token makes the whole sequence wrong."),
            Case((p, t), about="50 sequences of 8 tokens, about 3% of the tokens wrong",
                 hint="read B and T from the shapes; return a fraction between 0 and 1.")]
def _accuracy_hidden():
    g, cases = torch.Generator().manual_seed(503), []
    for B, T, p_wrong in [(1, 1, 0.0), (1, 5, 0.5), (7, 1, 0.5), (100, 8, 0.02), (64, 12, 0.1), (10, 3, 1.0)]:
        t, wrong = torch.randint(0, 20, (B, T), generator=g), torch.rand(B, T, generator=g) < p_wrong
        p = t.index_put((wrong,), (t[wrong] + 1 + torch.randint(0, 18, (int(wrong.sum()),), generator=g)) % 20)
        cases.append(Case((p, t)))
    return cases
_ACCURACY = Exercise("sequence_accuracy", ["pred", "target"], sequence_accuracy, _accuracy_cases, _accuracy_hidden,
                     wrong=_accuracy_with, mistakes=[
    ({"rows": None}, "that is the token accuracy (the fraction of positions right); a sequence counts only when "
     "every position is right: .all(dim=1) first, then the mean."),
    ({"rows": np.any}, "it counts a sequence as right when any position is right: use .all(dim=1), not .any(dim=1)."),
    ({"total": np.sum}, "it returns the number of right sequences: divide by the number of sequences (take the mean)."),
    ({"err": True}, "it returns the fraction of wrong sequences (the error rate): return the fraction of right ones.")])
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
EXERCISES = ExerciseSet(_LN, _BLOCK, _ACCURACY, _PATTERN)
check = EXERCISES.check
