"""Chapter 11's exercises, *Keyword plus vector: hybrid search*, as records (see :mod:`attnedu.checks`). The fusions
return a dict ``{doc_id: score}``, compared with the ``"scores"`` comparison (the same doc ids, in any order);
``helped_and_hurt`` (a measurement) returns ``{kind: (helped, hurt)}``, compared with this chapter's ``"shares"``;
``predict_keyword_fusion`` is a prediction, revealed after the chapter's fused table (``reveal``)."""

import math
import numbers
from collections.abc import Mapping

import numpy as np

from .. import retrieval as R
from . import Case, CheckFailed, Exercise, ExerciseSet, register
from .compare import _fail, short
from .engine import with_article

def _some(rng, pool, lo, hi):  # a random selection of lo to hi - 1 ids of the pool, as str
    return [str(d) for d in rng.permutation(pool)[: int(rng.integers(lo, hi))]]
def _table(rows):  # cases from rows (args, kwargs, about, hint[, the Case's other fields])
    return [Case(a, kw, about=about, hint=hint, **(more[0] if more else {})) for a, kw, about, hint, *more in rows]
def _bm25_with(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75, *, idf="fts5", log=math.log, plus_one=True, flip=False,
               length=True, parens=True, saturate=True, fixed=False):  # the IDF, the log, each part of the fraction
    (k1, b), raw = (1.2, 0.75) if fixed else (k1, b), log((n_docs - n + 0.5) / (n + 0.5))
    classic, lucene = math.log(n_docs / n) if n else math.inf, math.log(1 + (n_docs - n + 0.5) / (n + 0.5))
    w = {"fts5": raw if raw > 0 else 1e-6, "raw": raw, "zero": max(raw, 0.0), "classic": classic, "lucene": lucene}[idf]
    f, ratio = np.asarray(f, dtype=float), (avgdl / doc_len if flip else doc_len / avgdl)
    norm = (k1 * (1 - b + b * ratio) if length else k1) if parens else k1 * (1 - b) + b * ratio
    return w * (f * (k1 + 1 if plus_one else 1) / (f + norm) if saturate else f)
def _bm25_cases():
    f, lens = np.array([0.0, 1.0, 2.0, 5.0, 1.0, 3.0]), np.array([10.0, 5.0, 10.0, 20.0, 40.0, 8.0])  # six documents
    return _table([
        ((1, 3, 10, 10.0, 8), {}, "f = 1, n = 3, doc_len = avgdl = 10, n_docs = 8", "by hand: the IDF is ln((8 - 3 + "
         "0.5) / (3 + 0.5)) = ln(5.5 / 3.5) = 0.452, and with doc_len = avgdl and f = 1 the fraction is 1 * 2.2 / (1 + "
         "1.2) = 1."),
        ((f, 3, lens, 12.0, 8), {}, "arrays f = [0, 1, 2, 5, 1, 3] and doc_len = [10, 5, 10, 20, 40, 8], avgdl = 12",
         "use NumPy operations so that f and doc_len may be arrays; a document without the term (f = 0) gets 0."),
        ((f, 3, lens, 12.0, 8), {"k1": 2.0, "b": 0.3}, "the same arrays with k1 = 2, b = 0.3", "use the k1 and b "
         "arguments."),
        ((2, 6, 10, 10.0, 8), {}, "a term in 6 of 8 documents (f = 2, doc_len = avgdl = 10)",
         "ln((8 - 6 + 0.5) / (6 + 0.5)) < 0: FTS5 then uses an IDF of 1e-6.", {"atol": 1e-12}),
        ((1, 4, 10, 10.0, 8), {}, "a term in exactly half the documents, 4 of 8",
         "ln(4.5 / 4.5) = 0 is not > 0, so the IDF becomes 1e-6 here too.", {"atol": 1e-12}),
        ((f, 1, lens, 12.0, 1000), {}, "a rare term: in 1 of 1000 documents", "ln((1000 - 1 + 0.5) / (1 + 0.5)) = "
         "6.50: rare terms weigh much more.")])
