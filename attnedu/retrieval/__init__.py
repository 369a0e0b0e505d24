"""Retrieval for chapters 10 and 11: vector search, BM25, hybrid fusion, evaluation.

============== ==========================================================================
module         what is in it
============== ==========================================================================
``vector``     :func:`cosine_similarity`, :func:`top_k`, :func:`exact_search`, :func:`filter_after`;
               :class:`VectorIndex` (exact, NumPy) and :class:`FaissIndex` (FAISS flat, HNSW,
               IVF) with filtering before/after
``bm25``       :func:`tokenize` (FTS5's ``unicode61``), :class:`BM25` equal to FTS5's ``bm25()``,
               the sum of :func:`bm25_weight` over the query's terms
``fts5``       :func:`fts5_index`, :func:`fts5_search`: the SQLite FTS5 reference
``fusion``     :func:`rrf` (reciprocal rank fusion), :func:`weighted_fusion` (min-max), and
               :func:`min_max_fusion` (its two-system form)
``evaluation`` :func:`evaluate`: recall@k, MRR, nDCG@k equal to trec_eval, one query's
               :func:`query_metrics`; :func:`helped_and_hurt` (where a fusion helps, where it
               hurts); :func:`recall_at_k` of an approximate search, :func:`setting_for_recall`
               (the smallest setting that reaches a recall); :func:`as_run`
============== ==========================================================================

Conventions: a document's id is its position in the corpus (an int) in search
results; runs and judgments for :func:`evaluate` use string ids, as pytrec_eval
does (:func:`as_run` converts). Scores are "higher is better" everywhere.
"""

from .bm25 import BM25, bm25_weight, tokenize
from .evaluation import as_run, evaluate, helped_and_hurt, query_metrics, recall_at_k, setting_for_recall, trec_order
from .fts5 import fts5_index, fts5_match_query, fts5_search
from .fusion import min_max_fusion, min_max_normalize, rrf, rrf_on_keyword_questions, weighted_fusion
from .vector import FaissIndex, VectorIndex, cosine_similarity, exact_search, filter_after, top_k

__all__ = [
    "cosine_similarity",
    "top_k",
    "exact_search",
    "filter_after",
    "VectorIndex",
    "FaissIndex",
    "tokenize",
    "BM25",
    "bm25_weight",
    "fts5_index",
    "fts5_search",
    "fts5_match_query",
    "rrf",
    "min_max_normalize",
    "weighted_fusion",
    "min_max_fusion",
    "rrf_on_keyword_questions",
    "evaluate",
    "query_metrics",
    "recall_at_k",
    "setting_for_recall",
    "as_run",
    "trec_order",
    "helped_and_hurt",
]
