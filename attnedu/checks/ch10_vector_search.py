"""Visible checks for chapter 10, *Embeddings and vector search*.

How a check works (one sentence per problem, typical mistakes named): see
:mod:`attnedu.checks`.

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value:

* :func:`cosine_similarity_reference`: the matrix of cosines between two sets of vectors;
* :func:`top_k_reference`: the columns of the ``k`` largest scores of each row, best
  first, with ``np.argpartition`` (what :func:`attnedu.retrieval.exact_search` does);
* :func:`recall_at_k_reference`: the fraction of the exact top ``k`` that an
  approximate search found, averaged over the queries;
* :func:`filter_after_reference`: metadata filtering *after* the vector search: the
  first ``k`` allowed results of an over-fetched result list, padded with ``-1`` /
  ``-inf`` (what ``VectorIndex.search(..., filtering="after")`` does).

``top_k`` may order equal scores either way, so :func:`check_top_k` does not compare
indices: it looks up the scores at the returned columns and compares those.
"""

from __future__ import annotations

import numpy as np

from .core import (
    DEFAULT_TIME_LIMIT,
    _a,
    Case,
    CheckFailed,
    _learner_traceback,
    _time_limit,
    _TimeLimit,
    call_learner,
    check_function,
    describe,
)

__all__ = [
    "cosine_similarity_reference",
    "top_k_reference",
    "recall_at_k_reference",
    "filter_after_reference",
    "check_cosine_similarity",
    "check_top_k",
    "check_recall_at_k",
    "check_filter_after",
]


# ------------------------------------------------------------------- references
def _matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"{name} must be a non-empty (n, d) array, got shape {a.shape}")
    return a


def cosine_similarity_reference(a, b) -> np.ndarray:
    r"""The cosine of every row of ``a`` with every row of ``b``.

    .. math:: S_{ij} = \frac{a_i \cdot b_j}{\lVert a_i \rVert\, \lVert b_j \rVert}

    Args:
        a: ``(m, d)``, b: ``(n, d)``, no zero rows.

    Returns:
        ``(m, n)`` float64, every entry in ``[-1, 1]``.
    """
    a, b = _matrix(a, "a"), _matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a {a.shape} and b {b.shape} must have the same number of columns d")
    na = np.linalg.norm(a, axis=1, keepdims=True)  # (m, 1)
    nb = np.linalg.norm(b, axis=1, keepdims=True)  # (n, 1)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("the cosine of a zero vector is undefined: drop the zero rows")
    return (a / na) @ (b / nb).T  # (m, n)


def _k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k > n:
        raise ValueError(f"k={k} but each row has only {n} scores; ask for k <= {n}")
    return int(k)


def top_k_reference(scores, k: int) -> np.ndarray:
    """The columns of the ``k`` largest scores of each row, largest first.

    ``np.argpartition`` moves the ``k`` largest of each row to its end in ``O(n)``;
    only those ``k`` are then sorted. Equal scores come in order of column.

    Args:
        scores: ``(nq, n)``, one row of scores per query.
        k: ``1 <= k <= n``; ``k > n`` raises ``ValueError``.

    Returns:
        ``(nq, k)`` int64 column indices.
    """
    s = _matrix(scores, "scores")
    n = s.shape[1]
    k = _k(k, n)
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]  # the k largest, unordered
    part.sort(axis=1)  # by column, so that ties come in order of column after the stable sort
    order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def recall_at_k_reference(found, truth) -> float:
    """Recall@k of an approximate search: for each query, the fraction of its exact
    top ``k`` (a row of ``truth``) that appears anywhere in its row of ``found``;
    then the mean over the queries.

    Args:
        found: ``(nq, k)`` ids from the approximate search (``-1`` = no result).
        truth: ``(nq, k)`` ids from the exact search.
    """
    f, t = np.asarray(found), np.asarray(truth)
    if f.ndim != 2 or f.shape != t.shape:
        raise ValueError(f"found {f.shape} and truth {t.shape} must both be (nq, k)")
    hits = [len(set(a) & set(b)) / len(b) for a, b in zip(f.tolist(), t.tolist())]
    return float(np.mean(hits))