def _bm25_hidden():
    rng, cases = np.random.default_rng(1101), []
    for N in (1, 2, 3, 10, 51, 10_000):
        for n in sorted({1, max(1, N // 2), (N + 1) // 2, N, int(rng.integers(1, N + 1))}):
            f, lens = rng.integers(0, 8, size=7).astype(float), rng.integers(1, 60, size=7).astype(float)
            cases.append(Case((f, n, lens, float(rng.uniform(3, 40)), N), atol=1e-12))
    for k1, b in [(0.5, 0.0), (3.0, 1.0), (1.2, 0.75), (10.0, 0.5)]:
        f, lens = rng.integers(1, 20, size=(3, 4)).astype(float), rng.integers(1, 100, size=(3, 4)).astype(float)
        cases.append(Case((f, 5, lens, 25.0, 40), {"k1": k1, "b": b}))
    return cases + [Case((4, 2, 7, 7.0, 9))]  # plain numbers
_BM25 = Exercise("bm25_weight", ["f", "n", "doc_len", "avgdl", "n_docs"], R.bm25_weight, _bm25_cases, _bm25_hidden,
                 wrong=_bm25_with, mistakes=[
    ({"idf": "raw"}, "the IDF is not clamped: for a term in half the documents or more, ln((N - n + 0.5) / (n + 0.5)) "
     "is <= 0, and FTS5 replaces it by 1e-6."),
    ({"idf": "zero"}, "the IDF is clamped at 0: FTS5 replaces an IDF <= 0 by 1e-6, so that a very common term still "
     "counts a little."),
    ({"idf": "classic"}, "the IDF is the classic ln(N / n); BM25's is ln((N - n + 0.5) / (n + 0.5))."),
    ({"idf": "lucene"}, "the IDF is Lucene's ln(1 + (N - n + 0.5) / (n + 0.5)), never negative; FTS5's has no 1 + and "
     "is clamped at 1e-6."),
    ({"log": math.log10}, "the IDF uses log10; BM25 (and FTS5) use the natural logarithm, np.log or math.log."),
    ({"plus_one": False}, "the numerator lacks the factor (k1 + 1): f * (k1 + 1) / (f + ...)."),
    ({"flip": True}, "the length ratio is upside down: a long document (|D| > avgdl) should get a larger denominator, "
     "so use b * doc_len / avgdl."),
    ({"length": False}, "the length normalisation is missing: the denominator is f + k1 * (1 - b + b * doc_len / "
     "avgdl)."),
    ({"parens": False}, "k1 multiplies the whole length factor: f + k1 * (1 - b + b * doc_len / avgdl), with the "
     "parentheses."),
    ({"saturate": False}, "it multiplies the IDF by the raw count f, which is TF-IDF: BM25 saturates the count, f * "
     "(k1 + 1) / (f + k1 * (...))."),
    ({"fixed": True}, "it ignores the k1 and b arguments and always uses 1.2 and 0.75.")])
def _metrics_with(ranking, judged, k=10, *, over="relevant", recall_cut=True, rr_cut=False, gain=lambda g: max(g, 0),
                  ideal_from_run=False, ideal_cut=True, normalise=True):  # recall@k, RR and nDCG@k
    ranking, relevant = list(ranking), {d for d, g in judged.items() if g >= 1}
    if not relevant:
        return 0.0, 0.0, 0.0
    hits, dcg = [d in relevant for d in ranking], lambda gs: sum(g / math.log2(i + 2) for i, g in enumerate(gs))
    recall = sum(hits[:k] if recall_cut else hits) / {"relevant": len(relevant), "k": k, "judged": len(judged)}[over]
    rr = next((1 / i for i, hit in enumerate(hits[:k] if rr_cut else hits, start=1) if hit), 0.0)
    ideal = sorted(map(gain, [judged.get(d, 0) for d in ranking[:k]] if ideal_from_run else judged.values()))[::-1]
    found, best = dcg([gain(judged.get(d, 0)) for d in ranking[:k]]), dcg(ideal[:k] if ideal_cut else ideal)
    return recall, rr, ((found / best if best else 0.0) if normalise else found)
def _metrics_cases():
    long_r = [str(d) for d in np.random.default_rng(11).permutation([f"s{i:02d}" for i in range(40)])[:25]]
    long_j = {long_r[1]: 1, long_r[4]: 2, long_r[8]: 0, long_r[15]: 2, "s99": 1, long_r[20]: 0}
    many_j = {f"r{i}": 1 + (i % 2) for i in range(0, 20, 2)} | {f"r{i}": 2 for i in range(1, 20, 6)}
    return _table([
        ((["a", "b", "c", "d", "e"], {"b": 2, "d": 1, "x": 1}), {"k": 3},
         "ranking [a, b, c, d, e], judged {b: 2, d: 1, x: 1}, k = 3", "by hand: 1 of the 3 relevant documents is in "
         "the top 3, so recall@3 = 1/3; the first relevant one is at rank 2, so RR = 1/2; DCG@3 = 2 / log2(3) = 1.262 "
         "and the ideal ranking (2, 1, 1) gives 2 + 1/log2(3) + 1/log2(4) = 3.131, so nDCG@3 = 0.403."),
        ((long_r, long_j), {}, "25 results, 6 judgments (grades 0, 1 and 2), k = 10", "grade 0 is judged not relevant; "
         "a judged document the system missed still counts in recall and in the ideal ranking."),
        (([f"n{i}" for i in range(11)] + ["hit", "n99"], {"hit": 1}), {"k": 5}, "the only relevant document "
         "at rank 12, k = 5", "recall@5 and nDCG@5 are 0, but the reciprocal rank looks down the whole ranking: 1/12."),
        (([f"r{i}" for i in range(20)], many_j), {"k": 5}, "14 relevant documents (grades 1 and 2), k = 5", "the ideal "
         "DCG@5 takes the 5 best grades of all judged documents."),
        ((["a", "b"], {"a": 0, "z": 0}), {}, "no relevant document at all", "with no relevant document "
         "every metric is 0 (trec_eval's convention), not a division by zero.", {"expected": (0.0, 0.0, 0.0)})])
def _metrics_hidden():
    rng, pool = np.random.default_rng(1102), [f"sec-{i:03d}" for i in range(60)]  # each case: a ranking, its grades
    cases = [Case((_some(rng, pool, 0, 40), {d: int(rng.choice([0, 1, 1, 2, 2, 3])) for d in _some(rng, pool, 1, 12)}),
                  {"k": int(rng.choice([1, 3, 5, 10, 20, 100]))}) for _ in range(24)]
    return cases + [Case(([], {"a": 2}), expected=(0.0,) * 3), Case((["a"], {"a": 1}), expected=(1.0,) * 3)]
_METRICS = Exercise("query_metrics", ["ranking", "judged"], R.query_metrics, _metrics_cases, _metrics_hidden,
                    outputs=("recall", "rr", "ndcg"), wrong=_metrics_with, mistakes=[
    ({"over": "k"}, "recall is divided by k, which is precision@k: divide by the number of relevant documents."),
    ({"over": "judged"}, "recall divides by every judged document, grade 0 included: only grades >= 1 are relevant."),
    ({"recall_cut": False}, "recall counts the whole ranking: count the relevant documents among the first k only."),
    ({"rr_cut": True}, "the reciprocal rank stops at k (that is MRR@k): trec_eval's recip_rank looks down the whole "
     "ranking."),
    ({"gain": lambda g: 2 ** max(g, 0) - 1}, "the gain is 2**grade - 1 (Burges et al.'s exponential gain); trec_eval's "
     "ndcg_cut uses the grade itself."),
    ({"gain": lambda g: float(g >= 1)}, "the gain is 1 for every relevant document: use the grade itself, so that "
     "grade 2 counts twice grade 1."),
    ({"ideal_from_run": True}, "the ideal ranking is built from the documents the system returned: sort every judged "
     "document by grade, including those it missed."),
    ({"ideal_cut": False}, "the ideal DCG is not cut at k: keep only the k best grades of the ideal ranking."),
    ({"normalise": False}, "it returns DCG@k without dividing by the ideal DCG@k: nDCG = DCG@k / IDCG@k.")])
def _rrf_with(rankings, k=60, *, start=1, fixed=None, keep="any", combine=sum):  # the usual mistakes as switches
    lists, k = [list(r) for r in rankings], k if fixed is None else fixed
    docs = {"any": dict.fromkeys(d for r in lists for d in r), "first": lists[0] if lists else [],
            "all": [d for d in dict.fromkeys(d for r in lists for d in r) if all(d in r for r in lists)]}[keep]
    term = lambda rank: 1 / (k + rank) if k + rank else math.inf  # noqa: E731
    return {d: combine([term(r.index(d) + start) for r in lists if d in r]) for d in docs}
def _rrf_cases():
    rng, pool = np.random.default_rng(12), [f"d{i:02d}" for i in range(30)]
    return _table([
        (([["a", "b", "c"], ["c", "a"]],), {}, "rankings [[a, b, c], [c, a]], k = 60", "by hand: a is 1st and 2nd, so "
         "1/61 + 1/62 = 0.0325; c is 3rd and 1st, 1/63 + 1/61 = 0.0323; b is only 2nd in the first ranking, 1/62 = "
         "0.0161."),
        (([["a", "b"], ["b", "c"]],), {"k": 0}, "rankings [[a, b], [b, c]], k = 0", "with k = 0, rank 1 adds 1 and "
         "rank 2 adds 1/2: a = 1, b = 1/2 + 1 = 1.5, c = 1/2."),
        (([["p", "q"], ["r"], ["s", "p", "t"]],), {"k": 10}, "three rankings, k = 10", "any number of rankings; each "
         "document's score adds one term per ranking that contains it."),
        (([[], ["x", "y"]],), {}, "an empty ranking and [x, y], k = 60", "an empty ranking (a search that found "
         "nothing) adds nothing."),
        (([[str(d) for d in rng.permutation(pool)[:20]] for _ in range(2)],), {},
         "two rankings of 20 documents out of 30, k = 60", None)])
def _rrf_hidden():
    rng, pool = np.random.default_rng(1103), [f"doc-{i:03d}" for i in range(80)]
    cases = [Case(([_some(rng, pool, 0, 50) for _ in range(int(rng.integers(1, 5)))],),
                  {"k": float(rng.choice([0, 1, 20, 60, 100.5]))}, rtol=1e-9) for _ in range(16)]
    return cases + [Case(([[5, 3, 9], [9, 5]],)), Case(([["only"]],), expected={"only": 1 / 61})]  # integer ids
_RRF = Exercise("reciprocal_rank_fusion", ["rankings"], R.rrf, _rrf_cases, _rrf_hidden, compare="scores",
                wrong=_rrf_with, mistakes=[
    ({"start": 0}, "the ranks start at 0: the best document has rank 1, so it gets 1 / (k + 1); use enumerate(ranking, "
     "start=1)."),
    ({"fixed": 0}, "k is missing: each ranking adds 1 / (k + rank), not 1 / rank."),
    ({"fixed": 60}, "it ignores the k argument and always uses 60."),
    ({"keep": "all"}, "it keeps only the documents found by every ranking: a document in one ranking gets that "
     "ranking's 1 / (k + rank), and nothing from the others."),
    ({"keep": "first"}, "it scores only the documents of the first ranking: every document of any ranking gets a "
     "score."),
    ({"combine": max}, "it keeps the best of a document's terms: RRF adds 1 / (k + rank) over the rankings."),
    ({"combine": lambda t: sum(t) / len(t)}, "it averages over the rankings that contain the document: RRF adds, so "
     "that being found by two rankings counts more than by one.")])
def _fusion_with(bm25_scores, dense_scores, alpha, *, scale="minmax", equal=1.0, both=False, swap=False, fill=False):
    a, b, docs = dict(bm25_scores), dict(dense_scores), {**bm25_scores, **dense_scores}
    a, b = ({d: s.get(d, 0.0) for d in docs} for s in (a, b)) if fill else (a, b)  # fill: a raw 0 for a missing one
    def norm(s):
        lo, hi = min(s.values(), default=0.0), max(s.values(), default=0.0)
        if scale == "max":
            return {d: v / hi if hi else equal for d, v in s.items()}
        return s if scale == "none" else {d: (v - lo) / (hi - lo) if hi > lo else equal for d, v in s.items()}
    (a, b), (wa, wb) = (norm(a), norm(b)), ((alpha, 1 - alpha) if swap else (1 - alpha, alpha))
    return {d: wa * a.get(d, 0.0) + wb * b.get(d, 0.0) for d in docs if not both or (d in a and d in b)}
def _scored(ids, scores):
    return {str(i): float(s) for i, s in zip(ids, scores)}
def _fusion_cases():
    bm25, dense, rng = {"a": 12.0, "b": 6.0, "c": 3.0}, {"b": 0.9, "d": 0.5, "a": -0.1}, np.random.default_rng(13)
    pool = [f"d{i:02d}" for i in range(40)]
    big_b = _scored(rng.permutation(pool)[:15], rng.uniform(0.5, 18, 15))
    big_d = _scored(rng.permutation(pool)[:25], rng.uniform(-0.2, 0.8, 25))
    return _table([
        ((bm25, dense, 0.5), {}, "bm25 {a: 12, b: 6, c: 3}, dense {b: 0.9, d: 0.5, a: -0.1}, alpha = 0.5", "by hand: "
         "BM25 normalises to a = 1, b = 1/3, c = 0 and dense to b = 1, d = 0.6, a = 0, so a = 0.5, b = 0.5/3 + 0.5 = "
         "0.667, c = 0, d = 0.3."),
        ((bm25, dense, 0.2), {}, "the same, alpha = 0.2", "(1 - alpha) weighs BM25 and alpha the dense scores."),
        ((bm25, dense, 0.0), {}, "the same, alpha = 0 (BM25 alone)", "with alpha = 0 the dense scores count for "
         "nothing, but the documents only dense search found are still there, with score 0."),
        (({"a": 4.2}, dense, 0.5), {}, "bm25 with a single result {a: 4.2}", "a system whose scores are all equal "
         "gives each of them 1 (max = min: do not divide by 0)."),
        (({}, dense, 0.7), {}, "bm25 {} (no query term in the corpus), alpha = 0.7", "a system that found nothing adds "
         "nothing: min() of an empty dict raises, so skip it."),
        ((big_b, big_d, 0.35), {},
         "15 BM25 results and 25 dense results with some negative cosines, alpha = 0.35", None)])
def _fusion_hidden():
    rng, pool = np.random.default_rng(1104), [f"doc-{i:03d}" for i in range(60)]
    cases = [Case((_scored(_some(rng, pool, 0, 30), rng.uniform(0.1, 25, 30)),
                   _scored(_some(rng, pool, 1, 40), rng.uniform(-0.3, 0.9, 40)),
                   float(rng.choice([0.0, 0.1, 0.35, 0.5, 0.8, 1.0])))) for _ in range(16)]
    return cases + [Case(({}, {}, 0.5), expected={}), Case(({"a": 2.0, "b": 2.0}, {"b": 0.5}, 0.25))]
_FUSION = Exercise("min_max_fusion", ["bm25_scores", "dense_scores", "alpha"], R.min_max_fusion, _fusion_cases,
                   _fusion_hidden, compare="scores", wrong=_fusion_with, mistakes=[
    ({"scale": "none"}, "the scores are not normalised: BM25 scores run to 10 or more and cosines stay below 1, so the "
     "raw sum is BM25's ranking; rescale each system with (s - min) / (max - min) first."),
    ({"swap": True}, "the weights are swapped: alpha weighs the dense scores and 1 - alpha the BM25 scores (alpha = 0 "
     "is BM25 alone)."),
    ({"scale": "max"}, "it divides by the maximum only: min-max normalisation subtracts the minimum first, (s - min) / "
     "(max - min)."),
    ({"equal": 0.0}, "when every score of a system is the same (one result, say) each should get 1, the best; it gives "
     "0."),
    ({"both": True}, "it keeps only the documents both systems returned: a document from one system gets that system's "
     "weighted score, and 0 from the other."),
    ({"fill": True}, "a missing document gets a raw score of 0 before normalising, which moves the minimum: normalise "
     "each system's own scores, then count a missing document as 0.")])

_PREDICT_CASES = lambda: [Case(mistakes=[  # noqa: E731
    ("a", "two systems find more than one only where each finds what the other misses; on keyword questions dense "
     "retrieval seldom finds an answer that BM25 missed, and its wrong candidates, which RRF weighs as much as BM25's, "
     "push BM25's answers down."),
    ("c", "the fusion keeps much of what BM25 found: a section BM25 ranks first still gets its 1/61, and one that "
     "both rank high gets two terms, so it stays well above dense retrieval alone, only below BM25.")])]
_PREDICT = Exercise("predict_keyword_fusion", [], R.rrf_on_keyword_questions, _PREDICT_CASES, _PREDICT_CASES,
                    compare="choice", options={"choices": ("a", "b", "c")}, kind="predict", explain=(
    "On the keyword questions BM25 already puts an answer near the top, and dense retrieval adds mostly wrong "
    "candidates. RRF weighs the two rankings equally, so sections that both rank fairly high overtake BM25's first "
    "place: the fusion lands between the two systems, below the strong one alone. Fusion pays when both systems are "
    "good and wrong in different places; with a much weaker partner the stronger system loses."))

def _shares_ok(pair) -> bool:
    return isinstance(pair, (tuple, list)) and len(pair) == 2 and all(
        isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) for x in pair)
def _compare_shares(got, case, lead, ex):  # {kind: (helped, hurt)}: the same kinds, the fractions within 1e-9
    expected = case.expected
    if not isinstance(got, Mapping):
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a dict {{kind: (helped, hurt)}} with an "
              "entry \"all\".")
    for kind, pair in got.items():
        if not _shares_ok(pair):
            _fail(f"{lead} returned {short(pair)} for {kind!r}; expected a pair of fractions (helped, hurt).")
    if missing := [k for k in expected if k not in got]:
        raise CheckFailed(f"{lead} has no entry for {missing[0]!r}"
                          + (", the shares over all the questions." if missing[0] == "all" else "."))
    if extra := [k for k in got if k not in expected]:
        raise CheckFailed(f"{lead} has an entry for {extra[0]!r}, which is the kind of none of the questions scored.")
    for kind, e in expected.items():
        g = got[kind]
        if not all(math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(g, e)):
            raise CheckFailed(f"{lead} gives {kind!r} (helped, hurt) = ({float(g[0]):.4g}, {float(g[1]):.4g}); "
                              f"expected ({e[0]:.4g}, {e[1]:.4g}).")
def _same_shares(a, b, ex=None) -> bool:
    return (isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b)
            and all(_shares_ok(a[k]) and _shares_ok(b[k]) and all(math.isclose(float(x), float(y), rel_tol=1e-9,
                    abs_tol=1e-12) for x, y in zip(a[k], b[k])) for k in b))
