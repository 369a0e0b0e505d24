"""Chapter 4's checks: the library passes them, typical mistakes get the sentence meant for them,
the debug exercise's given code fails naming its bug, a prediction is recorded by its visible
check and graded by its hidden one, and garbage never crashes a check."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from conftest import REPO, assert_one_sentence, garbage, load_notebook  # what learners typically get wrong
import torch

from attnedu import functional as F
from attnedu.checks import CheckFailed
from attnedu.checks import ch04_multi_head_attention as ch04
from attnedu.nn import mha_flops

split_ref, merge_ref = F.split_heads, F.merge_heads


# ------------------------------------------------------------------ wrong learner functions
def split_reshape_only(x, num_heads):
    B, T, E = x.shape
    return x.reshape(B, num_heads, T, E // num_heads)  # heads interleaved with tokens


def split_without_transpose(x, num_heads):
    B, T, E = x.shape
    return x.reshape(B, T, num_heads, E // num_heads)  # (B, T, H, dh)


def split_strided(x, num_heads):
    B, T, E = x.shape
    return x.reshape(B, T, E // num_heads, num_heads).transpose(0, 3, 1, 2)  # every H-th feature


def split_fixed_dh(x, num_heads):
    B, T, E = x.shape
    return x.reshape(B, T, num_heads, 2).transpose(0, 2, 1, 3)  # dh hard-coded from the first example


def merge_reshape_only(x):
    B, H, T, dh = x.shape
    return x.reshape(B, T, H * dh)


def merge_transpose_only(x):
    return x.transpose(0, 2, 1, 3)


def merge_interleaved(x):
    B, H, T, dh = x.shape
    return x.transpose(0, 2, 3, 1).reshape(B, T, H * dh)


def _mha(x, W_q, W_k, W_v, W_o, num_heads, mask=None, *, scale=None, split=split_ref, merge=merge_ref,
         use_mask=True, use_out=True, right=True, average=False):
    """The reference with one typical mistake switched on."""
    t = (lambda W: W) if right else (lambda W: W.T)
    q, k, v = (split(x @ t(W), num_heads) for W in (W_q, W_k, W_v))
    out, w = F.scaled_dot_product_attention(q, k, v, mask=mask if use_mask else None, scale=scale)
    out = merge(out)
    if use_out:
        out = out @ t(W_o)
    return out, (w.mean(axis=1) if average else w)


def mha_scale_by_E(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, scale=1 / np.sqrt(x.shape[-1]))


def mha_no_output_projection(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, use_out=False)


def mha_heads_interleaved(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, split=split_reshape_only, merge=merge_reshape_only)


def mha_torch_orientation(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, right=False)


def mha_ignores_mask(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, use_mask=False)


def mha_averaged_weights(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, average=True)


def mha_output_only(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask)[0]


def mha_merged_by_reshape(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, merge=merge_reshape_only)


def mha_merged_interleaved(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, merge=merge_interleaved)


def mha_not_merged(x, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return _mha(x, W_q, W_k, W_v, W_o, num_heads, mask, merge=merge_transpose_only, use_out=False)


def flops_without_factor_two(batch, seq_len, embed_dim, num_heads):
    return mha_flops(batch, seq_len, embed_dim, num_heads) // 2


def flops_without_output_projection(batch, seq_len, embed_dim, num_heads):
    B, T, E = batch, seq_len, embed_dim
    return 6 * B * T * E * E + 4 * B * T * T * E


def flops_without_weighted_sum(batch, seq_len, embed_dim, num_heads):
    B, T, E = batch, seq_len, embed_dim
    return 8 * B * T * E * E + 2 * B * T * T * E


def flops_E_instead_of_dh(batch, seq_len, embed_dim, num_heads):
    B, T, E, H = batch, seq_len, embed_dim, num_heads
    return 8 * B * T * E * E + 4 * B * H * T * T * E


def flops_projections_only(batch, seq_len, embed_dim, num_heads):
    return 8 * batch * seq_len * embed_dim**2


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_4_check_visible_and_hidden(capsys):
    for name, ex in ch04.EXERCISES.items():
        ch04.check(name, ex.reference)
        ch04.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name, n in [("split_heads", 5), ("multi_head_attention", 7), ("mha_flops", 4)]:
        assert f"`{name}` passes all {n} checks" in out
    assert "Your prediction, 16640, is recorded" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def split_heads(x, num_heads):
        B, T, E = x.shape
        return x.reshape(B, T, num_heads, E // num_heads).transpose(0, 2, 1, 3)

    def multi_head_attention(x, W_q, W_k, W_v, W_o, num_heads, mask=None):  # the merge written in place
        q, k, v = (split_heads(x @ W, num_heads) for W in (W_q, W_k, W_v))
        out, weights = F.scaled_dot_product_attention(q, k, v, mask=mask)
        B, H, T, dh = out.shape
        return out.transpose(0, 2, 1, 3).reshape(B, T, H * dh) @ W_o, weights

    def mha_flops(batch, seq_len, embed_dim, num_heads):
        dh = embed_dim // num_heads
        return 8 * batch * seq_len * embed_dim**2 + 4 * batch * num_heads * seq_len**2 * dh

    partial(ch04.check, "split_heads")(split_heads)
    partial(ch04.check, "multi_head_attention")(multi_head_attention)
    partial(ch04.check, "multi_head_attention", hidden=True)(multi_head_attention)
    partial(ch04.check, "predict_eight_heads", hidden=True)(lambda: 16_640)
    partial(ch04.check, "mha_flops")(mha_flops)
    partial(ch04.check, "mha_flops")(lambda *a: float(mha_flops(*a)))  # a float is fine too
    partial(ch04.check, "split_heads")(lambda x, h: torch.from_numpy(split_heads(x, h)))  # so is a tensor
    assert capsys.readouterr().out.count("passes all") == 5


# ------------------------------------------------------------------ split_heads
@pytest.mark.parametrize(
    "fn, message",
    [
        (split_reshape_only, r"Likely cause: this is the given code's bug: x\.reshape\(B, H, T, dh\) pours"),
        (split_without_transpose, r"shape \(1, 3, 2, 2\); expected shape \(1, 2, 3, 2\).*Hint: by hand, head 0"),
        (split_strided, r"Likely cause: each head takes every H-th feature.*contiguous block"),
        (split_fixed_dh, r"raised ValueError: cannot reshape .* \(on x = an array of shape \(1, 3, 4\), num_heads = 1\)"),
    ],
)
def test_split_heads_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "split_heads")(fn)


def given_code(grade_id: str) -> str:
    """The buggy lines the student version of chapter 4 shows in a debug exercise's cell."""
    nb = load_notebook(REPO / "notebooks" / "04-multi-head-attention" / "04-multi-head-attention.ipynb")
    [cell] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    assert cell["metadata"]["attnedu"]["kind"] == "debug"
    return cell["metadata"]["attnedu"]["given"]


