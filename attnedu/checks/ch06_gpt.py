"""Visible checks for chapter 6, *A GPT from scratch*.

How a check works (one sentence per problem, typical mistakes named): see
:mod:`attnedu.checks`.

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value:

* :func:`make_batch_reference`: windows of a token sequence (the inputs) and the
  same windows moved one token on (the targets of a causal language model);
* :func:`next_token_loss_reference`: the mean cross-entropy of next-token logits,
  the loss :class:`attnedu.models.GPT` returns;
* :func:`gpt_parameter_count_reference`: the parameters of a GPT, by formula
  (:func:`attnedu.models.parameter_count`);
* :func:`top_p_filter_reference`: nucleus filtering (:func:`attnedu.models.top_p_filter`).

None of the checks trains a model: they give the same verdict however long, or short, the
chapter's training ran.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..models import GPTConfig, parameter_count, top_p_filter
from .core import Case, check_function

__all__ = [
    "make_batch_reference",
    "next_token_loss_reference",
    "gpt_parameter_count_reference",
    "top_p_filter_reference",
    "check_make_batch",
    "check_next_token_loss",
    "check_gpt_parameter_count",
    "check_top_p_filter",
]


# ------------------------------------------------------------------- references
def _int_ids(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D sequence of integers, got shape {tuple(t.shape)} and dtype {t.dtype}")
    return t.long()


def make_batch_reference(ids, offsets, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows of ``ids`` that start at ``offsets``, and the same windows one token on.

    Row ``b`` is ``x[b] = ids[o_b : o_b + T]`` and ``y[b] = ids[o_b + 1 : o_b + T + 1]`` with
    ``T = block_size``: ``y[b, t]`` is the token that follows ``x[b, :t+1]``, the one a causal
    language model must predict there. :func:`attnedu.train.get_batch` is this with random offsets.

    Args:
        ids: ``(N,)`` token ids.
        offsets: ``(B,)`` start positions, each in ``[0, N - T - 1]`` (the target window
            needs the token after the input window).
        block_size: ``T >= 1``.

    Returns:
        ``(x, y)``, two ``(B, T)`` ``torch.long`` tensors.
    """
    ids, offsets = _int_ids(ids, "ids"), _int_ids(offsets, "offsets")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer, got {block_size!r}")
    last = len(ids) - block_size - 1
    if len(offsets) and (int(offsets.min()) < 0 or int(offsets.max()) > last):
        raise ValueError(f"offsets must be in [0, len(ids) - block_size - 1] = [0, {last}] "
                         f"for ids of length {len(ids)}, got {offsets.tolist()}")
    rows = offsets[:, None] + torch.arange(block_size)  # (B, T): positions in ids
    return ids[rows], ids[rows + 1]  # (B, T), (B, T)


def next_token_loss_reference(logits, targets) -> torch.Tensor:
    r"""The mean cross-entropy of next-token predictions, over every position of every row.

    .. math::
        \mathcal{L} = -\frac{1}{BT} \sum_{b, t} \log \mathrm{softmax}(z_{b,t})_{y_{b,t}}

    Args:
        logits: ``(B, T, V)``, the scores ``z`` of every token at every position.
        targets: ``(B, T)`` integer ids ``y`` in ``[0, V)``, the token that comes next.

    Returns:
        A 0-d tensor. (It is ``F.cross_entropy`` on the flattened ``(B*T, V)`` logits.)
    """
    logits, targets = torch.as_tensor(logits), torch.as_tensor(targets)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and targets (B, T), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    if not torch.is_floating_point(logits):
        logits = logits.to(torch.get_default_dtype())
    V = logits.shape[-1]
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise ValueError(f"targets must be in [0, V={V}), got min {int(targets.min())}, max {int(targets.max())}")
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long())  # (B*T, V), (B*T,)


def gpt_parameter_count_reference(vocab_size: int, block_size: int, n_layer: int, n_embd: int,
                                  bias: bool = True) -> int:
    r"""The number of parameters of :class:`attnedu.models.GPT`, by formula.

    With ``V, T, L, C`` and ``b = 1`` if ``bias`` else ``0``:

    .. math::
        N = \underbrace{VC}_{\text{tokens, tied}} + \underbrace{TC}_{\text{positions}}
          + L\,\big(12C^2 + (2 + 11b)\,C\big) + \underbrace{(1 + b)\,C}_{\text{final LN}}

    The number of heads does not appear: the heads split ``C`` features, they add none.
    """
    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=1,
                       n_embd=n_embd, bias=bool(bias))
    return parameter_count(config)