def filter_after_reference(scores, ids, allowed, k: int):
    """Metadata filtering after the search: the first ``k`` allowed results of each row.

    Args:
        scores: ``(nq, m)`` scores of an over-fetched search (``m >= k``), best first.
        ids: ``(nq, m)`` the ids of those results; ``-1`` marks a missing result.
        allowed: ``(n,)`` booleans, ``allowed[i]`` True when document ``i`` passes the filter.
        k: how many results to keep per row.

    Returns:
        ``(scores, ids)``, ``(nq, k)`` each, in the order of the search. Where fewer than
        ``k`` allowed results exist, the rest of the row holds score ``-inf`` and id ``-1``.
    """
    s = np.asarray(scores, dtype=np.float64)
    i = np.asarray(ids).astype(np.int64)
    ok = np.asarray(allowed, dtype=bool)
    if s.ndim != 2 or s.shape != i.shape:
        raise ValueError(f"scores {s.shape} and ids {i.shape} must both be (nq, m)")
    keep = (i >= 0) & ok[np.maximum(i, 0)]  # (nq, m); never look up allowed[-1]
    out_s = np.full((s.shape[0], k), -np.inf)
    out_i = np.full((s.shape[0], k), -1, dtype=np.int64)
    for r in range(s.shape[0]):
        cols = np.flatnonzero(keep[r])[:k]  # the first k allowed, in rank order
        out_s[r, :len(cols)] = s[r, cols]
        out_i[r, :len(cols)] = i[r, cols]
    return out_s, out_i


# ------------------------------------------------------------ typical mistakes
def _unit(x, axis=1, order=2):
    x = np.asarray(x, dtype=float)
    return x / np.linalg.norm(x, ord=order, axis=axis, keepdims=True)


_COSINE_MISTAKES = [
    (lambda a, b: np.asarray(a, float) @ np.asarray(b, float).T,
     "it returns the plain dot products a @ b.T: divide each row by its length first, "
     "a / np.linalg.norm(a, axis=1, keepdims=True), and the same for b."),
    (lambda a, b: _unit(a) @ np.asarray(b, float).T,
     "only a is normalised: divide the rows of b by their lengths too."),
    (lambda a, b: np.asarray(a, float) @ _unit(b).T,
     "only b is normalised: divide the rows of a by their lengths too."),
    (lambda a, b: _unit(a, axis=0) @ _unit(b, axis=0).T,
     "it normalises the columns (axis=0): each vector is a row, so take the norm along axis=1."),
    (lambda a, b: 1 - cosine_similarity_reference(a, b),
     "it returns the cosine distance 1 - cos: return the similarity itself (1 for the same direction)."),
    (lambda a, b: _unit(a, order=1) @ _unit(b, order=1).T,
     "it divides by the sum of the absolute values (the L1 norm): use the Euclidean length, np.linalg.norm."),
    (lambda a, b: np.asarray(a, float) @ np.asarray(b, float).T
     / (np.linalg.norm(a) * np.linalg.norm(b)),
     "it divides by the norms of the whole matrices: each pair needs the lengths of its own two rows."),
    (lambda a, b: cosine_similarity_reference(b, a),
     "the result is transposed: row i belongs to a[i] and column j to b[j], so compute a_unit @ b_unit.T."),
]

_RECALL_MISTAKES = [
    (lambda f, t: float((np.asarray(f) == np.asarray(t)).mean()),
     "it compares position by position: a true neighbour counts wherever it appears in the row, "
     "so count the ids the two rows have in common (set(found_row) & set(truth_row))."),
    (lambda f, t: float(np.mean([len(set(a) & set(b)) / max(sum(x >= 0 for x in a), 1)
                                 for a, b in zip(np.asarray(f).tolist(), np.asarray(t).tolist())])),
     "it divides by the number of results returned: a missing result (-1) is a miss, so divide by k, "
     "the number of true neighbours."),
    (lambda f, t: len(set(np.ravel(f).tolist()) & set(np.ravel(t).tolist())) / np.size(t),
     "it pools the ids of all queries in one set: compare each query's row with the same row of truth."),
    (lambda f, t: np.array([len(set(a) & set(b)) / len(b) for a, b in zip(np.asarray(f).tolist(),
                                                                        np.asarray(t).tolist())]),
     "it returns one recall per query: return their mean, one number."),
    (lambda f, t: float(sum(len(set(a) & set(b)) / len(b) for a, b in zip(np.asarray(f).tolist(),
                                                                         np.asarray(t).tolist()))),
     "it adds the queries' recalls up: divide by the number of queries (take the mean)."),
    (lambda f, t: float(sum(len(set(a) & set(b)) for a, b in zip(np.asarray(f).tolist(),
                                                                 np.asarray(t).tolist()))),
     "it returns the number of true neighbours found: divide by k, then average over the queries."),
    (lambda f, t: 100 * recall_at_k_reference(f, t),
     "it returns a percentage: return a fraction between 0 and 1."),
]