register("shares", _compare_shares, _same_shares)

def _hurt_with(fused, alone, kind_of, *, ties=None, swap=False, counts=False, over="questions", pooled=True,
               with_all=True):  # ties counted, the pair swapped, counts, shares of the changed questions, "all" as a mean
    groups = {"all": list(alone)} if with_all else {}
    for q in alone:
        groups.setdefault(kind_of[q], []).append(q)
    def shares(qs):
        up = sum(fused[q] > alone[q] or (ties == "helped" and fused[q] == alone[q]) for q in qs)
        down = sum(fused[q] < alone[q] or (ties == "hurt" and fused[q] == alone[q]) for q in qs)
        n = 1 if counts else (up + down or 1) if over == "changed" else len(qs)
        return (down / n, up / n) if swap else (up / n, down / n)
    out = {k: shares(qs) for k, qs in groups.items() if qs}
    if with_all and not pooled:
        kinds = [v for k, v in out.items() if k != "all"]
        out["all"] = tuple(sum(v[i] for v in kinds) / len(kinds) for i in (0, 1))
    return out
def _scores_of(rng, ids):  # per-question scores like nDCG@10: many exact 0s and 1s
    return {q: float(rng.choice([0.0, 1.0, round(float(rng.uniform(0, 1)), 3)], p=[0.2, 0.3, 0.5])) for q in ids}