def top_p_filter_reference(logits, p: float) -> torch.Tensor:
    """Nucleus (top-p) filtering: :func:`attnedu.models.top_p_filter`.

    Keeps the smallest set of most likely tokens whose probabilities sum to at least ``p``
    (a token stays when the tokens more likely than it hold less than ``p``; so the most
    likely token always stays) and sets every other logit to ``-inf``. ``(..., V) -> (..., V)``.
    """
    logits = torch.as_tensor(logits)
    if not torch.is_floating_point(logits):
        logits = logits.to(torch.get_default_dtype())
    return top_p_filter(logits, p)


# ------------------------------------------------------------ typical mistakes
# Wrong implementations with the learner's signature, each with the sentence that names it
# (shown after "Likely cause:"). One that happens to be right on a case is never named there.
def _rows(offsets, block_size, shift=0):
    return torch.as_tensor(offsets)[:, None] + torch.arange(block_size) + shift


def _mb_no_shift(ids, offsets, block_size):
    x = ids[_rows(offsets, block_size)]
    return x, x.clone()


def _mb_backwards(ids, offsets, block_size):
    return ids[_rows(offsets, block_size)], ids[_rows(offsets, block_size, -1)]


def _mb_swapped(ids, offsets, block_size):
    x, y = make_batch_reference(ids, offsets, block_size)
    return y, x


def _mb_rolled(ids, offsets, block_size):
    x = ids[_rows(offsets, block_size)]
    return x, torch.roll(x, -1, dims=1)


def _mb_late(ids, offsets, block_size):
    return ids[_rows(offsets, block_size, 1)], ids[_rows(offsets, block_size, 2)]


def _mb_shift_two(ids, offsets, block_size):
    return ids[_rows(offsets, block_size)], ids[_rows(offsets, block_size, 2)]


_MAKE_BATCH_MISTAKES = [
    (_mb_no_shift, "y equals x: the target at position t is the token that comes next, ids[o + t + 1], "
                   "so y is the window moved one token to the right."),
    (_mb_swapped, "x and y are swapped: x is the window ids[o : o + T], y the window one token later."),
    (_mb_backwards, "y is moved one token to the left, ids[o - 1 : o + T - 1]: the targets are the "
                    "following tokens, ids[o + 1 : o + T + 1]."),
    (_mb_rolled, "y is x rolled by one, so its last target wraps around to the window's first token: take "
                 "y from ids, ids[o + 1 : o + T + 1], so that the last target is the token after the window."),
    (_mb_late, "both windows start one token late: x starts at ids[o], y at ids[o + 1]."),
    (_mb_shift_two, "y is moved two tokens on: it starts at ids[o + 1], one token after x."),
]


def _log_probs(logits):
    return torch.log_softmax(torch.as_tensor(logits), dim=-1)


def _pick(values, targets):
    return torch.gather(values, -1, torch.as_tensor(targets).long()[..., None])[..., 0]  # (B, T)


def _nl_sum(logits, targets):
    return -_pick(_log_probs(logits), targets).sum()


def _nl_positive(logits, targets):
    return _pick(_log_probs(logits), targets).mean()


def _nl_no_log(logits, targets):
    return -_pick(torch.softmax(torch.as_tensor(logits), dim=-1), targets).mean()


def _nl_one_minus_p(logits, targets):
    return (1 - _pick(torch.softmax(torch.as_tensor(logits), dim=-1), targets)).mean()


def _nl_raw_logits(logits, targets):
    return -_pick(torch.as_tensor(logits), targets).mean()


def _nl_bits(logits, targets):
    return next_token_loss_reference(logits, targets) / math.log(2)


def _nl_shifted_again(logits, targets):
    logits, targets = torch.as_tensor(logits), torch.as_tensor(targets)
    return next_token_loss_reference(logits[:, :-1], targets[:, 1:])


def _nl_classes_on_axis_1(logits, targets):
    return F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(targets).long())


def _nl_first_row(logits, targets):
    return next_token_loss_reference(torch.as_tensor(logits)[:1], torch.as_tensor(targets)[:1])


def _nl_last_position(logits, targets):
    return next_token_loss_reference(torch.as_tensor(logits)[:, -1:], torch.as_tensor(targets)[:, -1:])


