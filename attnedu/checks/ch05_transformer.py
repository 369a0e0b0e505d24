"""Visible checks for chapter 5, *The Transformer*.

How a check works (one sentence per problem, typical mistakes named): see
:mod:`attnedu.checks`.

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value:

* :func:`layer_norm_reference`: layer normalisation over the last axis;
* :func:`encoder_block_reference`: a Transformer encoder block written from its
  parts (pre-norm or post-norm), equal to :class:`attnedu.nn.EncoderBlock` and to
  ``torch.nn.TransformerEncoderLayer`` given the same weights;
* :func:`sequence_accuracy_reference`: the fraction of sequences right at every position;
* :func:`attention_pattern_reference`: which positions may attend to which in an
  encoder-only (BERT), decoder-only (GPT) or encoder-decoder (T5) model.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import functional as F
from .core import Case, check_function

__all__ = [
    "layer_norm_reference",
    "encoder_block_reference",
    "sequence_accuracy_reference",
    "attention_pattern_reference",
    "KINDS",
    "check_layer_norm",
    "check_encoder_block",
    "check_sequence_accuracy",
    "check_attention_pattern",
]

#: The three families of Transformer, as ``attention_pattern`` names them.
KINDS = ("encoder", "decoder", "encoder-decoder")


# ------------------------------------------------------------------- references
def _tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if t.dim() < 1:
        raise ValueError(f"{name} must have at least one axis, got shape {tuple(t.shape)}")
    return t


def layer_norm_reference(x, gamma, beta, eps: float = 1e-5) -> torch.Tensor:
    r"""Layer normalisation of every row of ``x`` over its last axis.

    .. math::
        \mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
        \qquad \mu = \frac1d \sum_i x_i, \quad \sigma^2 = \frac1d \sum_i (x_i - \mu)^2

    The variance is the *biased* one (divided by ``d``, not ``d - 1``), as in
    ``torch.nn.LayerNorm``.

    Args:
        x: ``(..., d)`` tensor (or array).
        gamma, beta: ``(d,)``, the learned scale and shift.
        eps: added to the variance, so a row without spread does not divide by 0.

    Returns:
        A tensor of the shape of ``x``.
    """
    x = _tensor(x, "x")
    gamma, beta = _tensor(gamma, "gamma").to(x.dtype), _tensor(beta, "beta").to(x.dtype)
    d = x.shape[-1]
    if gamma.shape != (d,) or beta.shape != (d,):
        raise ValueError(f"gamma {tuple(gamma.shape)} and beta {tuple(beta.shape)} must both have shape ({d},) "
                         f"to match x of shape {tuple(x.shape)}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), biased
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta  # (..., d)


def encoder_block_reference(x, attn, ff, norm1, norm2, norm_first: bool = True) -> torch.Tensor:
    r"""A Transformer encoder block written from its parts.

    Pre-norm (``norm_first=True``, GPT-2 and most recent models):

    .. math::
        h = x + \mathrm{Attn}(\mathrm{LN}_1(x)), \qquad y = h + \mathrm{FF}(\mathrm{LN}_2(h))

    Post-norm (``norm_first=False``, the original Transformer and BERT):

    .. math::
        h = \mathrm{LN}_1(x + \mathrm{Attn}(x)), \qquad y = \mathrm{LN}_2(h + \mathrm{FF}(h))

    Args:
        x: ``(B, T, d_model)``.
        attn: a self-attention module called as ``attn(q, k, v)`` that returns
            ``(output, weights)`` (:class:`attnedu.nn.MultiHeadAttention`, or
            ``torch.nn.MultiheadAttention(batch_first=True)``).
        ff: the position-wise feed-forward module, ``(B, T, d) -> (B, T, d)``.
        norm1, norm2: the layer norms of the two sublayers.
        norm_first: pre-norm (True) or post-norm (False).

    Returns:
        ``(B, T, d_model)``.
    """
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, d_model), got shape {tuple(x.shape)}")

    def self_attend(h):
        return attn(h, h, h, need_weights=False)[0]  # (B, T, d_model)

    if norm_first:
        x = x + self_attend(norm1(x))  # the residual path carries x untouched
        return x + ff(norm2(x))
    x = norm1(x + self_attend(x))
    return norm2(x + ff(x))


def sequence_accuracy_reference(pred, target) -> float:
    """The fraction of sequences (rows) that are right at every position.

    ``pred`` and ``target`` are ``(B, T)`` integer tensors or arrays of the same shape.
    """
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and target {t.shape} must both be (B, T)")
    if p.shape[0] == 0:
        raise ValueError("the accuracy of an empty batch is undefined")
    return float((p == t).all(axis=1).mean())


def attention_pattern_reference(kind: str, n_in: int, n_out: int) -> np.ndarray:
    """Which position may attend to which, over a sequence of ``n_in`` input tokens
    followed by ``n_out`` output tokens.

    Returns a ``(T, T)`` boolean array with ``T = n_in + n_out``, True where query
    (row) ``i`` may attend to key (column) ``j`` (the convention of
    :mod:`attnedu.functional`):

    * ``"encoder"`` (BERT): every position sees every position;
    * ``"decoder"`` (GPT): position ``i`` sees positions ``j <= i``;
    * ``"encoder-decoder"`` (T5): inputs see all inputs and no output (the encoder);
      outputs see every input (cross-attention) and the outputs up to themselves
      (causal self-attention in the decoder).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    for name, n in (("n_in", n_in), ("n_out", n_out)):
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")
    n_in, n_out = int(n_in), int(n_out)
    T = n_in + n_out
    if T == 0:
        raise ValueError("n_in + n_out must be at least 1")
    if kind == "encoder":
        return np.ones((T, T), dtype=bool)
    if kind == "decoder":
        return F.causal_mask(T)
    mask = np.zeros((T, T), dtype=bool)
    mask[:n_in, :n_in] = True  # the encoder: inputs see every input
    mask[n_in:, :n_in] = True  # cross-attention: outputs see every input
    if n_out:
        mask[n_in:, n_in:] = F.causal_mask(n_out)  # the decoder: causal among the outputs
    return mask