def _filter_pad(score_pad, id_pad):
    def wrong(scores, ids, allowed, k):
        s, i = filter_after_reference(scores, ids, allowed, k)
        return np.where(i < 0, score_pad, s), np.where(i < 0, id_pad, i)
    return wrong


def _filter_cut_first(scores, ids, allowed, k):
    s, i = np.asarray(scores, float)[:, :k], np.asarray(ids)[:, :k]
    keep = (i >= 0) & np.asarray(allowed, bool)[np.maximum(i, 0)]
    return np.where(keep, s, -np.inf), np.where(keep, i, -1)


def _filter_inverted(scores, ids, allowed, k):
    return filter_after_reference(scores, ids, ~np.asarray(allowed, bool), k)


def _filter_no_filter(scores, ids, allowed, k):
    return np.asarray(scores, float)[:, :k], np.asarray(ids)[:, :k]


_FILTER_MISTAKES = [
    (_filter_pad(-np.inf, 0), "it pads with id 0, which is a real document: pad the ids with -1."),
    (_filter_pad(0.0, -1), "it pads the scores with 0, which looks like a real score: pad them with -np.inf."),
    (_filter_pad(-1.0, -1), "it pads the scores with -1, which looks like a real score: pad them with -np.inf."),
    (_filter_pad(np.nan, -1), "it pads the scores with NaN: pad them with -np.inf, which sorts below every score."),
    (_filter_cut_first, "it keeps the allowed results among the first k only, so those further down are lost "
                        "and dropped results leave gaps: filter all m results first, then move the first k that "
                        "pass to the front."),
    (_filter_inverted, "it keeps the results that are not allowed: keep those whose allowed[id] is True."),
    (_filter_no_filter, "it ignores the filter: drop the results whose allowed[id] is False."),
]


# ------------------------------------------------------------------- the checks
def check_cosine_similarity(cosine_similarity) -> None:
    """Check ``cosine_similarity(a, b) -> (m, n)`` cosines between the rows of ``a`` and ``b``."""
    ref = cosine_similarity_reference
    a1 = np.array([[3.0, 4.0]])
    b1 = np.array([[4.0, 3.0], [0.0, 2.0], [-3.0, -4.0]])
    rng = np.random.default_rng(10)
    a2 = rng.normal(size=(2, 3)) * np.array([[0.1], [10.0]])  # rows of very different lengths
    b2 = rng.normal(size=(4, 3)) * np.array([[1.0], [5.0], [0.2], [3.0]])
    x3 = rng.normal(size=(5, 8))
    a4, b4 = rng.normal(size=(6, 384)), rng.normal(size=(10, 384)) + 0.3
    cases = [
        Case((a1, b1), ref(a1, b1), about="a = [[3, 4]], b = [[4, 3], [0, 2], [-3, -4]]",
             hint="by hand: [3, 4] has length 5; cos with [4, 3] is 24 / 25 = 0.96, with [0, 2] it is 8 / 10 = 0.8, "
                  "with [-3, -4] it is -1."),
        Case((a2, b2), ref(a2, b2), about="a (2, 3) and b (4, 3) whose rows have lengths from 0.1 to 10",
             hint="the cosine does not depend on the lengths: divide every row of a and of b by its own norm."),
        Case((x3, x3), ref(x3, x3), about="a = b, shape (5, 8)",
             hint="every vector has cosine 1 with itself: the diagonal must be 1."),
        Case((a4, b4), ref(a4, b4), about="a (6, 384) and b (10, 384), like sentence embeddings"),
    ]
    check_function(cosine_similarity, "cosine_similarity", cases, params=["a", "b"], mistakes=_COSINE_MISTAKES)


