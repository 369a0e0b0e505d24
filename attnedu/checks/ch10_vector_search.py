"""Chapter 10's exercises, *Embeddings and vector search*, as records (see :mod:`attnedu.checks`): exact top-k,
a prediction and a measurement of why approximate search fails on uniformly random vectors, and filtering after
the search."""

import functools

import numpy as np

from .. import retrieval as R
from . import Case, CheckFailed, Exercise, ExerciseSet, register
from .compare import _fail, as_numbers

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
# ------------------------------------------------------------------ recall@k, for the sweeps below
def _recall_with(found, truth, *, positional=False, pooled=False, returned=False, per_k=True, reduce=np.mean, scale=1):
    f, t = ([sum(x, [])] if pooled else x for x in (np.asarray(found).tolist(), np.asarray(truth).tolist()))
    hits = [sum(map(int.__eq__, a, b)) if positional else len(set(a) & set(b)) for a, b in zip(f, t)]
    each = [h / (max(sum(x >= 0 for x in a), 1) if returned else len(b) if per_k else 1) for h, a, b in zip(hits, f, t)]
    return scale * (np.array(each) if reduce is np.array else float(reduce(each)))

# ------------------------------------------------------------------ why approximate search fails on uniform data
@functools.cache
def _cells_on_uniform_data() -> str:
    """The answer, from a small version of the chapter's experiment: 5,000 unit vectors drawn uniformly
    in 384 dimensions, an IVF index of 64 cells; recall@10 when a query scans a sixteenth and half of them."""
    rng = np.random.default_rng(10)
    x, q = (rng.standard_normal((m, 384), dtype=np.float32) for m in (5000, 100))
    x, q = x / np.linalg.norm(x, axis=1, keepdims=True), q / np.linalg.norm(q, axis=1, keepdims=True)
    truth, ivf, found = R.exact_search(q, x, 10, threads=1)[1], R.FaissIndex("ivf", metric="ip", nlist=64).add(x), {}
    for nprobe in (4, 32):
        ivf.nprobe = nprobe
        found[nprobe] = ivf.search(q, k=10)[1]
    cells = R.setting_for_recall(found, truth, 0.9)
    return "a" if cells == 4 else "b" if cells == 32 else "c"
_CELLS = Exercise("predict_uniform_cells", [], _cells_on_uniform_data, lambda: [Case(about="uniform vectors", mistakes=[
    ("a", "that is what clustered data allow, where a query's neighbours share its few nearest cells; uniformly "
     "random vectors have no clusters, so the neighbours are scattered over almost all the cells."),
    ("b", "even half of the cells finds only about 70% of the true top 10: with no clusters, a query is about as "
     "close to every centroid, and its neighbours are spread over the cells almost evenly.")])],
    compare="choice", options={"choices": ("a", "b", "c")}, kind="predict", explain=(
    "On uniformly random vectors IVF has to scan three quarters of its cells or more to find 90% of the true top 10 "
    "(on clustered data, 2 cells of 256): in 384 dimensions such vectors are all nearly orthogonal, a query is "
    "about as close to every centroid, and its nearest neighbours sit in cells all over the index. Approximate "
    "search works only where the data have structure (clusters) for it to find."))
def _setting_with(found, truth, target=0.9, *, recall=None, strict=False, order="smallest", every=False, none=None,
                  give="setting"):  # the usual mistakes as switches; recall: _recall_with's switches
    each = {s: _recall_with(f, truth, **(recall or {}), reduce=np.array) for s, f in found.items()}  # per query
    reach = {s: (r.min() if every else r.mean()) for s, r in each.items()}
    good = [s for s in found if (reach[s] > target if strict else reach[s] >= target)]
    if not good:
        return max(found) if none == "largest" else none
    s = good[0] if order == "first" else max(good) if order == "largest" else min(good)
    return float(reach[s]) if give == "recall" else s
def _sweep(rng, nq, k, recalls, missing=0.0, order=None):  # {setting: found (nq, k)} with about these recalls
    truth, found = np.array([rng.choice(1000, k, replace=False) for _ in range(nq)]), {}
    for s, p in sorted(recalls.items(), key=lambda item: order.index(item[0]) if order else item[0]):
        rows = []
        for t in truth:
            hits = int(np.clip(rng.binomial(k, p), 0, k))
            row = np.concatenate([rng.choice(t, hits, replace=False), rng.integers(1000, 2000, k - hits)])
            rng.shuffle(row)
            if rng.uniform() < missing:  # the misses at the end went missing (-1), as FAISS returns them
                row = np.concatenate([row[row < 1000], np.full(k - hits, -1)])
            rows.append(row)
        found[s] = np.array(rows)
    return found, truth
