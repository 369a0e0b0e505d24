"""Chapter 10's exercises, *Embeddings and vector search*, as records (see :mod:`attnedu.checks`)."""

import numpy as np

from .. import retrieval as R
from . import Case, CheckFailed, Exercise, ExerciseSet, register
from .compare import _fail, as_numbers

def _cosine_with(a, b, *, unit_a=True, unit_b=True, axis=1, order=2, whole=False, distance=False, swap=False):
    a, b = (np.asarray(x, dtype=float) for x in ((b, a) if swap else (a, b)))
    unit = lambda x, on: x / np.linalg.norm(x, ord=order, axis=axis, keepdims=True) if on else x  # noqa: E731
    s = a @ b.T / (np.linalg.norm(a) * np.linalg.norm(b)) if whole else unit(a, unit_a) @ unit(b, unit_b).T
    return 1 - s if distance else s
def _cosine_cases():
    rng = np.random.default_rng(10)
    a2 = rng.normal(size=(2, 3)) * np.array([[0.1], [10.0]])  # rows of very different lengths
    b2, x3 = rng.normal(size=(4, 3)) * np.array([[1.0], [5.0], [0.2], [3.0]]), rng.normal(size=(5, 8))
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        ((np.array([[3.0, 4.0]]), np.array([[4.0, 3.0], [0.0, 2.0], [-3.0, -4.0]])),
         "a = [[3, 4]], b = [[4, 3], [0, 2], [-3, -4]]", "by hand: [3, 4] has length 5; cos with [4, 3] is 24 / 25 = "
         "0.96, with [0, 2] it is 8 / 10 = 0.8, with [-3, -4] it is -1."),
        ((a2, b2), "a (2, 3) and b (4, 3) whose rows have lengths from 0.1 to 10", "the cosine does not depend on the "
         "lengths: divide every row of a and of b by its own norm."),
        ((x3, x3), "a = b, shape (5, 8)", "every vector has cosine 1 with itself: the diagonal must be 1."),
        ((rng.normal(size=(6, 384)), rng.normal(size=(10, 384)) + 0.3),
         "a (6, 384) and b (10, 384), like sentence embeddings", None)]]
def _cosine_hidden():  # rows of lengths 0.01 to 100, opposite directions (-1), float32
    rng = np.random.default_rng(1001)
    rows = lambda m, d: rng.normal(size=(m, d)) * rng.uniform(0.01, 100, size=(m, 1))  # noqa: E731
    cases = [Case((rows(m, d), rows(n, d))) for m, n, d in [(1, 1, 1), (1, 1, 2), (3, 2, 5), (7, 11, 16), (4, 50, 384)]]
    x = rng.normal(size=(6, 8))
    x32 = x.astype(np.float32)
    return cases + [Case((x, -3 * x)), Case((x32, x32[:2]), expected=R.cosine_similarity(x, x[:2]), atol=1e-6)]
_COSINE = Exercise("cosine_similarity", ["a", "b"], R.cosine_similarity, _cosine_cases, _cosine_hidden,
                   wrong=_cosine_with, mistakes=[
    ({"unit_a": False, "unit_b": False}, "it returns the plain dot products a @ b.T: divide each row by its length "
     "first, a / np.linalg.norm(a, axis=1, keepdims=True), and the same for b."),
    ({"unit_b": False}, "only a is normalised: divide the rows of b by their lengths too."),
    ({"unit_a": False}, "only b is normalised: divide the rows of a by their lengths too."),
    ({"axis": 0}, "it normalises the columns (axis=0): each vector is a row, so take the norm along axis=1."),
    ({"distance": True}, "it returns the cosine distance 1 - cos: return the similarity itself (1 for the same "
     "direction)."),
    ({"order": 1}, "it divides by the sum of the absolute values (the L1 norm): use the Euclidean length, "
     "np.linalg.norm."),
    ({"whole": True}, "it divides by the norms of the whole matrices: each pair needs the lengths of its own two "
     "rows."),
    ({"swap": True}, "the result is transposed: row i belongs to a[i] and column j to b[j], so compute a_unit @ "
     "b_unit.T.")])
def _top_k_case(scores, k, about, hint=None):  # k > n must raise ValueError
    return Case((scores, k), about=about, raises=ValueError if k > scores.shape[1] else None, hint="there are fewer "
                "than k scores to choose from, so say so (raise ValueError(...) saying that k is larger than the "
                "number of scores) rather than return fewer." if k > scores.shape[1] else hint)
