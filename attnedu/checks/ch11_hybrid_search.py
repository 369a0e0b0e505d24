"""Visible checks for chapter 11, *Keyword plus vector: hybrid search*.

How a check works (one sentence per problem, typical mistakes named): see
:mod:`attnedu.checks`.

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value:

* :func:`bm25_weight_reference`: the BM25 weight of one term in a document, with
  SQLite FTS5's IDF (clamped at :math:`10^{-6}`); summed over a query's terms it is
  :meth:`attnedu.retrieval.BM25.scores`;
* :func:`query_metrics_reference`: recall@k, reciprocal rank and nDCG@k of one
  ranked list, as trec_eval computes them (gain = the relevance grade);
* :func:`reciprocal_rank_fusion_reference`: :func:`attnedu.retrieval.rrf`;
* :func:`min_max_fusion_reference`: :func:`attnedu.retrieval.weighted_fusion` of
  two systems with the weights ``1 - alpha`` and ``alpha``.

Fusion functions return a dict ``{doc_id: score}``, not an array, so their checks
use :func:`check_scores_function`, the dictionary counterpart of
:func:`~attnedu.checks.core.check_function`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ..retrieval import rrf, weighted_fusion
from .core import with_article as _a
from .core import DEFAULT_TIME_LIMIT, Case, CheckFailed, check_each, check_function

__all__ = [
    "bm25_weight_reference",
    "query_metrics_reference",
    "reciprocal_rank_fusion_reference",
    "min_max_fusion_reference",
    "check_scores_function",
    "check_bm25_weight",
    "check_query_metrics",
    "check_reciprocal_rank_fusion",
    "check_min_max_fusion",
]

#: FTS5's floor for the IDF of a term found in half the documents or more.
IDF_FLOOR = 1e-6


# ------------------------------------------------------------------- references
def bm25_weight_reference(f, n, doc_len, avgdl, n_docs, k1: float = 1.2, b: float = 0.75):
    r"""The BM25 weight of one term in one document (or in many, elementwise).

    .. math::
        w = \mathrm{IDF}(n)\,\frac{f\,(k_1 + 1)}{f + k_1\left(1 - b + b\,\frac{|D|}{\mathrm{avgdl}}\right)},
        \qquad \mathrm{IDF}(n) = \ln\frac{N - n + 0.5}{n + 0.5}
        \ \text{(replaced by } 10^{-6} \text{ when it is} \le 0)

    Args:
        f: how often the term occurs in the document (a number, or an array with
            one count per document).
        n: in how many of the ``n_docs`` documents the term occurs (one number).
        doc_len: the document's length in tokens, ``|D|`` (a number or an array
            broadcasting against ``f``).
        avgdl: the mean document length over the collection.
        n_docs: ``N``, the number of documents.
        k1, b: term-frequency saturation and length normalisation (FTS5: 1.2, 0.75).

    Returns:
        A float, or an array of the broadcast shape of ``f`` and ``doc_len``. A
        document without the term (``f = 0``) gets 0.
    """
    if not 0 <= n <= n_docs or n_docs < 1:
        raise ValueError(f"need 0 <= n <= n_docs and n_docs >= 1, got n = {n}, n_docs = {n_docs}")
    if avgdl <= 0:
        raise ValueError(f"avgdl must be > 0, got {avgdl}")
    idf = math.log((n_docs - n + 0.5) / (n + 0.5))
    idf = idf if idf > 0 else IDF_FLOOR  # FTS5: a very common term still counts, a little
    f = np.asarray(f, dtype=np.float64)
    doc_len = np.asarray(doc_len, dtype=np.float64)
    w = idf * (f * (k1 + 1)) / (f + k1 * (1 - b + b * doc_len / avgdl))
    return float(w) if w.ndim == 0 else w


def query_metrics_reference(ranking, judged, k: int = 10) -> tuple[float, float, float]:
    r"""``(recall@k, reciprocal rank, nDCG@k)`` of one query's ranked list, as trec_eval.

    Args:
        ranking: the doc ids a system returned, best first (the order is taken as is:
            sort ties before calling, e.g. with :func:`attnedu.retrieval.trec_order`).
        judged: ``{doc_id: relevance grade}``; grade >= 1 is relevant, 0 is judged
            not relevant, and a doc id not in ``judged`` counts as 0.
        k: the cutoff of recall and nDCG.

    With :math:`R` the relevant documents:
    recall@k = (relevant documents among the first k) / :math:`|R|`; the reciprocal
    rank is :math:`1/\text{rank}` of the first relevant document anywhere in the list
    (0 if none); :math:`\mathrm{DCG@}k = \sum_{i \le k} \mathrm{grade}(d_i) / \log_2(i + 1)`,
    divided by the DCG@k of the ideal ranking (every judged document, by grade). A
    query without a relevant document gets ``(0, 0, 0)``.
    """
    if isinstance(judged, Mapping) is False:
        raise ValueError(f"judged must be a dict {{doc_id: grade}}, got {type(judged).__name__}")
    ranking = list(ranking)
    if len(set(ranking)) != len(ranking):
        raise ValueError("ranking lists a doc id twice; each document has one rank")
    relevant = {d for d, grade in judged.items() if grade >= 1}
    if not relevant:
        return 0.0, 0.0, 0.0
    hits = [d in relevant for d in ranking]  # (len(ranking),)
    recall = sum(hits[:k]) / len(relevant)
    rr = 1.0 / (hits.index(True) + 1) if any(hits) else 0.0  # over the whole list, as recip_rank
    gains = [max(judged.get(d, 0), 0) for d in ranking[:k]]
    ideal = sorted((max(g, 0) for g in judged.values()), reverse=True)[:k]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))  # rank i + 1 -> log2(i + 2)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return recall, rr, dcg / idcg


def reciprocal_rank_fusion_reference(rankings, k: float = 60) -> dict:
    r"""Reciprocal rank fusion, :math:`\mathrm{RRF}(d) = \sum_r 1/(k + \mathrm{rank}_r(d))`
    with ranks from 1: :func:`attnedu.retrieval.rrf`."""
    return rrf(rankings, k=k)


def min_max_fusion_reference(bm25_scores, dense_scores, alpha: float) -> dict:
    r"""``(1 - alpha) * minmax(bm25) + alpha * minmax(dense)`` for every document either
    system returned; a system that did not return a document adds 0 for it. A system whose
    scores are all equal gives each of its documents 1. ``alpha = 0`` is BM25 alone,
    ``alpha = 1`` dense alone: :func:`attnedu.retrieval.weighted_fusion`."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return weighted_fusion([bm25_scores, dense_scores], [1 - alpha, alpha])


