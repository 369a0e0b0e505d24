r"""Evaluate rankings against relevance judgments, with trec_eval's numbers.

Inputs use pytrec_eval's dictionaries:

* ``qrels = {query_id: {doc_id: relevance}}``: judged documents, relevance an
  integer (0 = not relevant, 1 = relevant, 2 = highly relevant, ...);
* ``run = {query_id: {doc_id: score}}``: what a system returned, higher scores first.

For each query, with :math:`R` its relevant documents (relevance :math:`\ge 1`) and
:math:`d_1, d_2, \dots` the run's ranking:

.. math::

    \mathrm{recall@}k = \frac{|\{d_1..d_k\} \cap R|}{|R|} \qquad
    \mathrm{RR} = \frac{1}{\min\{i : d_i \in R\}} \qquad
    \mathrm{nDCG@}k = \frac{\mathrm{DCG@}k}{\mathrm{IDCG@}k}, \quad
    \mathrm{DCG@}k = \sum_{i=1}^{k} \frac{\mathrm{rel}(d_i)}{\log_2(i + 1)}

IDCG@k is the DCG@k of the best possible ranking (the judged documents by
relevance). The gain is the relevance itself, not :math:`2^{rel} - 1`. MRR is
the mean of RR, over the *whole* ranking (trec_eval's ``recip_rank``; truncate the
run for MRR@k). Each is 0 for a query with no relevant document.

These equal ``trec_eval`` (``recall.k``, ``recip_rank``, ``ndcg_cut.k``; checked
against ``pytrec_eval``) including how it breaks ties, which changes the numbers:

* scores are compared as **float32** (trec_eval stores ``float sim``), so scores
  that differ only beyond float32 precision are tied;
* tied documents are ordered by doc id, **descending** (``strcmp`` on the ids).

Queries: the mean is over every query in ``qrels``. A query missing from the
run counts as 0 (like ``trec_eval -c``; plain trec_eval and pytrec_eval skip it,
which flatters a system that returns nothing for its hardest queries). Queries in
the run but not in ``qrels`` are ignored.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np

from .._validate import positive_int

__all__ = ["evaluate", "query_metrics", "recall_at_k", "setting_for_recall", "as_run", "trec_order", "helped_and_hurt"]


def _check_qrels(qrels) -> None:
    if not isinstance(qrels, Mapping) or not qrels:
        raise ValueError("qrels must be a non-empty dict {query_id: {doc_id: relevance}}")
    for q, judged in qrels.items():
        if not isinstance(q, str):
            raise ValueError(f"query ids must be strings (as in pytrec_eval), got {q!r}; convert with str()")
        if not isinstance(judged, Mapping):
            raise ValueError(f"qrels[{q!r}] must be a dict {{doc_id: relevance}}, got {type(judged).__name__}")
        for d, rel in judged.items():
            if not isinstance(d, str):
                raise ValueError(f"doc ids must be strings (as in pytrec_eval), got {d!r} in qrels[{q!r}]")
            if isinstance(rel, bool) or not isinstance(rel, numbers.Integral):
                raise ValueError(f"qrels[{q!r}][{d!r}] = {rel!r}; relevance must be an integer (0, 1, 2, ...)")


def _check_run(run) -> None:
    if not isinstance(run, Mapping):
        raise ValueError("run must be a dict {query_id: {doc_id: score}}")
    for q, ranked in run.items():
        if not isinstance(ranked, Mapping):
            raise ValueError(f"run[{q!r}] must be a dict {{doc_id: score}}, got {type(ranked).__name__}")
        for d, s in ranked.items():
            if not isinstance(d, str):
                raise ValueError(f"doc ids must be strings (as in pytrec_eval), got {d!r} in run[{q!r}]")
            if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
                raise ValueError(f"run[{q!r}][{d!r}] = {s!r}; scores must be finite numbers")


def trec_order(scores: Mapping) -> list[str]:
    """The doc ids of ``{doc_id: score}`` in trec_eval's order: by score as float32,
    descending, then by doc id, descending."""
    by_id = sorted(scores, reverse=True)  # ties: doc id descending ...
    with np.errstate(over="ignore"):  # beyond float32's range a score becomes +-inf, as in trec_eval
        s32 = {d: np.float32(scores[d]) for d in by_id}
    return sorted(by_id, key=lambda d: -s32[d])  # ... kept by the stable sort on score


def query_metrics(ranking, judged, k: int = 10) -> tuple[float, float, float]:
    r"""``(recall@k, reciprocal rank, nDCG@k)`` of one query's ranked list :math:`d_1, d_2, \dots`, as
    trec_eval computes them (:func:`evaluate` averages them over a run):

    .. math:: \frac{|\{d_1..d_k\} \cap R|}{|R|}, \qquad \frac{1}{\min\{i : d_i \in R\}}, \qquad
              \frac{\sum_{i \le k} \mathrm{rel}(d_i) / \log_2(i + 1)}{\mathrm{IDCG@}k}

    Args:
        ranking: the doc ids a system returned, best first (the order is taken as is: sort
            ties first, e.g. with :func:`trec_order`).
        judged: ``{doc_id: relevance grade}``; grade >= 1 is relevant, 0 judged not relevant,
            and a doc id not in ``judged`` counts as 0.
        k: the cutoff of recall and nDCG.

    The reciprocal rank looks down the whole ranking; the ideal DCG@k sorts every judged
    document by grade, those the system missed included. A query without a relevant
    document gets ``(0, 0, 0)``.
    """
    if not isinstance(judged, Mapping):
        raise ValueError(f"judged must be a dict {{doc_id: grade}}, got {type(judged).__name__}")
    k, ranking = positive_int(k, "k"), list(ranking)
    if len(set(ranking)) != len(ranking):
        raise ValueError("ranking lists a doc id twice; each document has one rank")
    relevant = {d for d, rel in judged.items() if rel >= 1}
    if not relevant:
        return 0.0, 0.0, 0.0
    hits = [d in relevant for d in ranking]
    recall = sum(hits[:k]) / len(relevant)
    rr = 1.0 / (hits.index(True) + 1) if any(hits) else 0.0
    gains = [max(judged.get(d, 0), 0) for d in ranking[:k]]  # gain = relevance; unjudged = 0
    ideal = sorted((max(r, 0) for r in judged.values()), reverse=True)[:k]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))  # rank i + 1 -> log2(i + 2)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return recall, rr, dcg / idcg


def evaluate(qrels, run, k: int = 10, *, per_query: bool = False) -> dict:
    """Mean recall@k, MRR and nDCG@k of ``run`` against ``qrels`` (see the module docstring).

    Args:
        qrels: ``{query_id: {doc_id: relevance}}``, ids strings, relevance integers.
        run: ``{query_id: {doc_id: score}}``, scores finite numbers.
        k: the cutoff for recall and nDCG.
        per_query: also return each query's values.

    Returns:
        ``{"recall@10": ..., "mrr": ..., "ndcg@10": ...}`` (with the actual ``k``);
        with ``per_query=True``, ``(means, {query_id: {...}})``.
    """
    _check_qrels(qrels)
    _check_run(run)
    positive_int(k, "k")
    names = (f"recall@{k}", "mrr", f"ndcg@{k}")
    each = {q: dict(zip(names, query_metrics(trec_order(run.get(q, {})), judged, k))) for q, judged in qrels.items()}
    means = {name: float(np.mean([v[name] for v in each.values()])) for name in names}
    return (means, each) if per_query else means


def recall_at_k(found, truth) -> float:
    r"""Recall@k of an approximate search against the exact one, averaged over the queries.

    .. math:: \mathrm{recall@}k = \frac{1}{n_q} \sum_{j=1}^{n_q} \frac{|F_j \cap T_j|}{k}

    with :math:`F_j` the ids found for query ``j`` (a row of ``found``, in any order; a missing
    result, ``-1``, finds nothing) and :math:`T_j` its exact top ``k`` (a row of ``truth``).

    Args:
        found: ``(nq, k)`` integer ids from the approximate search (chapter 10).
        truth: ``(nq, k)`` integer ids from the exact search.
    """
    f, t = np.asarray(found), np.asarray(truth)
    if f.ndim != 2 or f.shape != t.shape or 0 in f.shape or f.dtype.kind not in "iu" or t.dtype.kind not in "iu":
        raise ValueError(f"found {f.shape} ({f.dtype}) and truth {t.shape} ({t.dtype}) must both be non-empty "
                         "(nq, k) arrays of integer ids")
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(f.tolist(), t.tolist())]))


def setting_for_recall(found, truth, target: float = 0.9):
    r"""The smallest setting of an approximate index (IVF's ``nprobe``, HNSW's ``ef_search``) whose
    recall@k reaches ``target``, from a sweep of searches: chapter 10's conclusion, "how much of
    the index must a query look at?".

    Args:
        found: ``{setting: (nq, k) ids}``, the results of the same queries at each setting, in
            any order (``-1``: a missing result).
        truth: ``(nq, k)`` ids of the exact search.
        target: the recall@k (:func:`recall_at_k`, the mean over the queries) to reach.

    Returns:
        The smallest setting with ``recall_at_k(found[setting], truth) >= target``, or ``None``
        when no setting reaches it.
    """
    if not isinstance(found, Mapping) or not found:
        raise ValueError("found must be a non-empty dict {setting: (nq, k) ids}, one entry per setting searched")
    good = [s for s, ids in found.items() if recall_at_k(ids, truth) >= target]
    return min(good) if good else None


def as_run(ids, scores, query_ids=None, doc_ids=None) -> dict:
    """Turn search results into a run ``{query_id: {doc_id: score}}``.

    Args:
        ids, scores: ``(nq, k)`` arrays from ``VectorIndex.search`` (or ``(k,)`` for
            one query, as from ``BM25.search``); ids ``< 0`` (missing results) are skipped.
        query_ids: ``nq`` query ids (default ``"0"``, ``"1"``, ...).
        doc_ids: a list mapping each integer id to its doc id (default ``str(id)``).
    """
    ids, scores = np.atleast_2d(ids), np.atleast_2d(scores)
    if ids.shape != scores.shape or ids.ndim != 2:
        raise ValueError(f"ids {ids.shape} and scores {scores.shape} must have the same shape (nq, k)")
    query_ids = [str(i) for i in range(ids.shape[0])] if query_ids is None else list(query_ids)
    if len(query_ids) != ids.shape[0]:
        raise ValueError(f"{len(query_ids)} query_ids for {ids.shape[0]} rows of results")
    name = (lambda i: str(i)) if doc_ids is None else (lambda i: doc_ids[i])
    return {
        q: {name(int(i)): float(s) for i, s in zip(row_ids, row_scores) if i >= 0}
        for q, row_ids, row_scores in zip(query_ids, ids, scores)
    }


def helped_and_hurt(fused, alone, kind_of) -> dict:
    """Where a fusion changes a system's score, question by question (chapter 11): for all the
    questions and for each kind, the fraction on which ``fused`` scores higher than ``alone``
    (helped) and the fraction on which it scores lower (hurt); equal scores count as neither.

    Args:
        fused, alone: ``{question id: score}`` (e.g. each question's nDCG@10, from
            ``evaluate(..., per_query=True)``) of the fusion and of one system alone, on the same
            questions.
        kind_of: ``{question id: kind}``; it may hold other questions too.

    Returns:
        ``{"all": (helped, hurt), kind: (helped, hurt), ...}``: one entry per kind among the
        questions, each share over that kind's questions.
    """
    for name, scores in (("fused", fused), ("alone", alone), ("kind_of", kind_of)):
        if not isinstance(scores, Mapping):
            raise ValueError(f"{name} must be a dict {{question id: ...}}, got {type(scores).__name__}")
    if set(fused) != set(alone):
        raise ValueError(f"fused and alone must score the same questions ({len(fused)} and {len(alone)} given)")
    if missing := [q for q in alone if q not in kind_of]:
        raise ValueError(f"kind_of has no kind for {missing[0]!r}")
    groups: dict = {"all": list(alone)}
    for q in alone:
        groups.setdefault(kind_of[q], []).append(q)
    return {kind: (sum(fused[q] > alone[q] for q in qs) / len(qs), sum(fused[q] < alone[q] for q in qs) / len(qs))
            for kind, qs in groups.items() if qs}
