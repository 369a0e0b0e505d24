"""Chapter 6's checks: the references pass, typical mistakes get the sentence meant for them,
garbage never crashes a check, and the references are the real thing: the batches are
attnedu.train.get_batch's, the loss is what attnedu.models.GPT returns, the parameter count is
what a GPT has, and the nucleus is the smallest set of tokens whose probability reaches p."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import CheckFailed
from attnedu.checks import ch06_gpt as ch06
from attnedu.models import GPT, GPTConfig
from attnedu.train import get_batch

mb_ref, loss_ref = ch06.make_batch_reference, ch06.next_token_loss_reference
count_ref, top_p_ref = ch06.gpt_parameter_count_reference, ch06.top_p_filter_reference


# ------------------------------------------------------------------ wrong learner functions
def windows(ids, offsets, block_size, shift=0):
    return torch.stack([ids[int(o) + shift: int(o) + shift + block_size] for o in offsets])


def mb_no_shift(ids, offsets, block_size):
    return windows(ids, offsets, block_size), windows(ids, offsets, block_size)


def mb_swapped(ids, offsets, block_size):
    return windows(ids, offsets, block_size, 1), windows(ids, offsets, block_size)


def mb_rolled(ids, offsets, block_size):
    x = windows(ids, offsets, block_size)
    return x, torch.cat([x[:, 1:], x[:, :1]], dim=1)


def mb_late(ids, offsets, block_size):
    return windows(ids, offsets, block_size, 1), windows(ids, offsets, block_size, 2)


def mb_two_on(ids, offsets, block_size):
    return windows(ids, offsets, block_size), windows(ids, offsets, block_size, 2)


def mb_next_token_only(ids, offsets, block_size):
    return windows(ids, offsets, block_size), torch.stack([ids[int(o) + block_size] for o in offsets])


def mb_one_too_long(ids, offsets, block_size):
    return windows(ids, offsets, block_size + 1), windows(ids, offsets, block_size + 1, 1)


def mb_returns_x_only(ids, offsets, block_size):
    return windows(ids, offsets, block_size)


def mb_first_offset_only(ids, offsets, block_size):
    o = int(offsets[0])
    return ids[o:o + block_size][None], ids[o + 1:o + block_size + 1][None]


def loss_sum(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")


def loss_positive(logits, targets):
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, targets[..., None]).mean()


def loss_probabilities(logits, targets):
    p = torch.softmax(logits, dim=-1)
    return -p.gather(-1, targets[..., None]).mean()


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
    def gpt_parameter_count(vocab_size, block_size, n_layer, n_embd, bias=True):
        return count_parts(vocab_size, block_size, n_layer, n_embd, bias, **kw)
    return gpt_parameter_count


def count_ignores_bias(vocab_size, block_size, n_layer, n_embd, bias=True):
    return count_parts(vocab_size, block_size, n_layer, n_embd, False)


def count_no_ln_shift(vocab_size, block_size, n_layer, n_embd, bias=True):
    b = 1 if bias else 0
    return count_parts(vocab_size, block_size, n_layer, n_embd, bias) - b * (2 * n_layer + 1) * n_embd


def count_as_float_millions(vocab_size, block_size, n_layer, n_embd, bias=True):
    return round(count_ref(vocab_size, block_size, n_layer, n_embd, bias) / 1e6, 2)


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


# ------------------------------------------------------------------ the references pass
@pytest.mark.parametrize(
    "check, fn, n",
    [
        (ch06.check_make_batch, mb_ref, 3),
        (ch06.check_next_token_loss, loss_ref, 4),
        (ch06.check_gpt_parameter_count, count_ref, 5),
        (ch06.check_top_p_filter, top_p_ref, 5),
    ],
)
def test_the_reference_passes_its_own_check_and_says_so(check, fn, n, capsys):
    check(fn)
    assert f"passes all {n} checks" in capsys.readouterr().out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def make_batch(ids, offsets, block_size):
        x = torch.stack([ids[o: o + block_size] for o in offsets])  # (B, T)
        y = torch.stack([ids[o + 1: o + 1 + block_size] for o in offsets])  # (B, T)
        return x, y

    def next_token_loss(logits, targets):
        B, T, V = logits.shape
        return F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))

    def next_token_loss_by_hand(logits, targets):
        logp = torch.log_softmax(logits, dim=-1)  # (B, T, V)
        return -logp.gather(-1, targets.unsqueeze(-1)).mean()

    def gpt_parameter_count(vocab_size, block_size, n_layer, n_embd, bias=True):
        C, b = n_embd, int(bias)
        per_block = 12 * C * C + (2 + 11 * b) * C
        return vocab_size * C + block_size * C + n_layer * per_block + (1 + b) * C

    def top_p_filter(logits, p):
        probs = torch.softmax(logits, dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = before >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))

    ch06.check_make_batch(make_batch)
    ch06.check_next_token_loss(next_token_loss)
    ch06.check_next_token_loss(next_token_loss_by_hand)
    ch06.check_next_token_loss(lambda z, t: loss_ref(z, t).item())  # a Python float is fine too
    ch06.check_gpt_parameter_count(gpt_parameter_count)
    ch06.check_top_p_filter(top_p_filter)
    ch06.check_top_p_filter(top_p_numpy)  # NumPy on the tensors is fine too
    assert capsys.readouterr().out.count("passes all") == 7


# ------------------------------------------------------------------ make_batch
@pytest.mark.parametrize(
    "fn, message",
    [
        (mb_no_shift, r"offsets = \[0, 5\].*Likely cause: y equals x"),
        (mb_swapped, r"Likely cause: x and y are swapped"),
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
        ch06.check_make_batch(fn)


# ------------------------------------------------------------------ next_token_loss
@pytest.mark.parametrize(
    "fn, message",
    [
        (loss_sum, r"Likely cause: it sums the losses"),
        (loss_positive, r"Likely cause: the sign is wrong"),
        (loss_probabilities, r"Likely cause: it averages the targets' probabilities"),
        (loss_raw_logits, r"Likely cause: it uses the logits as if they were log-probabilities"),
        (loss_bits, r"Likely cause: it measures in bits"),
        (loss_shifted_again, r"Likely cause: it shifts the targets once more"),
        (loss_no_reshape, r"raised (RuntimeError|ValueError).*Hint: by hand"),
        (loss_last_position, r"Likely cause: it only uses the last position"),
        (loss_naive_softmax, r"in the hundreds.*(NaN|inf).*Hint: exp of a logit in the hundreds overflows"),
        (loss_per_position, r"shape \(1, 2\); expected shape \(\)"),
    ],
)
def test_next_token_loss_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch06.check_next_token_loss(fn)


def test_cross_entropy_on_unflattened_logits_is_named_where_it_does_not_raise():
    # when T == V, F.cross_entropy(logits, targets) runs, reading the positions as classes
    def loss_no_reshape_but_right_on_the_first_cases(logits, targets):
        if logits.shape[1] == logits.shape[2]:
            return F.cross_entropy(logits, targets)
        return loss_ref(logits, targets)

    with pytest.raises(CheckFailed, match=r"T = V.*Likely cause: F.cross_entropy read the logits' axis 1"):
        ch06.check_next_token_loss(loss_no_reshape_but_right_on_the_first_cases)


# ------------------------------------------------------------------ parameter count
@pytest.mark.parametrize(
    "fn, message",
    [
        (counter(tied=False), r"bias=False.*Likely cause: it counts the output layer's V x C matrix as well"),
        (counter(positions=False), r"Likely cause: the position embedding is missing"),
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
        ch06.check_gpt_parameter_count(fn)


def test_counting_one_block_is_named_on_the_first_model_with_several():
    with pytest.raises(CheckFailed, match=r"4 blocks.*Likely cause: it counts one block"):
        ch06.check_gpt_parameter_count(counter(blocks=1))


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
        (top_p_along_axis_0, r"shape \(3, 10\).*Hint: filter each row on its own"),
    ],
)
def test_top_p_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch06.check_top_p_filter(fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "check",
    [ch06.check_make_batch, ch06.check_next_token_loss, ch06.check_gpt_parameter_count, ch06.check_top_p_filter],
)
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|returned 1 value"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)


# ------------------------------------------------------------------ the references are the real thing
def test_make_batch_reference_is_get_batch_at_the_offsets_it_draws():
    ids = torch.randint(0, 30, (200,), generator=torch.Generator().manual_seed(0))
    x, y = get_batch(ids, 6, 16, torch.Generator().manual_seed(1))
    offsets = torch.randint(200 - 16, (6,), generator=torch.Generator().manual_seed(1))  # the same draw
    rx, ry = mb_ref(ids, offsets, 16)
    assert torch.equal(rx, x) and torch.equal(ry, y)
    assert torch.equal(rx[:, 1:], ry[:, :-1])  # y is x moved one token on


def test_next_token_loss_reference_is_the_loss_the_gpt_returns():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=13, n_layer=1, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 13, (3, 8))
    targets = torch.randint(0, 13, (3, 8))
    logits, loss = model(idx, targets)
    torch.testing.assert_close(loss_ref(logits, targets), loss)


def test_next_token_loss_reference_is_minus_the_mean_log_probability():
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]], dtype=torch.float64)
    loss = loss_ref(torch.log(probs), torch.tensor([[2, 1]]))
    assert math.isclose(loss.item(), -(math.log(0.5) + math.log(0.3)) / 2)
    uniform = loss_ref(torch.zeros(2, 4, 96), torch.zeros(2, 4, dtype=torch.long))
    assert math.isclose(uniform.item(), math.log(96), rel_tol=1e-6)  # an untrained model's loss


@pytest.mark.parametrize("dims", [(10, 8, 1, 4), (96, 64, 4, 128), (65, 256, 6, 384), (7, 3, 2, 12)])
@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_reference_counts_the_parameters_of_a_real_gpt(dims, bias):
    V, T, L, C = dims
    model = GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=L, n_head=2 if C % 2 == 0 else 1, n_embd=C,
                          bias=bias))
    assert count_ref(V, T, L, C, bias) == sum(p.numel() for p in model.parameters())


def test_gpt2_small_has_its_124_million_parameters():
    assert count_ref(50257, 1024, 12, 768, True) == 124_439_808


def brute_force_nucleus(probs: list[float], p: float) -> set[int]:
    """The smallest set of tokens whose probability reaches p, by trying every set."""
    n = len(probs)
    for size in range(1, n + 1):
        best = max(itertools.combinations(range(n), size), key=lambda s: sum(probs[i] for i in s))
        if sum(probs[i] for i in best) >= p - 1e-12:
            return set(best)
    return set(range(n))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8, 0.95])
def test_top_p_reference_keeps_the_smallest_set_whose_probability_reaches_p(seed, p):
    logits = 2 * torch.randn(7, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    kept = set(torch.nonzero(torch.isfinite(top_p_ref(logits, p))).flatten().tolist())
    assert kept == brute_force_nucleus(torch.softmax(logits, -1).tolist(), p)
    assert torch.equal(top_p_ref(logits, p)[list(kept)], logits[list(kept)])  # the kept logits are unchanged


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mb_ref(torch.arange(10), torch.tensor([7]), 3), r"offsets must be in \[0, len\(ids\) - block_size - 1\] = \[0, 6\]"),
        (lambda: mb_ref(torch.arange(10), torch.tensor([-1]), 3), "offsets must be in"),
        (lambda: mb_ref(torch.arange(10).view(2, 5), torch.tensor([0]), 3), "ids must be a 1-D sequence"),
        (lambda: mb_ref(torch.arange(10), torch.tensor([0.5]), 3), "offsets must be a 1-D sequence of integers"),
        (lambda: mb_ref(torch.arange(10), torch.tensor([0]), 0), "block_size must be a positive integer"),
        (lambda: loss_ref(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), r"logits must be \(B, T, V\)"),
        (lambda: loss_ref(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)), r"targets \(B, T\)"),
        (lambda: loss_ref(torch.zeros(1, 2, 4), torch.tensor([[0, 4]])), r"targets must be in \[0, V=4\)"),
        (lambda: loss_ref(torch.zeros(1, 2, 4), torch.zeros(1, 2)), "targets must be integer token ids"),
        (lambda: count_ref(0, 8, 1, 4), "vocab_size must be a positive integer"),
        (lambda: top_p_ref(torch.zeros(4), 0.0), r"top_p must be in \(0, 1\]"),
    ],
)
def test_references_reject_bad_input_with_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
