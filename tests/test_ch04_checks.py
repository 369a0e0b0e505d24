"""Chapter 4's checks: the library passes them, typical mistakes get the sentence meant for them,
and garbage never crashes a check."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
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


def merge_wrong_axis(x):
    return np.concatenate(list(x.transpose(1, 0, 2, 3)), axis=1)  # stacks heads along tokens


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


def count_no_biases(embed_dim, kdim=None, vdim=None, bias=True):
    kd, vd = kdim or embed_dim, vdim or embed_dim
    return 2 * embed_dim**2 + kd * embed_dim + vd * embed_dim


def count_three_biases(embed_dim, kdim=None, vdim=None, bias=True):
    return count_no_biases(embed_dim, kdim, vdim) + (3 * embed_dim if bias else 0)


def count_biases_always(embed_dim, kdim=None, vdim=None, bias=True):
    return count_no_biases(embed_dim, kdim, vdim) + 4 * embed_dim


def count_ignores_kdim_vdim(embed_dim, kdim=None, vdim=None, bias=True):
    return 4 * embed_dim**2 + (4 * embed_dim if bias else 0)


def count_square_kv(embed_dim, kdim=None, vdim=None, bias=True):
    kd, vd = kdim or embed_dim, vdim or embed_dim
    return 2 * embed_dim**2 + kd * kd + vd * vd + (4 * embed_dim if bias else 0)


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
    for name, n in [("split_heads", 5), ("merge_heads", 4), ("multi_head_attention", 7), ("mha_parameter_count", 6),
                    ("mha_flops", 4)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def split_heads(x, num_heads):
        B, T, E = x.shape
        return x.reshape(B, T, num_heads, E // num_heads).transpose(0, 2, 1, 3)

    def merge_heads(x):
        B, H, T, dh = x.shape
        return x.transpose(0, 2, 1, 3).reshape(B, T, H * dh)

    def mha_flops(batch, seq_len, embed_dim, num_heads):
        dh = embed_dim // num_heads
        return 8 * batch * seq_len * embed_dim**2 + 4 * batch * num_heads * seq_len**2 * dh

    partial(ch04.check, "split_heads")(split_heads)
    partial(ch04.check, "merge_heads")(merge_heads)
    partial(ch04.check, "mha_flops")(mha_flops)
    partial(ch04.check, "mha_flops")(lambda *a: float(mha_flops(*a)))  # a float is fine too
    partial(ch04.check, "split_heads")(lambda x, h: torch.from_numpy(split_heads(x, h)))  # so is a tensor
    assert capsys.readouterr().out.count("passes all") == 5


# ------------------------------------------------------------------ split_heads
@pytest.mark.parametrize(
    "fn, message",
    [
        (split_reshape_only, r"Likely cause: the result equals x\.reshape\(B, H, T, dh\).*reshape to \(B, T, H, dh\) first, then swap"),
        (split_without_transpose, r"shape \(1, 3, 2, 2\); expected shape \(1, 2, 3, 2\).*Hint: by hand, head 0"),
        (split_strided, r"Likely cause: each head takes every H-th feature.*contiguous block"),
        (split_fixed_dh, r"raised ValueError: cannot reshape .* \(on x = an array of shape \(1, 3, 4\), num_heads = 1\)"),
    ],
)
def test_split_heads_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "split_heads")(fn)


# ------------------------------------------------------------------ merge_heads
@pytest.mark.parametrize(
    "fn, message",
    [
        (merge_reshape_only, r"Likely cause: the result equals x\.reshape\(B, T, H \* dh\).*transpose to \(B, T, H, dh\) first"),
        (merge_transpose_only, r"shape \(1, 3, 2, 2\); expected shape \(1, 3, 4\).*then reshape"),
        (merge_interleaved, r"Likely cause: the heads' features are interleaved"),
        (merge_wrong_axis, r"shape \(1, 6, 2\); expected shape \(1, 3, 4\)"),
    ],
)
def test_merge_heads_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "merge_heads")(fn)


# ------------------------------------------------------------------ multi_head_attention
@pytest.mark.parametrize(
    "fn, message",
    [
        (mha_scale_by_E, r"symmetric W_q.*Hint: divide each head's scores by sqrt\(dh\)"),
        (mha_no_output_projection, r"four random matrices.*Hint: the merged heads go through the output projection"),
        (mha_heads_interleaved, r"W_q = 0.*Hint: W_q = 0 makes every weight 1/T.*split_heads and merge_heads"),
        (mha_torch_orientation, r"Hint: the matrices act from the right: queries = x @ W_q"),
        (mha_ignores_mask, r"causal mask.*Hint: pass `mask` on"),
        (mha_averaged_weights, r"returned `weights` of shape \(1, 2, 2\); expected shape \(1, 1, 2, 2\)"),
        (mha_output_only, r"returned 1 value\(s\); expected a tuple of 2: `return output, weights`"),
    ],
)
def test_multi_head_attention_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "multi_head_attention")(fn)


# ------------------------------------------------------------------ parameter count
@pytest.mark.parametrize(
    "fn, message",
    [
        (count_no_biases, r"Likely cause: it counts the weight matrices only: each of the four projections also has a bias"),
        (count_three_biases, r"Likely cause: it counts three bias vectors: the output projection has a bias too"),
        (count_biases_always, r"bias = False returned a result .*Likely cause: it counts biases although bias=False"),
        (count_ignores_kdim_vdim, r"kdim = 3, vdim = 5 returned a result .*Likely cause: it ignores kdim and vdim"),
        (count_square_kv, r"Likely cause: it counts as if W_k were kdim x kdim"),
    ],
)
def test_parameter_count_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        partial(ch04.check, "mha_parameter_count")(fn)


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
    [partial(ch04.check, "split_heads"), partial(ch04.check, "merge_heads"), partial(ch04.check, "multi_head_attention"),
     partial(ch04.check, "mha_parameter_count"), partial(ch04.check, "mha_flops")],
)
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|returned 1 value"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)
