"""attnedu.functional: softmax, weighted sums, kernels and attention pooling."""

import warnings

import numpy as np
import pytest

from attnedu import functional as F


def test_softmax_matches_the_definition_on_a_hand_checkable_example():
    x = np.array([1.0, 2.0, 3.0])
    expected = np.exp(x) / np.exp(x).sum()
    np.testing.assert_allclose(F.softmax(x), expected, rtol=1e-12)
    np.testing.assert_allclose(F.softmax(x), [0.09003057, 0.24472847, 0.66524096], rtol=1e-7)


def test_softmax_normalises_along_the_requested_axis():
    x = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(F.softmax(x, axis=0).sum(axis=0), 1.0)
    np.testing.assert_allclose(F.softmax(x, axis=1).sum(axis=1), 1.0)
    np.testing.assert_allclose(F.softmax(x, axis=-2), F.softmax(x, axis=0))


def test_softmax_keeps_float32_and_converts_integers_to_float64():
    assert F.softmax(np.ones(3, dtype=np.float32)).dtype == np.float32
    assert F.softmax(np.arange(3)).dtype == np.float64


def test_softmax_temperature_divides_the_scores():
    x = np.array([3.0, 1.0, -2.0])
    np.testing.assert_allclose(F.softmax(x, temperature=2.0), F.softmax(x / 2.0))
    assert F.softmax(x, temperature=1e-3)[0] == pytest.approx(1.0)
    np.testing.assert_allclose(F.softmax(x, temperature=1e6), 1 / 3, rtol=1e-5)


def test_softmax_of_a_fully_masked_row_is_zeros_without_a_warning():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = F.softmax(x)
    np.testing.assert_array_equal(out[1], [0.0, 0.0, 0.0])
    assert out[0, 1] == 0.0 and out[0].sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([1.0, np.nan]), "NaN"),
        (np.array([1.0, np.inf]), r"\+inf"),
        (np.array(["a", "b"]), "array of numbers"),
        (np.zeros((2, 0)), "empty axis"),
        (3.0, "at least 1 dimension"),
    ],
)
def test_softmax_rejects_bad_input_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        F.softmax(bad)


def test_softmax_rejects_a_bad_axis_or_temperature():
    with pytest.raises(ValueError, match=r"axis=2 is out of range for an array of shape \(3,\)"):
        F.softmax(np.ones(3), axis=2)
    with pytest.raises(ValueError, match="temperature"):
        F.softmax(np.ones(3), temperature=0)


