r"""Hybrid search: fuse the rankings of keyword and vector search into one.

Chapter 11 compares two ways:

* :func:`rrf`, reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009),
  uses only ranks, so scores on different scales (BM25 in ``[0, 20]``, cosine in
  ``[-1, 1]``) never need to be made comparable:

  .. math:: \mathrm{RRF}(d) = \sum_{r \in \text{rankings}} \frac{1}{k + \mathrm{rank}_r(d)}

  with ranks starting at 1 and ``k = 60``; a ranking without ``d`` adds nothing.

* :func:`weighted_fusion` rescales each system's scores to ``[0, 1]`` by min-max
  normalisation, then adds them with weights:

  .. math:: \mathrm{fused}(d) = \sum_i w_i\, \frac{s_i(d) - \min s_i}{\max s_i - \min s_i}

  with :math:`s_i(d)` counted as 0 (after normalisation) when system ``i`` did not
  return ``d``. :func:`min_max_fusion` is its two-system form, BM25 and dense, with one
  weight ``alpha``.

Both return a dict ``{doc_id: fused score}`` ordered best first, which is also one
query's entry of a run for :func:`~attnedu.retrieval.evaluate`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

__all__ = ["rrf", "min_max_normalize", "weighted_fusion", "min_max_fusion", "rrf_on_keyword_questions"]


def _check_scores(scores, name: str) -> dict:
    if not isinstance(scores, Mapping):
        raise ValueError(f"{name} must be a dict {{doc_id: score}}, got {type(scores).__name__}")
    for doc, s in scores.items():
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not math.isfinite(s):
            raise ValueError(f"{name}[{doc!r}] = {s!r}; scores must be finite numbers")
    return dict(scores)


def _best_first(fused: dict) -> dict:
    # sorted() is stable: equal scores keep their order of first appearance
    return dict(sorted(fused.items(), key=lambda item: -item[1]))


def _ranked(ranking, i: int) -> list:
    """One ranking as a list of doc ids, best first."""
    if isinstance(ranking, (str, bytes)):
        raise ValueError(f"rankings[{i}] is a string; a ranking is a list of doc ids, best first")
    if isinstance(ranking, Mapping):  # {doc: score}: rank by score, best first
        return list(_best_first(_check_scores(ranking, f"rankings[{i}]")))
    try:
        docs = list(ranking)
    except TypeError:
        raise ValueError(f"rankings[{i}] must be a list of doc ids or a dict of scores, "
                         f"got {type(ranking).__name__}") from None
    if len(set(docs)) != len(docs):
        raise ValueError(f"rankings[{i}] lists a doc id twice; each document has one rank")
    return docs


def rrf(rankings, k: float = 60) -> dict:
    r"""Reciprocal rank fusion: :math:`\mathrm{RRF}(d) = \sum_r 1 / (k + \mathrm{rank}_r(d))`.

    Args:
        rankings: one or more rankings of the same query; each a list of doc ids
            best first, or a dict ``{doc_id: score}`` (ranked by score, higher first).
            Drop the ``-1`` padding of ``VectorIndex.search`` first: here it is an id.
        k: the constant that damps the top ranks, ``>= 0`` (Cormack et al.: 60).
            Larger ``k`` makes rank 1 and rank 10 count more alike.

    Returns:
        ``{doc_id: RRF score}`` for every doc in any ranking, best first (equal
        scores in order of first appearance).

    >>> rrf([["a", "b", "c"], ["b", "a"]], k=60)   # a, b: 1/61 + 1/62; c: 1/63
    {'a': 0.03252247488101534, 'b': 0.03252247488101534, 'c': 0.015873015873015872}
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be a finite number >= 0, got {k!r}")
    if isinstance(rankings, (str, bytes, Mapping)):
        raise ValueError("rankings must be a list of rankings, e.g. rrf([bm25_ranking, dense_ranking])")
    rankings = list(rankings)
    if not rankings:
        raise ValueError("rankings is empty: pass at least one ranking")
    fused: dict = {}
    for i, ranking in enumerate(rankings):
        for rank, doc in enumerate(_ranked(ranking, i), start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return _best_first(fused)


def min_max_normalize(scores) -> dict:
    r"""Rescale ``{doc_id: score}`` to ``[0, 1]``: :math:`(s - \min s) / (\max s - \min s)`.

    The best document gets 1, the worst 0. If all scores are equal (one result,
    say) every document gets 1. An empty dict stays empty.
    """
    s = _check_scores(scores, "scores")
    if not s:
        return {}
    lo, hi = min(s.values()), max(s.values())
    if hi == lo:
        return {doc: 1.0 for doc in s}
    return {doc: (v - lo) / (hi - lo) for doc, v in s.items()}


def weighted_fusion(score_dicts, weights=None) -> dict:
    r"""Weighted sum of min-max normalised scores: :math:`\sum_i w_i \hat s_i(d)`.

    Args:
        score_dicts: one ``{doc_id: score}`` per system, for the same query.
        weights: one weight ``>= 0`` per system (default: equal weights summing
            to 1). They need not sum to 1; ``[alpha, 1 - alpha]`` sweeps from one
            system to the other.

    Returns:
        ``{doc_id: fused score}`` for every doc any system returned, best first.
        A doc missing from a system gets 0 from it (the normalised worst score).

    >>> weighted_fusion([{"a": 10.0, "b": 5.0, "c": 0.0}, {"b": 0.9, "d": 0.1}], [0.5, 0.5])
    {'b': 0.75, 'a': 0.5, 'c': 0.0, 'd': 0.0}
    """
    if isinstance(score_dicts, Mapping):
        raise ValueError("score_dicts must be a list of dicts, one per system, e.g. [bm25_scores, dense_scores]")
    dicts = [min_max_normalize(_check_scores(d, f"score_dicts[{i}]")) for i, d in enumerate(score_dicts)]
    if not dicts:
        raise ValueError("score_dicts is empty: pass at least one dict of scores")
    if weights is None:
        weights = [1.0 / len(dicts)] * len(dicts)
    weights = list(weights)
    if len(weights) != len(dicts):
        raise ValueError(f"{len(weights)} weights for {len(dicts)} score dicts: pass one weight per system")
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
            raise ValueError(f"weights[{i}] = {w!r}; weights must be finite numbers >= 0")
    fused: dict = {}
    for w, normalized in zip(weights, dicts):
        for doc, s in normalized.items():
            fused[doc] = fused.get(doc, 0.0) + w * s
    return _best_first(fused)


def min_max_fusion(bm25_scores, dense_scores, alpha: float) -> dict:
    r"""Weighted min-max fusion of two systems: :func:`weighted_fusion` with the weights
    ``1 - alpha`` and ``alpha``.

    .. math:: \mathrm{fused}(d) = (1 - \alpha)\, \widehat{\mathrm{bm25}}(d) + \alpha\, \widehat{\mathrm{dense}}(d)

    Args:
        bm25_scores, dense_scores: ``{doc_id: score}`` of each system for one query.
        alpha: in ``[0, 1]``; 0 is BM25 alone, 1 dense alone.

    Returns:
        ``{doc_id: fused score}`` for every doc either system returned, best first.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return weighted_fusion([bm25_scores, dense_scores], [1 - alpha, alpha])


def rrf_on_keyword_questions() -> str:
    """Chapter 11's answer to its prediction about fusing a strong system with a much weaker one:
    on the course's keyword questions, where BM25 alone is far ahead of dense retrieval, the RRF
    of the two scores an nDCG@10 between the two systems alone: ``"b"``, below BM25 alone. (The
    experiment needs the MiniLM embeddings of the whole collection; the chapter runs it and
    asserts this answer, so the two cannot drift apart.)"""
    return "b"
