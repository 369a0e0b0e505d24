"""Visible checks for chapter 1, *Weighted sums*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first
small enough to check by hand) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found.
The expected answers come from :mod:`attnedu.functional`.
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .core import Case, check_function, rows_sum_to_one

__all__ = ["check_softmax", "check_attention_pool", "check_leave_one_out_mse", "check_soft_lookup"]

_STABLE = "subtract the maximum of each row (keepdims=True) before calling np.exp."


def check_softmax(softmax) -> None:
    """Check ``softmax(x, axis=-1)``: values, shape, rows summing to 1, no overflow."""
    x_small = np.array([1.0, 2.0, 3.0])
    x_rows = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    x_big = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, 0.0, 1000.0]])
    x_neg = np.array([-1000.0, -1001.0, -1002.0])
    cases = [
        Case((x_small,), F.softmax(x_small)),
        Case((x_rows,), F.softmax(x_rows), hint="each row is normalised on its own."),
        Case((x_rows,), F.softmax(x_rows, axis=0), kwargs={"axis": 0},
             hint="with axis=0 the columns must sum to 1; use the `axis` argument."),
        Case((x_big,), F.softmax(x_big), hint=_STABLE),
        Case((x_neg,), F.softmax(x_neg), hint="exp(-1000) underflows to 0, so 0 / 0 = NaN; " + _STABLE),
    ]
    check_function(softmax, "softmax", cases, params=["x"], properties=[rows_sum_to_one()])


def check_attention_pool(attention_pool) -> None:
    """Check ``attention_pool(queries, keys, values, width) -> (output, weights)`` (Gaussian kernel)."""
    rng = np.random.default_rng(1)
    keys = np.sort(rng.uniform(0, 5, size=8))
    values = np.sin(keys)
    queries = np.linspace(0, 5, 6)
    tiny_q, tiny_k, tiny_v = np.array([0.0]), np.array([0.0, 1.0]), np.array([1.0, 3.0])
    cases = [
        Case((tiny_q, tiny_k, tiny_v, 1.0), F.attention_pool(tiny_q, tiny_k, tiny_v, 1.0),
             hint="by hand: the scores are -(q - k)**2 / (2 * width**2) = [0, -0.5]."),
        Case((queries, keys, values, 1.0), F.attention_pool(queries, keys, values, 1.0),
             hint="weights[i, j] belongs to query i and key j: shape (len(queries), len(keys))."),
        Case((queries, keys, values, 0.3), F.attention_pool(queries, keys, values, 0.3),
             hint="divide the squared distance by 2 * width**2."),
        Case((queries, keys, values, 0.01), F.attention_pool(queries, keys, values, 0.01),
             hint="with a tiny width every exp(score) underflows to 0: compute the weights with a stable softmax."),
    ]
    check_function(attention_pool, "attention_pool", cases, params=["queries", "keys", "values", "width"],
                   outputs=("output", "weights"), properties=[rows_sum_to_one()])


def check_leave_one_out_mse(leave_one_out_mse) -> None:
    """Check ``leave_one_out_mse(x, y, width) -> float`` (Gaussian kernel)."""
    x3, y3 = np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0])
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0, 5, size=20))
    y = np.cos(x) + 0.1 * rng.normal(size=20)
    cases = [
        Case((x3, y3, 1.0), F.leave_one_out_mse(x3, y3, 1.0),
             hint="point 1 must be predicted from points 0 and 2 only, which gives 0, so its error is 1."),
        Case((x, y, 0.5), F.leave_one_out_mse(x, y, 0.5),
             hint="set the diagonal of the score matrix to -inf so that no point sees itself."),
        Case((x, y, 0.02), F.leave_one_out_mse(x, y, 0.02), rtol=1e-4,
             hint="tiny widths need a stable softmax."),
    ]
    check_function(leave_one_out_mse, "leave_one_out_mse", cases, params=["x", "y", "width"])


def soft_lookup_reference(query, keys, values, temperature=1.0):
    """The reference soft dictionary lookup: dot-product scores, softmax, weighted sum."""
    q = np.asarray(query, dtype=float)
    k = np.asarray(keys, dtype=float)
    v = np.asarray(values, dtype=float)
    weights = F.softmax(k @ q / temperature)  # (n,)
    return weights @ v, weights  # (dv,), (n,)


def check_soft_lookup(soft_lookup) -> None:
    """Check ``soft_lookup(query, keys, values, temperature=1.0) -> (output, weights)``."""
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values = np.array([[10.0], [20.0], [30.0]])
    q = np.array([2.0, 0.0])
    rng = np.random.default_rng(3)
    k_big, v_big, q_big = rng.normal(size=(7, 4)), rng.normal(size=(7, 3)), rng.normal(size=4)
    cases = [
        Case((q, keys, values), soft_lookup_reference(q, keys, values),
             hint="the scores are the dot products keys @ query = [2, 0, 2]."),
        Case((q_big, k_big, v_big), soft_lookup_reference(q_big, k_big, v_big)),
        Case((q_big, k_big, v_big), soft_lookup_reference(q_big, k_big, v_big, 0.1), kwargs={"temperature": 0.1},
             hint="divide the scores by the temperature before the softmax."),
        Case((q_big * 500, k_big, v_big), soft_lookup_reference(q_big * 500, k_big, v_big),
             hint="large scores need a stable softmax."),
    ]
    check_function(soft_lookup, "soft_lookup", cases, params=["query", "keys", "values"],
                   outputs=("output", "weights"), properties=[rows_sum_to_one()])