def test_weighted_average_divides_by_the_sum_of_the_weights():
    assert F.weighted_average([1.0, 2.0, 4.0], [1.0, 1.0, 2.0]) == pytest.approx(11 / 4)
    np.testing.assert_allclose(F.weighted_average(np.eye(2), [3.0, 1.0]), [0.75, 0.25])
    with pytest.raises(ValueError, match=r"weights has shape \(2,\) but values has shape \(3,\)"):
        F.weighted_average([1.0, 2.0, 3.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        F.weighted_average([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="sum to 0"):
        F.weighted_average([1.0, 2.0], [0.0, 0.0])


def test_weighted_sum_is_a_batched_matrix_product():
    rng = np.random.default_rng(0)
    w, v = rng.random((2, 3, 4)), rng.random((2, 4, 5))
    np.testing.assert_allclose(F.weighted_sum(w, v), np.einsum("bqk,bkd->bqd", w, v))
    np.testing.assert_allclose(F.weighted_sum(w[0], v[0, :, 0]), w[0] @ v[0, :, 0])
    with pytest.raises(ValueError, match=r"weights has shape \(2, 3, 4\) \(Tk=4\) but values has shape \(2, 5, 5\)"):
        F.weighted_sum(w, rng.random((2, 5, 5)))


def test_attention_pool_is_nadaraya_watson_with_a_gaussian_kernel():
    q, k, v = np.array([2.0]), np.array([1.0, 2.5, 4.0]), np.array([10.0, 20.0, 30.0])
    kernel = np.exp(-((q[:, None] - k) ** 2) / 2)
    out, w = F.attention_pool(q, k, v, width=1.0)
    np.testing.assert_allclose(w, kernel / kernel.sum())
    np.testing.assert_allclose(out, (kernel / kernel.sum()) @ v)
    assert out[0] == pytest.approx(17.0992, abs=1e-4)


def test_attention_pool_is_finite_for_tiny_widths_and_far_queries():
    k = np.linspace(0, 5, 11)
    out, w = F.attention_pool(np.array([100.0]), k, k**2, width=1e-3)
    np.testing.assert_allclose(w[0], np.eye(11)[-1])  # all weight on the nearest key
    assert out[0] == pytest.approx(25.0)


@pytest.mark.parametrize("kernel", sorted(F.KERNELS))
def test_every_kernel_gives_rows_that_sum_to_one_where_keys_are_in_reach(kernel):
    k = np.linspace(0, 1, 21)
    _, w = F.attention_pool(np.linspace(0.1, 0.9, 5), k, np.sin(k), width=0.3, kernel=kernel)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w >= 0).all()


def test_a_query_with_no_key_in_a_compact_kernel_gets_zero_weights():
    out, w = F.attention_pool(np.array([10.0]), np.array([0.0, 1.0]), np.array([1.0, 2.0]), 0.5, kernel="boxcar")
    np.testing.assert_array_equal(w, [[0.0, 0.0]])
    assert out[0] == 0.0


def test_attention_pool_accepts_vector_points_and_vector_values():
    rng = np.random.default_rng(1)
    q, k, v = rng.normal(size=(4, 3)), rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    out, w = F.attention_pool(q, k, v, width=0.8)
    d2 = ((q[:, None, :] - k[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(w, F.softmax(-d2 / (2 * 0.8**2)))
    assert out.shape == (4, 2)


def test_attention_pool_names_the_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match=r"keys have shape \(3,\) but values have shape \(4,\)"):
        F.attention_pool(np.zeros(2), np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"queries have shape \(2, 3\) and keys have shape \(4, 2\)"):
        F.attention_pool(np.zeros((2, 3)), np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="unknown kernel 'cosine'"):
        F.attention_pool(np.zeros(2), np.zeros(3), np.zeros(3), kernel="cosine")
    with pytest.raises(ValueError, match="width"):
        F.attention_pool(np.zeros(2), np.zeros(3), np.zeros(3), width=-1)


def test_leave_one_out_never_lets_a_point_see_itself():
    x, y = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0])
    # point 1 is predicted from points 0 and 2 (both 0): error 1. Points 0 and 2 see
    # points (1, 2) and (0, 1) with weights softmax([-1/2, -2]) on values (1, 0).
    w_near = F.softmax(np.array([-0.5, -2.0]))[0]
    expected = (w_near**2 + 1.0 + w_near**2) / 3
    assert F.leave_one_out_mse(x, y, 1.0) == pytest.approx(expected)


def test_leave_one_out_prefers_a_sensible_width_on_smooth_data():
    from attnedu.data import toy_regression

    x, y = toy_regression(n=60, seed=3)
    widths = np.geomspace(0.01, 5, 30)
    errors = [F.leave_one_out_mse(x, y, h) for h in widths]
    best = widths[int(np.argmin(errors))]
    assert 0.05 < best < 1.0
    with pytest.raises(ValueError, match="at least 2 points"):
        F.leave_one_out_mse([1.0], [1.0], 1.0)


def test_toy_regression_is_deterministic_and_sorted():
    from attnedu.data import toy_regression

    (x1, y1), (x2, y2) = toy_regression(seed=5), toy_regression(seed=5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert (np.diff(x1) >= 0).all() and x1.shape == (40,)
    with pytest.raises(ValueError, match="positive integer"):
        toy_regression(n=0)
