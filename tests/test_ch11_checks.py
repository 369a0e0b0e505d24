"""Chapter 11's checks: the references pass, typical mistakes get the sentence meant for them,
garbage never crashes a check, and the references are the real thing: the BM25 weight summed
over a query equals attnedu.retrieval.BM25 and SQLite FTS5, the metrics of one query equal
trec_eval's (pytrec_eval), and the fusions equal attnedu.retrieval.rrf and weighted_fusion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage, returns_none  # learners' typical garbage
from attnedu.checks import Case, CheckFailed
from attnedu.checks import ch11_hybrid_search as ch11
from attnedu.retrieval import BM25, evaluate, fts5_search, rrf, tokenize, trec_order, weighted_fusion

weight_ref, metrics_ref = ch11.bm25_weight_reference, ch11.query_metrics_reference
rrf_ref, fusion_ref = ch11.reciprocal_rank_fusion_reference, ch11.min_max_fusion_reference


# ------------------------------------------------------------------ wrong learner functions: BM25
def _tf(f, doc_len, avgdl, k1, b):
    f = np.asarray(f, dtype=float)
    return f * (k1 + 1) / (f + k1 * (1 - b + b * np.asarray(doc_len) / avgdl))


def w_no_clamp(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return np.log((n_docs - n + 0.5) / (n + 0.5)) * _tf(f, doc_len, avgdl, k1, b)


def w_clamp_at_zero(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return max(np.log((n_docs - n + 0.5) / (n + 0.5)), 0.0) * _tf(f, doc_len, avgdl, k1, b)


def w_classic_idf(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return np.log(n_docs / n) * _tf(f, doc_len, avgdl, k1, b)


def w_lucene_idf(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return np.log1p((n_docs - n + 0.5) / (n + 0.5)) * _tf(f, doc_len, avgdl, k1, b)


def _idf(n, n_docs):
    idf = math.log((n_docs - n + 0.5) / (n + 0.5))
    return idf if idf > 0 else 1e-6


def w_log10(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    idf = math.log10((n_docs - n + 0.5) / (n + 0.5))
    return (idf if idf > 0 else 1e-6) * _tf(f, doc_len, avgdl, k1, b)


def w_no_k1_plus_1(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return _idf(n, n_docs) * _tf(f, doc_len, avgdl, k1, b) / (k1 + 1)


def w_ratio_upside_down(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    f = np.asarray(f, dtype=float)
    return _idf(n, n_docs) * f * (k1 + 1) / (f + k1 * (1 - b + b * avgdl / np.asarray(doc_len)))


def w_no_length(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    f = np.asarray(f, dtype=float)
    return _idf(n, n_docs) * f * (k1 + 1) / (f + k1)


def w_missing_parentheses(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    f = np.asarray(f, dtype=float)
    return _idf(n, n_docs) * f * (k1 + 1) / (f + k1 * (1 - b) + b * np.asarray(doc_len) / avgdl)


def w_tf_idf(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return _idf(n, n_docs) * np.asarray(f, dtype=float)


def w_fixed_parameters(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return _idf(n, n_docs) * _tf(f, doc_len, avgdl, 1.2, 0.75)


def w_python_floats(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
    return _idf(n, n_docs) * f * (k1 + 1) / (f + k1 * (1 - b + b * doc_len / avgdl))  # fails on lists only


# ------------------------------------------------------------------ wrong learner functions: metrics
def _parts(ranking, judged, k):
    relevant = {d for d, g in judged.items() if g >= 1}
    return relevant, list(ranking)


def m_precision(ranking, judged, k=10):
    relevant, ranking = _parts(ranking, judged, k)
    _, rr, ndcg = metrics_ref(ranking, judged, k)
    return (sum(d in relevant for d in ranking[:k]) / k if relevant else 0.0), rr, ndcg


def m_grade_zero_is_relevant(ranking, judged, k=10):
    relevant, ranking = _parts(ranking, judged, k)
    _, rr, ndcg = metrics_ref(ranking, judged, k)
    return (sum(d in relevant for d in ranking[:k]) / len(judged) if relevant else 0.0), rr, ndcg


def m_recall_whole_ranking(ranking, judged, k=10):
    return metrics_ref(ranking, judged, len(ranking) + 1)[0], *metrics_ref(ranking, judged, k)[1:]


def m_rr_at_k(ranking, judged, k=10):
    recall, _, ndcg = metrics_ref(ranking, judged, k)
    relevant, ranking = _parts(ranking, judged, k)
    rr = next((1 / i for i, d in enumerate(ranking[:k], start=1) if d in relevant), 0.0)
    return recall, rr, ndcg


def _ndcg(ranking, judged, k, gain=lambda g: g, ideal=None, cut_ideal=True, normalise=True):
    if not any(g >= 1 for g in judged.values()):
        return 0.0
    dcg = sum(gain(judged.get(d, 0)) / math.log2(i + 1) for i, d in enumerate(ranking[:k], start=1))
    grades = sorted(ideal if ideal is not None else judged.values(), reverse=True)
    grades = grades[:k] if cut_ideal else grades
    idcg = sum(gain(g) / math.log2(i + 1) for i, g in enumerate(grades, start=1))
    if not normalise:
        return dcg
    return dcg / idcg if idcg else 0.0


def m_exponential_gain(ranking, judged, k=10):
    return (*metrics_ref(ranking, judged, k)[:2], _ndcg(ranking, judged, k, gain=lambda g: 2**g - 1))


def m_binary_gain(ranking, judged, k=10):
    return (*metrics_ref(ranking, judged, k)[:2], _ndcg(ranking, judged, k, gain=lambda g: float(g >= 1)))


def m_ideal_from_the_results(ranking, judged, k=10):
    ideal = [judged.get(d, 0) for d in ranking[:k]]
    return (*metrics_ref(ranking, judged, k)[:2], _ndcg(ranking, judged, k, ideal=ideal))


def m_ideal_not_cut(ranking, judged, k=10):
    return (*metrics_ref(ranking, judged, k)[:2], _ndcg(ranking, judged, k, cut_ideal=False))


def m_dcg_only(ranking, judged, k=10):
    return (*metrics_ref(ranking, judged, k)[:2], _ndcg(ranking, judged, k, normalise=False))


def m_divides_by_zero(ranking, judged, k=10):
    relevant = {d for d, g in judged.items() if g >= 1}
    recall = sum(d in relevant for d in ranking[:k]) / len(relevant)  # ZeroDivisionError without relevant
    return recall, *metrics_ref(ranking, judged, k)[1:]


def m_returns_a_list(ranking, judged, k=10):
    return list(metrics_ref(ranking, judged, k))


# ------------------------------------------------------------------ wrong learner functions: RRF
def _rrf(rankings, k, start=1, keep=None, combine=sum):
    terms = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=start):
            terms.setdefault(doc, []).append(1 / (k + rank))
    if keep == "all":
        terms = {d: t for d, t in terms.items() if len(t) == len(rankings)}
    if keep == "first":
        terms = {d: t for d, t in terms.items() if d in rankings[0]}
    return {d: combine(t) for d, t in terms.items()}


def rrf_from_zero(rankings, k=60):
    return _rrf(rankings, k, start=0)


def rrf_without_k(rankings, k=60):
    return _rrf(rankings, 0)


def rrf_fixed_k(rankings, k=60):
    return _rrf(rankings, 60)


def rrf_intersection(rankings, k=60):
    return _rrf(rankings, k, keep="all")


def rrf_first_ranking_only(rankings, k=60):
    return _rrf(rankings, k, keep="first")


def rrf_max(rankings, k=60):
    return _rrf(rankings, k, combine=max)


def rrf_mean(rankings, k=60):
    return _rrf(rankings, k, combine=lambda t: sum(t) / len(t))


def rrf_returns_the_ranking(rankings, k=60):
    return list(rrf_ref(rankings, k))


def rrf_returns_pairs(rankings, k=60):
    return sorted(rrf_ref(rankings, k).items(), key=lambda item: -item[1])


def rrf_nan(rankings, k=60):
    return {d: float("nan") for d in rrf_ref(rankings, k)}


def rrf_text_scores(rankings, k=60):
    return {d: "high" for d in rrf_ref(rankings, k)}


# ------------------------------------------------------------------ wrong learner functions: fusion
def _minmax(scores, equal=1.0, by_max=False):
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if by_max:
        return {d: s / hi for d, s in scores.items()}
    return {d: (s - lo) / (hi - lo) if hi > lo else equal for d, s in scores.items()}


def _fuse(a, b, alpha, keep_both=False):
    docs = [d for d in {**a, **b} if not keep_both or (d in a and d in b)]
    return {d: (1 - alpha) * a.get(d, 0.0) + alpha * b.get(d, 0.0) for d in docs}


def f_raw(bm25_scores, dense_scores, alpha):
    return _fuse(bm25_scores, dense_scores, alpha)


def f_swapped(bm25_scores, dense_scores, alpha):
    return _fuse(_minmax(bm25_scores), _minmax(dense_scores), 1 - alpha)


def f_by_max(bm25_scores, dense_scores, alpha):
    return _fuse(_minmax(bm25_scores, by_max=True), _minmax(dense_scores, by_max=True), alpha)


def f_equal_is_zero(bm25_scores, dense_scores, alpha):
    return _fuse(_minmax(bm25_scores, equal=0.0), _minmax(dense_scores, equal=0.0), alpha)


def f_both_only(bm25_scores, dense_scores, alpha):
    return _fuse(_minmax(bm25_scores), _minmax(dense_scores), alpha, keep_both=True)


def f_fill_then_normalise(bm25_scores, dense_scores, alpha):
    docs = {**bm25_scores, **dense_scores}
    a = _minmax({d: bm25_scores.get(d, 0.0) for d in docs})
    b = _minmax({d: dense_scores.get(d, 0.0) for d in docs})
    return _fuse(a, b, alpha)


def f_divides_by_zero(bm25_scores, dense_scores, alpha):
    out = {}
    for scores, w in [(bm25_scores, 1 - alpha), (dense_scores, alpha)]:
        lo, hi = min(scores.values()), max(scores.values())  # ValueError on an empty dict
        for d, s in scores.items():
            out[d] = out.get(d, 0.0) + w * (s - lo) / (hi - lo)  # ZeroDivisionError on a single result
    return out


# ------------------------------------------------------------------ the references pass
@pytest.mark.parametrize(
    "check, fn, n",
    [
        (ch11.check_bm25_weight, weight_ref, 6),
        (ch11.check_query_metrics, metrics_ref, 5),
        (ch11.check_reciprocal_rank_fusion, rrf_ref, 5),
        (ch11.check_min_max_fusion, fusion_ref, 6),
    ],
)
def test_the_reference_passes_its_own_check_and_says_so(check, fn, n, capsys):
    check(fn)
    assert f"passes all {n} checks" in capsys.readouterr().out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def bm25_weight(f, n, doc_len, avgdl, n_docs, k1=1.2, b=0.75):
        idf = math.log((n_docs - n + 0.5) / (n + 0.5))
        if idf <= 0:
            idf = 1e-6
        f = np.asarray(f, dtype=float)
        length = k1 * (1 - b + b * np.asarray(doc_len) / avgdl)
        return idf * f * (k1 + 1) / (f + length)

    def query_metrics(ranking, judged, k=10):
        relevant = {label for label, grade in judged.items() if grade >= 1}
        if not relevant:
            return 0.0, 0.0, 0.0
        recall = sum(label in relevant for label in ranking[:k]) / len(relevant)
        rr = 0.0
        for rank, label in enumerate(ranking, start=1):
            if label in relevant:
                rr = 1 / rank
                break
        dcg = sum(judged.get(label, 0) / math.log2(rank + 1) for rank, label in enumerate(ranking[:k], start=1))
        ideal = sorted(judged.values(), reverse=True)[:k]
        idcg = sum(grade / math.log2(rank + 1) for rank, grade in enumerate(ideal, start=1))
        return recall, rr, dcg / idcg

    def reciprocal_rank_fusion(rankings, k=60):
        scores = {}
        for ranking in rankings:
            for rank, doc in enumerate(ranking, start=1):
                scores[doc] = scores.get(doc, 0.0) + 1 / (k + rank)
        return scores

    def min_max_fusion(bm25_scores, dense_scores, alpha):
        fused = {}
        for scores, weight in [(bm25_scores, 1 - alpha), (dense_scores, alpha)]:
            if not scores:
                continue
            lo, hi = min(scores.values()), max(scores.values())
            for doc, s in scores.items():
                normalised = (s - lo) / (hi - lo) if hi > lo else 1.0
                fused[doc] = fused.get(doc, 0.0) + weight * normalised
        return fused

    ch11.check_bm25_weight(bm25_weight)
    ch11.check_query_metrics(query_metrics)
    ch11.check_reciprocal_rank_fusion(reciprocal_rank_fusion)
    ch11.check_reciprocal_rank_fusion(lambda rankings, k=60: rrf(rankings, k))  # best first is fine too
    ch11.check_min_max_fusion(min_max_fusion)
    assert capsys.readouterr().out.count("passes all") == 5


def test_an_array_instead_of_a_tuple_is_named():
    with pytest.raises(CheckFailed, match=r"expected a tuple of 3: `return recall, rr, ndcg`"):
        ch11.check_query_metrics(lambda r, j, k=10: np.array(metrics_ref(r, j, k)))


# ------------------------------------------------------------------ BM25 weight
@pytest.mark.parametrize(
    "fn, message",
    [
        (w_no_clamp, r"6 of 8 documents.*Likely cause: the IDF is not clamped"),
        (w_clamp_at_zero, r"6 of 8 documents.*Likely cause: the IDF is clamped at 0"),
        (w_classic_idf, r"Likely cause: the IDF is the classic ln\(N / n\)"),
        (w_lucene_idf, r"Likely cause: the IDF is Lucene's"),
        (w_log10, r"Likely cause: the IDF uses log10"),
        (w_no_k1_plus_1, r"Likely cause: the numerator lacks the factor \(k1 \+ 1\)"),
        (w_ratio_upside_down, r"Likely cause: the length ratio is upside down"),
        (w_no_length, r"Likely cause: the length normalisation is missing"),
        (w_missing_parentheses, r"Likely cause: k1 multiplies the whole length factor"),
        (w_tf_idf, r"Likely cause: .*which is TF-IDF"),
        (w_fixed_parameters, r"k1 = 2, b = 0\.3.*Likely cause: it ignores the k1 and b arguments"),
    ],
)
def test_bm25_weight_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch11.check_bm25_weight(fn)


def test_plain_python_arithmetic_on_arrays_is_fine():
    ch11.check_bm25_weight(w_python_floats)  # the check passes arrays, and NumPy broadcasts


# ------------------------------------------------------------------ metrics of one query
@pytest.mark.parametrize(
    "fn, message",
    [
        (m_precision, r"`recall`.*Likely cause: recall is divided by k, which is precision@k"),
        (m_grade_zero_is_relevant, r"grades 0, 1 and 2.*Likely cause: recall divides by every judged document"),
        (m_recall_whole_ranking, r"Likely cause: recall counts the whole ranking"),
        (m_rr_at_k, r"rank 12.*`rr`.*Likely cause: the reciprocal rank stops at k"),
        (m_exponential_gain, r"`ndcg`.*Likely cause: the gain is 2\*\*grade - 1"),
        (m_binary_gain, r"Likely cause: the gain is 1 for every relevant document"),
        (m_ideal_from_the_results, r"Likely cause: the ideal ranking is built from the documents the system returned"),
        (m_ideal_not_cut, r"14 relevant documents.*Likely cause: the ideal DCG is not cut at k"),
        (m_dcg_only, r"Likely cause: it returns DCG@k without dividing"),
        (m_divides_by_zero, r"raised ZeroDivisionError.*no relevant document.*Hint: with no relevant document"),
        (m_returns_a_list, r"returned 1 value\(s\); expected a tuple of 3"),
    ],
)
def test_query_metrics_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch11.check_query_metrics(fn)


# ------------------------------------------------------------------ reciprocal rank fusion
@pytest.mark.parametrize(
    "fn, message",
    [
        (rrf_from_zero, r"Likely cause: the ranks start at 0"),
        (rrf_without_k, r"Likely cause: k is missing"),
        (rrf_fixed_k, r"k = 0 gives 'b'.*Likely cause: it ignores the k argument"),
        (rrf_intersection, r"gives no score to 'b'.*Likely cause: it keeps only the documents found by every"),
        (rrf_first_ranking_only, r"gives no score to 'c'.*Likely cause: it scores only the documents of the first"),
        (rrf_max, r"Likely cause: it keeps the best of a document's terms"),
        (rrf_mean, r"Likely cause: it averages over the rankings"),
        (rrf_returns_the_ranking, r"returned a list; expected a dict \{doc_id: score\} \(one score for each"),
        (rrf_returns_pairs, r"returned a list; expected a dict"),
        (rrf_nan, r"returned NaN as the score of 'a'"),
        (rrf_text_scores, r"returned 'high' as the score of 'a'; a score must be a number"),
    ],
)
def test_reciprocal_rank_fusion_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        ch11.check_reciprocal_rank_fusion(fn)
    assert "\n" not in str(info.value)


def test_a_score_for_a_document_in_no_ranking_is_named():
    def invents_a_document(rankings, k=60):
        return {**rrf_ref(rankings, k), "ghost": 0.5}

    with pytest.raises(CheckFailed, match=r"gives a score to 'ghost', which is in none of the inputs"):
        ch11.check_reciprocal_rank_fusion(invents_a_document)


# ------------------------------------------------------------------ weighted min-max fusion
@pytest.mark.parametrize(
    "fn, message",
    [
        (f_raw, r"Likely cause: the scores are not normalised"),
        (f_swapped, r"alpha = 0\.2.*Likely cause: the weights are swapped"),
        (f_by_max, r"Likely cause: it divides by the maximum only"),
        (f_equal_is_zero, r"single result.*Likely cause: when every score of a system is the same"),
        (f_both_only, r"gives no score to .*Likely cause: it keeps only the documents both systems returned"),
        (f_fill_then_normalise, r"Likely cause: a missing document gets a raw score of 0 before normalising"),
        (f_divides_by_zero, r"raised ZeroDivisionError.*single result.*Hint: a system whose scores are all equal"),
    ],
)
def test_min_max_fusion_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch11.check_min_max_fusion(fn)


def test_an_empty_system_that_raises_gets_the_hint():
    def skips_nothing(bm25_scores, dense_scores, alpha):
        if not bm25_scores:
            min(bm25_scores.values())  # ValueError: min() arg is an empty sequence
        return fusion_ref(bm25_scores, dense_scores, alpha)

    with pytest.raises(CheckFailed, match=r"raised ValueError.*bm25 \{\}.*Hint: a system that found nothing"):
        ch11.check_min_max_fusion(skips_nothing)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "check, text_message",
    [
        (ch11.check_bm25_weight, "not an array of numbers"),
        (ch11.check_query_metrics, r"returned 1 value\(s\); expected a tuple of 3"),
        (ch11.check_reciprocal_rank_fusion, r"returned a str; expected a dict \{doc_id: score\}"),
        (ch11.check_min_max_fusion, r"returned a str; expected a dict \{doc_id: score\}"),
    ],
)
@pytest.mark.parametrize("fn, message", garbage())
def test_garbage_gets_a_sentence_not_a_crash(check, text_message, fn, message):
    assert_one_sentence(check, fn, message or text_message)


@pytest.mark.parametrize(
    "check", [ch11.check_bm25_weight, ch11.check_reciprocal_rank_fusion, ch11.check_min_max_fusion]
)
def test_returning_a_function_is_named(check):
    with pytest.raises(CheckFailed, match="returned a function"):
        check(lambda *args, **kwargs: returns_none)


def test_a_function_that_never_returns_is_stopped():
    def loops(*args, **kwargs):
        while True:
            pass

    with pytest.raises(CheckFailed, match="ran for more than 0.2 s"):
        ch11.check_scores_function(loops, "loops", [Case(([["a"]],), {"a": 1.0})], time_limit=0.2)


# ------------------------------------------------------------------ the references are the real thing
CORPUS = [
    "Attention weighs the values by how well their keys match the query.",
    "The softmax turns scores into weights that sum to one.",
    "A query, a key and a value: attention as a soft dictionary lookup.",
    "Multi-head attention runs several heads side by side, each with its own projections.",
    "BM25 ranks documents by the rare words they share with the query, saturating repeated words.",
    "Reciprocal rank fusion adds one over sixty plus the rank, over the rankings.",
    "The the the the the.",
    "Keys, keys and more keys: a long document about keys, values, queries, heads and weights, "
    "written to be longer than the others so that length normalisation matters.",
]


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (0.5, 0.0), (2.0, 1.0)])
@pytest.mark.parametrize("query", ["attention keys", "the query and the key", "heads heads weights", "rank fusion"])
def test_bm25_weights_summed_over_the_query_are_bm25_scores(query, k1, b):
    bm25 = BM25(CORPUS, k1=k1, b=b)
    total = np.zeros(len(CORPUS))
    for term in tokenize(query):
        ids, counts = bm25.postings(term)
        if ids.size:
            total[ids] += weight_ref(counts, len(ids), bm25.doc_len[ids], bm25.avgdl, len(CORPUS), k1=k1, b=b)
    np.testing.assert_allclose(total, bm25.scores(query), rtol=1e-12)


@pytest.mark.parametrize("query", ["attention keys", "the query and the key", "softmax weights"])
def test_bm25_weights_summed_over_the_query_equal_fts5(query):
    bm25 = BM25(CORPUS)
    total = np.zeros(len(CORPUS))
    for term in tokenize(query):
        ids, counts = bm25.postings(term)
        total[ids] += weight_ref(counts, len(ids), bm25.doc_len[ids], bm25.avgdl, len(CORPUS))
    scores, ids = fts5_search(CORPUS, query, k=len(CORPUS))
    np.testing.assert_allclose(total[ids], scores, rtol=1e-9)
    assert set(ids.tolist()) == set(np.flatnonzero(total > 0).tolist())


def test_the_bm25_weight_by_hand():
    # N = 8, n = 3, f = 1, |D| = avgdl: IDF = ln(5.5 / 3.5) and the fraction is 1
    assert weight_ref(1, 3, 6, 6.0, 8) == pytest.approx(math.log(5.5 / 3.5))
    assert weight_ref(1, 4, 6, 6.0, 8) == pytest.approx(1e-6)  # ln(1) = 0 is floored
    assert weight_ref(0, 3, 6, 6.0, 8) == 0.0
    assert weight_ref([1, 2], 3, [6, 6], 6.0, 8).shape == (2,)


def random_judgments(rng, pool, n_queries=30):
    qrels, run = {}, {}
    for i in range(n_queries):
        q = f"q{i}"
        judged = rng.permutation(pool)[: rng.integers(1, 10)]
        qrels[q] = {str(d): int(rng.choice([0, 1, 2, 3])) for d in judged}
        returned = rng.permutation(pool)[: rng.integers(1, len(pool))]
        scores = rng.choice([0.5, 1.0, 1.5, 2.0], size=len(returned))  # many ties
        run[q] = {str(d): float(s) for d, s in zip(returned, scores)}
    return qrels, run


@pytest.mark.parametrize("k", [1, 5, 10, 20])
def test_query_metrics_reference_equals_trec_eval(k):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = np.random.default_rng(k)
    qrels, run = random_judgments(rng, [f"doc{i:02d}" for i in range(40)])
    trec = pytrec_eval.RelevanceEvaluator(qrels, {f"recall.{k}", "recip_rank", f"ndcg_cut.{k}"}).evaluate(run)
    ours = evaluate(qrels, run, k, per_query=True)[1]
    for q in qrels:
        recall, rr, ndcg = metrics_ref(trec_order(run[q]), qrels[q], k)
        assert recall == pytest.approx(trec[q][f"recall_{k}"], abs=1e-12)
        assert rr == pytest.approx(trec[q]["recip_rank"], abs=1e-12)
        assert ndcg == pytest.approx(trec[q][f"ndcg_cut_{k}"], abs=1e-12)
        assert (recall, rr, ndcg) == pytest.approx((ours[q][f"recall@{k}"], ours[q]["mrr"], ours[q][f"ndcg@{k}"]))


def test_query_metrics_by_hand():
    recall, rr, ndcg = metrics_ref(["a", "b", "c", "d", "e"], {"b": 2, "d": 1, "x": 1}, k=3)
    assert recall == pytest.approx(1 / 3) and rr == 0.5
    assert ndcg == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert metrics_ref(["a"], {"a": 0}) == (0.0, 0.0, 0.0)


def test_the_fusion_references_are_the_librarys():
    rankings = [["a", "b", "c"], ["c", "a"], []]
    assert rrf_ref(rankings) == rrf(rankings, k=60)
    assert rrf_ref([["a", "b", "c"], ["c", "a"]]) == pytest.approx({"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61,
                                                                    "b": 1 / 62})
    bm25, dense = {"a": 12.0, "b": 6.0, "c": 3.0}, {"b": 0.9, "d": 0.5, "a": -0.1}
    assert fusion_ref(bm25, dense, 0.3) == weighted_fusion([bm25, dense], [0.7, 0.3])
    assert fusion_ref(bm25, dense, 0.5) == pytest.approx({"a": 0.5, "b": 0.5 / 3 + 0.5, "c": 0.0, "d": 0.3})
    assert list(fusion_ref(bm25, dense, 0.0))[0] == "a" and list(fusion_ref(bm25, dense, 1.0))[0] == "b"
    assert fusion_ref({}, {}, 0.5) == {}
    with pytest.raises(ValueError, match="alpha"):
        fusion_ref(bm25, dense, 1.5)