def test_the_given_split_heads_runs_gives_the_right_shape_and_fails_naming_its_bug():
    scope = {}
    exec("def split_heads(x, num_heads):\n" + given_code("split-heads") + "\n", scope)
    buggy = scope["split_heads"]
    assert buggy(np.zeros((2, 5, 12)), 3).shape == (2, 3, 5, 4)  # no error, the right shape
    assert_one_sentence(partial(ch04.check, "split_heads"), buggy,
                        r"off by up to .*Likely cause: this is the given code's bug: x\.reshape\(B, H, T, dh\) pours "
                        r"the numbers into the new shape in memory order")
    assert_one_sentence(partial(ch04.check, "split_heads", hidden=True), buggy, r"Likely cause: this is the given")


def test_the_fixed_split_heads_passes_and_is_the_given_code_with_the_transpose():
    scope = {}
    given = given_code("split-heads").replace("return x.reshape(B, num_heads, T, dh)",
                                              "return x.reshape(B, T, num_heads, dh).transpose(0, 2, 1, 3)")
    exec("def split_heads(x, num_heads):\n" + given + "\n", scope)
    ch04.check("split_heads", scope["split_heads"])
    ch04.check("split_heads", scope["split_heads"], hidden=True)


# ------------------------------------------------------------------ multi_head_attention
@pytest.mark.parametrize(
    "fn, message",
    [
        (mha_scale_by_E, r"symmetric W_q.*Likely cause: each head's scores are divided by sqrt\(dh\)"),
        (mha_no_output_projection, r"four random matrices.*Likely cause: the merged heads still go through the output "
                                   r"projection"),
        (mha_merged_by_reshape, r"W_q = 0.*Likely cause: the heads were merged with a reshape alone"),
        (mha_merged_interleaved, r"W_q = 0.*Likely cause: the heads' features are interleaved"),
        (mha_not_merged, r"returned `output` of shape \(1, 2, 1, 2\); expected shape \(1, 2, 2\)"),
        (mha_heads_interleaved, r"W_q = 0.*Hint: W_q = 0 makes every weight 1/T.*merged back"),
        (mha_torch_orientation, r"Likely cause: the matrices act from the right as given, x @ W_q"),
        (mha_ignores_mask, r"causal mask.*Likely cause: the mask was left out"),
        (mha_averaged_weights, r"returned `weights` of shape \(1, 2, 2\); expected shape \(1, 1, 2, 2\)"),
        (mha_output_only, r"returned 1 value\(s\); expected a tuple of 2: `return output, weights`"),
    ],
)
def test_multi_head_attention_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "multi_head_attention")(fn)


