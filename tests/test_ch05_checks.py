"""Chapter 5's checks: the library passes them, visible and hidden, typical mistakes get the sentence meant for
them, a stub is told it is not written yet, and garbage never crashes a check. (The library's versions are tested
against torch and attnedu.nn's blocks in test_blocks.py, test_nn.py and test_functional_attention.py.)"""

from __future__ import annotations

import math
import re
from functools import partial

import numpy as np
import pytest
import torch

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import CheckFailed
from attnedu.checks import ch05_transformer as ch05
from attnedu.functional import attention_pattern as pat_ref
from attnedu.nn import DecoderBlock
from attnedu.nn import cross_attention as ca_ref
from attnedu.nn import decoder_block as db_ref
from attnedu.nn import encoder_block as eb_ref


# ------------------------------------------------------------------ wrong learner functions
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


# cross-attention, written as a learner would: the solution, then one slip each
def ca_solution(x, memory, attn, memory_mask=None, *, slip=None):
    B, T, d = x.shape
    H = 1 if slip == "one head" else attn.num_heads
    dh = d // H
    queries, keys = (memory, x) if slip == "swapped" else (x, memory)
    q = attn.q_proj(queries).view(B, queries.shape[1], H, dh).transpose(1, 2)
    k = attn.k_proj(keys).view(B, keys.shape[1], H, dh).transpose(1, 2)
    v = attn.v_proj(keys).view(B, keys.shape[1], H, dh).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d if slip == "sqrt d_model" else dh)
    if memory_mask is not None and slip != "no mask":
        hidden = memory_mask[:, None, None, :] if slip == "inverted" else ~memory_mask[:, None, None, :]
        scores = scores.masked_fill(hidden, 0.0 if slip == "zero fill" else float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    out = weights @ v
    out = (out if slip == "no transpose" else out.transpose(1, 2)).reshape(B, queries.shape[1], d)
    out = out if slip == "no out_proj" else attn.out_proj(out)
    return out if slip == "output only" else (out, weights)


def ca_einsum(x, memory, attn, memory_mask=None):
    # the heads split with unflatten and einsum instead of view and transpose: fine too
    H = attn.num_heads
    q, k, v = (t.unflatten(-1, (H, -1)) for t in (attn.q_proj(x), attn.k_proj(memory), attn.v_proj(memory)))
    scores = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(q.shape[-1])
    if memory_mask is not None:
        scores = torch.where(memory_mask[:, None, None, :], scores, -torch.inf)
    weights = scores.softmax(-1)
    return attn.out_proj(torch.einsum("bhts,bshd->bthd", weights, v).flatten(2)), weights


def ca_calls_the_module(x, memory, attn, memory_mask=None):
    pad = None if memory_mask is None else ~memory_mask
    return attn(x, memory, memory, key_padding_mask=pad, average_attn_weights=False)


# the decoder block, written as a learner would: the solution, then one slip each
def db_solution(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None, *, slip=None):
    allowed = torch.from_numpy(np.tril(np.ones((x.shape[1], x.shape[1]), dtype=bool)))
    mask = {"no causal mask": None, "mask not inverted": allowed}.get(slip, ~allowed)
    norms = [norm1, norm1, norm1] if slip == "norm1 everywhere" else [norm1, norm2, norm3]

    def self_sub(h):
        return self_attn(h, h, h, attn_mask=mask)[0]

    def cross_sub(h):
        kv = h if slip == "keys from x" else norms[1](memory) if slip == "normalised memory" else memory
        module = self_attn if slip == "self_attn for cross" else cross_attn
        return ca_ref(h, kv, module, None if slip == "ignores the mask" else memory_mask)[0]

    order = [(self_sub, norms[0]), (cross_sub, norms[1])]
    order = order[::-1] if slip == "cross first" else order
    order += [] if slip == "no feed-forward" else [(ff, norms[2])]
    for f, norm in order:
        if slip == "post-norm":
            x = norm(x + f(x))
        elif slip == "no residual":
            x = f(norm(x))
        else:
            x = x + f(norm(x))
    return x


def db_with_the_modules(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None):
    # the cross-attention through the module's own forward, in torch's convention: fine too
    causal = ~torch.tril(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool))
    h = norm1(x)
    x = x + self_attn(h, h, h, attn_mask=causal)[0]
    pad = None if memory_mask is None else ~memory_mask
    h = norm2(x)
    x = x + cross_attn(h, memory, memory, key_padding_mask=pad)[0]
    return x + ff(norm3(x))


