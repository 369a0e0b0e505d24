"""Property-based tests (hypothesis): what must hold for softmax on any input."""

import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from attnedu.functional import softmax

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=64)
matrices = arrays(np.float64, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), elements=finite)


@settings(max_examples=200, deadline=None)
@given(matrices)
def test_rows_are_non_negative_and_sum_to_one(x):
    out = softmax(x)
    assert out.shape == x.shape
    assert (out >= 0).all() and (out <= 1).all()
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, rtol=1e-12, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(matrices, st.floats(min_value=-1e3, max_value=1e3, allow_nan=False))
def test_adding_a_constant_to_every_score_changes_nothing(x, c):
    np.testing.assert_allclose(softmax(x + c), softmax(x), rtol=1e-6, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(-1e4, 1e4)))
def test_scores_as_large_as_1e4_never_overflow(x):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail the test
        out = softmax(np.concatenate([x, [1e4, -1e4]]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(), 1.0)


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 6)), elements=finite),
    st.data(),
)
def test_masked_positions_get_zero_and_fully_masked_rows_are_zero(x, data):
    mask = data.draw(arrays(np.bool_, x.shape))  # True: masked out
    scores = np.where(mask, -np.inf, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = softmax(scores)
    assert (out[mask] == 0).all()
    full = mask.all(axis=-1)
    np.testing.assert_array_equal(out[full], 0.0)
    np.testing.assert_allclose(out[~full].sum(axis=-1), 1.0)


@settings(max_examples=100, deadline=None)
@given(matrices, st.floats(min_value=0.05, max_value=50))
def test_temperature_is_a_division_of_the_scores(x, t):
    np.testing.assert_allclose(softmax(x, temperature=t), softmax(x / t), rtol=1e-9, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(matrices)
def test_the_order_of_the_weights_follows_the_order_of_the_scores(x):
    out = softmax(x)
    flat_x, flat_out = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
    for row_x, row_out in zip(flat_x, flat_out):
        i, j = np.argmax(row_x), np.argmin(row_x)
        assert row_out[i] >= row_out[j]