def _top_k_cases(hidden=False):
    rng, tie = np.random.default_rng(1002 if hidden else 11), [[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]]
    n, s0 = rng.normal, [[0.1, 0.9, 0.4, 0.7], [0.8, 0.2, 0.6, 0.3], [0.5, 0.4, 0.9, 0.1]]
    return [_top_k_case(*row) for row in ([
        (np.array([[5.0]]), 1, "a single score"), (n(size=(1, 7)), 7, "one query, k = n = 7"),
        (n(size=(9, 40)), 1, "9 queries, k = 1"), (n(size=(9, 40)), 39, "9 queries, k = n - 1"),
        (rng.integers(0, 3, size=(6, 25)).astype(float), 8, "many ties"),
        (-np.abs(n(size=(4, 30))), 5, "all scores negative"),
        (n(size=(30, 5000)).astype(np.float32), 10, "30 x 5000, k = 10"), (n(size=(3, 5)), 6, "k = n + 1"),
        (n(size=(2, 1)), 10, "k much larger than n")] if hidden else [
        (np.array(s0), 2, f"scores = {s0}, k = 2", "by hand: in row 0 the two largest are 0.9 (column 1) and 0.7 "
         "(column 3); the answer is [[1, 3], [0, 2], [2, 0]]."),
        (n(size=(3, 8)), 3, "scores of shape (3, 8), k = 3", "one row per query: find the top k along axis=1, each row "
         "on its own."),
        (n(size=(4, 6)), 1, "scores of shape (4, 6), k = 1", "with k = 1 each row holds its argmax."),
        (n(size=(2, 5)), 5, "scores of shape (2, 5), k = 5 (= n)", "with k = n every column is a result, sorted; "
         "np.argpartition(-scores, k - 1) works for k = n, while kth = k is out of range."),
        (np.array(tie), 3, f"scores = {tie} (ties), k = 3", "equal scores may come in either order, but each column "
         "only once."),
        (n(size=(20, 1000)).astype(np.float32), 10, "scores of shape (20, 1000), float32, k = 10"),
        (n(size=(2, 4)), 5, "scores of shape (2, 4), k = 5 (> n)")])]
def _compare_top_k(got, case, lead, ex):  # equal scores may come in any order: the k largest scores, largest first
    (scores, k), srt = case.args, lambda v: np.sort(v, axis=1)
    (nq, n), scores = scores.shape, np.asarray(scores, dtype=np.float64)
    if isinstance(got, tuple):
        _fail(f"{lead} returned a tuple of {len(got)}; return only the (nq, k) array of column indices.")
    if not (np.isfinite(ids := as_numbers(got, lead, "a result")).all() and np.array_equal(ids, np.round(ids))):
        _fail(f"{lead} returned numbers that are not whole: return the positions of the scores (np.argpartition, "
              "np.argsort), not the scores themselves.")
    if (s := ids.shape) != (nq, k):
        why = next((text for found, text in [  # the text of the first true condition, or ""
            (s == (k, nq) and nq != k, " (transposed?)"),
            (s == (k, n), " It looks like the top k of each column (axis 0): rank along axis=1, each query's row."),
            (s == (nq, n), " It returns every column: keep only the first k."),
            (s in ((nq, k - 1), (nq, k + 1)), " Off by one: np.argpartition(-scores, k - 1) puts the k largest in the "
             "first k places (kth = k - 1 is an index), then keep [:, :k]."),
            (s in ((k,), (nq * k,)), " Keep the query axis: work along axis=1 and slice [:, :k].")] if found), "")
        _fail(f"{lead} returned an array of shape {s}; expected {(nq, k)}, one row of k column indices per query.{why}")
    ids, lead = ids.astype(np.int64), f"{lead} returned an array that"
    if (bad := (ids < 0) | (ids >= n)).any():
        raise CheckFailed(f"{lead} holds the column {ids[bad][0]}, which is not a column of scores (0 to {n - 1}).")
    if (r := next((r for r, row in enumerate(ids.tolist()) if len(set(row)) < k), None)) is not None:
        raise CheckFailed(f"{lead} lists the same column twice in row {r} ({ids[r].tolist()}): each column is a result "
                          "only once; np.argpartition returns distinct positions.")
    got, best = np.take_along_axis(scores, ids, axis=1), -srt(-scores)[:, :k]  # (nq, k) each; the k best, best first
    if np.array_equal(got, best):
        return
    cause = next((text for found, text in [
        (np.array_equal(srt(got), srt(scores)[:, :k]), "it returns the k smallest scores: np.argsort and "
         "np.argpartition sort from smallest to largest, so work on -scores (or take the last k and reverse them)."),
        (np.array_equal(got, best[:, ::-1]), "the right columns, but smallest first: reverse them, the best result "
         "comes first."),
        (np.array_equal(srt(got), srt(best)), "the right columns, but not in order of score: np.argpartition only "
         "splits the k largest from the rest, in no promised order; sort those k by their scores (not by column), "
         "largest first.")] if found), "")
    r, row = int(np.flatnonzero((got != best).any(axis=1))[0]), lambda v: "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
    raise CheckFailed(f"{lead} picks columns whose scores in row {r} are {row(got[r])}; the {k} largest, largest "
                      f"first, are {row(best[r])}." + (f" Likely cause: {cause}" if cause else ""),
                      about_values=not cause)