_LOSS_MISTAKES = [
    (_nl_sum, "it sums the losses of the B*T positions: take their mean, so that the loss does not grow "
              "with the batch size or the context length."),
    (_nl_positive, "the sign is wrong: the loss is the *negative* mean log-probability of the targets "
                   "(it is >= 0, and 0 only for a perfect prediction)."),
    (_nl_no_log, "it averages the targets' probabilities, not their logarithms: the loss is "
                 "-mean(log p(target))."),
    (_nl_one_minus_p, "it averages 1 - p(target): the loss is -mean(log p(target))."),
    (_nl_raw_logits, "it uses the logits as if they were log-probabilities: apply log_softmax over the "
                     "vocabulary axis first (or use F.cross_entropy, which does)."),
    (_nl_bits, "it measures in bits (log base 2): use the natural logarithm, as F.cross_entropy does."),
    (_nl_shifted_again, "it shifts the targets once more: targets[:, t] already is the token after position "
                        "t (the batch did the shift), so compare logits[:, t] with targets[:, t]."),
    (_nl_classes_on_axis_1, "F.cross_entropy read the logits' axis 1 (the positions) as the classes: it wants "
                            "(N, V) logits and (N,) targets, so flatten with logits.reshape(-1, V) and "
                            "targets.reshape(-1)."),
    (_nl_first_row, "it only uses the first row of the batch: average over every row and every position."),
    (_nl_last_position, "it only uses the last position of each row: a causal language model is trained to "
                        "predict the next token at every position."),
]


def _count(V, T, L, C, b, *, tied=True, positions=True, final_ln=True, block_ln=True, out_proj=True,
           ff_width=4, per_block_times=None):
    """The parameter count with parts left out or changed: the mistakes below."""
    attn = (4 if out_proj else 3) * (C * C + b * C)
    ff = ff_width * C * C + b * ff_width * C + ff_width * C * C + b * C
    ln = 2 * (C + b * C) if block_ln else 0
    blocks = (L if per_block_times is None else per_block_times) * (attn + ff + ln)
    return (V * C * (1 if tied else 2) + (T * C if positions else 0) + blocks
            + ((C + b * C) if final_ln else 0))


def _pc(**kw):
    def count(vocab_size, block_size, n_layer, n_embd, bias=True):
        return _count(vocab_size, block_size, n_layer, n_embd, int(bool(bias)), **kw)
    return count


def _pc_no_bias(vocab_size, block_size, n_layer, n_embd, bias=True):
    return _count(vocab_size, block_size, n_layer, n_embd, 0)


def _pc_no_ln_bias(vocab_size, block_size, n_layer, n_embd, bias=True):
    b = int(bool(bias))
    return _count(vocab_size, block_size, n_layer, n_embd, b) - b * (2 * n_layer + 1) * n_embd


_COUNT_MISTAKES = [
    (_pc(tied=False), "it counts the output layer's V x C matrix as well: with weight tying it *is* the token "
                      "embedding's matrix, so it is counted once."),
    (_pc(positions=False), "the position embedding is missing: block_size x n_embd more parameters, one "
                           "learned vector per position."),
    (_pc(final_ln=False), "the final layer norm, after the last block, is missing: C gains (and C shifts "
                          "with bias)."),
    (_pc(block_ln=False), "the two layer norms of each block are missing: 2 C per block (4 C with bias)."),
    (_pc(out_proj=False), "the attention's output projection W_o is missing: attention has four C x C "
                          "matrices, W_q, W_k, W_v and W_o."),
    (_pc(ff_width=1), "the feed-forward block is C -> C -> C here: its hidden layer is 4 C wide, "
                      "C -> 4C -> C, so it has 8 C^2 weights."),
    (_pc(per_block_times=1), "it counts one block: multiply the per-block count by n_layer."),
    (_pc_no_bias, "it leaves out the biases: with bias=True every linear layer has a bias vector and every "
                  "layer norm a shift beside its gain."),
    (_pc_no_ln_bias, "the layer norms' shifts are missing: with bias=True each layer norm has C gains and "
                     "C shifts."),
]


def _tp_inclusive(logits, p):
    # keep while the cumulative probability *including* the token is <= p
    logits = torch.as_tensor(logits)
    sp, order = torch.softmax(logits, -1).sort(-1, descending=True)
    drop = torch.zeros_like(sp, dtype=torch.bool).scatter_(-1, order, sp.cumsum(-1) > p)
    return logits.masked_fill(drop, float("-inf"))


def _tp_sorted_order(logits, p):
    logits = torch.as_tensor(logits)
    sorted_logits, _ = logits.sort(-1, descending=True)
    sp = torch.softmax(sorted_logits, -1)
    return sorted_logits.masked_fill(sp.cumsum(-1) - sp >= p, float("-inf"))


def _tp_zero(logits, p):
    logits = torch.as_tensor(logits)
    kept = top_p_filter_reference(logits, p)
    return torch.where(torch.isinf(kept), torch.zeros_like(logits), logits)