# ------------------------------------------------------------ typical mistakes
# Wrong implementations with the learner's signature, each with the sentence that names it
# (shown after "Likely cause:"). One that happens to be right on a case is never named there.
def _ln_parts(x, dim=-1, unbiased=False):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased) if x.shape[dim] > 1 else torch.zeros_like(mean)
    return mean, var


def _ln_unbiased(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x, unbiased=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def _ln_eps_outside(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x)
    return (x - mean) / (torch.sqrt(var) + eps) * gamma + beta


def _ln_no_eps(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x)
    return (x - mean) / torch.sqrt(var) * gamma + beta


def _ln_axis0(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x, dim=0)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def _ln_no_affine(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x)
    return (x - mean) / torch.sqrt(var + eps)


def _ln_swapped(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x)
    return (x - mean) / torch.sqrt(var + eps) * beta + gamma


def _ln_rms(x, gamma, beta, eps=1e-5):
    return x / torch.sqrt((x**2).mean(dim=-1, keepdim=True) + eps) * gamma + beta


def _ln_eps_fixed(x, gamma, beta, eps=1e-5):
    mean, var = _ln_parts(x)
    return (x - mean) / torch.sqrt(var + 1e-5) * gamma + beta


_LAYER_NORM_MISTAKES = [
    (_ln_unbiased, "it divides the squared deviations by d - 1: torch.var and Tensor.std do that by default; "
                   "layer norm divides by d, so use ((x - mean)**2).mean(...) or x.var(..., unbiased=False)."),
    (_ln_eps_outside, "it adds eps to the standard deviation: add it to the variance, inside the square root, "
                      "sqrt(var + eps)."),
    (_ln_no_eps, "it leaves out eps: a row whose entries are all equal has variance 0, and 0 / 0 is NaN; "
                 "divide by sqrt(var + eps)."),
    (_ln_axis0, "it normalises each feature over the batch (axis 0), which is batch norm: layer norm normalises "
                "each row over its own features, the last axis."),
    (_ln_no_affine, "it forgets gamma and beta: multiply the normalised x by gamma, then add beta."),
    (_ln_swapped, "gamma and beta are swapped: gamma is the scale (multiply), beta the shift (add)."),
    (_ln_rms, "it divides x by its root mean square without subtracting the mean: that is RMSNorm (used by "
              "Llama), not layer norm; subtract the mean first and use the variance."),
    (_ln_eps_fixed, "it ignores the eps argument and always uses 1e-5."),
]


def _attend(attn, h):
    return attn(h, h, h, need_weights=False)[0]


def _eb_no_residual(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        h = _attend(attn, norm1(x))
        return ff(norm2(h))
    h = norm1(_attend(attn, x))
    return norm2(ff(h))


def _eb_residual_from_norm(x, attn, ff, norm1, norm2, norm_first=True):
    if not norm_first:
        return encoder_block_reference(x, attn, ff, norm1, norm2, False)
    h = norm1(x)
    x = h + _attend(attn, h)
    h = norm2(x)
    return h + ff(h)


def _eb_swapped(x, attn, ff, norm1, norm2, norm_first=True):
    return encoder_block_reference(x, attn, ff, norm1, norm2, not norm_first)


def _eb_norm_output(x, attn, ff, norm1, norm2, norm_first=True):
    if not norm_first:
        return encoder_block_reference(x, attn, ff, norm1, norm2, False)
    x = x + norm1(_attend(attn, x))
    return x + norm2(ff(x))


def _eb_one_norm(x, attn, ff, norm1, norm2, norm_first=True):
    return encoder_block_reference(x, attn, ff, norm1, norm1, norm_first)


def _eb_no_ff(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return x + _attend(attn, norm1(x))
    return norm1(x + _attend(attn, x))


def _eb_post_one_norm_at_end(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return encoder_block_reference(x, attn, ff, norm1, norm2, True)
    x = x + _attend(attn, x)
    return norm2(x + ff(x))


_ENCODER_BLOCK_MISTAKES = [
    (_eb_no_residual, "the residual connections are missing: each sublayer's output is added to its input, "
                      "x + sublayer(...)."),
    (_eb_residual_from_norm, "it adds the sublayer's output to norm(x) instead of x: in pre-norm only the "
                             "sublayer's input is normalised, and the residual path carries x untouched."),
    (_eb_swapped, "pre-norm and post-norm are swapped: norm_first=True means x + sublayer(norm(x)), "
                  "norm_first=False means norm(x + sublayer(x))."),
    (_eb_norm_output, "it normalises the sublayer's output, x + norm(sublayer(x)): pre-norm normalises the "
                      "sublayer's input, x + sublayer(norm(x))."),
    (_eb_one_norm, "it uses norm1 for both sublayers: the feed-forward sublayer has its own norm, norm2."),
    (_eb_no_ff, "the feed-forward sublayer is missing: after the attention, x + ff(norm2(x)) (pre-norm) or "
                "norm2(x + ff(x)) (post-norm)."),
    (_eb_post_one_norm_at_end, "in post-norm it skips norm1: the attention sublayer's sum is normalised too, "
                               "norm1(x + attn(x)), before the feed-forward sublayer."),
]

_ACCURACY_MISTAKES = [
    (lambda p, t: float((np.asarray(p) == np.asarray(t)).mean()),
     "that is the token accuracy (the fraction of positions right); a sequence counts only when every "
     "position is right: .all(dim=1) first, then the mean."),
    (lambda p, t: float((np.asarray(p) == np.asarray(t)).any(axis=1).mean()),
     "it counts a sequence as right when any position is right: use .all(dim=1), not .any(dim=1)."),
    (lambda p, t: float((np.asarray(p) == np.asarray(t)).all(axis=1).sum()),
     "it returns the number of right sequences: divide by the number of sequences (take the mean)."),
    (lambda p, t: 1.0 - float((np.asarray(p) == np.asarray(t)).all(axis=1).mean()),
     "it returns the fraction of wrong sequences (the error rate): return the fraction of right ones."),
]


def _upper(kind, n_in, n_out):
    return attention_pattern_reference(kind, n_in, n_out).T


def _strict(kind, n_in, n_out):
    m = attention_pattern_reference(kind, n_in, n_out)
    if kind == "decoder":
        m = np.tri(len(m), k=-1, dtype=bool)  # j < i: the diagonal is missing
    elif kind == "encoder-decoder":
        m[n_in:, n_in:] = np.tri(n_out, k=-1, dtype=bool)
    return m


def _t5_not_causal(kind, n_in, n_out):
    m = attention_pattern_reference(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, n_in:] = True
    return m


def _t5_inputs_see_outputs(kind, n_in, n_out):
    m = attention_pattern_reference(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[:n_in, n_in:] = True
    return m


def _t5_no_cross(kind, n_in, n_out):
    m = attention_pattern_reference(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, :n_in] = False
    return m


def _t5_all_causal(kind, n_in, n_out):
    if kind == "encoder-decoder":
        return attention_pattern_reference("decoder", n_in, n_out)
    return attention_pattern_reference(kind, n_in, n_out)


_PATTERN_MISTAKES = [
    (_upper, "the pattern is transposed: row i is the query and column j the key, so position i may attend "
             "to the columns j <= i (the lower triangle), not j >= i."),
    (_strict, "a position may not attend to itself here: the causal pattern includes the diagonal, j <= i."),
    (_t5_all_causal, "the inputs are read causally: in an encoder-decoder the encoder sees all of the input "
                     "at once, so the input rows see every input column."),
    (_t5_not_causal, "the outputs see later outputs: the decoder is causal, so output i sees the outputs up to "
                     "itself only (and every input)."),
    (_t5_inputs_see_outputs, "the inputs attend to the outputs: the encoder never sees the output, so the "
                             "top-right block (input rows, output columns) is False."),
    (_t5_no_cross, "the outputs cannot see the inputs: cross-attention lets every output position attend to "
                   "every input position, so the bottom-left block is True."),
]


# ------------------------------------------------------------------- checks
def _f64(*arrays):
    return tuple(torch.tensor(a, dtype=torch.float64) for a in arrays)


def check_layer_norm(layer_norm) -> None:
    """Check ``layer_norm(x, gamma, beta, eps=1e-5)`` (torch tensors, last axis)."""
    ref = layer_norm_reference
    x1, one4, zero4 = _f64([[1.0, 2.0, 3.0, 6.0]], np.ones(4), np.zeros(4))
    g4, b4 = _f64([0.5, -1.0, 2.0, 1.0], [0.1, 0.0, -0.3, 2.0])
    rng = np.random.default_rng(51)
    x3, g5, b5 = _f64(rng.normal(2.0, 3.0, size=(2, 3, 5)), rng.normal(1.0, 0.5, 5), rng.normal(0, 0.5, 5))
    flat = torch.tensor([[4.0, 4.0, 4.0, 4.0, 4.0], [1.0, 1.001, 0.999, 1.0, 1.0]], dtype=torch.float64)
    cases = [
        Case((x1, one4, zero4), ref(x1, one4, zero4).numpy(),
             about="x = [[1, 2, 3, 6]], gamma = ones, beta = zeros",
             hint="by hand: the mean is 3 and the variance 3.5 (the squared deviations 4, 1, 0, 9 divided by d = 4), "
                  "so the result is (x - 3) / sqrt(3.5 + 1e-5), about [-1.069, -0.535, 0, 1.604]."),
        Case((x1, g4, b4), ref(x1, g4, b4).numpy(), about="x = [[1, 2, 3, 6]], other gamma and beta",
             hint="scale by gamma and shift by beta after normalising: (x - mean) / sqrt(var + eps) * gamma + beta."),
        Case((x3, g5, b5), ref(x3, g5, b5).numpy(), about="x of shape (2, 3, 5), random gamma and beta",
             hint="normalise each row on its own: mean and variance over the last axis only, with keepdim=True "
                  "so they broadcast back against x."),
        Case((flat, *_f64(np.ones(5), np.zeros(5))), ref(flat, *_f64(np.ones(5), np.zeros(5))).numpy(),
             about="rows with no spread, [4, 4, 4, 4, 4], and very little, [1, 1.001, 0.999, 1, 1]",
             hint="eps belongs inside the square root, added to the variance: sqrt(var + eps). It keeps a row "
                  "with variance 0 finite and damps rows with almost none."),
        Case((x3, g5, b5), ref(x3, g5, b5, eps=0.5).numpy(), kwargs={"eps": 0.5},
             about="x of shape (2, 3, 5), random gamma and beta, eps = 0.5",
             hint="use the eps argument rather than a fixed 1e-5."),
    ]
    check_function(layer_norm, "layer_norm", cases, params=["x", "gamma", "beta"], mistakes=_LAYER_NORM_MISTAKES)


def _parts(seed: int, d: int, n_head: int, d_ff: int):
    """A self-attention, a feed-forward block and two layer norms with random (non-trivial)
    weights, in float64; imported here to keep attnedu.checks free of a hard nn dependency."""
    from ..nn import FeedForward, MultiHeadAttention

    g = torch.Generator().manual_seed(seed)
    attn = MultiHeadAttention(d, n_head).double()
    ff = FeedForward(d, d_ff).double()
    norm1, norm2 = nn.LayerNorm(d).double(), nn.LayerNorm(d).double()
    with torch.no_grad():
        for p in list(attn.parameters()) + list(ff.parameters()):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / np.sqrt(p.shape[-1]))
        for norm in (norm1, norm2):  # gamma around 1, beta around 0, different for the two norms
            norm.weight.copy_(1 + 0.5 * torch.randn(d, generator=g, dtype=torch.float64))
            norm.bias.copy_(0.5 * torch.randn(d, generator=g, dtype=torch.float64))
    for m in (attn, ff, norm1, norm2):
        m.eval()
    return attn, ff, norm1, norm2


def _expected_block(x, parts, norm_first):
    with torch.no_grad():
        return encoder_block_reference(x, *parts, norm_first=norm_first).numpy()


def check_encoder_block(encoder_block) -> None:
    """Check ``encoder_block(x, attn, ff, norm1, norm2, norm_first=True)``."""
    g = torch.Generator().manual_seed(52)
    tiny = _parts(520, 4, 1, 8)
    x1 = 2 * torch.randn(1, 3, 4, generator=g, dtype=torch.float64) + 1
    big = _parts(521, 8, 2, 16)
    x2 = 2 * torch.randn(2, 5, 8, generator=g, dtype=torch.float64) - 1
    tol = dict(rtol=1e-6, atol=1e-8)
    cases = [
        Case((x1, *tiny), _expected_block(x1, tiny, True), about="x of shape (1, 3, 4), 1 head, norm_first=True",
             hint="pre-norm: x = x + attn(h, h, h)[0] with h = norm1(x), then x + ff(norm2(x)); "
                  "attn returns a tuple (output, weights).", **tol),
        Case((x1, *tiny), _expected_block(x1, tiny, False), kwargs={"norm_first": False},
             about="x of shape (1, 3, 4), 1 head, norm_first=False",
             hint="post-norm: x = norm1(x + attn(x, x, x)[0]), then norm2(x + ff(x)).", **tol),
        Case((x2, *big), _expected_block(x2, big, True), about="x of shape (2, 5, 8), 2 heads, norm_first=True",
             hint="read nothing from the shapes: the modules know their sizes.", **tol),
        Case((x2, *big), _expected_block(x2, big, False), kwargs={"norm_first": False},
             about="x of shape (2, 5, 8), 2 heads, norm_first=False", **tol),
    ]
    check_function(encoder_block, "encoder_block", cases, params=["x", "attn", "ff", "norm1", "norm2"],
                   mistakes=_ENCODER_BLOCK_MISTAKES)


def check_sequence_accuracy(sequence_accuracy) -> None:
    """Check ``sequence_accuracy(pred, target)`` on ``(B, T)`` integer tensors."""
    ref = sequence_accuracy_reference
    target = torch.tensor([[1, 2, 3], [1, 2, 3], [3, 2, 1]])
    pred = torch.tensor([[1, 2, 3], [1, 2, 0], [3, 2, 1]])
    g = torch.Generator().manual_seed(53)
    t = torch.randint(0, 10, (50, 8), generator=g)
    p = t.clone()
    wrong = torch.rand(50, 8, generator=g) < 0.03  # about 3% of the tokens wrong
    p[wrong] = (p[wrong] + 1) % 10
    off_by_one = target.clone()
    off_by_one[:, 0] += 1  # every sequence wrong in one place: most tokens right
    cases = [
        Case((pred, target), ref(pred, target), about="3 sequences of 3 tokens, 2 of them right",
             hint="by hand: rows 0 and 2 match the target at every position, row 1 does not, so 2 of 3 "
                  "sequences are right: 0.667. Compare along dim=1 (the positions of a row)."),
        Case((target, target), 1.0, about="pred equal to target"),
        Case((off_by_one, target), 0.0, about="every sequence wrong at its first position",
             hint="one wrong token makes the whole sequence wrong."),
        Case((p, t), ref(p, t), about="50 sequences of 8 tokens, about 3% of the tokens wrong",
             hint="read B and T from the shapes; return a fraction between 0 and 1."),
    ]
    check_function(sequence_accuracy, "sequence_accuracy", cases, params=["pred", "target"],
                   mistakes=_ACCURACY_MISTAKES)


def check_attention_pattern(attention_pattern) -> None:
    """Check ``attention_pattern(kind, n_in, n_out)``: a ``(T, T)`` boolean array, True = may attend."""
    ref = attention_pattern_reference
    cases = [
        Case(("encoder", 2, 1), ref("encoder", 2, 1),
             hint="encoder-only: every position may attend to every position, itself included: all True, "
                  "shape (n_in + n_out, n_in + n_out)."),
        Case(("decoder", 2, 1), ref("decoder", 2, 1),
             hint="decoder-only: row i (a query) may attend to the columns j <= i: the lower triangle with the "
                  "diagonal, [[T, F, F], [T, T, F], [T, T, T]]."),
        Case(("encoder-decoder", 2, 2), ref("encoder-decoder", 2, 2),
             hint="encoder-decoder: the 2 input rows see the 2 input columns only; the 2 output rows see "
                  "every input column and, causally, the output columns up to themselves."),
        Case(("decoder", 5, 4), ref("decoder", 5, 4), hint="the causal pattern covers the prompt too."),
        Case(("encoder-decoder", 5, 4), ref("encoder-decoder", 5, 4),
             hint="use n_in and n_out from the arguments: T = n_in + n_out."),
        Case(("encoder-decoder", 3, 0), ref("encoder-decoder", 3, 0),
             hint="with no output yet, only the encoder's block is left: all True."),
        Case(("encoder", 1, 6), ref("encoder", 1, 6)),
    ]
    check_function(attention_pattern, "attention_pattern", cases, params=["kind", "n_in", "n_out"],
                   mistakes=_PATTERN_MISTAKES, boolean=True)