register("top-k", _compare_top_k, lambda a, b, ex=None: np.array_equal(np.asarray(a), np.asarray(b)))
_TOP_K = Exercise("top_k", ["scores", "k"], R.top_k, _top_k_cases, lambda: _top_k_cases(True), compare="top-k")
def _recall_with(found, truth, *, positional=False, pooled=False, returned=False, per_k=True, reduce=np.mean, scale=1):
    f, t = ([sum(x, [])] if pooled else x for x in (np.asarray(found).tolist(), np.asarray(truth).tolist()))
    hits = [sum(map(int.__eq__, a, b)) if positional else len(set(a) & set(b)) for a, b in zip(f, t)]
    each = [h / (max(sum(x >= 0 for x in a), 1) if returned else len(b) if per_k else 1) for h, a, b in zip(hits, f, t)]
    return scale * (np.array(each) if reduce is np.array else float(reduce(each)))
def _recall_cases(hidden=False):
    rng, a, ids, cases = np.random.default_rng(1003 if hidden else 12), np.array, 10_000 if hidden else 1000, []
    for nq, k in [(1, 10), (5, 3), (100, 10), (20, 100)] if hidden else [(50, 10)]:
        t = np.array([rng.choice(ids, k, replace=False) for _ in range(nq)])
        for row in (f := t.copy()):  # replace some true neighbours (hidden: some missing, -1, at the end), shuffle
            m = rng.integers(0, k + 1 if hidden else 6)
            row[rng.choice(k, m, replace=False)] = rng.integers(ids, 2 * ids, m)
            if hidden and rng.uniform() < 0.3:
                row[-rng.integers(1, k + 1):] = -1
            rng.shuffle(row)
        cases.append(Case((f, t)))
    if hidden:
        return [Case((a([[7]]), a([[7]])), expected=1.0), Case((a([[-1]]), a([[7]])), expected=0.0),
                Case((np.full((3, 4), -1), np.arange(12).reshape(3, 4)), expected=0.0)] + cases
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        ((a([[1, 2, 3]]), a([[3, 1, 7]])), "found = [[1, 2, 3]], truth = [[3, 1, 7]]", "by hand: 2 of the 3 true "
         "neighbours (3 and 1) were found, so the recall is 2/3."),
        ((a([[3, 2, 1], [4, 5, 6]]), a([[1, 2, 3], [6, 5, 4]])), "the same ids in a different order, 2 queries", "the "
         "order does not matter: every true neighbour was found, so the recall is 1."),
        ((a([[0, 5, -1, -1]]), a([[5, 0, 2, 9]])), "found = [[0, 5, -1, -1]] (two missing results), "
         "truth = [[5, 0, 2, 9]]", "-1 is a missing result, never a true neighbour: 2 of 4 found, recall 0.5."),
        ((a([[1, 2], [3, 4]]), a([[3, 4], [1, 2]])), "found = [[1, 2], [3, 4]], truth = [[3, 4], [1, 2]]", "each query "
         "has its own neighbours: here no query found any of its own, so the recall is 0."),
        (cases[0].args, "50 queries, k = 10, ids up to 2000", "average the recalls of the queries, each between 0 and "
         "1.")]]
_RECALL = Exercise("recall_at_k", ["found", "truth"], R.recall_at_k, _recall_cases, lambda: _recall_cases(True),
                   wrong=_recall_with, mistakes=[
    ({"positional": True}, "it compares position by position: a true neighbour counts wherever it appears in the row, "
     "so count the ids the two rows have in common (set(found_row) & set(truth_row))."),
    ({"returned": True}, "it divides by the number of results returned: a missing result (-1) is a miss, so divide by "
     "k, the number of true neighbours."),
    ({"pooled": True}, "it pools the ids of all queries in one set: compare each query's row with the same row of "
     "truth."),
    ({"reduce": np.array}, "it returns one recall per query: return their mean, one number."),
    ({"reduce": sum}, "it adds the queries' recalls up: divide by the number of queries (take the mean)."),
    ({"per_k": False, "reduce": sum}, "it returns the number of true neighbours found: divide by k, then average over "
     "the queries."),
    ({"scale": 100}, "it returns a percentage: return a fraction between 0 and 1.")])