def _hurt_cases():
    rng = np.random.default_rng(14)
    ids = [f"q{i:02d}" for i in range(30)]
    kinds = {q: str(rng.choice(["keyword", "paraphrase", "mixed"])) for q in ids}
    alone = _scores_of(rng, ids)
    fused = {q: alone[q] if rng.random() < 0.3 else _scores_of(rng, [q])[q] for q in ids}
    return _table([
        (({"q1": 0.8, "q2": 0.5, "q3": 1.0, "q4": 0.3}, {"q1": 0.6, "q2": 0.5, "q3": 0.9, "q4": 0.7},
          {"q1": "keyword", "q2": "keyword", "q3": "paraphrase", "q4": "paraphrase"}), {},
         "fused {q1: 0.8, q2: 0.5, q3: 1.0, q4: 0.3}, alone {q1: 0.6, q2: 0.5, q3: 0.9, q4: 0.7}, q1 and q2 keyword, "
         "q3 and q4 paraphrase", "by hand: the fusion scores higher on q1 and q3, lower on q4, and the same on q2, so "
         "all = (2/4, 1/4), keyword = (1/2, 0), paraphrase = (1/2, 1/2)."),
        (({"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.9, "e": 0.2}, {"a": 0.5, "b": 0.3, "c": 0.4, "d": 1.0, "e": 0.2},
          {"a": "keyword", "b": "keyword", "c": "keyword", "d": "mixed", "e": "mixed"}), {},
         "3 keyword and 2 mixed questions", "'all' is a share of all the questions, not the mean of the kinds' shares: "
         "here the kinds have different sizes."),
        (({"x": 0.7, "y": 0.7}, {"x": 0.7, "y": 0.9}, {"x": "paraphrase", "y": "paraphrase", "z": "keyword"}), {},
         "two paraphrase questions, and kind_of also names a keyword question that was not scored", "only the kinds of "
         "the questions in fused and alone get an entry; kind_of may list other questions."),
        (({"q": 0.25}, {"q": 0.25}, {"q": "mixed"}), {}, "one question, scored the same", "equal scores count as "
         "neither helped nor hurt: (0.0, 0.0)."),
        ((fused, alone, kinds), {}, "30 questions of three kinds, nDCG-like scores with many ties", None)])
def _hurt_hidden():
    rng, cases = np.random.default_rng(1105), []
    for n in (1, 2, 5, 17, 60, 142):
        ids = [f"q-{i:03d}" for i in range(n)]
        kinds = {q: str(rng.choice(["keyword", "paraphrase", "mixed", "other"][: int(rng.integers(1, 5))])) for q in ids}
        alone = _scores_of(rng, ids)
        fused = {q: alone[q] if rng.random() < 0.3 else _scores_of(rng, [q])[q] for q in ids}
        cases.append(Case((fused, alone, {**kinds, "unscored": "rare"})))
    return cases + [Case(({1: 0.5, 2: 0.1}, {1: 0.4, 2: 0.2}, {1: "keyword", 2: "keyword"}))]  # integer ids
_HURT = Exercise("helped_and_hurt", ["fused", "alone", "kind_of"], R.helped_and_hurt, _hurt_cases, _hurt_hidden,
                 compare="shares", wrong=_hurt_with, kind="measure", mistakes=[
    ({"ties": "hurt"}, "a question the fusion scores the same as the system alone is counted as hurt: compare with <, "
     "so that equal scores count as neither."),
    ({"ties": "helped"}, "a question the fusion scores the same as the system alone is counted as helped: compare "
     "with >, so that equal scores count as neither."),
    ({"swap": True}, "the pair is swapped: return (helped, hurt), the share where the fusion scores higher first."),
    ({"counts": True}, "it returns counts of questions: divide by the number of questions of the group, to get "
     "fractions between 0 and 1."),
    ({"over": "changed"}, "it divides by the number of questions whose score changed: divide by all the questions of "
     "the group, the unchanged ones included."),
    ({"pooled": False}, "'all' is the mean of the kinds' shares, which weighs a small kind as much as a large one: "
     "count over all the questions at once.")])

EXERCISES = ExerciseSet(_BM25, _METRICS, _RRF, _PREDICT, _FUSION, _HURT)
check, reveal = EXERCISES.check, EXERCISES.reveal
