"""Chapter 11's checks: the library's versions pass them, visible and hidden, typical mistakes get the
sentence meant for them, and garbage never crashes a check. (That the references are the real thing, the
BM25 weight summed over a query equals BM25 and SQLite FTS5, the metrics of one query equal trec_eval's,
is tested in test_retrieval_bm25.py and test_retrieval_eval.py.) The prediction's visible check takes any
answer of the right form and its hidden check grades it; the measurement is judged on the learner's own
numbers, passed as arguments."""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from conftest import REPO, assert_one_sentence, garbage, load_notebook, returns_none  # learners' typical garbage
from attnedu.checks import Case, CheckFailed
from attnedu.checks import ch11_hybrid_search as ch11
from attnedu.checks.engine import check as run_check
from attnedu.retrieval import helped_and_hurt as hurt_ref
from attnedu.retrieval import min_max_fusion as fusion_ref
from attnedu.retrieval import query_metrics as metrics_ref
from attnedu.retrieval import rrf as rrf_ref


def checker(name):
    return partial(ch11.check, name)


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


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_11_check_visible_and_hidden(capsys):
    for name, ex in ch11.EXERCISES.items():
        ch11.check(name, ex.reference)
        ch11.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name, n in [("bm25_weight", 6), ("query_metrics", 5), ("reciprocal_rank_fusion", 5), ("min_max_fusion", 6),
                    ("helped_and_hurt", 5)]:
        assert f"`{name}` passes all {n} checks" in out
    assert "Your prediction, 'b', is recorded" in out


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

    for name, fn in [("bm25_weight", bm25_weight), ("query_metrics", query_metrics),
                     ("reciprocal_rank_fusion", reciprocal_rank_fusion), ("min_max_fusion", min_max_fusion)]:
        ch11.check(name, fn)
        ch11.check(name, fn, hidden=True)
    ch11.check("reciprocal_rank_fusion", lambda rankings, k=60: rrf_ref(rankings, k))  # best first is fine too
    assert capsys.readouterr().out.count("passes all") == 5


def test_an_array_instead_of_a_tuple_is_named():
    with pytest.raises(CheckFailed, match=r"expected a tuple of 3: `return recall, rr, ndcg`"):
        ch11.check("query_metrics", lambda r, j, k=10: np.array(metrics_ref(r, j, k)))


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
        ch11.check("bm25_weight", fn)


def test_plain_python_arithmetic_on_arrays_is_fine():
    ch11.check("bm25_weight", w_python_floats)  # the check passes arrays, and NumPy broadcasts


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
        ch11.check("query_metrics", fn)


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
        ch11.check("reciprocal_rank_fusion", fn)
    assert "\n" not in str(info.value)


def test_a_score_for_a_document_in_no_ranking_is_named():
    def invents_a_document(rankings, k=60):
        return {**rrf_ref(rankings, k), "ghost": 0.5}

    with pytest.raises(CheckFailed, match=r"gives a score to 'ghost', which is in none of the inputs"):
        ch11.check("reciprocal_rank_fusion", invents_a_document)


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
        ch11.check("min_max_fusion", fn)


def test_an_empty_system_that_raises_gets_the_hint():
    def skips_nothing(bm25_scores, dense_scores, alpha):
        if not bm25_scores:
            min(bm25_scores.values())  # ValueError: min() arg is an empty sequence
        return fusion_ref(bm25_scores, dense_scores, alpha)

    with pytest.raises(CheckFailed, match=r"raised ValueError.*bm25 \{\}.*Hint: a system that found nothing"):
        ch11.check("min_max_fusion", skips_nothing)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "name, text_message",
    [
        ("bm25_weight", "not an array of numbers"),
        ("query_metrics", r"returned 1 value\(s\); expected a tuple of 3"),
        ("reciprocal_rank_fusion", r"returned a str; expected a dict \{doc_id: score\}"),
        ("predict_keyword_fusion", r"returned '42': answer with one of 'a', 'b', 'c'"),
        ("min_max_fusion", r"returned a str; expected a dict \{doc_id: score\}"),
        ("helped_and_hurt", r"returned a str; expected a dict \{kind: \(helped, hurt\)\}"),
    ],
)
@pytest.mark.parametrize("fn, message", garbage())
def test_garbage_gets_a_sentence_not_a_crash(name, text_message, fn, message):
    assert_one_sentence(checker(name), fn, message or text_message)


