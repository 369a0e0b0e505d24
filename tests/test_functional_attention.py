"""attnedu.functional, chapters 2 and 3: scaled dot-product attention equals torch's, masks
follow torch's scaled_dot_product_attention convention, and positions behave as documented."""

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