# ------------------------------------------------------------ checking dicts of scores
def _numeric(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Real):
        return True
    arr = np.asarray(value) if hasattr(value, "__array__") else None
    return arr is not None and arr.shape == () and arr.dtype.kind in "iuf"


def _compare_scores(got, expected: Mapping, lead: str, case: Case) -> None:
    """A CheckFailed naming the first way ``got`` differs from the ``expected`` dict."""
    if got is None:
        raise CheckFailed(f"{lead} returned None: did you forget to `return` the dict of scores?",
                          about_values=False)
    if callable(got):
        raise CheckFailed(f"{lead} returned a function: did you forget to call it?", about_values=False)
    if not isinstance(got, Mapping):
        extra = (" (one score for each document, not a ranked list)"
                 if isinstance(got, (list, tuple, np.ndarray)) else "")
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a dict {{doc_id: score}}{extra}.",
                          about_values=False)
    for doc, value in got.items():
        if not _numeric(value):
            raise CheckFailed(f"{lead} returned {value!r} as the score of {doc!r}; a score must be a number.",
                              about_values=False)
    missing = [d for d in expected if d not in got]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckFailed(f"{lead} gives no score to {missing[0]!r}{more}, which should get "
                          f"{expected[missing[0]]:.6g}.")
    extra = [d for d in got if d not in expected]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckFailed(f"{lead} gives a score to {extra[0]!r}{more}, which is in none of the inputs.")
    docs = list(expected)
    mine = np.array([float(got[d]) for d in docs])  # (n,)
    theirs = np.array([float(expected[d]) for d in docs])  # (n,)
    bad = ~np.isfinite(mine)
    if bad.any():
        doc = docs[int(np.argmax(bad))]
        kind = "NaN" if np.isnan(mine[bad]).any() else "inf"
        raise CheckFailed(f"{lead} returned {kind} as the score of {doc!r} ({int(bad.sum())} in all): "
                          "look for a division by zero.")
    if not np.allclose(mine, theirs, rtol=case.rtol, atol=case.atol):
        i = int(np.argmax(np.abs(mine - theirs)))
        raise CheckFailed(f"{lead} gives {docs[i]!r} the score {mine[i]:.6g}; expected {theirs[i]:.6g}.")


