"""attnedu.retrieval.fusion and .evaluate: fusion on examples checkable by hand;
recall@k, MRR and nDCG@k equal to trec_eval (pytrec_eval), ties and all, for a run and
for one query (query_metrics); recall@k of an approximate search (recall_at_k)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnedu.retrieval import (as_run, evaluate, min_max_fusion, min_max_normalize, query_metrics, recall_at_k, rrf,
                               trec_order, weighted_fusion)

pytrec_eval = pytest.importorskip("pytrec_eval")


# ------------------------------------------------------------------------- fusion
def test_rrf_by_hand():
    fused = rrf([["a", "b", "c"], ["c", "a"]], k=60)
    assert fused == pytest.approx({"a": 1 / 61 + 1 / 62, "c": 1 / 63 + 1 / 61, "b": 1 / 62})
    assert list(fused) == ["a", "c", "b"]


def test_rrf_ranks_a_dict_of_scores_by_score():
    assert rrf([{"x": 0.1, "y": 0.9}], k=0) == {"y": 1.0, "x": 0.5}


def test_rrf_ties_keep_their_order_of_first_appearance():
    assert list(rrf([["a", "b"], ["b", "a"]])) == ["a", "b"]


def test_rrf_with_one_ranking_keeps_it():
    assert list(rrf([[3, 1, 2]])) == [3, 1, 2]  # any hashable doc ids


def test_min_max_normalize_by_hand():
    assert min_max_normalize({"a": 4.0, "b": 2.0, "c": 3.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max_normalize({"a": 7.0, "b": 7.0}) == {"a": 1.0, "b": 1.0}  # all equal: all best
    assert min_max_normalize({}) == {}


def test_weighted_fusion_by_hand():
    bm25 = {"a": 10.0, "b": 5.0, "c": 0.0}
    dense = {"b": 0.9, "d": 0.1}
    fused = weighted_fusion([bm25, dense], [0.5, 0.5])
    assert fused == pytest.approx({"b": 0.75, "a": 0.5, "c": 0.0, "d": 0.0})
    assert list(fused)[:2] == ["b", "a"]
    assert list(weighted_fusion([bm25, dense], [1.0, 0.0]))[0] == "a"  # the weight sweeps between the systems
    assert list(weighted_fusion([bm25, dense], [0.0, 1.0]))[0] == "b"
    assert weighted_fusion([bm25, dense]) == fused  # default: equal weights


def test_min_max_fusion_is_weighted_fusion_of_two_systems():
    bm25, dense = {"a": 12.0, "b": 6.0, "c": 3.0}, {"b": 0.9, "d": 0.5, "a": -0.1}
    assert min_max_fusion(bm25, dense, 0.3) == weighted_fusion([bm25, dense], [0.7, 0.3])
    assert min_max_fusion(bm25, dense, 0.5) == pytest.approx({"a": 0.5, "b": 0.5 / 3 + 0.5, "c": 0.0, "d": 0.3})
    assert list(min_max_fusion(bm25, dense, 0.0))[0] == "a" and list(min_max_fusion(bm25, dense, 1.0))[0] == "b"
    assert min_max_fusion({}, {}, 0.5) == {}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: min_max_fusion({"a": 1.0}, {}, 1.5), r"alpha must be a number in \[0, 1\]"),
        (lambda: min_max_fusion({"a": 1.0}, {}, True), "alpha"),
        (lambda: rrf([]), "rankings is empty"),
        (lambda: rrf(["abc"]), r"rankings\[0\] is a string"),
        (lambda: rrf(["a", "b"]), r"rankings\[0\] is a string"),
        (lambda: rrf({"a": 1.0}), "list of rankings"),
        (lambda: rrf([["a", "a"]]), "lists a doc id twice"),
        (lambda: rrf([[1, 2]], k=-1), "k must be a finite number >= 0"),
        (lambda: rrf([5]), "list of doc ids or a dict"),
        (lambda: rrf([{"a": float("nan")}]), "finite numbers"),
        (lambda: weighted_fusion([]), "score_dicts is empty"),
        (lambda: weighted_fusion({"a": 1.0}), "list of dicts"),
        (lambda: weighted_fusion([{"a": 1.0}], [0.5, 0.5]), "2 weights for 1 score dicts"),
        (lambda: weighted_fusion([{"a": 1.0}], [-1]), "weights must be finite numbers >= 0"),
        (lambda: weighted_fusion([{"a": "high"}]), "finite numbers"),
        (lambda: weighted_fusion([["a"]]), r"score_dicts\[0\] must be a dict"),
    ],
)
def test_bad_fusion_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------- evaluation
def test_trec_order_breaks_ties_by_doc_id_descending_as_strings():
    assert trec_order({"b10": 1.0, "b9": 1.0, "b2": 1.0, "a": 2.0}) == ["a", "b9", "b2", "b10"]


def test_trec_order_compares_scores_as_float32():
    # 0.1 + 0.2 > 0.3 in float64 but not in float32: a tie, so "b" (the larger id) comes first
    assert trec_order({"a": 0.1 + 0.2, "b": 0.3}) == ["b", "a"]
    assert trec_order({"a": 1.0 + 1e-6, "b": 1.0}) == ["a", "b"]


def test_query_metrics_by_hand():
    recall, rr, ndcg = query_metrics(["a", "b", "c", "d", "e"], {"b": 2, "d": 1, "x": 1}, k=3)
    assert recall == pytest.approx(1 / 3) and rr == 0.5
    assert ndcg == pytest.approx((2 / math.log2(3)) / (2 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert query_metrics(["a"], {"a": 0}) == (0.0, 0.0, 0.0)
    assert query_metrics([f"n{i}" for i in range(11)] + ["hit"], {"hit": 1}, k=5) == (0.0, 1 / 12, 0.0)


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
def test_query_metrics_equal_trec_eval_and_evaluate_query_by_query(k):
    rng = np.random.default_rng(k)
    qrels, run = random_judgments(rng, [f"doc{i:02d}" for i in range(40)])
    trec = pytrec_eval.RelevanceEvaluator(qrels, {f"recall.{k}", "recip_rank", f"ndcg_cut.{k}"}).evaluate(run)
    ours = evaluate(qrels, run, k, per_query=True)[1]
    for q in qrels:
        recall, rr, ndcg = query_metrics(trec_order(run[q]), qrels[q], k)
        assert recall == pytest.approx(trec[q][f"recall_{k}"], abs=1e-12)
        assert rr == pytest.approx(trec[q]["recip_rank"], abs=1e-12)
        assert ndcg == pytest.approx(trec[q][f"ndcg_cut_{k}"], abs=1e-12)
        assert (recall, rr, ndcg) == (ours[q][f"recall@{k}"], ours[q]["mrr"], ours[q][f"ndcg@{k}"])


def test_recall_at_k_counts_missing_results_as_misses_and_ignores_the_order():
    assert recall_at_k([[1, 2, 3]], [[3, 1, 7]]) == pytest.approx(2 / 3)
    assert recall_at_k([[-1, -1]], [[0, 1]]) == 0.0
    assert recall_at_k([[1, 0], [2, 3]], [[0, 1], [3, 2]]) == 1.0
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[3, 4], [1, 2]])) == 0.0  # each query its own


def test_evaluate_by_hand():
    qrels = {"q1": {"a": 2, "b": 0, "c": 1}, "q2": {"x": 1}}
    run = {"q1": {"b": 0.9, "a": 0.8, "z": 0.7, "c": 0.1}, "q2": {"y": 1.0}}
    result, each = evaluate(qrels, run, k=2, per_query=True)
    # q1: ranking b a z c; relevant a, c. recall@2 = 1/2, RR = 1/2,
    # DCG@2 = 0/log2(2) + 2/log2(3); IDCG@2 = 2/log2(2) + 1/log2(3)
    ndcg = (2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert each["q1"] == pytest.approx({"recall@2": 0.5, "mrr": 0.5, "ndcg@2": ndcg})
    assert each["q2"] == {"recall@2": 0.0, "mrr": 0.0, "ndcg@2": 0.0}
    assert result == pytest.approx({"recall@2": 0.25, "mrr": 0.25, "ndcg@2": ndcg / 2})


def test_a_query_missing_from_the_run_counts_as_zero_and_extra_queries_are_ignored():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate(qrels, {"q1": {"a": 1.0}, "q9": {"b": 1.0}})["mrr"] == 0.5


def reference(qrels, run, k):
    """pytrec_eval's values, averaged over every qrels query (a query it skips counts 0)."""
    measures = {f"recall.{k}", "recip_rank", f"ndcg_cut.{k}"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = {f"recall_{k}": f"recall@{k}", "recip_rank": "mrr", f"ndcg_cut_{k}": f"ndcg@{k}"}
    each = {q: {names[m]: v for m, v in values.items()} for q, values in per_query.items()}
    means = {n: sum(v[n] for v in each.values()) / len(qrels) for n in names.values()}
    return means, each


DOCS = [f"d{i}" for i in range(12)]  # "d10" < "d2" as strings: tie-breaking is by string
SCORES = [0.0, 0.3, 0.1 + 0.2, 0.5, 1.0, 1.0 + 1e-9, 2.5, -1.0]  # repeats make ties, some only in float32


@settings(max_examples=150, deadline=None)
@given(
    qrels=st.dictionaries(
        st.sampled_from(["q1", "q2", "q3", "q4"]),
        st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 3), max_size=8),
        min_size=1,
    ).filter(lambda q: all(q.values())),  # trec_eval needs at least one judgment per query
    run=st.dictionaries(
        st.sampled_from(["q1", "q2", "q3", "q5"]),
        st.dictionaries(st.sampled_from(DOCS), st.sampled_from(SCORES), max_size=12),
    ),
    k=st.sampled_from([1, 3, 5, 10]),
)
def test_evaluate_equals_trec_eval_on_random_runs_with_ties(qrels, run, k):
    means, each = evaluate(qrels, run, k=k, per_query=True)
    ref_means, ref_each = reference(qrels, run, k)
    for q, values in ref_each.items():
        assert each[q] == pytest.approx(values, abs=1e-12), q
    assert means == pytest.approx(ref_means, abs=1e-12)


