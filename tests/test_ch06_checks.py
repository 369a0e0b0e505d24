"""Chapter 6's checks: the library passes them, visible and hidden; typical mistakes get the sentence meant for
them, and garbage never crashes a check. (That the library's versions are the real thing, the batches
get_batch's, the loss GPT's, the count a real GPT's, is tested in test_train.py and test_models.py.)"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import ch06_gpt as ch06
from attnedu.checks import CheckFailed
from attnedu.models import gpt_parameter_count, next_token_loss

check_make_batch, check_next_token_loss = partial(ch06.check, "make_batch"), partial(ch06.check, "next_token_loss")
check_count, check_top_p = partial(ch06.check, "gpt_parameter_count"), partial(ch06.check, "top_p_filter")


# ------------------------------------------------------------------ wrong learner functions
def windows(ids, offsets, context, shift=0):
    return torch.stack([ids[int(o) + shift: int(o) + shift + context] for o in offsets])


def mb_no_shift(ids, offsets, context):
    return windows(ids, offsets, context), windows(ids, offsets, context)


def mb_swapped(ids, offsets, context):
    return windows(ids, offsets, context, 1), windows(ids, offsets, context)


def mb_backwards(ids, offsets, context):
    rows = offsets[:, None] + torch.arange(context)  # (B, T)
    return ids[rows], ids[rows - 1]  # y one token to the left (ids[-1] at offset 0)


def mb_rolled(ids, offsets, context):
    x = windows(ids, offsets, context)
    return x, torch.cat([x[:, 1:], x[:, :1]], dim=1)


def mb_late(ids, offsets, context):
    return windows(ids, offsets, context, 1), windows(ids, offsets, context, 2)


def mb_two_on(ids, offsets, context):
    return windows(ids, offsets, context), windows(ids, offsets, context, 2)


def mb_next_token_only(ids, offsets, context):
    return windows(ids, offsets, context), torch.stack([ids[int(o) + context] for o in offsets])


def mb_one_too_long(ids, offsets, context):
    return windows(ids, offsets, context + 1), windows(ids, offsets, context + 1, 1)


def mb_returns_x_only(ids, offsets, context):
    return windows(ids, offsets, context)


def mb_first_offset_only(ids, offsets, context):
    o = int(offsets[0])
    return ids[o:o + context][None], ids[o + 1:o + context + 1][None]


def loss_sum(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def loss_positive(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, targets[..., None]).mean()


def loss_probabilities(logits, targets):
    p = torch.softmax(logits, dim=-1)
    return -p.gather(-1, targets[..., None]).mean()


def loss_one_minus_p(logits, targets):
    p = torch.softmax(logits, dim=-1)
    return (1 - p.gather(-1, targets[..., None])).mean()


def loss_raw_logits(logits, targets):
    return -logits.gather(-1, targets[..., None]).mean()


def loss_bits(logits, targets):
    logp2 = torch.log2(torch.softmax(logits, dim=-1))
    return -logp2.gather(-1, targets[..., None]).mean()


def loss_shifted_again(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), targets[:, 1:].reshape(-1))


def loss_no_reshape(logits, targets):
    return F.cross_entropy(logits, targets)


def loss_first_row(logits, targets):
    return F.cross_entropy(logits[0], targets[0])


def loss_last_position(logits, targets):
    return F.cross_entropy(logits[:, -1], targets[:, -1])


def loss_naive_softmax(logits, targets):
    p = torch.exp(logits) / torch.exp(logits).sum(dim=-1, keepdim=True)
    return -torch.log(p.gather(-1, targets[..., None])).mean()


def loss_per_position(logits, targets):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(targets.shape)


def count_parts(V, T, L, C, bias, tied=True, positions=True, final_ln=True, block_ln=True, attn_mats=4,
                ff_hidden=4, blocks=None):
    b = 1 if bias else 0
    attn = attn_mats * (C * C + b * C)
    ff = C * ff_hidden * C + b * ff_hidden * C + ff_hidden * C * C + b * C
    ln = 2 * (C + b * C) if block_ln else 0
    return (V * C + (0 if tied else V * C) + (T * C if positions else 0)
            + (L if blocks is None else blocks) * (attn + ff + ln) + ((C + b * C) if final_ln else 0))


def counter(**kw):
    def gpt_parameter_count(vocab_size, context, n_layer, d_model, bias=True):
        return count_parts(vocab_size, context, n_layer, d_model, bias, **kw)
    return gpt_parameter_count


def count_ignores_bias(vocab_size, context, n_layer, d_model, bias=True):
    return count_parts(vocab_size, context, n_layer, d_model, False)


def count_no_ln_shift(vocab_size, context, n_layer, d_model, bias=True):
    b = 1 if bias else 0
    return count_parts(vocab_size, context, n_layer, d_model, bias) - b * (2 * n_layer + 1) * d_model


def count_as_float_millions(vocab_size, context, n_layer, d_model, bias=True):
    return round(gpt_parameter_count(vocab_size, context, n_layer, d_model, bias) / 1e6, 2)


def nucleus(logits, p, keep_rule):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = keep_rule(sorted_probs, p)
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_inclusive(logits, p):
    return nucleus(logits, p, lambda sp, p: sp.cumsum(-1) <= p)


def top_p_sorted(logits, p):
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    sp = torch.softmax(sorted_logits, dim=-1)
    return sorted_logits.masked_fill(sp.cumsum(-1) - sp >= p, float("-inf"))


def top_p_zero(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sp, order = probs.sort(dim=-1, descending=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp < p)
    return logits.masked_fill(~keep, 0.0)


def top_p_ascending(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sp, order = probs.sort(dim=-1)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_probabilities(logits, p):
    return torch.softmax(nucleus(logits, p, lambda sp, p: sp.cumsum(-1) - sp < p), dim=-1)


def top_p_logit_cumsum(logits, p):
    sl, order = logits.sort(dim=-1, descending=True)
    keep = torch.zeros_like(sl, dtype=torch.bool).scatter(-1, order, sl.cumsum(-1) - sl < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_one_too_many(logits, p):
    # keeps the token after the nucleus as well: compares the mass before the *previous* token with p
    return nucleus(logits, p, lambda sp, p: torch.cat([torch.zeros_like(sp[..., :1]), (sp.cumsum(-1) - sp)[..., :-1]],
                                                      -1) < p)


def top_p_along_axis_0(logits, p):
    # right for one row (V,), where axis 0 is the vocabulary; wrong for a batch (B, V)
    probs = torch.softmax(logits, dim=0)
    sp, order = probs.sort(dim=0, descending=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(0, order, sp.cumsum(0) - sp < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_numpy(logits, p):
    z = np.asarray(logits, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sp = np.take_along_axis(probs, order, axis=-1)
    keep_sorted = np.cumsum(sp, axis=-1) - sp < p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, z, -np.inf)


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_6_check_visible_and_hidden(capsys):
    for name, ex in ch06.EXERCISES.items():
        ch06.check(name, ex.reference)
        ch06.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name, n in [("make_batch", 3), ("next_token_loss", 4), ("gpt_parameter_count", 5), ("top_p_filter", 5)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def make_batch(ids, offsets, context):
        x = torch.stack([ids[o: o + context] for o in offsets])  # (B, T)
        y = torch.stack([ids[o + 1: o + 1 + context] for o in offsets])  # (B, T)
        return x, y

    def next_token_loss_flat(logits, targets):
        B, T, V = logits.shape
        return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))

    def next_token_loss_by_hand(logits, targets):
        logp = torch.log_softmax(logits, dim=-1)  # (B, T, V)
        return -logp.gather(-1, targets.unsqueeze(-1)).mean()

    def count(vocab_size, context, n_layer, d_model, bias=True):
        C, b = d_model, int(bias)
        per_block = 12 * C * C + (2 + 11 * b) * C
        return vocab_size * C + context * C + n_layer * per_block + (1 + b) * C

    def top_p_filter(logits, p):
        probs = torch.softmax(logits, dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = before >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))

    for check, fn in [(check_make_batch, make_batch), (check_next_token_loss, next_token_loss_flat),
                      (check_next_token_loss, next_token_loss_by_hand),
                      (check_next_token_loss, lambda z, t: next_token_loss(z, t).item()),  # a Python float is fine too
                      (check_count, count), (check_top_p, top_p_filter),
                      (check_top_p, top_p_numpy)]:  # NumPy on the tensors is fine too
        check(fn)
        check(fn, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 7


# ------------------------------------------------------------------ make_batch
@pytest.mark.parametrize(
    "fn, message",
    [
        (mb_no_shift, r"offsets = \[0, 5\].*Likely cause: y equals x"),
        (mb_swapped, r"Likely cause: x and y are swapped"),
        (mb_backwards, r"Likely cause: y is moved one token to the left"),
        (mb_rolled, r"Likely cause: y is x rolled by one"),
        (mb_late, r"Likely cause: both windows start one token late"),
        (mb_two_on, r"Likely cause: y is moved two tokens on"),
        (mb_next_token_only, r"`y` of shape \(2,\); expected shape \(2, 3\).*Hint: by hand"),
        (mb_one_too_long, r"`x` of shape \(2, 4\); expected shape \(2, 3\)"),
        (mb_returns_x_only, r"returned 1 value\(s\); expected a tuple of 2: `return x, y`"),
        (mb_first_offset_only, r"shape \(1, 3\); expected shape \(2, 3\).*Hint: by hand"),
    ],
)
def test_make_batch_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_make_batch(fn)


# ------------------------------------------------------------------ next_token_loss
@pytest.mark.parametrize(
    "fn, message",
    [
        (loss_sum, r"Likely cause: it sums the losses"),
        (loss_positive, r"Likely cause: the sign is wrong"),
        (loss_probabilities, r"Likely cause: it averages the targets' probabilities"),
        (loss_one_minus_p, r"Likely cause: it averages 1 - p\(target\)"),
        (loss_raw_logits, r"Likely cause: it uses the logits as if they were log-probabilities"),
        (loss_bits, r"Likely cause: it measures in bits"),
        (loss_shifted_again, r"Likely cause: it shifts the targets once more"),
        (loss_no_reshape, r"raised (RuntimeError|ValueError).*Hint: by hand"),
        (loss_first_row, r"Likely cause: it only uses the first row of the batch"),
        (loss_last_position, r"Likely cause: it only uses the last position"),
        (loss_naive_softmax, r"in the hundreds.*(NaN|inf).*Hint: exp of a logit in the hundreds overflows"),
        (loss_per_position, r"shape \(1, 2\); expected shape \(\)"),
    ],
)
def test_next_token_loss_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_next_token_loss(fn)


def test_cross_entropy_on_unflattened_logits_is_named_where_it_does_not_raise():
    # when T == V, F.cross_entropy(logits, targets) runs, reading the positions as classes
    def loss_no_reshape_but_right_on_the_first_cases(logits, targets):
        if logits.shape[1] == logits.shape[2]:
            return F.cross_entropy(logits, targets)
        return next_token_loss(logits, targets)

    with pytest.raises(CheckFailed, match=r"T = V.*Likely cause: F.cross_entropy read the logits' axis 1"):
        check_next_token_loss(loss_no_reshape_but_right_on_the_first_cases)


# ------------------------------------------------------------------ parameter count
@pytest.mark.parametrize(
    "fn, message",
    [
        (counter(tied=False), r"bias=False.*Likely cause: it counts the output layer's V x C matrix as well"),
        (counter(positions=False), r"Likely cause: the position embedding is missing: context x d_model"),
        (counter(final_ln=False), r"Likely cause: the final layer norm, after the last block, is missing"),
        (counter(block_ln=False), r"Likely cause: the two layer norms of each block are missing"),
        (counter(attn_mats=3), r"Likely cause: the attention's output projection W_o is missing"),
        (counter(ff_hidden=1), r"Likely cause: the feed-forward block is C -> C -> C here"),
        (count_ignores_bias, r"bias=True.*Likely cause: it leaves out the biases"),
        (count_no_ln_shift, r"Likely cause: the layer norms' shifts are missing"),
        (count_as_float_millions, r"off by .*Hint: by hand: 40"),
    ],
)
def test_parameter_count_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_count(fn)


def test_counting_one_block_is_named_on_the_first_model_with_several():
    with pytest.raises(CheckFailed, match=r"4 blocks.*Likely cause: it counts one block"):
        check_count(counter(blocks=1))


# ------------------------------------------------------------------ top-p
@pytest.mark.parametrize(
    "fn, message",
    [
        (top_p_inclusive, r"p = 0\.7.*Likely cause: it drops the token whose probability carries the total"),
        (top_p_sorted, r"Likely cause: it returns the logits sorted by size"),
        (top_p_zero, r"Likely cause: the dropped logits are set to 0"),
        (top_p_ascending, r"Likely cause: it keeps every token.*descending=True"),
        (top_p_probabilities, r"Likely cause: it returns probabilities"),
        (top_p_logit_cumsum, r"Likely cause: it keeps every token.*softmax first, not the logits"),
        (top_p_one_too_many, r"Likely cause: it keeps one token too many"),
        (top_p_along_axis_0, r"shape \(3, 10\).*Hint: filter each row on its own"),
    ],
)
def test_top_p_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_top_p(fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("check", [check_make_batch, check_next_token_loss, check_count, check_top_p])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|returned 1 value"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)