def _top_k_cases():
    """The visible cases of :func:`check_top_k`: ``(scores, k, about, hint)``."""
    rng = np.random.default_rng(11)
    tie = np.array([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]])
    return [
        (np.array([[0.1, 0.9, 0.4, 0.7], [0.8, 0.2, 0.6, 0.3], [0.5, 0.4, 0.9, 0.1]]), 2,
         "scores = [[0.1, 0.9, 0.4, 0.7], [0.8, 0.2, 0.6, 0.3], [0.5, 0.4, 0.9, 0.1]], k = 2",
         "by hand: in row 0 the two largest are 0.9 (column 1) and 0.7 (column 3); the answer is "
         "[[1, 3], [0, 2], [2, 0]]."),
        (rng.normal(size=(3, 8)), 3, "scores of shape (3, 8), k = 3",
         "one row per query: find the top k along axis=1, each row on its own."),
        (rng.normal(size=(4, 6)), 1, "scores of shape (4, 6), k = 1", "with k = 1 each row holds its argmax."),
        (rng.normal(size=(2, 5)), 5, "scores of shape (2, 5), k = 5 (= n)",
         "with k = n every column is a result, sorted; np.argpartition(-scores, k - 1) works for k = n, while "
         "kth = k is out of range."),
        (tie, 3, "scores = [[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]] (ties), k = 3",
         "equal scores may come in either order, but each column only once."),
        (rng.normal(size=(20, 1000)).astype(np.float32), 10, "scores of shape (20, 1000), float32, k = 10", None),
        (rng.normal(size=(2, 4)), 5, "scores of shape (2, 4), k = 5 (> n)", None),
    ]


def _describe_row(values) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _top_k_problem(ids: np.ndarray, scores: np.ndarray, k: int) -> str | None:
    """What is wrong with ``ids`` as the top ``k`` of ``scores``, or None. ``ids`` has the right shape."""
    n = scores.shape[1]
    if ((ids < 0) | (ids >= n)).any():
        bad = ids[(ids < 0) | (ids >= n)][0]
        return (f"holds the column {bad}, which is not a column of scores (0 to {n - 1})"
                + ("; did you return the scores instead of their positions?" if ids.dtype.kind == "f" else "."))
    for r, row in enumerate(ids):
        if len(set(row.tolist())) != len(row):
            return (f"lists the same column twice in row {r} ({row.tolist()}): each column is a result only once; "
                    "np.argpartition returns distinct positions.")
    got = np.take_along_axis(scores, ids, axis=1)  # (nq, k): the scores at the learner's columns
    best = -np.sort(-scores, axis=1)[:, :k]  # (nq, k): the k largest, largest first
    if np.array_equal(got, best):
        return None
    worst = np.sort(scores, axis=1)[:, :k]
    same_set = np.array_equal(np.sort(got, axis=1), np.sort(best, axis=1))
    if np.array_equal(got, worst) or np.array_equal(np.sort(got, axis=1), worst):
        cause = ("it returns the k smallest scores: np.argsort and np.argpartition sort from smallest to largest, "
                 "so work on -scores (or take the last k and reverse them).")
    elif np.array_equal(got, best[:, ::-1]):
        cause = "the right columns, but smallest first: reverse them, the best result comes first."
    elif same_set:
        cause = ("the right columns, but not in order of score: np.argpartition only splits the k largest from the "
                 "rest, in no promised order; sort those k by their scores (not by column), largest first.")
    else:
        cause = None
    r = int(np.flatnonzero((got != best).any(axis=1))[0])
    message = (f"picks columns whose scores in row {r} are {_describe_row(got[r])}; the {k} largest, largest "
               f"first, are {_describe_row(best[r])}.")
    return message + (f" Likely cause: {cause}" if cause else "")


def _call_expecting_value_error(fn, name: str, args: tuple, about: str, time_limit) -> None:
    """Call ``fn(*args)``, which should raise ``ValueError``; anything else is a CheckFailed."""
    import copy

    try:
        with _time_limit(time_limit):
            got = fn(*copy.deepcopy(args))
    except _TimeLimit:
        raise CheckFailed(f"`{name}` ran for more than {time_limit:g} s on {about}: "
                          "look for a loop that never ends.") from None
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet: replace `raise NotImplementedError()` with your code, "
                          "then run that cell again.") from None
    except ValueError:
        return
    except Exception as exc:
        raise CheckFailed(f"`{name}` raised {type(exc).__name__} on {about}; raise a ValueError that says k is "
                          "larger than the number of scores.", learner_traceback=_learner_traceback(exc)) from None
    raise CheckFailed(f"`{name}` on {about} returned {describe(got)} instead of raising ValueError: there are fewer than k scores to choose from, so say so "
                      "(raise ValueError(...)) rather than return fewer.")