# ------------------------------------------------------------------ the prediction about eight heads
def test_the_eight_heads_experiment_counts_what_torch_allocates_the_same_as_one_head():
    assert ch04._eight_heads() == 16_640 == sum(p.numel() for p in torch.nn.MultiheadAttention(64, 1).parameters())


def test_an_eight_heads_prediction_is_recorded_whatever_the_number_and_graded_when_hidden(capsys):
    for answer in (16_640, 133_120, 0.5, 16_640.0):
        ch04.check("predict_eight_heads", lambda answer=answer: answer)
    assert capsys.readouterr().out.count("is recorded") == 4
    for right in (16_640, 16_640.0, np.int64(16_640)):
        ch04.check("predict_eight_heads", lambda right=right: right, hidden=True)


@pytest.mark.parametrize("answer, message", [
    (133_120, r"Likely cause: the heads do not bring matrices of their own"),
    (2_080, r"Likely cause: the layer does not shrink either"),
    (16_641, r"returned 16641, which is not"),
])
def test_a_wrong_eight_heads_prediction_is_named_when_graded(answer, message):
    assert_one_sentence(partial(ch04.check, "predict_eight_heads", hidden=True), lambda: answer, message)


@pytest.mark.parametrize("fn, message", [
    (lambda: "16640", r"answer with a number, not '16640'"),
    (lambda: float("inf"), r"answer with a finite number"),
    (lambda: True, r"answer with a number"),
] + garbage(None)[:2] + garbage(None)[-2:])  # the stub, None, and names bound to no function
def test_the_eight_heads_visible_check_answers_a_prediction_of_the_wrong_form(fn, message):
    assert_one_sentence(partial(ch04.check, "predict_eight_heads"), fn, message)


def test_revealing_the_eight_heads_prints_the_count_and_why(capsys):
    ch04.reveal("predict_eight_heads", lambda: 133_120)
    out = capsys.readouterr().out
    assert "You predicted 133120; the answer: 16640 (not what happens)" in out and "smaller slices" in out


# ------------------------------------------------------------------ FLOPs
@pytest.mark.parametrize(
    "fn, message",
    [
        (flops_without_factor_two, r"Likely cause: it is half the expected count.*2\*m\*k\*n"),
        (flops_without_output_projection, r"Likely cause: it leaves out the output projection, another"),
        (flops_without_weighted_sum, r"Likely cause: it counts the scores but not the weighted sum"),
        (flops_E_instead_of_dh, r"num_heads = 2 returned a result .*Likely cause: it is H times too large.*dh = E / H"),
        (flops_projections_only, r"Likely cause: it counts the projections only"),
    ],
)
def test_flop_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "mha_flops")(fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "check",
    [partial(ch04.check, "split_heads"), partial(ch04.check, "multi_head_attention"),
     partial(ch04.check, "mha_flops")],
)
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|returned 1 value"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)