def _same_scores(got, wrong) -> bool:
    if not isinstance(got, Mapping) or not isinstance(wrong, Mapping) or set(got) != set(wrong):
        return False
    try:
        a = np.array([float(got[d]) for d in wrong])
        b = np.array([float(wrong[d]) for d in wrong])
    except (TypeError, ValueError):
        return False
    return bool(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True))


def check_scores_function(fn, name: str, cases: Sequence[Case], *, params: Sequence[str] = (),
                          mistakes=(), time_limit: float | None = DEFAULT_TIME_LIMIT,
                          quiet: bool = False) -> None:
    """:func:`~attnedu.checks.core.check_each` for functions that return a dict
    ``{doc_id: score}``: the same doc ids as ``case.expected`` (in any order), each
    score within the case's tolerance. Typical mistakes (``(wrong_fn, explanation)``)
    are named when the learner's dict equals theirs."""
    check_each(fn, name, cases, lambda got, case, lead: _compare_scores(got, case.expected, lead, case),
               same=_same_scores, params=params, mistakes=mistakes, time_limit=time_limit, quiet=quiet)


# ------------------------------------------------------------ typical mistakes: BM25
def _bm25_with_idf(idf_fn):
    def wrong(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
        f, doc_len = np.asarray(f, float), np.asarray(doc_len, float)
        return idf_fn(n, n_docs) * (f * (k1 + 1)) / (f + k1 * (1 - b + b * doc_len / avgdl))
    return wrong


def _idf_fts5(n, n_docs):
    idf = math.log((n_docs - n + 0.5) / (n + 0.5))
    return idf if idf > 0 else IDF_FLOOR


def _bm25_tf(tf_fn):
    def wrong(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
        f, doc_len = np.asarray(f, float), np.asarray(doc_len, float)
        return _idf_fts5(n, n_docs) * tf_fn(f, doc_len, avgdl, k1, b)
    return wrong


_BM25_MISTAKES = [
    (_bm25_with_idf(lambda n, N: math.log((N - n + 0.5) / (n + 0.5))),
     "the IDF is not clamped: for a term in half the documents or more, ln((N - n + 0.5) / (n + 0.5)) is "
     "<= 0, and FTS5 replaces it by 1e-6."),
    (_bm25_with_idf(lambda n, N: max(math.log((N - n + 0.5) / (n + 0.5)), 0.0)),
     "the IDF is clamped at 0: FTS5 replaces an IDF <= 0 by 1e-6, so that a very common term still counts a "
     "little."),
    (_bm25_with_idf(lambda n, N: math.log(N / n) if n else math.inf),
     "the IDF is the classic ln(N / n); BM25's is ln((N - n + 0.5) / (n + 0.5))."),
    (_bm25_with_idf(lambda n, N: math.log(1 + (N - n + 0.5) / (n + 0.5))),
     "the IDF is Lucene's ln(1 + (N - n + 0.5) / (n + 0.5)), never negative; FTS5's has no 1 + and is "
     "clamped at 1e-6."),
    (_bm25_with_idf(lambda n, N: max(math.log10((N - n + 0.5) / (n + 0.5)), IDF_FLOOR)),
     "the IDF uses log10; BM25 (and FTS5) use the natural logarithm, np.log or math.log."),
    (_bm25_tf(lambda f, dl, avgdl, k1, b: f / (f + k1 * (1 - b + b * dl / avgdl))),
     "the numerator lacks the factor (k1 + 1): f * (k1 + 1) / (f + ...)."),
    (_bm25_tf(lambda f, dl, avgdl, k1, b: f * (k1 + 1) / (f + k1 * (1 - b + b * avgdl / dl))),
     "the length ratio is upside down: a long document (|D| > avgdl) should get a larger denominator, "
     "so use b * doc_len / avgdl."),
    (_bm25_tf(lambda f, dl, avgdl, k1, b: f * (k1 + 1) / (f + k1)),
     "the length normalisation is missing: the denominator is f + k1 * (1 - b + b * doc_len / avgdl)."),
    (_bm25_tf(lambda f, dl, avgdl, k1, b: f * (k1 + 1) / (f + k1 * (1 - b) + b * dl / avgdl)),
     "k1 multiplies the whole length factor: f + k1 * (1 - b + b * doc_len / avgdl), with the parentheses."),
    (_bm25_tf(lambda f, dl, avgdl, k1, b: f),
     "it multiplies the IDF by the raw count f, which is TF-IDF: BM25 saturates the count, "
     "f * (k1 + 1) / (f + k1 * (...))."),
    (lambda f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75: bm25_weight_reference(f, n, doc_len, avgdl, n_docs),
     "it ignores the k1 and b arguments and always uses 1.2 and 0.75."),
]


# ------------------------------------------------------------ typical mistakes: metrics
def _with_metric(which: int, fn):
    def wrong(ranking, judged, k=10):
        out = list(query_metrics_reference(ranking, judged, k))
        out[which] = fn(list(ranking), dict(judged), k)
        return tuple(out)
    return wrong


def _relevant(judged):
    return {d for d, g in judged.items() if g >= 1}


def _dcg(gains):
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def _ndcg_with(gain, ideal_from):
    def ndcg(ranking, judged, k):
        if not _relevant(judged):
            return 0.0
        idcg = _dcg(sorted((gain(g) for g in ideal_from(ranking, judged, k)), reverse=True)[:k])
        return _dcg([gain(judged.get(d, 0)) for d in ranking[:k]]) / idcg if idcg else 0.0
    return ndcg


def _all_judged(ranking, judged, k):
    return list(judged.values())


_METRICS_MISTAKES = [
    (_with_metric(0, lambda r, j, k: sum(d in _relevant(j) for d in r[:k]) / k if _relevant(j) else 0.0),
     "recall is divided by k, which is precision@k: divide by the number of relevant documents."),
    (_with_metric(0, lambda r, j, k: sum(d in _relevant(j) for d in r[:k]) / len(j) if _relevant(j) else 0.0),
     "recall divides by every judged document, grade 0 included: only grades >= 1 are relevant."),
    (_with_metric(0, lambda r, j, k: sum(d in _relevant(j) for d in r) / len(_relevant(j)) if _relevant(j) else 0.0),
     "recall counts the whole ranking: count the relevant documents among the first k only."),
    (_with_metric(1, lambda r, j, k: next((1 / (i + 1) for i, d in enumerate(r[:k]) if d in _relevant(j)), 0.0)),
     "the reciprocal rank stops at k (that is MRR@k): trec_eval's recip_rank looks down the whole ranking."),
    (_with_metric(2, _ndcg_with(lambda g: 2 ** max(g, 0) - 1, _all_judged)),
     "the gain is 2**grade - 1 (Burges et al.'s exponential gain); trec_eval's ndcg_cut uses the grade itself."),
    (_with_metric(2, _ndcg_with(lambda g: float(g >= 1), _all_judged)),
     "the gain is 1 for every relevant document: use the grade itself, so that grade 2 counts twice grade 1."),
    (_with_metric(2, _ndcg_with(lambda g: max(g, 0), lambda r, j, k: [j.get(d, 0) for d in r[:k]])),
     "the ideal ranking is built from the documents the system returned: sort every judged document by grade, "
     "including those it missed."),
    (_with_metric(2, lambda r, j, k: (_dcg([max(j.get(d, 0), 0) for d in r[:k]])
                                      / _dcg(sorted((max(g, 0) for g in j.values()), reverse=True)))
                  if _relevant(j) else 0.0),
     "the ideal DCG is not cut at k: keep only the k best grades of the ideal ranking."),
    (_with_metric(2, lambda r, j, k: _dcg([max(j.get(d, 0), 0) for d in r[:k]]) if _relevant(j) else 0.0),
     "it returns DCG@k without dividing by the ideal DCG@k: nDCG = DCG@k / IDCG@k."),
]


# ------------------------------------------------------------ typical mistakes: fusion
def _rrf_with(term, combine=sum, keep="union"):
    def wrong(rankings, k=60):
        lists = [list(r) for r in rankings]
        docs = [d for r in lists for d in r]
        if keep == "all":
            docs = [d for d in docs if all(d in r for r in lists)]
        elif keep == "first":
            docs = lists[0] if lists else []
        out = {}
        for d in dict.fromkeys(docs):
            out[d] = combine([term(r.index(d), k) for r in lists if d in r])
        return out
    return wrong


_RRF_MISTAKES = [
    (_rrf_with(lambda i, k: 1 / (k + i) if k + i else math.inf),
     "the ranks start at 0: the best document has rank 1, so it gets 1 / (k + 1); use enumerate(ranking, start=1)."),
    (_rrf_with(lambda i, k: 1 / (i + 1)),
     "k is missing: each ranking adds 1 / (k + rank), not 1 / rank."),
    (_rrf_with(lambda i, k: 1 / (60 + i + 1)),
     "it ignores the k argument and always uses 60."),
    (_rrf_with(lambda i, k: 1 / (k + i + 1), keep="all"),
     "it keeps only the documents found by every ranking: a document in one ranking gets that ranking's "
     "1 / (k + rank), and nothing from the others."),
    (_rrf_with(lambda i, k: 1 / (k + i + 1), keep="first"),
     "it scores only the documents of the first ranking: every document of any ranking gets a score."),
    (_rrf_with(lambda i, k: 1 / (k + i + 1), combine=max),
     "it keeps the best of a document's terms: RRF adds 1 / (k + rank) over the rankings."),
    (_rrf_with(lambda i, k: 1 / (k + i + 1), combine=lambda t: sum(t) / len(t)),
     "it averages over the rankings that contain the document: RRF adds, so that being found by two "
     "rankings counts more than by one."),
]


def _mm(scores: dict, empty_equal: float = 1.0, how: str = "minmax") -> dict:
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if how == "max":
        return {d: s / hi if hi else empty_equal for d, s in scores.items()}
    if hi == lo:
        return {d: empty_equal for d in scores}
    return {d: (s - lo) / (hi - lo) for d, s in scores.items()}


def _fusion_with(normalise=_mm, keep="union", swap=False, fill_first=False):
    def wrong(bm25_scores, dense_scores, alpha):
        a, b = dict(bm25_scores), dict(dense_scores)
        if fill_first:  # a missing document gets a raw 0 before normalising
            for d in set(a) | set(b):
                a.setdefault(d, 0.0)
                b.setdefault(d, 0.0)
        a, b = normalise(a), normalise(b)
        wa, wb = (alpha, 1 - alpha) if swap else (1 - alpha, alpha)
        docs = dict.fromkeys(list(a) + list(b))
        if keep == "both":
            docs = [d for d in docs if d in a and d in b]
        return {d: wa * a.get(d, 0.0) + wb * b.get(d, 0.0) for d in docs}
    return wrong


_FUSION_MISTAKES = [
    (_fusion_with(normalise=lambda s: dict(s)),
     "the scores are not normalised: BM25 scores run to 10 or more and cosines stay below 1, so the raw sum "
     "is BM25's ranking; rescale each system with (s - min) / (max - min) first."),
    (_fusion_with(swap=True),
     "the weights are swapped: alpha weighs the dense scores and 1 - alpha the BM25 scores "
     "(alpha = 0 is BM25 alone)."),
    (_fusion_with(normalise=lambda s: _mm(s, how="max")),
     "it divides by the maximum only: min-max normalisation subtracts the minimum first, (s - min) / (max - min)."),
    (_fusion_with(normalise=lambda s: _mm(s, empty_equal=0.0)),
     "when every score of a system is the same (one result, say) each should get 1, the best; it gives 0."),
    (_fusion_with(keep="both"),
     "it keeps only the documents both systems returned: a document from one system gets that system's "
     "weighted score, and 0 from the other."),
    (_fusion_with(fill_first=True),
     "a missing document gets a raw score of 0 before normalising, which moves the minimum: normalise each "
     "system's own scores, then count a missing document as 0."),
]


# ------------------------------------------------------------------- checks
def check_bm25_weight(bm25_weight) -> None:
    """Check ``bm25_weight(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75)``."""
    ref = bm25_weight_reference
    f = np.array([0.0, 1.0, 2.0, 5.0, 1.0, 3.0])  # (6,) counts in six documents
    lens = np.array([10.0, 5.0, 10.0, 20.0, 40.0, 8.0])  # (6,) their lengths
    cases = [
        Case((1, 3, 10, 10.0, 8), ref(1, 3, 10, 10.0, 8),
             about="f = 1, n = 3, doc_len = avgdl = 10, n_docs = 8",
             hint="by hand: the IDF is ln((8 - 3 + 0.5) / (3 + 0.5)) = ln(5.5 / 3.5) = 0.452, and with "
                  "doc_len = avgdl and f = 1 the fraction is 1 * 2.2 / (1 + 1.2) = 1."),
        Case((f, 3, lens, 12.0, 8), ref(f, 3, lens, 12.0, 8),
             about="arrays f = [0, 1, 2, 5, 1, 3] and doc_len = [10, 5, 10, 20, 40, 8], avgdl = 12",
             hint="use NumPy operations so that f and doc_len may be arrays; a document without the term "
                  "(f = 0) gets 0."),
        Case((f, 3, lens, 12.0, 8), ref(f, 3, lens, 12.0, 8, k1=2.0, b=0.3), kwargs={"k1": 2.0, "b": 0.3},
             about="the same arrays with k1 = 2, b = 0.3",
             hint="use the k1 and b arguments."),
        Case((2, 6, 10, 10.0, 8), ref(2, 6, 10, 10.0, 8), atol=1e-12,
             about="a term in 6 of 8 documents (f = 2, doc_len = avgdl = 10)",
             hint="ln((8 - 6 + 0.5) / (6 + 0.5)) < 0: FTS5 then uses an IDF of 1e-6."),
        Case((1, 4, 10, 10.0, 8), ref(1, 4, 10, 10.0, 8), atol=1e-12,
             about="a term in exactly half the documents, 4 of 8",
             hint="ln(4.5 / 4.5) = 0 is not > 0, so the IDF becomes 1e-6 here too."),
        Case((f, 1, lens, 12.0, 1000), ref(f, 1, lens, 12.0, 1000),
             about="a rare term: in 1 of 1000 documents",
             hint="ln((1000 - 1 + 0.5) / (1 + 0.5)) = 6.50: rare terms weigh much more."),
    ]
    check_function(bm25_weight, "bm25_weight", cases, params=["f", "n", "doc_len", "avgdl", "n_docs"],
                   mistakes=_BM25_MISTAKES)


def check_query_metrics(query_metrics) -> None:
    """Check ``query_metrics(ranking, judged, k=10) -> (recall, rr, ndcg)`` for one query."""
    ref = query_metrics_reference
    hand_r, hand_j = ["a", "b", "c", "d", "e"], {"b": 2, "d": 1, "x": 1}
    rng = np.random.default_rng(11)
    docs = [f"s{i:02d}" for i in range(40)]
    long_r = [str(d) for d in rng.permutation(docs)[:25]]
    long_j = {long_r[1]: 1, long_r[4]: 2, long_r[8]: 0, long_r[15]: 2, "s99": 1, long_r[20]: 0}
    late_r = [f"n{i}" for i in range(11)] + ["hit"] + ["n99"]
    many_r = [f"r{i}" for i in range(20)]
    many_j = {f"r{i}": 1 + (i % 2) for i in range(0, 20, 2)} | {f"r{i}": 2 for i in range(1, 20, 6)}
    cases = [
        Case((hand_r, hand_j), ref(hand_r, hand_j, 3), kwargs={"k": 3},
             about="ranking [a, b, c, d, e], judged {b: 2, d: 1, x: 1}, k = 3",
             hint="by hand: 1 of the 3 relevant documents is in the top 3, so recall@3 = 1/3; the first relevant "
                  "one is at rank 2, so RR = 1/2; DCG@3 = 2 / log2(3) = 1.262 and the ideal ranking (2, 1, 1) "
                  "gives 2 + 1/log2(3) + 1/log2(4) = 3.131, so nDCG@3 = 0.403."),
        Case((long_r, long_j), ref(long_r, long_j), about="25 results, 6 judgments (grades 0, 1 and 2), k = 10",
             hint="grade 0 is judged not relevant; a judged document the system missed still counts in recall "
                  "and in the ideal ranking."),
        Case((late_r, {"hit": 1}), ref(late_r, {"hit": 1}, 5), kwargs={"k": 5},
             about="the only relevant document at rank 12, k = 5",
             hint="recall@5 and nDCG@5 are 0, but the reciprocal rank looks down the whole ranking: 1/12."),
        Case((many_r, many_j), ref(many_r, many_j, 5), kwargs={"k": 5},
             about="14 relevant documents (grades 1 and 2), k = 5",
             hint="the ideal DCG@5 takes the 5 best grades of all judged documents."),
        Case((["a", "b"], {"a": 0, "z": 0}), (0.0, 0.0, 0.0), about="no relevant document at all",
             hint="with no relevant document every metric is 0 (trec_eval's convention), not a division by zero."),
    ]
    check_function(query_metrics, "query_metrics", cases, params=["ranking", "judged"],
                   outputs=("recall", "rr", "ndcg"), mistakes=_METRICS_MISTAKES)


def check_reciprocal_rank_fusion(reciprocal_rank_fusion) -> None:
    """Check ``reciprocal_rank_fusion(rankings, k=60) -> {doc_id: score}``."""
    ref = reciprocal_rank_fusion_reference
    rng = np.random.default_rng(12)
    pool = [f"d{i:02d}" for i in range(30)]
    two = [[str(d) for d in rng.permutation(pool)[:20]] for _ in range(2)]
    cases = [
        Case(([["a", "b", "c"], ["c", "a"]],), ref([["a", "b", "c"], ["c", "a"]]),
             about="rankings [[a, b, c], [c, a]], k = 60",
             hint="by hand: a is 1st and 2nd, so 1/61 + 1/62 = 0.0325; c is 3rd and 1st, 1/63 + 1/61 = 0.0323; "
                  "b is only 2nd in the first ranking, 1/62 = 0.0161."),
        Case(([["a", "b"], ["b", "c"]],), ref([["a", "b"], ["b", "c"]], k=0), kwargs={"k": 0},
             about="rankings [[a, b], [b, c]], k = 0",
             hint="with k = 0, rank 1 adds 1 and rank 2 adds 1/2: a = 1, b = 1/2 + 1 = 1.5, c = 1/2."),
        Case(([["p", "q"], ["r"], ["s", "p", "t"]],), ref([["p", "q"], ["r"], ["s", "p", "t"]], k=10),
             kwargs={"k": 10}, about="three rankings, k = 10",
             hint="any number of rankings; each document's score adds one term per ranking that contains it."),
        Case(([[], ["x", "y"]],), ref([[], ["x", "y"]]), about="an empty ranking and [x, y], k = 60",
             hint="an empty ranking (a search that found nothing) adds nothing."),
        Case((two,), ref(two), about="two rankings of 20 documents out of 30, k = 60"),
    ]
    check_scores_function(reciprocal_rank_fusion, "reciprocal_rank_fusion", cases, params=["rankings"],
                          mistakes=_RRF_MISTAKES)


def check_min_max_fusion(min_max_fusion) -> None:
    """Check ``min_max_fusion(bm25_scores, dense_scores, alpha) -> {doc_id: score}``."""
    ref = min_max_fusion_reference
    bm25 = {"a": 12.0, "b": 6.0, "c": 3.0}
    dense = {"b": 0.9, "d": 0.5, "a": -0.1}
    rng = np.random.default_rng(13)
    pool = [f"d{i:02d}" for i in range(40)]
    big_b = {str(d): float(s) for d, s in zip(rng.permutation(pool)[:15], rng.uniform(0.5, 18, 15))}
    big_d = {str(d): float(s) for d, s in zip(rng.permutation(pool)[:25], rng.uniform(-0.2, 0.8, 25))}
    cases = [
        Case((bm25, dense, 0.5), ref(bm25, dense, 0.5),
             about="bm25 {a: 12, b: 6, c: 3}, dense {b: 0.9, d: 0.5, a: -0.1}, alpha = 0.5",
             hint="by hand: BM25 normalises to a = 1, b = 1/3, c = 0 and dense to b = 1, d = 0.6, a = 0, so "
                  "a = 0.5, b = 0.5/3 + 0.5 = 0.667, c = 0, d = 0.3."),
        Case((bm25, dense, 0.2), ref(bm25, dense, 0.2), about="the same, alpha = 0.2",
             hint="(1 - alpha) weighs BM25 and alpha the dense scores."),
        Case((bm25, dense, 0.0), ref(bm25, dense, 0.0), about="the same, alpha = 0 (BM25 alone)",
             hint="with alpha = 0 the dense scores count for nothing, but the documents only dense search "
                  "found are still there, with score 0."),
        Case(({"a": 4.2}, dense, 0.5), ref({"a": 4.2}, dense, 0.5),
             about="bm25 with a single result {a: 4.2}",
             hint="a system whose scores are all equal gives each of them 1 (max = min: do not divide by 0)."),
        Case(({}, dense, 0.7), ref({}, dense, 0.7), about="bm25 {} (no query term in the corpus), alpha = 0.7",
             hint="a system that found nothing adds nothing: min() of an empty dict raises, so skip it."),
        Case((big_b, big_d, 0.35), ref(big_b, big_d, 0.35),
             about="15 BM25 results and 25 dense results with some negative cosines, alpha = 0.35"),
    ]
    check_scores_function(min_max_fusion, "min_max_fusion", cases, params=["bm25_scores", "dense_scores", "alpha"],
                          mistakes=_FUSION_MISTAKES)
