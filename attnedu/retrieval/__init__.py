"""Retrieval for chapters 10 and 11: vector search, BM25, hybrid fusion, evaluation.

============== ==========================================================================
module         what is in it
============== ==========================================================================
``vector``     :func:`exact_search`; :class:`VectorIndex` (exact, NumPy) and
               :class:`FaissIndex` (FAISS flat, HNSW, IVF) with filtering before/after
``bm25``       :func:`tokenize` (FTS5's ``unicode61``), :class:`BM25` equal to FTS5's ``bm25()``
``fts5``       :func:`fts5_index`, :func:`fts5_search`: the SQLite FTS5 reference
``fusion``     :func:`rrf` (reciprocal rank fusion), :func:`weighted_fusion` (min-max)
``evaluation`` :func:`evaluate`: recall@k, MRR, nDCG@k equal to trec_eval; :func:`as_run`
============== ==========================================================================

Conventions: a document's id is its position in the corpus (an int) in search
results; runs and judgments for :func:`evaluate` use string ids, as pytrec_eval
does (:func:`as_run` converts). Scores are "higher is better" everywhere.
"""

from .bm25 import BM25, tokenize
from .evaluation import as_run, evaluate, trec_order
from .fts5 import fts5_index, fts5_match_query, fts5_search
from .fusion import min_max_normalize, rrf, weighted_fusion
from .vector import FaissIndex, VectorIndex, exact_search

__all__ = [
    "exact_search",
    "VectorIndex",
    "FaissIndex",
    "tokenize",
    "BM25",
    "fts5_index",
    "fts5_search",
    "fts5_match_query",
    "rrf",
    "min_max_normalize",
    "weighted_fusion",
    "evaluate",
    "as_run",
    "trec_order",
]