@pytest.mark.parametrize("name", ["bm25_weight", "reciprocal_rank_fusion", "min_max_fusion", "helped_and_hurt"])
def test_returning_a_function_is_named(name):
    with pytest.raises(CheckFailed, match="returned a function"):
        ch11.check(name, lambda *args, **kwargs: returns_none)


def test_a_function_that_never_returns_is_stopped():
    def loops(*args, **kwargs):
        while True:
            pass

    ex = replace(ch11.EXERCISES["reciprocal_rank_fusion"], cases=lambda: [Case(([["a"]],), expected={"a": 1.0})],
                 time_limit=0.2)
    with pytest.raises(CheckFailed, match="ran for more than 0.2 s"):
        run_check(ex, loops)


# ------------------------------------------------------------------ the notebook's new exercises, from its cells
NOTEBOOK = REPO / "notebooks" / "11-hybrid-search" / "11-hybrid-search.ipynb"


def notebook_cells() -> list[dict]:
    return load_notebook(NOTEBOOK)["cells"]


def solution_of(grade_id: str) -> dict:
    """The solution cell's own code, run: the names it defines."""
    [cell] = [c for c in notebook_cells() if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    scope: dict = {}
    exec(compile("".join(cell["source"]), f"<{grade_id}>", "exec"), scope)
    return scope


def stub(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------ exercise 4: a prediction
def test_the_notebooks_prediction_is_recorded_then_graded_right(capsys):
    predict = solution_of("predict-keyword-fusion")["predict_keyword_fusion"]
    ch11.check("predict_keyword_fusion", predict)
    assert "Your prediction, 'b', is recorded" in capsys.readouterr().out
    ch11.check("predict_keyword_fusion", predict, hidden=True)


@pytest.mark.parametrize("answer, message", [
    ("a", r"returned 'a', which is not what happens\. Likely cause: two systems find more than one only where"),
    ("c", r"returned 'c', which is not what happens\. Likely cause: the fusion keeps much of what BM25 found"),
])
def test_a_wrong_prediction_is_recorded_then_graded_wrong_with_its_reason(answer, message, capsys):
    ch11.check("predict_keyword_fusion", lambda: answer)  # the visible check judges the form only
    assert f"Your prediction, {answer!r}, is recorded" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=message) as info:
        ch11.check("predict_keyword_fusion", lambda: answer, hidden=True)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("answer, message", [
    ("B", r"answer with exactly one of 'a', 'b', 'c' \(as written there\), not 'B'"),
    (2, r"answer with one of 'a', 'b', 'c', not 2"),
])
def test_a_prediction_of_the_wrong_form_is_refused_before_the_experiment(answer, message):
    with pytest.raises(CheckFailed, match=message):
        ch11.check("predict_keyword_fusion", lambda: answer)


def test_the_stub_prediction_is_not_written_yet_and_reveal_says_so(capsys):
    with pytest.raises(CheckFailed, match="is not written yet"):
        ch11.check("predict_keyword_fusion", stub)
    ch11.reveal("predict_keyword_fusion", stub)
    out = capsys.readouterr().out
    assert "The answer: 'b' (you have not answered yet)" in out and "below the strong one alone" in out
    ch11.reveal("predict_keyword_fusion", lambda: "a")
    assert "You predicted 'a'; the answer: 'b' (not what happens)" in capsys.readouterr().out


def test_the_chapters_table_decides_the_prediction_before_it_is_revealed():
    """The reference states what the chapter measures; the chapter asserts it, just before the reveal."""
    sources = ["".join(c["source"]) for c in notebook_cells() if c["cell_type"] == "code"]
    [at] = [i for i, s in enumerate(sources) if 'reveal("predict_keyword_fusion"' in s]
    assert 'assert keyword_ndcg["dense"] < keyword_ndcg["RRF"] < keyword_ndcg["BM25"]' in sources[at]
    assert sources[at].index("assert keyword_ndcg") < sources[at].index("reveal(")
    assert any('results["RRF"] = scores_by_kind(rrf_run)' in s for s in sources[:at])
    check_at = next(i for i, s in enumerate(sources) if s.strip() == 'check("predict_keyword_fusion", predict_keyword_fusion)')
    assert check_at < next(i for i, s in enumerate(sources) if 'results["RRF"] = ' in s), "predicted before the table"


# ------------------------------------------------------------------ exercise 6: a measurement
def test_the_notebooks_measurement_passes_visible_and_hidden(capsys):
    helped_and_hurt = solution_of("helped-and-hurt")["helped_and_hurt"]
    ch11.check("helped_and_hurt", helped_and_hurt)
    ch11.check("helped_and_hurt", helped_and_hurt, hidden=True)
    assert "`helped_and_hurt` passes all 5 checks" in capsys.readouterr().out


def test_helped_and_hurt_by_hand():
    fused, alone = {"q1": 0.8, "q2": 0.5, "q3": 1.0, "q4": 0.3}, {"q1": 0.6, "q2": 0.5, "q3": 0.9, "q4": 0.7}
    kinds = {"q1": "keyword", "q2": "keyword", "q3": "paraphrase", "q4": "paraphrase", "q9": "mixed"}
    assert hurt_ref(fused, alone, kinds) == {"all": (0.5, 0.25), "keyword": (0.5, 0.0), "paraphrase": (0.5, 0.5)}
    with pytest.raises(ValueError, match="the same questions"):
        hurt_ref(fused, {"q1": 0.6}, kinds)
    with pytest.raises(ValueError, match="no kind for 'q2'"):
        hurt_ref(fused, alone, {"q1": "keyword"})


def test_every_helped_and_hurt_mistake_gets_its_own_sentence():
    ex = ch11.EXERCISES["helped_and_hurt"]
    assert ex.kind == "measure"
    for setting, sentence in ex.mistakes:
        with pytest.raises(CheckFailed) as info:
            ch11.check("helped_and_hurt", partial(ex.wrong, **setting))
        assert str(info.value).endswith("Likely cause: " + sentence), (setting, str(info.value))


def _shares(fused, alone, kind_of, groups):
    out = {}
    for group, qs in groups.items():
        out[group] = (sum(fused[q] > alone[q] for q in qs) / len(qs), sum(fused[q] < alone[q] for q in qs) / len(qs))
    return out


def h_without_all(fused, alone, kind_of):
    return {k: v for k, v in hurt_ref(fused, alone, kind_of).items() if k != "all"}


def h_kinds_from_kind_of(fused, alone, kind_of):  # every kind kind_of names, scored or not
    groups = {"all": list(alone)} | {k: [q for q in alone if kind_of[q] == k] for k in set(kind_of.values())}
    return _shares(fused, alone, kind_of, groups)


def h_questions_from_kind_of(fused, alone, kind_of):  # iterates over kind_of: a question nobody scored
    groups = {"all": list(kind_of)}
    for q, kind in kind_of.items():
        groups.setdefault(kind, []).append(q)
    return _shares(fused, alone, kind_of, groups)


def h_lists(fused, alone, kind_of):
    return {k: list(v) for k, v in hurt_ref(fused, alone, kind_of).items()}


def h_percentages(fused, alone, kind_of):
    return {k: (100 * a, 100 * b) for k, (a, b) in hurt_ref(fused, alone, kind_of).items()}


def h_single_number(fused, alone, kind_of):
    return {k: b for k, (a, b) in hurt_ref(fused, alone, kind_of).items()}


@pytest.mark.parametrize("fn, message", [
    (h_without_all, r"has no entry for 'all', the shares over all the questions\."),
    (h_kinds_from_kind_of, r"raised ZeroDivisionError.*kind_of also names a keyword question.*Hint: only the kinds"),
    (h_questions_from_kind_of, r"raised KeyError.*Hint: only the kinds of the questions in fused and alone"),
    (h_lists, None),  # a list of two fractions is as good as a tuple
    (h_percentages, r"gives 'all' \(helped, hurt\) = \(50, 25\); expected \(0\.5, 0\.25\)"),
    (h_single_number, r"returned 0\.25 for 'all'; expected a pair of fractions \(helped, hurt\)"),
])
def test_helped_and_hurt_learner_mistakes_get_a_sentence(fn, message):
    if message is None:
        ch11.check("helped_and_hurt", fn)
        return
    with pytest.raises(CheckFailed, match=message) as info:
        ch11.check("helped_and_hurt", fn)
    assert "\n" not in str(info.value)