def _tp_probabilities(logits, p):
    return torch.softmax(top_p_filter_reference(logits, p), -1)


def _tp_keeps_one_more(logits, p):
    # drops a token only when the probability before it exceeds p, and one too many stay
    logits = torch.as_tensor(logits)
    sp, order = torch.softmax(logits, -1).sort(-1, descending=True)
    before = sp.cumsum(-1) - sp
    prev = torch.cat([torch.zeros_like(before[..., :1]), before[..., :-1]], -1)
    drop = torch.zeros_like(sp, dtype=torch.bool).scatter_(-1, order, prev >= p)
    return logits.masked_fill(drop, float("-inf"))


_TOP_P_MISTAKES = [
    (_tp_inclusive, "it drops the token whose probability carries the total to p or past it (cumsum > p): "
                    "keep a token when the tokens *before* it hold less than p, (cumsum - probs) < p, so the "
                    "nucleus reaches p and the most likely token always stays."),
    (_tp_sorted_order, "it returns the logits sorted by size: put each one back at its token's place "
                       "(scatter with the indices the sort returned), only the dropped ones set to -inf."),
    (_tp_zero, "the dropped logits are set to 0, and softmax still gives them weight: set them to "
               "float('-inf'), whose probability is exactly 0."),
    (lambda logits, p: logits, "it keeps every token, though the most likely ones already reach p: sort the "
                               "probabilities (softmax first, not the logits) in decreasing order, "
                               "descending=True, then add them up."),
    (_tp_probabilities, "it returns probabilities: return the logits, with the dropped ones set to -inf "
                        "(sampling applies softmax afterwards)."),
    (_tp_keeps_one_more, "it keeps one token too many: drop every token whose more likely tokens already "
                         "hold p or more, (cumsum - probs) >= p."),
]


# ------------------------------------------------------------------- checks
def check_make_batch(make_batch) -> None:
    """Check ``make_batch(ids, offsets, block_size) -> (x, y)``."""
    ref = make_batch_reference
    ids1 = torch.arange(100, 112)  # 100, 101, ..., 111: a token's id says where it stands
    off1 = torch.tensor([0, 5])
    g = torch.Generator().manual_seed(61)
    ids2 = torch.randint(0, 50, (40,), generator=g)
    off2 = torch.tensor([31, 0, 17, 31])  # 31 = 40 - 8 - 1, the last valid start
    ids3 = torch.randint(0, 9, (6,), generator=g)
    off3 = torch.tensor([4, 2, 0])
    cases = [
        Case((ids1, off1, 3), ref(ids1, off1, 3), about="ids = 100, 101, ..., 111, offsets = [0, 5], block_size = 3",
             hint="by hand: offset 5 gives x = [105, 106, 107] and y = [106, 107, 108], the same window moved "
                  "one token to the right."),
        Case((ids2, off2, 8), ref(ids2, off2, 8), about="40 random ids, offsets = [31, 0, 17, 31], block_size = 8",
             hint="each offset gives one row, in the order given; offset 31 is the last that leaves room for "
                  "y, which ends with the last token, ids[39]."),
        Case((ids3, off3, 1), ref(ids3, off3, 1), about="6 random ids, offsets = [4, 2, 0], block_size = 1",
             hint="with block_size = 1 each row holds one token, x of shape (3, 1): keep the window axis."),
    ]
    check_function(make_batch, "make_batch", cases, params=["ids", "offsets", "block_size"],
                   outputs=("x", "y"), mistakes=_MAKE_BATCH_MISTAKES)


def check_next_token_loss(next_token_loss) -> None:
    """Check ``next_token_loss(logits, targets)``: a scalar, the mean cross-entropy."""
    ref = next_token_loss_reference
    by_hand = torch.log(torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]]], dtype=torch.float64))  # (1, 2, 3)
    t_hand = torch.tensor([[2, 0]])
    g = torch.Generator().manual_seed(62)
    z2 = 2 * torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    t2 = torch.randint(0, 7, (2, 5), generator=g)
    z3 = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)  # T == V: no shape error to warn you
    t3 = torch.randint(0, 6, (3, 6), generator=g)
    z4 = 400 * torch.randn(2, 4, 5, generator=g, dtype=torch.float64)
    t4 = torch.randint(0, 5, (2, 4), generator=g)

    def case(z, t, about, hint=None):
        return Case((z, t), ref(z, t).item(), about=about, hint=hint, rtol=1e-6, atol=1e-9)

    cases = [
        case(by_hand, t_hand, "B = 1, T = 2, V = 3, probabilities [1/3, 1/3, 1/3] then [1/2, 1/4, 1/4]",
             "by hand: the targets get probabilities 1/3 and 1/2, so the loss is (ln 3 + ln 2) / 2 = 0.896."),
        case(z2, t2, "random logits of shape (2, 5, 7)",
             "one number for the whole batch: the mean over all B x T positions."),
        case(z3, t3, "random logits of shape (3, 6, 6), T = V",
             "F.cross_entropy wants (N, V) logits and (N,) targets: flatten with reshape(-1, V) and reshape(-1)."),
        case(z4, t4, "logits of shape (2, 4, 5) in the hundreds",
             "exp of a logit in the hundreds overflows: use log_softmax (or F.cross_entropy), which subtracts "
             "the largest logit first."),
    ]
    check_function(next_token_loss, "next_token_loss", cases, params=["logits", "targets"],
                   mistakes=_LOSS_MISTAKES)