def check_top_k(top_k, cases=None, *, time_limit: float | None = DEFAULT_TIME_LIMIT, quiet: bool = False) -> None:
    """Check ``top_k(scores, k) -> (nq, k)`` column indices, largest score first.

    Equal scores may come in any order: the check compares the scores at the returned
    columns with the ``k`` largest. ``k > n`` must raise ``ValueError``.

    Args:
        top_k: the learner's function.
        cases: ``(scores, k, about, hint)`` tuples (default: the visible cases).
        time_limit: seconds allowed per call.
        quiet: do not print the success line.
    """
    name = "top_k"
    if not callable(top_k):
        kind = "None" if top_k is None else _a(type(top_k).__name__)
        raise CheckFailed(f"`{name}` should be a function, but it is {kind}: run the cell that defines "
                          f"`def {name}(...)` first.")
    cases = _top_k_cases() if cases is None else list(cases)
    for scores, k, about, hint in cases:
        scores = np.asarray(scores)
        n = scores.shape[1]
        if k > n:
            _call_expecting_value_error(top_k, name, (scores, k), about, time_limit)
            continue
        try:
            got = call_learner(top_k, name, Case((scores, k), None, about=about), time_limit)
        except CheckFailed as failure:
            if hint and failure.learner_traceback is not None:
                raise CheckFailed(f"{failure} Hint: {hint}", failure.learner_traceback) from None
            raise
        lead = f"`{name}` on {about}"
        ids = _as_indices(got, lead)
        expected_shape = (scores.shape[0], k)
        if ids.shape != expected_shape:
            raise CheckFailed(f"{lead} returned an array of shape {ids.shape}; expected {expected_shape}, "
                              f"one row of k column indices per query.{_shape_hint(ids.shape, scores.shape, k)}")
        problem = _top_k_problem(ids, scores.astype(np.float64), k)
        if problem:
            if hint and "Likely cause" not in problem:
                problem += f" Hint: {hint}"
            raise CheckFailed(f"{lead} returned an array that {problem}")
    if not quiet:
        print(f"\u2713 `{name}` passes all {len(cases)} checks.")


def _as_indices(got, lead: str) -> np.ndarray:
    if got is None:
        raise CheckFailed(f"{lead} returned None: did you forget to `return` the indices?")
    if isinstance(got, tuple):
        raise CheckFailed(f"{lead} returned a tuple of {len(got)}; return only the (nq, k) array of column indices.")
    if hasattr(got, "detach") and hasattr(got, "numpy"):
        got = got.detach().cpu().numpy()
    try:
        arr = np.asarray(got)
    except Exception:
        raise CheckFailed(f"{lead} returned a {type(got).__name__}, which NumPy cannot turn into an array of "
                          "indices (are the rows of different lengths?).") from None
    if arr.dtype.kind not in "iuf":
        raise CheckFailed(f"{lead} returned {type(got).__name__} of dtype {arr.dtype}, not an array of integer "
                          "column indices.")
    if arr.dtype.kind == "f":
        whole = np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))
        if not whole:
            raise CheckFailed(f"{lead} returned numbers of dtype {arr.dtype} that are not whole: return the "
                              "positions of the scores (np.argpartition, np.argsort), not the scores themselves.")
        arr = arr.astype(np.int64)
    return arr


def _shape_hint(got: tuple, scores: tuple, k: int) -> str:
    nq, n = scores
    if got == (k, nq) and nq != k:
        return " (transposed?)"
    if got == (k, n):
        return " It looks like the top k of each column (axis 0): rank along axis=1, each query's row."
    if got == (nq, n):
        return " It returns every column: keep only the first k."
    if len(got) == 2 and got[0] == nq and abs(got[1] - k) == 1:
        return (" Off by one: np.argpartition(-scores, k - 1) puts the k largest in the first k places "
                "(kth = k - 1 is an index), then keep [:, :k].")
    if got == (k,) or got == (nq * k,):
        return " Keep the query axis: work along axis=1 and slice [:, :k]."
    return ""


