"""Chapter 5's checks: the library passes them, visible and hidden, typical mistakes get the sentence meant for
them, and garbage never crashes a check. (The library's versions are tested against torch and attnedu.nn's blocks
in test_blocks.py, test_functional_attention.py and test_train.py.)"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import CheckFailed
from attnedu.checks import ch05_transformer as ch05
from attnedu.functional import attention_pattern as pat_ref
from attnedu.nn import encoder_block as eb_ref
from attnedu.nn import layer_norm as ln_ref


# ------------------------------------------------------------------ wrong learner functions
def ln_unbiased(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gamma + beta


def ln_std_plus_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).sqrt()
    return (x - mean) / (std + eps) * gamma + beta


def ln_no_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / ((x - mean) ** 2).mean(-1, keepdim=True).sqrt() * gamma + beta


def ln_batch_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def ln_no_affine(x, gamma, beta, eps=1e-5):
    return ln_ref(x, torch.ones_like(gamma), torch.zeros_like(beta), eps)


def ln_swapped(x, gamma, beta, eps=1e-5):
    return ln_ref(x, beta, gamma, eps)


def rms_norm(x, gamma, beta, eps=1e-5):
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * gamma + beta


def ln_fixed_eps(x, gamma, beta, eps=1e-5):
    return ln_ref(x, gamma, beta)


def ln_numpy(x, gamma, beta, eps=1e-5):
    x, gamma, beta = (np.asarray(a) for a in (x, gamma, beta))
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def sa(attn, h):
    return attn(h, h, h)[0]


def eb_no_residual(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return ff(norm2(sa(attn, norm1(x))))
    return norm2(ff(norm1(sa(attn, x))))


def eb_residual_from_norm(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        h = norm1(x)
        x = h + sa(attn, h)
        h = norm2(x)
        return h + ff(h)
    return eb_ref(x, attn, ff, norm1, norm2, False)


def eb_always_post(x, attn, ff, norm1, norm2, norm_first=True):
    x = norm1(x + sa(attn, x))
    return norm2(x + ff(x))


def eb_swapped(x, attn, ff, norm1, norm2, norm_first=True):
    return eb_ref(x, attn, ff, norm1, norm2, not norm_first)


def eb_normalised_output(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        x = x + norm1(sa(attn, x))
        return x + norm2(ff(x))
    return eb_ref(x, attn, ff, norm1, norm2, False)


def eb_norm1_twice(x, attn, ff, norm1, norm2, norm_first=True):
    return eb_ref(x, attn, ff, norm1, norm1, norm_first)


def eb_no_ff(x, attn, ff, norm1, norm2, norm_first=True):
    return x + sa(attn, norm1(x)) if norm_first else norm1(x + sa(attn, x))


def eb_post_skips_norm1(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return eb_ref(x, attn, ff, norm1, norm2, True)
    x = x + sa(attn, x)
    return norm2(x + ff(x))


def eb_keeps_tuple(x, attn, ff, norm1, norm2, norm_first=True):
    h = norm1(x)
    return x + attn(h, h, h)  # forgot that attention returns (output, weights)


def acc_token(pred, target):
    return (pred == target).float().mean().item()


def acc_any(pred, target):
    return (pred == target).any(dim=1).float().mean().item()


def acc_count(pred, target):
    return (pred == target).all(dim=1).sum().item()


def acc_error_rate(pred, target):
    return 1 - (pred == target).all(dim=1).float().mean().item()


def acc_per_position(pred, target):
    return (pred == target).all(dim=0).float()


def pat_transposed(kind, n_in, n_out):
    return pat_ref(kind, n_in, n_out).T


def pat_strict(kind, n_in, n_out):
    T = n_in + n_out
    if kind == "encoder":
        return np.ones((T, T), dtype=bool)
    if kind == "decoder":
        return np.tril(np.ones((T, T), dtype=bool), k=-1)
    m = pat_ref(kind, n_in, n_out)
    m[n_in:, n_in:] = np.tril(np.ones((n_out, n_out), dtype=bool), k=-1)
    return m


def pat_t5_causal_everywhere(kind, n_in, n_out):
    return pat_ref("decoder" if kind == "encoder-decoder" else kind, n_in, n_out)


def pat_t5_outputs_see_the_future(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, n_in:] = True
    return m


def pat_t5_inputs_see_outputs(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[:n_in] = True
    return m


def pat_t5_no_cross_attention(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, :n_in] = False
    return m


def pat_ints(kind, n_in, n_out):
    return pat_ref(kind, n_in, n_out).astype(int)


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_5_check_visible_and_hidden(capsys):
    for name, ex in ch05.EXERCISES.items():
        ch05.check(name, ex.reference)
        ch05.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 4
    for name, n in [("layer_norm", 5), ("encoder_block", 4), ("sequence_accuracy", 4), ("attention_pattern", 7)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def layer_norm(x, gamma, beta, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * gamma + beta

    def encoder_block(x, attn, ff, norm1, norm2, norm_first=True):
        if norm_first:
            h = norm1(x)
            x = x + attn(h, h, h)[0]
            return x + ff(norm2(x))
        x = norm1(x + attn(x, x, x)[0])
        return norm2(x + ff(x))

    def sequence_accuracy(pred, target):
        return (pred == target).all(dim=1).float().mean().item()

    def attention_pattern(kind, n_in, n_out):
        T = n_in + n_out
        if kind == "encoder":
            return np.ones((T, T), dtype=bool)
        if kind == "decoder":
            return np.tril(np.ones((T, T), dtype=bool))
        mask = np.zeros((T, T), dtype=bool)
        mask[:n_in, :n_in] = True
        mask[n_in:, :n_in] = True
        mask[n_in:, n_in:] = np.tril(np.ones((n_out, n_out), dtype=bool))
        return mask

    ch05.check("layer_norm", layer_norm)
    ch05.check("layer_norm", ln_numpy)  # NumPy operations on the tensors are fine too
    ch05.check("encoder_block", encoder_block)
    ch05.check("sequence_accuracy", sequence_accuracy)
    ch05.check("sequence_accuracy", lambda p, t: (p == t).all(dim=1).float().mean())  # a 0-d tensor
    ch05.check("attention_pattern", attention_pattern)
    assert capsys.readouterr().out.count("passes all") == 6
    for name, fn in [("layer_norm", layer_norm), ("encoder_block", encoder_block),
                     ("sequence_accuracy", sequence_accuracy), ("attention_pattern", attention_pattern)]:
        ch05.check(name, fn, hidden=True)


# ------------------------------------------------------------------ layer norm
@pytest.mark.parametrize(
    "fn, message",
    [
        (ln_unbiased, r"Likely cause: it divides the squared deviations by d - 1"),
        (ln_std_plus_eps, r"Likely cause: it adds eps to the standard deviation"),
        (ln_no_eps, r"Likely cause: it leaves out eps: a row whose entries are all equal"),
        (ln_batch_norm, r"Likely cause: it normalises each feature over the batch \(axis 0\), which is batch norm"),
        (ln_no_affine, r"other gamma and beta.*Likely cause: it forgets gamma and beta"),
        (ln_swapped, r"Likely cause: gamma and beta are swapped"),
        (rms_norm, r"Likely cause: .*that is RMSNorm"),
        (ln_fixed_eps, r"eps = 0\.5.*Likely cause: it ignores the eps argument"),
    ],
)
def test_layer_norm_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("layer_norm", fn)


# ------------------------------------------------------------------ encoder block
@pytest.mark.parametrize(
    "fn, message",
    [
        (eb_no_residual, r"norm_first=True.*Likely cause: the residual connections are missing"),
        (eb_residual_from_norm, r"Likely cause: it adds the sublayer's output to norm\(x\) instead of x"),
        (eb_always_post, r"1 head, norm_first=True.*Likely cause: pre-norm and post-norm are swapped"),
        (eb_swapped, r"Likely cause: pre-norm and post-norm are swapped"),
        (eb_normalised_output, r"Likely cause: it normalises the sublayer's output"),
        (eb_norm1_twice, r"Likely cause: it uses norm1 for both sublayers"),
        (eb_no_ff, r"Likely cause: the feed-forward sublayer is missing"),
        (eb_post_skips_norm1, r"norm_first=False.*Likely cause: in post-norm it skips norm1"),
        (eb_keeps_tuple, r"raised TypeError.*Hint: pre-norm: .*attn returns a tuple \(output, weights\)"),
    ],
)
def test_encoder_block_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("encoder_block", fn)


# ------------------------------------------------------------------ sequence accuracy
@pytest.mark.parametrize(
    "fn, message",
    [
        (acc_token, r"2 of them right.*Likely cause: that is the token accuracy"),
        (acc_any, r"Likely cause: it counts a sequence as right when any position is right"),
        (acc_count, r"Likely cause: it returns the number of right sequences"),
        (acc_error_rate, r"Likely cause: it returns the fraction of wrong sequences"),
        (acc_per_position, r"shape \(3,\); expected shape \(\).*Hint: by hand.*dim=1"),
    ],
)
def test_sequence_accuracy_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("sequence_accuracy", fn)


# ------------------------------------------------------------------ attention patterns
@pytest.mark.parametrize(
    "fn, message",
    [
        (pat_transposed, r"'decoder'.*Likely cause: the pattern is transposed"),
        (pat_strict, r"'decoder'.*Likely cause: a position may not attend to itself"),
        (pat_t5_causal_everywhere, r"'encoder-decoder'.*Likely cause: the inputs are read causally"),
        (pat_t5_outputs_see_the_future, r"Likely cause: the outputs see later outputs"),
        (pat_t5_inputs_see_outputs, r"Likely cause: the inputs attend to the outputs"),
        (pat_t5_no_cross_attention, r"Likely cause: the outputs cannot see the inputs"),
        (pat_ints, r"expected booleans"),
    ],
)
def test_attention_pattern_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("attention_pattern", fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("name", list(ch05.EXERCISES))
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(partial(ch05.check, name), fn, message)