def test_as_run_turns_search_results_into_a_run_and_skips_missing_results():
    ids = np.array([[3, 1, -1], [0, 2, 1]])
    scores = np.array([[0.9, 0.5, -np.inf], [0.8, 0.7, 0.1]])
    assert as_run(ids, scores) == {"0": {"3": 0.9, "1": 0.5}, "1": {"0": 0.8, "2": 0.7, "1": 0.1}}
    assert as_run(ids[0], scores[0], ["q"], doc_ids=["A", "B", "C", "D"]) == {"q": {"D": 0.9, "B": 0.5}}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: evaluate({}, {}), "qrels must be a non-empty dict"),
        (lambda: evaluate({"q": {"a": 1.5}}, {}), "relevance must be an integer"),
        (lambda: evaluate({"q": {1: 1}}, {}), "doc ids must be strings"),
        (lambda: evaluate({1: {"a": 1}}, {}), "query ids must be strings"),
        (lambda: evaluate({"q": ["a"]}, {}), r"qrels\['q'\] must be a dict"),
        (lambda: evaluate({"q": {"a": 1}}, [("q", "a")]), "run must be a dict"),
        (lambda: evaluate({"q": {"a": 1}}, {"q": ["a"]}), r"run\['q'\] must be a dict"),
        (lambda: evaluate({"q": {"a": 1}}, {"q": {"a": float("nan")}}), "scores must be finite numbers"),
        (lambda: evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, k=0), "k must be a positive integer"),
        (lambda: as_run([[1, 2]], [[0.5]]), "same shape"),
        (lambda: as_run([[1]], [[0.5]], ["a", "b"]), "2 query_ids for 1 rows"),
        (lambda: query_metrics(["a", "a"], {"a": 1}), "lists a doc id twice"),
        (lambda: query_metrics(["a"], [("a", 1)]), "judged must be a dict"),
        (lambda: query_metrics(["a"], {"a": 1}, k=0), "k must be a positive integer"),
        (lambda: recall_at_k([1, 2], [1, 2]), r"\(nq, k\) arrays of integer ids"),
        (lambda: recall_at_k([[1, 2]], [[1, 2, 3]]), r"\(nq, k\) arrays of integer ids"),
        (lambda: recall_at_k([[1.0, 2.0]], [[1, 2]]), "integer ids"),
    ],
)
def test_bad_evaluation_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_docstring_examples_of_the_retrieval_modules_hold():
    from attnedu.retrieval import bm25, evaluation, fts5, fusion, vector

    for module in (vector, bm25, fts5, fusion, evaluation):
        assert doctest.testmod(module, verbose=False).failed == 0, module.__name__