def check_recall_at_k(recall_at_k) -> None:
    """Check ``recall_at_k(found, truth) -> float`` (ids ``(nq, k)``, ``-1`` = no result)."""
    ref = recall_at_k_reference
    f1, t1 = np.array([[1, 2, 3]]), np.array([[3, 1, 7]])
    f2, t2 = np.array([[3, 2, 1], [4, 5, 6]]), np.array([[1, 2, 3], [6, 5, 4]])
    f3, t3 = np.array([[0, 5, -1, -1]]), np.array([[5, 0, 2, 9]])
    f4, t4 = np.array([[1, 2], [3, 4]]), np.array([[3, 4], [1, 2]])
    rng = np.random.default_rng(12)
    t5 = np.array([rng.choice(1000, 10, replace=False) for _ in range(50)])
    f5 = t5.copy()
    for row in f5:  # replace a random number of the true neighbours, then shuffle the row
        m = rng.integers(0, 6)
        row[rng.choice(10, m, replace=False)] = rng.integers(1000, 2000, m)
        rng.shuffle(row)
    cases = [
        Case((f1, t1), ref(f1, t1), about="found = [[1, 2, 3]], truth = [[3, 1, 7]]",
             hint="by hand: 2 of the 3 true neighbours (3 and 1) were found, so the recall is 2/3."),
        Case((f2, t2), ref(f2, t2), about="the same ids in a different order, 2 queries",
             hint="the order does not matter: every true neighbour was found, so the recall is 1."),
        Case((f3, t3), ref(f3, t3), about="found = [[0, 5, -1, -1]] (two missing results), truth = [[5, 0, 2, 9]]",
             hint="-1 is a missing result, never a true neighbour: 2 of 4 found, recall 0.5."),
        Case((f4, t4), ref(f4, t4), about="found = [[1, 2], [3, 4]], truth = [[3, 4], [1, 2]]",
             hint="each query has its own neighbours: here no query found any of its own, so the recall is 0."),
        Case((f5, t5), ref(f5, t5), about="50 queries, k = 10, ids up to 2000",
             hint="average the recalls of the queries, each between 0 and 1."),
    ]
    check_function(recall_at_k, "recall_at_k", cases, params=["found", "truth"], mistakes=_RECALL_MISTAKES)


def check_filter_after(filter_after) -> None:
    """Check ``filter_after(scores, ids, allowed, k) -> (scores, ids)``, ``(nq, k)`` each."""
    ref = filter_after_reference
    s1 = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    i1 = np.array([[4, 1, 0, 3, 2]])
    a1 = np.array([False, True, True, False, False])  # documents 1 and 2 allowed
    s2 = np.array([[0.9, 0.8, 0.7, -np.inf], [0.6, 0.5, -np.inf, -np.inf]])
    i2 = np.array([[5, 1, 2, -1], [3, 4, -1, -1]])
    a2 = np.array([False, True, True, True, False, False])  # the last document is not allowed...
    a2b = a2.copy()
    a2b[-1] = True  # ...and here it is: allowed[-1] is True
    rng = np.random.default_rng(13)
    n, nq, m = 200, 6, 40
    s3 = -np.sort(-rng.uniform(size=(nq, m)), axis=1)
    i3 = np.array([rng.choice(n, m, replace=False) for _ in range(nq)])
    a3 = rng.uniform(size=n) < 0.3
    cases = [
        Case((s1, i1, a1, 2), ref(s1, i1, a1, 2),
             about="scores [[0.9, 0.8, 0.7, 0.6, 0.5]], ids [[4, 1, 0, 3, 2]], documents 1 and 2 allowed, k = 2",
             hint="by hand: going down the list, 4 is not allowed, 1 is, 0 and 3 are not, 2 is: keep ids [[1, 2]] "
                  "with scores [[0.8, 0.5]]."),
        Case((s1, i1, a1, 4), ref(s1, i1, a1, 4), about="the same with k = 4: only 2 results pass",
             hint="a row with fewer than k allowed results is padded: scores -inf, ids -1, at the end."),
        Case((s2, i2, a2, 2), ref(s2, i2, a2, 2), about="2 queries whose result lists end in missing results (-1)",
             hint="missing results (id -1) are never kept."),
        Case((s2, i2, a2b, 3), ref(s2, i2, a2b, 3),
             about="missing results (-1) while the last document is allowed (allowed[-1] is True), k = 3",
             hint="a missing result is not a document (allowed[-1] belongs to the last document): never keep id -1."),
        Case((s3, i3, a3, 10), ref(s3, i3, a3, 10), about="6 queries, 40 results fetched, 30% allowed, k = 10"),
    ]
    check_function(filter_after, "filter_after", cases, params=["scores", "ids", "allowed", "k"],
                   outputs=("scores", "ids"), mistakes=_FILTER_MISTAKES)