def _setting_cases(hidden=False):
    a, rng = np.array, np.random.default_rng(1005 if hidden else 14)
    f1, t1 = {1: a([[1, 9, 8, 7]]), 2: a([[2, 1, 9, 7]]), 4: a([[4, 3, 2, 1]]), 8: a([[1, 2, 3, 4]])}, a([[1, 2, 3, 4]])
    t5 = a([[5, 0, 2, 9], [1, 2, 3, 4]])
    f5 = {8: a([[0, 5, -1, -1], [4, 3, 2, 1]]), 16: t5[:, ::-1]}
    sweep = {1: 0.3, 2: 0.5, 4: 0.7, 8: 0.85, 16: 0.93, 32: 0.98, 64: 1.0}
    if not hidden:
        f6, t6 = _sweep(rng, 50, 10, sweep)
        return [Case(args, about=about, hint=hint) for args, about, hint in [
            ((f1, t1, 0.9), "truth = [[1, 2, 3, 4]], found = {1: [[1, 9, 8, 7]], 2: [[2, 1, 9, 7]], 4: [[4, 3, 2, "
             "1]], 8: [[1, 2, 3, 4]]}, target = 0.9", "by hand: the recalls are 1/4, 2/4, 4/4 and 4/4 (the order of "
             "the ids does not matter), so the smallest setting that reaches 0.9 is 4."),
            ((f1, t1, 0.5), "the same with target = 0.5", "reaching the target exactly is enough: setting 2 has "
             "recall 2/4 = 0.5."),
            (({4: f1[4], 1: f1[1], 2: f1[2]}, t1, 0.25), "settings 1, 2 and 4 listed as {4: ..., 1: ..., 2: ...}, "
             "target = 0.25", "the settings may come in any order: return the smallest that reaches the target."),
            (({1: f1[1], 2: f1[2]}, t1, 0.9), "found = {1: [[1, 9, 8, 7]], 2: [[2, 1, 9, 7]]}, target = 0.9",
             "no setting reaches the target here: return None."),
            ((f5, t5, 0.9), "2 queries, found = {8: [[0, 5, -1, -1], [4, 3, 2, 1]], 16: ...}, target = 0.9",
             "-1 is a missing result, never a true neighbour: at setting 8 the recalls are 2/4 and 4/4, mean 0.75."),
            ((f6, t6, 0.9), "50 queries, k = 10, settings 1 to 64", "average the queries' recalls first, then "
             "compare the mean with the target.")]]
    cases = [Case((f1, t1, 1.0)), Case(({2: f1[2], 1: f1[1]}, t1, 0.5)), Case((f5, t5, 0.75)),
             Case(({16: f5[16], 8: f5[8]}, t5, 0.7))]
    for nq, k, recalls, missing, order, target in [
            (20, 10, sweep, 0.5, None, 0.9), (100, 10, sweep, 0.3, [64, 32, 16, 8, 4, 2, 1], 0.95),
            (30, 5, {16: 0.4, 32: 0.6, 64: 0.8, 128: 0.95, 256: 0.99}, 0.0, [128, 16, 256, 64, 32], 0.9),
            (40, 10, {10: 0.2, 20: 0.3, 40: 0.45}, 0.2, None, 0.9), (1, 10, {1: 0.6, 3: 1.0}, 0.0, None, 0.55),
            (60, 20, {16: 0.6, 32: 0.8, 64: 0.9, 128: 0.97, 256: 0.995, 512: 1.0}, 0.2, None, 0.99)]:
        for _ in range(20):  # no recall within a hair of the target: a tie must not depend on rounding
            found, truth = _sweep(rng, nq, k, recalls, missing, order)
            if all(abs(R.recall_at_k(f, truth) - target) > 1e-6 for f in found.values()):
                break
        cases.append(Case((found, truth, target)))
    return cases
_SETTING = Exercise("setting_for_recall", ["found", "truth", "target"], R.setting_for_recall, _setting_cases,
                    lambda: _setting_cases(True), compare="value", options={"none_allowed": True}, wrong=_setting_with,
                    kind="measure", mistakes=[
    ({"recall": {"positional": True}}, "it compares the ids position by position: a true neighbour counts wherever "
     "it appears in the row, so count the ids that a row of found and the same row of truth have in common."),
    ({"recall": {"returned": True}}, "it divides by the number of results returned: a missing result (-1) is a "
     "miss, so divide by k, the number of true neighbours."),
    ({"strict": True}, "it asks for a recall above the target (>): reaching it exactly is enough (>=)."),
    ({"order": "first"}, "it returns the first setting, in the order of the dict, that reaches the target: the "
     "settings may come in any order, so return the smallest of those that reach it."),
    ({"order": "largest"}, "it returns the largest setting that reaches the target: return the smallest, the "
     "cheapest setting that is good enough."),
    ({"every": True}, "it asks every query to reach the target: the target is for recall@k averaged over the "
     "queries."),
    ({"none": 0}, "when no setting reaches the target it returns 0: return None (no setting is good enough)."),
    ({"none": -1}, "when no setting reaches the target it returns -1: return None (no setting is good enough)."),
    ({"none": "largest"}, "when no setting reaches the target it returns the largest setting: return None, since "
     "not even that one is good enough."),
    ({"give": "recall"}, "it returns the recall: return the setting (the key of found) whose recall reaches the "
     "target.")])

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
EXERCISES = ExerciseSet(_TOP_K, _CELLS, _SETTING, _FILTER)
check, reveal = EXERCISES.check, EXERCISES.reveal
