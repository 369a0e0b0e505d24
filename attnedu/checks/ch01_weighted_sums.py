"""Chapter 1's exercises, *Weighted sums*, as records (see :mod:`attnedu.checks`)."""

import numpy as np

from .. import functional as F
from ..data import toy_regression
from . import Case, Exercise, ExerciseSet, rows_sum_to_one

_STABLE = "subtract the maximum of each row (keepdims=True) before calling np.exp."
def _softmax_cases():
    x_small, x_rows = np.array([1.0, 2.0, 3.0]), np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    return [Case((x_small,)), Case((x_rows,), hint="each row is normalised on its own."),
            Case((x_rows,), {"axis": 0}, hint="with axis=0 the columns must sum to 1; use the `axis` argument."),
            Case((np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]]),), hint=_STABLE),
            Case((np.array([-1000.0, -1001.0, -1002.0]),),
                 hint="exp(-1000) underflows to 0, so 0 / 0 = NaN; " + _STABLE)]
def _softmax_hidden():
    x = np.random.default_rng(101).normal(size=(2, 3, 5)) * 30
    return [Case((x,)), Case((x,), {"axis": 1}), Case((x,), {"axis": 0}), Case((np.array([1e4, -1e4, 0.0, 5e3]),)),
            Case((np.full((2, 4), -800.0),), expected=np.full((2, 4), 0.25)), Case((np.arange(6).reshape(2, 3),)),
            Case((np.array([[7.0]]),), expected=np.array([[1.0]]))]
def _pool_cases():
    keys = np.sort(np.random.default_rng(1).uniform(0, 5, size=8))
    values, queries = np.sin(keys), np.linspace(0, 5, 6)
    return [Case((np.array([0.0]), np.array([0.0, 1.0]), np.array([1.0, 3.0]), 1.0),
                 hint="by hand: the scores are -(q - k)**2 / (2 * width**2) = [0, -0.5]."),
            Case((queries, keys, values, 1.0),
                 hint="weights[i, j] belongs to query i and key j: shape (len(queries), len(keys))."),
            Case((queries, keys, values, 0.3), hint="divide the squared distance by 2 * width**2."),
            Case((queries, keys, values, 0.01), hint="with a tiny width every exp(score) underflows to 0: compute the "
                                                     "weights with a stable softmax.")]
def _pool_hidden():
    rng = np.random.default_rng(202)
    k, v, q = np.sort(rng.uniform(-3, 3, 15)), rng.normal(size=15), rng.uniform(-4, 4, 9)
    return [Case((q, k, v, w)) for w in (0.001, 0.1, 0.7, 5.0, 1e3)] + [Case((np.array([100.0, -50.0]), k, v, 0.1))]
def _loo_cases():
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0, 5, size=20))
    y = np.cos(x) + 0.1 * rng.normal(size=20)
    return [Case((np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0]), 1.0),
                 hint="point 1 must be predicted from points 0 and 2 only, which gives 0, so its error is 1."),
            Case((x, y, 0.5), hint="set the diagonal of the score matrix to -inf so that no point sees itself."),
            Case((x, y, 0.02), rtol=1e-4, hint="tiny widths need a stable softmax.")]
def _loo_hidden():
    rng = np.random.default_rng(303)
    x = np.sort(rng.uniform(0, 10, 30))
    y = np.sin(x) + 0.2 * rng.normal(size=30)
    return ([Case((x, y, w), rtol=1e-4) for w in (1e-3, 0.05, 0.4, 3.0, 1e3)]
            + [Case((np.array([0.0, 1.0]), np.array([1.0, 3.0]), 1.0), expected=4.0)])
def _lookup_cases():
    rng = np.random.default_rng(3)
    k, v, q = rng.normal(size=(7, 4)), rng.normal(size=(7, 3)), rng.normal(size=4)
    return [Case((np.array([2.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([[10.0], [20.0],
                  [30.0]])), hint="the scores are the dot products keys @ query = [2, 0, 2]."), Case((q, k, v)),
            Case((q, k, v), {"temperature": 0.1}, hint="divide the scores by the temperature before the softmax."),
            Case((q * 500, k, v), hint="large scores need a stable softmax.")]
def _lookup_hidden():
    rng = np.random.default_rng(404)
    k, v, q = rng.normal(size=(12, 8)), rng.normal(size=(12, 5)), rng.normal(size=8)
    return ([Case((q, k, v))] + [Case((q, k, v), {"temperature": t}) for t in (2.0, 0.01)]
            + [Case((q * 1e3, k, v)), Case((q[:1], k[:1, :1], v[:1]), expected=(v[0], np.array([1.0])))])
# ------------------------------------------------------------------ a prediction: the far query
_FAR = {"a": "NaN again: every kernel value is still 0, and 0 / 0 stays NaN.",
        "b": "0: no training point is close, so every weight is (almost) 0.",
        "c": "the average of all y: seen from so far away, the keys are all about equally distant.",
        "d": "the y of the rightmost training point, the one nearest to x = 10."}
def _far_query_answer():  # the chapter's experiment, small: the stable pooling at x = 10, width 0.05
    x, y = toy_regression(n=40, noise=0.25, seed=0)
    pred, weights = F.attention_pool(np.array([10.0]), x, y, 0.05)
    if np.isnan(pred[0]):
        return "a"
    if weights.sum() < 0.5:
        return "b"
    return "d" if np.isclose(pred[0], y[np.argmax(x)]) else "c"
def _far_cases():
    return [Case(mistakes=[
        ("a", "the softmax subtracts the largest score first, so the nearest key's kernel value becomes exp(0) = 1 "
              "and the denominator is at least 1: no 0 / 0 is left."),
        ("b", "softmax weights always sum to 1, however poor every match is: attention cannot attend to nothing."),
        ("c", "the softmax sees only the differences between the scores, and at a width of 0.05 the nearest key's "
              "score beats the next one's by about 165: all the weight goes to it.")])]

EXERCISES = ExerciseSet(
    Exercise("softmax", ["x"], F.softmax, _softmax_cases, _softmax_hidden, properties=[rows_sum_to_one()]),
    Exercise("attention_pool", ["queries", "keys", "values", "width"], F.attention_pool, _pool_cases, _pool_hidden,
             outputs=("output", "weights"), properties=[rows_sum_to_one()]),
    Exercise("predict_far_query", [], _far_query_answer, _far_cases, _far_cases, compare="choice",
             options={"choices": tuple(_FAR)}, kind="predict", explain=(
        "Far from every key the scores are all very negative, but the softmax looks only at their differences, and "
        "those are largest far away: the nearest key gets weight 1. Attention weights always sum to 1, so a query "
        "cannot attend to nothing; it takes the value of its best match, however poor, and kernel regression "
        "extrapolates flat from the edge of the data.")),
    Exercise("leave_one_out_mse", ["x", "y", "width"], F.leave_one_out_mse, _loo_cases, _loo_hidden,
             grade_id="leave-one-out"),
    Exercise("soft_lookup", ["query", "keys", "values"], F.soft_lookup, _lookup_cases, _lookup_hidden,
             outputs=("output", "weights"), properties=[rows_sum_to_one()]),
)
check = EXERCISES.check
reveal = EXERCISES.reveal