def check_gpt_parameter_count(gpt_parameter_count) -> None:
    """Check ``gpt_parameter_count(vocab_size, block_size, n_layer, n_embd, bias=True)``."""
    ref = gpt_parameter_count_reference

    def case(args, about, hint=None, bias=True):
        return Case(args, ref(*args, bias=bias), kwargs={"bias": bias}, about=about, hint=hint, rtol=0, atol=0.5)

    cases = [
        case((10, 8, 1, 4), "V = 10, T = 8, one block, C = 4, bias=False",
             "by hand: 40 (tokens, shared with the output layer) + 32 (positions) + 192 (12 C^2 in the block) "
             "+ 8 (its two layer norms' gains) + 4 (the final layer norm) = 276.", bias=False),
        case((10, 8, 1, 4), "V = 10, T = 8, one block, C = 4, bias=True",
             "with biases each block gains 11 C (3 C + C in attention, 4 C + C in the feed-forward block, "
             "C + C in the layer norms' shifts) and the final layer norm C: 276 + 44 + 4 = 324."),
        case((96, 64, 4, 128), "the chapter's model: V = 96, T = 64, 4 blocks, C = 128, bias=False",
             "12 C^2 + 2 C per block, times n_layer.", bias=False),
        case((65, 256, 6, 384), "nanoGPT's shakespeare-char model: V = 65, T = 256, 6 blocks, C = 384, bias=False",
             bias=False),
        case((50257, 1024, 12, 768), "GPT-2 small: V = 50257, T = 1024, 12 blocks, C = 768, bias=True",
             "GPT-2 small has 124,439,808 parameters: the 124M of its name."),
    ]
    check_function(gpt_parameter_count, "gpt_parameter_count", cases,
                   params=["vocab_size", "block_size", "n_layer", "n_embd"], mistakes=_COUNT_MISTAKES)


def check_top_p_filter(top_p_filter) -> None:
    """Check ``top_p_filter(logits, p)``: the nucleus kept, every other logit ``-inf``."""
    ref = top_p_filter_reference
    hand = torch.log(torch.tensor([0.10, 0.50, 0.15, 0.25], dtype=torch.float64))
    g = torch.Generator().manual_seed(63)
    batch = 1.5 * torch.randn(3, 10, generator=g, dtype=torch.float64)
    deep = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)
    peaked = torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0]], dtype=torch.float64)

    def case(z, p, about, hint=None):
        return Case((z, p), ref(z, p).numpy(), about=about, hint=hint)

    cases = [
        case(hand, 0.7, "probabilities [0.10, 0.50, 0.15, 0.25], p = 0.7",
             "by hand: sorted, the probabilities are 0.50, 0.25, 0.15, 0.10; 0.50 + 0.25 = 0.75 reaches 0.7, "
             "so tokens 1 and 3 stay and tokens 0 and 2 become -inf."),
        case(batch, 0.9, "random logits of shape (3, 10), p = 0.9",
             "filter each row on its own: softmax, sort and cumsum along the last axis (dim=-1)."),
        case(peaked, 0.5, "one row whose top token has probability 0.9, p = 0.5",
             "the most likely token always stays, even when it alone holds more than p: here it is the only one."),
        case(batch, 1.0, "random logits of shape (3, 10), p = 1.0",
             "p = 1 keeps every token."),
        case(deep, 0.6, "random logits of shape (2, 3, 8), p = 0.6",
             "work along the last axis only (dim=-1), whatever the number of axes before it."),
    ]
    with np.errstate(invalid="ignore"):  # -inf - (-inf) is NaN where both have dropped a token: not a difference
        check_function(top_p_filter, "top_p_filter", cases, params=["logits", "p"], mistakes=_TOP_P_MISTAKES)
