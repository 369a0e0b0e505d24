"""attnedu.functional, chapters 2 to 5: scaled dot-product attention equals torch's, masks
follow torch's scaled_dot_product_attention convention, positions behave as documented, and chapter 5's
attention patterns are built from the masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from attnedu import functional as F


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(st.integers(1, 3), min_size=0, max_size=2), Tq=st.integers(1, 6), Tk=st.integers(1, 6),
    dk=st.integers(1, 8), dv=st.integers(1, 5), masked=st.booleans(), scale=st.sampled_from([None, 0.3]),
    dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
)
def test_sdpa_equals_torch(batch, Tq, Tk, dk, dv, masked, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(*batch, Tq, dk)).astype(dtype)
    k = rng.normal(size=(*batch, Tk, dk)).astype(dtype)
    v = rng.normal(size=(*batch, Tk, dv)).astype(dtype)
    mask = rng.random((*batch, Tq, Tk)) < 0.7 if masked else None
    out, weights = F.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale)
    t = [torch.from_numpy(a) for a in (q, k, v)]
    ref = TF.scaled_dot_product_attention(*t, attn_mask=None if mask is None else torch.from_numpy(mask), scale=scale)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(out, ref.numpy(), atol=tol, rtol=tol)
    assert out.dtype == dtype and weights.shape == (*batch, Tq, Tk)
    if mask is not None:
        assert np.all(weights[~mask] == 0)


def test_sdpa_worked_example_by_hand():
    q = np.array([[1.0, 0.0]])
    k = np.array([[1.0, 0.0], [0.0, 1.0]])
    v = np.array([[1.0], [3.0]])
    out, w = F.scaled_dot_product_attention(q, k, v)
    s = np.array([1.0, 0.0]) / np.sqrt(2)
    expected = np.exp(s) / np.exp(s).sum()
    np.testing.assert_allclose(w[0], expected)
    np.testing.assert_allclose(out[0, 0], expected @ [1.0, 3.0])


def test_a_fully_masked_query_gets_zeros_like_torch_without_a_warning():
    q, k, v = np.ones((2, 3)), np.ones((4, 3)), np.arange(8.0).reshape(4, 2)
    mask = np.array([[True, False, True, False], [False] * 4])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, w = F.scaled_dot_product_attention(q, k, v, mask)
    ref = TF.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)), attn_mask=torch.from_numpy(mask))
    np.testing.assert_allclose(out, ref.numpy())
    assert np.all(out[1] == 0) and np.all(w[1] == 0)


def test_causal_and_padding_masks_use_true_for_may_attend():
    np.testing.assert_array_equal(F.causal_mask(3), [[1, 0, 0], [1, 1, 0], [1, 1, 1]])
    pad = F.padding_mask([2, 0, 3], 3)
    assert pad.shape == (3, 1, 3) and pad.dtype == bool
    np.testing.assert_array_equal(pad[:, 0], [[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    torch_causal = torch.ones(3, 3, dtype=torch.bool).tril()
    np.testing.assert_array_equal(F.causal_mask(3), torch_causal.numpy())


def test_with_a_past_the_causal_mask_lets_new_queries_see_every_cached_key():
    m = F.causal_mask(2, past=3)  # two new tokens at positions 3 and 4, after 3 cached ones
    assert m.shape == (2, 5) and m.dtype == bool
    np.testing.assert_array_equal(m, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(F.causal_mask(4, past=0), F.causal_mask(4))
    np.testing.assert_array_equal(F.causal_mask(3, past=2), F.causal_mask(5)[2:])  # the last rows of the whole
    for bad, words in ((dict(T=0), "T must be a positive integer"), (dict(T=3.0), "T must be a positive integer"),
                       (dict(T=2, past=-1), "past must be an integer >= 0")):
        with pytest.raises(ValueError, match=words):
            F.causal_mask(**bad)


def test_the_library_has_exactly_one_causal_mask_and_uses_it_everywhere():
    import pathlib
    import re

    import attnedu

    root = pathlib.Path(attnedu.__file__).parent
    sources = {p: p.read_text(encoding="utf-8") for p in root.rglob("*.py") if "checks" not in p.parts}
    defs = [p.name for p, text in sources.items() if re.search(r"def causal_mask\b", text)]
    assert defs == ["functional.py"]
    inline = [p.name for p, text in sources.items() if re.search(r"\.tri[lu]\(", text)
              and p.name != "functional.py"]
    assert inline == [], f"a causal mask built inline, not with functional.causal_mask: {inline}"


def test_masks_combine_with_and_and_broadcast_over_queries():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 2))
    mask = F.causal_mask(4) & F.padding_mask([4, 2], 4)  # (2, 4, 4)
    _, w = F.scaled_dot_product_attention(q, k, v, mask)
    assert np.all(w[1][:, 2:] == 0) and np.all(np.triu(w[0], 1) == 0)
    np.testing.assert_allclose(w.sum(-1), 1.0)


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.ones((2, 3)), np.ones((4, 5)), np.ones((4, 2))), r"q has shape \(2, 3\) and k has shape \(4, 5\)"),
        ((np.ones((2, 3)), np.ones((4, 3)), np.ones((5, 2))), r"k has shape \(4, 3\) and v has shape \(5, 2\)"),
        ((np.ones((2, 2, 3)), np.ones((3, 4, 3)), np.ones((3, 4, 2))), "do not broadcast"),
    ],
)
def test_sdpa_names_mismatched_shapes(args, message):
    with pytest.raises(ValueError, match=message):
        F.scaled_dot_product_attention(*args)


def test_sdpa_rejects_a_mask_of_the_wrong_shape_or_dtype():
    q = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3\) does not broadcast to the scores' shape \(2, 3\)"):
        F.scaled_dot_product_attention(q, np.ones((3, 3)), np.ones((3, 1)), mask=np.ones((3, 3), dtype=bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        F.scaled_dot_product_attention(q, q, q, mask=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"every length must lie in \[0, T=3\]"):
        F.padding_mask([4], 3)


def test_sinusoidal_positions_follow_the_formula():
    pe = F.sinusoidal_positions(50, 16)
    p, i = 37, 3
    assert pe[p, 2 * i] == pytest.approx(np.sin(p / 10000 ** (2 * i / 16)))
    assert pe[p, 2 * i + 1] == pytest.approx(np.cos(p / 10000 ** (2 * i / 16)))
    assert F.sinusoidal_positions(4, 5).shape == (4, 5)
    # the dot product of two encodings depends only on their offset
    dots = pe @ pe.T
    np.testing.assert_allclose(dots[10, 13], dots[30, 33])


@settings(max_examples=50, deadline=None)
@given(m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(-100, 100), seed=st.integers(0, 999))
def test_rope_scores_depend_only_on_the_offset(m, n, shift, seed):
    rng = np.random.default_rng(seed)
    q, k = rng.normal(size=(1, 8)), rng.normal(size=(1, 8))
    a = F.apply_rope(q, [m]) @ F.apply_rope(k, [n]).T
    b = F.apply_rope(q, [m + shift]) @ F.apply_rope(k, [n + shift]).T
    np.testing.assert_allclose(a, b, atol=1e-9)


def test_rope_rotates_adjacent_pairs_and_keeps_norms():
    x = np.array([[1.0, 0.0, 1.0, 0.0]])
    out = F.apply_rope(x, positions=[1])
    theta = 10000.0 ** (-np.arange(0, 4, 2) / 4)
    np.testing.assert_allclose(out[0], [np.cos(theta[0]), np.sin(theta[0]), np.cos(theta[1]), np.sin(theta[1])])
    y = np.random.default_rng(1).normal(size=(3, 5, 6))
    np.testing.assert_allclose(np.linalg.norm(F.apply_rope(y), axis=-1), np.linalg.norm(y, axis=-1))
    np.testing.assert_allclose(F.apply_rope(y)[:, 0], y[:, 0])  # position 0 is not rotated
    with pytest.raises(ValueError, match="even feature size"):
        F.apply_rope(np.ones((2, 3)))


# ------------------------------------------------------------------ chapter 3: self-attention
def test_self_attention_is_sdpa_of_the_projections_and_equals_torch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6))
    W_q, W_k, W_v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    out, weights = F.self_attention(x, W_q, W_k, W_v)
    assert out.shape == (2, 5, 3) and weights.shape == (2, 5, 5)
    scores = (x @ W_q) @ np.swapaxes(x @ W_k, -1, -2) / 2.0  # sqrt(d_k) = 2
    np.testing.assert_allclose(weights, F.softmax(scores), rtol=1e-12)
    xt = torch.from_numpy(x)
    q, k, v = (xt @ torch.from_numpy(W) for W in (W_q, W_k, W_v))
    np.testing.assert_allclose(out, TF.scaled_dot_product_attention(q, k, v).numpy(), rtol=1e-10)


def test_self_attention_without_positions_is_permutation_equivariant():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 5))
    W_q, W_k, W_v = (rng.normal(size=(5, 4)) for _ in range(3))
    perm = rng.permutation(9)
    out, weights = F.self_attention(x, W_q, W_k, W_v)
    out_p, weights_p = F.self_attention(x[perm], W_q, W_k, W_v)
    np.testing.assert_allclose(out_p, out[perm])
    np.testing.assert_allclose(weights_p, weights[perm][:, perm])


@pytest.mark.parametrize(
    "shapes, message",
    [
        ([(5,), (5, 4), (5, 4), (5, 3)], r"x must have at least 2 dimension\(s\), got shape \(5,\)"),
        ([(3, 5), (4, 4), (5, 4), (5, 3)], r"W_q has shape \(4, 4\) but x has shape \(3, 5\).*d_model = x.shape\[-1\] = 5"),
        ([(3, 5), (5, 4), (5, 4), (5,)], r"W_v has shape \(5,\)"),
        ([(3, 5), (5, 4), (5, 2), (5, 3)], r"W_q \(5, 4\) and W_k \(5, 2\) need the same number of columns \(d_k\)"),
    ],
)
def test_self_attention_names_the_argument_that_does_not_fit(shapes, message):
    with pytest.raises(ValueError, match=message):
        F.self_attention(*(np.ones(s) for s in shapes))


# ------------------------------------------------------------------ chapter 4: multi-head attention
@pytest.mark.parametrize("B, T, E, H", [(1, 1, 4, 1), (2, 5, 8, 2), (3, 7, 24, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_multi_head_attention_equals_attnedu_and_torch_multi_head_attention(B, T, E, H, masked):
    from attnedu.nn import MultiHeadAttention

    torch.manual_seed(B * 100 + T)
    theirs = torch.nn.MultiheadAttention(E, H, bias=False, batch_first=True).double()
    ours = MultiHeadAttention.from_torch(theirs)
    W_q, W_k, W_v = (part.T.numpy() for part in theirs.in_proj_weight.detach().chunk(3))
    W_o = theirs.out_proj.weight.detach().T.numpy()
    x = np.random.default_rng(T).normal(size=(B, T, E))
    mask = F.causal_mask(T) if masked else None
    out, weights = F.multi_head_attention(x, W_q, W_k, W_v, W_o, H, mask=mask)
    xt = torch.from_numpy(x)
    blocked = None if mask is None else ~torch.from_numpy(mask)  # torch's MHA: True = blocked
    for module in (ours, theirs):
        o, wt = module(xt, xt, xt, attn_mask=blocked, average_attn_weights=False)
        np.testing.assert_allclose(o.detach().numpy(), out, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(wt.detach().numpy(), weights, atol=1e-5, rtol=1e-5)


def test_split_heads_gives_head_h_its_contiguous_block_and_merge_heads_undoes_it():
    from attnedu.nn import MultiHeadAttention

    x = np.random.default_rng(0).normal(size=(2, 5, 12))
    np.testing.assert_array_equal(F.split_heads(x, 3)[:, 1], x[..., 4:8])  # head 1 of 3: features 4..7
    for H in (1, 2, 3, 4, 6, 12):
        assert F.split_heads(x, H).shape == (2, H, 5, 12 // H)
        assert np.array_equal(F.merge_heads(F.split_heads(x, H)), x)
        module = MultiHeadAttention(12, H)
        np.testing.assert_array_equal(module._split_heads(torch.from_numpy(x)).numpy(), F.split_heads(x, H))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: F.split_heads(np.zeros((2, 3, 5)), 2), r"E divisible by num_heads=2, got shape \(2, 3, 5\)"),
        (lambda: F.split_heads(np.zeros((3, 4)), 2), r"got shape \(3, 4\)"),
        (lambda: F.split_heads(np.zeros((1, 2, 4)), 0), "num_heads must be a positive integer"),
        (lambda: F.merge_heads(np.zeros((2, 3, 4))), r"\(B, H, T, dh\), got shape \(2, 3, 4\)"),
        (lambda: F.multi_head_attention(np.zeros((2, 4)), *[np.eye(4)] * 4, 2), r"x must be \(B, T, E\)"),
        (lambda: F.multi_head_attention(np.zeros((1, 2, 4)), np.eye(4), np.eye(4), np.eye(3), np.eye(4), 2),
         r"W_v must be \(E, E\) = \(4, 4\) for x of shape \(1, 2, 4\), got shape \(3, 3\)"),
        (lambda: F.multi_head_attention(np.zeros((1, 2, 4)), *[np.eye(4)] * 4, 3), "divisible by num_heads=3"),
    ],
)
def test_multi_head_functions_reject_bad_shapes_with_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ chapter 5: attention patterns
def test_attention_pattern_blocks_match_the_library_masks():
    m = F.attention_pattern("encoder-decoder", 6, 4)
    assert m[:6, :6].all() and not m[:6, 6:].any() and m[6:, :6].all()
    np.testing.assert_array_equal(m[6:, 6:], F.causal_mask(4))
    np.testing.assert_array_equal(F.attention_pattern("decoder", 3, 7), F.causal_mask(10))
    assert F.attention_pattern("encoder", 3, 7).all() and F.attention_pattern("encoder-decoder", 3, 0).all()
    assert all(F.attention_pattern(k, 2, 3).dtype == bool for k in F.PATTERN_KINDS)


@pytest.mark.parametrize(
    "args, message",
    [
        (("bert", 2, 2), "kind must be one of"),
        (("decoder", -1, 2), "n_in must be an integer >= 0"),
        (("decoder", 2, 1.5), "n_out must be an integer >= 0"),
        (("encoder", 0, 0), "at least 1"),
    ],
)
def test_attention_pattern_rejects_bad_input_with_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        F.attention_pattern(*args)