def _filter_with(scores, ids, allowed, k, *, score_pad=-np.inf, id_pad=-1, first_k=False, invert=False, use=True):
    s, i, ok = np.asarray(scores, dtype=float), np.asarray(ids), np.asarray(allowed, dtype=bool)
    if first_k or not use:
        keep = (i[:, :k] >= 0) & ok[np.maximum(i[:, :k], 0)] if use else True
        return np.where(keep, s[:, :k], -np.inf), np.where(keep, i[:, :k], -1)
    s, i = R.filter_after(s, i, ~ok if invert else ok, k)
    return np.where(i < 0, score_pad, s), np.where(i < 0, id_pad, i)
def _filter_cases(hidden=False):
    rng, a, cases = np.random.default_rng(1004 if hidden else 13), np.array, []
    for n, nq, m, k, p in ([(10, 1, 5, 5, 1.0), (10, 2, 5, 1, 0.5), (50, 3, 20, 5, 0.0), (500, 8, 100, 10, 0.05),
                            (1000, 20, 50, 10, 0.5)] if hidden else [(200, 6, 40, 10, 0.3)]):
        s = -np.sort(-(rng.normal if hidden else rng.uniform)(size=(nq, m)), axis=1)
        i = a([rng.choice(n, m, replace=False) for _ in range(nq)])
        if hidden:  # some rows end in missing results
            short = rng.uniform(size=nq) < 0.4
            s[short, m // 2:], i[short, m // 2:] = -np.inf, -1
        ok = rng.uniform(size=n) < p
        ok[-1] |= hidden  # hidden: the last document passes, allowed[-1] is True
        cases += [Case((s, i, ok, k), about=None if hidden else "6 queries, 40 results fetched, 30% allowed, k = 10")]
    s1, i1, a1 = a([[0.9, 0.8, 0.7, 0.6, 0.5]]), a([[4, 1, 0, 3, 2]]), np.isin(np.arange(5), [1, 2])
    s2, i2 = a([[0.9, 0.8, 0.7, -np.inf], [0.6, 0.5, -np.inf, -np.inf]]), a([[5, 1, 2, -1], [3, 4, -1, -1]])
    a2, a3 = np.isin(np.arange(6), [1, 2, 3]), np.isin(np.arange(6), [1, 2, 3, 5])  # a3 allows the last document too
    return cases if hidden else [Case(args, about=about, hint=hint) for args, about, hint in [
        ((s1, i1, a1, 2), "scores [[0.9, 0.8, 0.7, 0.6, 0.5]], ids [[4, 1, 0, 3, 2]], documents 1 and 2 allowed, k = 2",
         "by hand: going down the list, 4 is not allowed, 1 is, 0 and 3 are not, 2 is: keep ids [[1, 2]] with scores "
         "[[0.8, 0.5]]."),
        ((s1, i1, a1, 4), "the same with k = 4: only 2 results pass", "a row with fewer than k allowed results is "
         "padded: scores -inf, ids -1, at the end."),
        ((s2, i2, a2, 2), "2 queries whose result lists end in missing results (-1)", "missing results (id -1) are "
         "never kept."),
        ((s2, i2, a3, 3), "missing results (-1) while the last document is allowed (allowed[-1] is True), k = 3",
         "a missing result is not a document (allowed[-1] belongs to the last document): never keep id -1.")]] + cases
_FILTER = Exercise("filter_after", ["scores", "ids", "allowed", "k"], R.filter_after, _filter_cases,
                   lambda: _filter_cases(True), outputs=("scores", "ids"), wrong=_filter_with, mistakes=[
    ({"id_pad": 0}, "it pads with id 0, which is a real document: pad the ids with -1."),
    ({"score_pad": 0.0}, "it pads the scores with 0, which looks like a real score: pad them with -np.inf."),
    ({"score_pad": -1.0}, "it pads the scores with -1, which looks like a real score: pad them with -np.inf."),
    ({"score_pad": np.nan}, "it pads the scores with NaN: pad them with -np.inf, which sorts below every score."),
    ({"first_k": True}, "it keeps the allowed results among the first k only, so those further down are lost and "
     "dropped results leave gaps: filter all m results first, then move the first k that pass to the front."),
    ({"invert": True}, "it keeps the results that are not allowed: keep those whose allowed[id] is True."),
    ({"use": False}, "it ignores the filter: drop the results whose allowed[id] is False.")])
EXERCISES = ExerciseSet(_COSINE, _TOP_K, _RECALL, _FILTER)
check = EXERCISES.check