def db_tilde_of_none(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None):
    h = norm2(x)
    return x + cross_attn(h, memory, memory, key_padding_mask=~memory_mask)[0]  # ~None


def db_keeps_tuple(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None):
    return x + ca_ref(norm2(x), memory, cross_attn, memory_mask)  # forgot [0]


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
    assert out.count("passes all") == 4 and out.count("is recorded") == 1
    for name, n in [("encoder_block", 4), ("cross_attention", 4), ("decoder_block", 5), ("attention_pattern", 7)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def encoder_block(x, attn, ff, norm1, norm2, norm_first=True):
        if norm_first:
            h = norm1(x)
            x = x + attn(h, h, h)[0]
            return x + ff(norm2(x))
        x = norm1(x + attn(x, x, x)[0])
        return norm2(x + ff(x))

    def cross_attention(x, memory, attn, memory_mask=None):
        B, T, d_model = x.shape
        S, H = memory.shape[1], attn.num_heads
        d_head = d_model // H

        def heads(t):
            return t.view(B, t.shape[1], H, d_head).transpose(1, 2)

        q = heads(attn.q_proj(x))
        k, v = heads(attn.k_proj(memory)), heads(attn.v_proj(memory))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)
        if memory_mask is not None:
            scores = scores.masked_fill(~memory_mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, T, d_model)
        return attn.out_proj(out), weights

    def decoder_block(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None):
        T = x.shape[1]
        blocked = ~torch.from_numpy(np.tril(np.ones((T, T), dtype=bool)))
        h = norm1(x)
        x = x + self_attn(h, h, h, attn_mask=blocked)[0]
        x = x + ca_ref(norm2(x), memory, cross_attn, memory_mask)[0]
        return x + ff(norm3(x))

    def predict_norm_placement():
        return "b"

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

    solutions = [("encoder_block", encoder_block), ("cross_attention", cross_attention),
                 ("cross_attention", ca_einsum), ("decoder_block", decoder_block),
                 ("decoder_block", db_with_the_modules), ("predict_norm_placement", predict_norm_placement),
                 ("attention_pattern", attention_pattern)]
    for name, fn in solutions:
        ch05.check(name, fn)
        ch05.check(name, fn, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 6 and out.count("is recorded") == 1


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


# ------------------------------------------------------------------ cross-attention
@pytest.mark.parametrize(
    "slip, message",
    [
        ("swapped", r"three queries.*Likely cause: the queries come from memory"),
        ("no mask", r"identity projections returned `output`.*Likely cause: memory_mask is ignored"),
        ("inverted", r"Likely cause: the mask is inverted"),
        ("zero fill", r"Likely cause: the padded scores are set to 0 instead of -inf"),
        ("sqrt d_model", r"2 heads.*Likely cause: it divides the scores by sqrt\(d_model\)"),
        ("one head", r"2 heads.*Likely cause: it attends with one head of size d_model"),
        ("no transpose", r"Likely cause: it merges the heads without transposing"),
        ("no out_proj", r"one head, no mask.*Likely cause: it leaves out the output projection"),
        ("output only", r"returned 1 value\(s\); expected a tuple of 2: `return output, weights`"),
    ],
)
def test_cross_attention_mistakes_get_their_sentence(slip, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("cross_attention", partial(ca_solution, slip=slip))


def test_cross_attention_is_written_not_called():
    with pytest.raises(CheckFailed, match=r"raised RuntimeError: here you write the attention yourself"):
        ch05.check("cross_attention", ca_calls_the_module)


def test_every_cross_attention_mistake_is_caught_and_named_by_the_visible_cases():
    ex = ch05.EXERCISES["cross_attention"]
    for settings, sentence in ex.mistakes:
        with pytest.raises(CheckFailed, match=re.escape(sentence)):
            ch05.check("cross_attention", partial(ex.wrong, **settings))


# ------------------------------------------------------------------ decoder block
@pytest.mark.parametrize(
    "slip, message",
    [
        ("no causal mask", r"Likely cause: the self-attention has no causal mask"),
        ("mask not inverted", r"NaN.*Likely cause: the causal mask is passed in the course's convention"),
        ("no residual", r"Likely cause: the residual connections are missing"),
        ("post-norm", r"Likely cause: it is post-norm"),
        ("keys from x", r"Likely cause: the cross-attention takes its keys and values from the decoder's stream"),
        ("normalised memory", r"Likely cause: it normalises the memory with norm2"),
        ("ignores the mask", r"memory_mask hiding 4 positions.*Likely cause: it ignores memory_mask"),
        ("cross first", r"Likely cause: the cross-attention comes before the self-attention"),
        ("norm1 everywhere", r"Likely cause: it uses norm1 for every sublayer"),
        ("no feed-forward", r"Likely cause: the feed-forward sublayer is missing"),
        ("self_attn for cross", r"Likely cause: the cross-attention uses self_attn's weights"),
    ],
)
def test_decoder_block_mistakes_get_their_sentence(slip, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("decoder_block", partial(db_solution, slip=slip))


@pytest.mark.parametrize(
    "fn, message",
    [
        (db_tilde_of_none, r"raised TypeError.*memory_mask=None\)\. Hint: .*memory_mask=None means no padding"),
        (db_keeps_tuple, r"raised TypeError.*Hint: .*return a tuple \(output, weights\)"),
    ],
)
def test_decoder_block_errors_get_the_cases_hint(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check("decoder_block", fn)


def test_every_decoder_block_mistake_is_caught_and_named_by_the_visible_cases():
    ex = ch05.EXERCISES["decoder_block"]
    for settings, sentence in ex.mistakes:
        with pytest.raises(CheckFailed, match=re.escape(sentence)):
            ch05.check("decoder_block", partial(ex.wrong, **settings))


def test_the_library_decoder_block_is_what_the_decoder_block_module_computes():
    torch.manual_seed(0)
    block = DecoderBlock(8, 2, 16, cross_attention=True).double().eval()
    x, memory = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 3, 8, dtype=torch.float64)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    parts = (block.self_attn, block.cross_attn, block.ff, block.res1.norm, block.res2.norm, block.res3.norm)
    with torch.no_grad():
        torch.testing.assert_close(db_ref(x, memory, *parts, mask), block(x, memory, memory_padding_mask=mask))


# ------------------------------------------------------------------ a prediction
def test_a_prediction_is_recorded_when_visible_and_graded_when_hidden(capsys):
    for answer in "abcd":
        ch05.check("predict_norm_placement", lambda a=answer: a)
    assert capsys.readouterr().out.count("is recorded") == 4
    ch05.check("predict_norm_placement", lambda: "b", hidden=True)
    for answer, sentence in [("a", "both train, you said"), ("c", "post-norm is the one that fails"),
                             ("d", "pre-norm does train")]:
        with pytest.raises(CheckFailed, match=rf"returned '{answer}', which is not what happens.*Likely cause: "
                                              rf"{sentence}"):
            ch05.check("predict_norm_placement", lambda a=answer: a, hidden=True)
    with pytest.raises(CheckFailed, match="one of 'a', 'b', 'c', 'd'"):
        ch05.check("predict_norm_placement", lambda: "pre-norm")


def test_reveal_shows_the_answer_and_why(capsys):
    def stub():
        raise NotImplementedError()
    for answer, said in [(lambda: "b", "(right)"), (lambda: "c", "not what happens"), (stub, "not answered yet")]:
        ch05.reveal("predict_norm_placement", answer)
        out = capsys.readouterr().out
        assert said in out and "'b'" in out and "Xiong et al." in out


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
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|expected a tuple of 2|answer with one of"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(partial(ch05.check, name), fn, message)


@pytest.mark.parametrize("name", list(ch05.EXERCISES))
def test_a_stub_is_told_it_is_not_written_yet_visible_and_hidden(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()
    for hidden in (False, True):
        with pytest.raises(CheckFailed, match="is not written yet"):
            ch05.check(name, stub, hidden=hidden)
