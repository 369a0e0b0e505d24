r"""Vector search: find the ``k`` stored vectors most similar to each query.

Chapter 10 reads retrieval as attention over a datastore. A query ``q`` scores
every stored key ``x_i`` with a dot product, exactly as attention does; instead
of a softmax over all of them, search keeps the ``k`` best:

.. math:: \mathrm{result}(q) = \text{the } k \text{ indices } i \text{ with the largest } q \cdot x_i

With ``metric="cosine"`` every vector is divided by its norm on the way in, so
``q . x_i = cos(q, x_i)``. (Softmax attention at temperature ``T -> 0`` is the
top-1 lookup.)

* :func:`cosine_similarity`: the cosine of every pair of rows (chapter 10).
* :func:`top_k`: the columns of the ``k`` largest scores of each row (chapter 10's exercise 1).
* :func:`exact_search`: the whole computation on plain arrays, scores then :func:`top_k`:
  readable path (``argsort`` of the full score matrix) and fast path (blocks of the vectors,
  ``argpartition`` for the first, then a running top ``k`` per query).
* :func:`filter_after`: the first ``k`` allowed results of an over-fetched search
  (exercise 4), what ``VectorIndex.search(..., filtering="after")`` does.
* :class:`VectorIndex`: an exact index in NumPy. ``add`` vectors (with optional
  integer ids), ``search`` a batch of queries, optionally restricted to a set of
  allowed ids, filtered *before* or *after* the search.
* :class:`FaissIndex`: the same interface on FAISS: ``kind="flat"`` (exact),
  ``"hnsw"`` (a navigable small-world graph) or ``"ivf"`` (an inverted file of
  k-means cells). ``faiss`` is imported only when you create one.

Shapes: ``nq`` queries, ``n`` stored vectors, dimension ``d``; results are
``(nq, k)``. Where fewer than ``k`` results exist (a filter let fewer through),
the missing places hold id ``-1`` and score ``-inf``, as in FAISS; test
``ids >= 0`` before using an id as an index (``docs[-1]`` is the last document!).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._validate import as_float_array, positive_int

__all__ = ["cosine_similarity", "top_k", "exact_search", "filter_after", "VectorIndex", "FaissIndex"]

_FILTERINGS = ("before", "after")


# ------------------------------------------------------------------------ helpers
def _as_matrix(x, name: str, dim: int | None) -> np.ndarray:
    """``(d,)`` or ``(n, d)`` finite numbers -> a C-contiguous float32 ``(n, d)`` array."""
    a = as_float_array(x, name, min_ndim=1, max_ndim=2)
    if a.ndim == 1:
        a = a[None, :]  # one vector -> (1, d)
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); pass at least one vector of at least one number")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(
            f"{name} has shape {a.shape}, so dimension {a.shape[1]}, but the index holds {dim}-dimensional "
            "vectors: embed queries and documents with the same model"
        )
    finite = np.isfinite(a).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{name} has NaN or inf in row(s) {bad[:10].tolist()}{' ...' if bad.size > 10 else ''}; "
            "drop or fix those vectors first"
        )
    return np.ascontiguousarray(a, dtype=np.float32)


def _normalize(x: np.ndarray, name: str) -> np.ndarray:
    """Divide each row by its L2 norm, so dot products become cosines."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(
            f"{name} row(s) {zero[:10].tolist()} are zero vectors: cosine similarity is undefined for them "
            "(drop them, or use metric='ip' in an index)"
        )
    return x / norms


def cosine_similarity(a, b) -> np.ndarray:
    r"""The cosine of every row of ``a`` with every row of ``b``: what a ``metric="cosine"`` index scores.

    .. math:: S_{ij} = \frac{a_i \cdot b_j}{\lVert a_i \rVert\, \lVert b_j \rVert}

    Args:
        a: ``(m, d)``, b: ``(n, d)``, no zero rows.

    Returns:
        ``(m, n)``, every entry in ``[-1, 1]``: 1 for the same direction, -1 for opposite ones.
    """
    a, b = as_float_array(a, "a", min_ndim=2, max_ndim=2), as_float_array(b, "b", min_ndim=2, max_ndim=2)
    if 0 in a.shape or 0 in b.shape or a.shape[1] != b.shape[1]:
        raise ValueError(f"a {a.shape} and b {b.shape} must be non-empty (m, d) and (n, d) arrays with the same d")
    return _normalize(a, "a") @ _normalize(b, "b").T  # (m, n)


def top_k(scores, k: int) -> np.ndarray:
    r"""The columns of the ``k`` largest scores of each row, largest first.

    .. math:: \mathrm{top}_k(s_j) = \text{the } k \text{ columns } i \text{ with the largest } s_{ji}

    ``np.argpartition`` moves the ``k`` largest of each row to its end in ``O(n)``; only
    those ``k`` are then sorted (``O(k log k)``), instead of all ``n``. Equal scores come in
    order of column, except a tie at the ``k``-th place, where any of them may be kept.

    Args:
        scores: ``(nq, n)``, one row of scores per query.
        k: ``1 <= k <= n``.

    Returns:
        ``(nq, k)`` int64 column indices.
    """
    s = as_float_array(scores, "scores", min_ndim=2, max_ndim=2)
    k = positive_int(k, "k")
    if k > s.shape[1]:
        raise ValueError(f"k={k} but each row of scores holds only {s.shape[1]}; ask for k <= {s.shape[1]}")
    return _top_k_columns(s, k)


def _top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """:func:`top_k` without the checks of its arguments."""
    n = scores.shape[1]
    part = np.argpartition(scores, n - k, axis=1)[:, n - k:]  # (m, k): the k largest, unordered
    part.sort(axis=1)  # by column, so that the stable sort below keeps ties in order of column
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")  # best first
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def _top_k_rows(scores: np.ndarray, k: int, pool: ThreadPoolExecutor | None = None, threads: int = 1):
    """``(scores, columns)`` of the ``k`` largest entries of each row of ``scores`` ``(m, n)``,
    best first (:func:`top_k`). With a ``pool``, the rows are split into ``threads`` blocks
    handled in parallel.
    """
    if pool is not None and scores.shape[0] > 1:
        edges = np.linspace(0, scores.shape[0], min(threads, scores.shape[0]) + 1).astype(int)
        parts = list(pool.map(lambda lo, hi: _top_k_rows(scores[lo:hi], k), edges[:-1], edges[1:]))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    columns = _top_k_columns(scores, k)
    return np.take_along_axis(scores, columns, axis=1), columns


def _merge_top_k(best_s: np.ndarray, best_i: np.ndarray, rows: np.ndarray, cand_s: np.ndarray,
                 cand_i: np.ndarray):
    """Merge candidates into each row's running top ``k``.

    ``best_s``, ``best_i``: ``(m, k)``, each row best first. ``rows``, ``cand_s``, ``cand_i``:
    ``(c,)``, the row, score and position of each candidate. Returns the new ``(m, k)`` pair:
    per row, the ``k`` best of its old ``k`` and its candidates, equal scores by lower position.
    """
    m, k = best_s.shape
    all_r = np.concatenate([np.repeat(np.arange(m), k), rows])  # (m*k + c,)
    all_s = np.concatenate([best_s.ravel(), cand_s])
    all_i = np.concatenate([best_i.ravel(), cand_i])
    order = np.lexsort((all_i, -all_s, all_r))  # by row, then best score, then lower position
    counts = np.bincount(all_r, minlength=m)  # (m,): k + the row's candidates
    starts = np.cumsum(counts) - counts  # (m,): where each row begins in `order`
    take = order[(starts[:, None] + np.arange(k)).ravel()]  # the first k of each row
    return all_s[take].reshape(m, k), all_i[take].reshape(m, k)


def _blocked_top_k(q: np.ndarray, x: np.ndarray, k: int, block: int, pool, threads: int):
    """The fast path's inner loop for one chunk of queries ``q`` ``(m, d)`` over ``x`` ``(n, d)``.

    The datastore is scored ``block`` rows at a time. Each query keeps its best ``k`` so far;
    a score in a later block matters only if it beats the query's current ``k``-th best, and
    after the first few blocks almost none does, so each block costs one matrix product,
    one comparison and a small merge. (Chapter 9's tiled attention keeps a running maximum
    and sum over blocks of keys; this keeps a running top ``k``. FAISS's flat index does the
    same with a heap per query.)
    """
    first = min(block, x.shape[0])
    scores = q @ x[:first].T  # (m, first), one BLAS call
    best_s, best_i = _top_k_rows(scores, k, pool, threads)  # (m, k) each
    best_i = best_i.astype(np.int64)
    if first == x.shape[0]:
        return best_s, best_i
    out = np.empty((q.shape[0], block), dtype=np.float32)  # reused for every block
    for start in range(first, x.shape[0], block):
        xb = x[start:start + block]  # (b, d)
        scores = np.matmul(q, xb.T, out=out[:, :xb.shape[0]])  # (m, b)
        # np.flatnonzero of the flat mask is an order of magnitude faster than 2-D np.nonzero
        flat = np.flatnonzero(scores > best_s[:, -1:])  # beats the k-th best (ties keep the lower position)
        if flat.size:
            rows, cols = np.divmod(flat, xb.shape[0])
            best_s, best_i = _merge_top_k(best_s, best_i, rows, scores.ravel()[flat], cols + start)
    return best_s, best_i


def exact_search(queries, vectors, k: int, *, fast: bool = True, chunk: int | None = None,
                 block: int | None = None, threads: int | None = None):
    r"""The exact top-``k`` inner products of each query with all vectors.

    .. math:: S = Q X^\top, \qquad \text{row } j \text{ of the result: the } k
              \text{ largest } S_{ji}, \text{ best first}

    Args:
        queries: ``(nq, d)``.
        vectors: ``(n, d)``, with ``k <= n``.
        k: how many results per query.
        fast: ``False`` is the readable path: the full ``(nq, n)`` score matrix,
            each row sorted completely (``np.argsort``). ``True`` (default) is the
            same result, faster: queries in chunks, and the vectors scored in blocks
            of ``block`` rows, one float32 matrix multiply (BLAS, on its own threads)
            per block. The first block's top ``k`` is found with ``np.argpartition``
            (:func:`top_k`); after that each query keeps a running top ``k``, and a
            later block's score is looked at only when it beats the query's current
            ``k``-th best. A block's score matrix stays small (at most 32 MB).
        chunk: queries per chunk in the fast path (default 1024).
        block: vectors per block in the fast path (default 8192, at least ``k``; measured
            on 2 cores, about the fastest of 2048 to 100,000 for 1 to 1000 queries over
            100,000 vectors of 384 numbers).
        threads: threads for the first block's top-``k`` step, its rows split over
            them (NumPy releases the GIL while it partitions); default: all cores.

    Returns:
        ``(scores, positions)``, both ``(nq, k)``: float32 scores, best first, and
        the int64 row numbers in ``vectors`` they belong to. Ties are broken by the
        lower row number, except (in the fast path) a tie at the ``k``-th place of
        the first block.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)  # (nq, d)
    x = np.ascontiguousarray(vectors, dtype=np.float32)  # (n, d)
    if q.ndim != 2 or x.ndim != 2 or q.shape[1] != x.shape[1]:
        raise ValueError(f"queries {q.shape} and vectors {x.shape} must be (nq, d) and (n, d) with the same d")
    k = positive_int(k, "k")
    if k > x.shape[0]:
        raise ValueError(f"k={k} but there are only {x.shape[0]} vectors; ask for k <= {x.shape[0]}")

    if not fast:  # readable path: score everything, sort everything
        scores = q @ x.T  # (nq, n)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (nq, k): what top_k(scores, k) returns
        return np.take_along_axis(scores, order, axis=1), order.astype(np.int64)

    n = x.shape[0]
    chunk = min(q.shape[0], 1024) if chunk is None else positive_int(chunk, "chunk")
    block = max(k, 8192 if block is None else positive_int(block, "block"))  # (chunk, block): at most 32 MB
    threads = (os.cpu_count() or 1) if threads is None else positive_int(threads, "threads")
    out_scores = np.empty((q.shape[0], k), dtype=np.float32)
    out_pos = np.empty((q.shape[0], k), dtype=np.int64)
    pool = ThreadPoolExecutor(threads) if threads > 1 and q.shape[0] > 1 and min(n, block) >= 4096 else None
    try:
        for start in range(0, q.shape[0], chunk):
            out_scores[start:start + chunk], out_pos[start:start + chunk] = _blocked_top_k(
                q[start:start + chunk], x, k, block, pool, threads)
    finally:
        if pool is not None:
            pool.shutdown()
    return out_scores, out_pos


def filter_after(scores, ids, allowed, k: int):
    r"""Metadata filtering after the search: the first ``k`` allowed results of each row.

    .. math:: \mathrm{result}_j = \text{the first } k \text{ of } (i_{j1}, i_{j2}, \dots, i_{jm})
              \text{ with } i \ge 0 \text{ and } \mathrm{allowed}[i]

    Args:
        scores: ``(nq, m)`` scores of an over-fetched search, each row best first.
        ids: ``(nq, m)`` integer ids of those results; ``-1`` marks a missing result (never
            kept: ``allowed[-1]`` belongs to the last document).
        allowed: ``(n,)`` booleans, ``allowed[i]`` True when document ``i`` passes the filter.
        k: how many results to keep per row.

    Returns:
        ``(scores, ids)``, ``(nq, k)`` each, in the order of the search. Where fewer than ``k``
        results pass, the rest of the row holds score ``-inf`` and id ``-1``.
    """
    s, i, ok = as_float_array(scores, "scores", min_ndim=2, max_ndim=2), np.asarray(ids), np.asarray(allowed)
    if i.shape != s.shape or i.dtype.kind not in "iu":
        raise ValueError(f"ids (shape {i.shape}, dtype {i.dtype}) must be integers of the shape of scores {s.shape}")
    if ok.ndim != 1 or ok.dtype != bool or (i.size and i.max() >= ok.size):
        raise ValueError(f"allowed (shape {ok.shape}, dtype {ok.dtype}) must hold one boolean per document id")
    k = positive_int(k, "k")
    keep = (i >= 0) & ok[np.maximum(i, 0)]  # (nq, m)
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept results first, in rank order
    kept, m = np.take_along_axis(keep, order, axis=1), order.shape[1]  # (nq, min(k, m))
    out_s, out_i = np.full((s.shape[0], k), -np.inf, dtype=s.dtype), np.full((s.shape[0], k), -1, dtype=np.int64)
    out_s[:, :m] = np.where(kept, np.take_along_axis(s, order, axis=1), -np.inf)
    out_i[:, :m] = np.where(kept, np.take_along_axis(i, order, axis=1), -1)
    return out_s, out_i


# --------------------------------------------------------------------------- index
class VectorIndex:
    """An exact vector index in NumPy: every query is scored against every vector.

    Example::

        index = VectorIndex(metric="cosine").add(vectors)   # (n, d); ids 0..n-1
        scores, ids = index.search(queries, k=10)           # (nq, 10) each

    Args:
        dim: the dimension ``d`` (default: taken from the first ``add``).
        metric: ``"cosine"`` (vectors and queries are L2-normalised, so scores
            are cosines in ``[-1, 1]``) or ``"ip"`` (raw inner products).
        fast: use the fast path of :func:`exact_search` (default) or the readable one.
        threads: threads for the fast path's top-``k`` step (default: all cores).

    Filtering (chapter 10): ``search(..., allowed_ids=ids)`` returns only results
    whose id is in ``ids``:

    * ``filtering="before"`` restricts the search to the allowed vectors, then
      searches them: always ``k`` results if ``k`` vectors are allowed, and the
      cost grows with the number of allowed vectors.
    * ``filtering="after"`` searches everything for ``fetch_k`` results (default
      ``10 * k``), then drops those not allowed: the cost of an unfiltered search,
      but fewer than ``k`` results survive when the filter is selective.

    Missing results are id ``-1`` with score ``-inf``.
    """

    def __init__(self, dim: int | None = None, metric: str = "cosine", *, fast: bool = True,
                 threads: int | None = None):
        if metric not in ("cosine", "ip"):
            raise ValueError(f"metric must be 'cosine' or 'ip' (inner product), got {metric!r}")
        self.dim = None if dim is None else positive_int(dim, "dim")
        self.metric = metric
        self.fast = bool(fast)
        self.threads = None if threads is None else positive_int(threads, "threads")
        self.ids = np.empty(0, dtype=np.int64)  # (n,): the id of each stored row
        self._vectors = np.empty((0, self.dim or 0), dtype=np.float32)  # (n, d)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, metric={self.metric!r}, n={len(self)})"

    # ---------------------------------------------------------------- add
    def add(self, vectors, ids=None):
        """Store ``vectors`` ``(n, d)`` (or one ``(d,)``) under ``ids`` (default: the next
        free integers). Ids are non-negative integers, unique across the index.
        Returns the index itself, so ``VectorIndex().add(x)`` works."""
        x = _as_matrix(vectors, "vectors", self.dim)
        if self.metric == "cosine":
            x = _normalize(x, "vectors")
        new_ids = self._check_new_ids(ids, x.shape[0])
        self._add(x)  # storage first: a failure there leaves the ids unchanged
        self.dim = x.shape[1]
        self.ids = np.concatenate([self.ids, new_ids])
        return self

    def _check_new_ids(self, ids, n: int) -> np.ndarray:
        start = int(self.ids.max()) + 1 if len(self) else 0
        if ids is None:
            return np.arange(start, start + n, dtype=np.int64)
        a = np.asarray(ids)
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"ids has shape {a.shape} but there are {n} vectors: pass one id per vector")
        if a.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {a.dtype} (keep strings in a list; index it by id)")
        a = a.astype(np.int64)
        if (a < 0).any():
            raise ValueError("ids must be >= 0 (-1 marks a missing result)")
        if np.unique(a).size != n or np.isin(a, self.ids).any():
            raise ValueError("ids must be unique, and not already in the index")
        return a

    def _add(self, x: np.ndarray) -> None:
        self._vectors = np.concatenate([self._vectors, x]) if len(self) else x

    # ------------------------------------------------------------- search
    def search(self, queries, k: int = 10, *, allowed_ids=None, filtering: str = "before", fetch_k: int | None = None):
        """The ``k`` best stored vectors for each query.

        Args:
            queries: ``(nq, d)``, or one query ``(d,)``.
            k: results per query, ``1 <= k <= len(index)``.
            allowed_ids: optional ids a result may have (a metadata filter); the
                other ids are never returned.
            filtering: ``"before"`` or ``"after"`` the vector search (see the class).
            fetch_k: with ``filtering="after"``, how many results to fetch before
                filtering (default ``min(10 * k, len(index))``).

        Returns:
            ``(scores, ids)``: float32 and int64 arrays of shape ``(nq, k)``, best
            first (shape ``(k,)`` for a single ``(d,)`` query). Missing results
            (a filter let fewer than ``k`` through) have id ``-1`` and score ``-inf``.
        """
        if len(self) == 0:
            raise ValueError("the index is empty: add vectors before searching")
        single = np.ndim(queries) == 1
        q = _as_matrix(queries, "queries", self.dim)
        if self.metric == "cosine":
            q = _normalize(q, "queries")
        k = positive_int(k, "k")
        if k > len(self):
            raise ValueError(f"k={k} but the index holds only {len(self)} vectors; ask for k <= {len(self)}")
        if filtering not in _FILTERINGS:
            raise ValueError(f"filtering must be 'before' or 'after', got {filtering!r}")

        if allowed_ids is None:
            scores, pos = self._search(q, k)
        elif filtering == "before":
            rows = np.flatnonzero(self._allowed_mask(allowed_ids))  # the positions allowed
            if rows.size == 0:
                scores, pos = np.full((q.shape[0], k), -np.inf, np.float32), np.full((q.shape[0], k), -1, np.int64)
            else:
                scores, pos = self._search(q, min(k, rows.size), rows=rows)
                scores, pos = self._pad(scores, pos, k)
        else:  # after: an unfiltered search for more than k, then drop what is not allowed
            m = 10 * k if fetch_k is None else positive_int(fetch_k, "fetch_k")
            if m < k:
                raise ValueError(f"fetch_k={fetch_k} is smaller than k={k}; fetch at least k results to filter")
            m = min(m, len(self))
            scores, pos = self._search(q, m)
            scores, pos = filter_after(scores, pos, self._allowed_mask(allowed_ids), k)

        ids = np.where(pos >= 0, self.ids[np.maximum(pos, 0)], -1)  # positions -> ids
        scores = np.where(pos >= 0, scores, -np.inf).astype(np.float32)
        return (scores[0], ids[0]) if single else (scores, ids)

    def _allowed_mask(self, allowed_ids) -> np.ndarray:
        """``(n,)`` booleans: is the id of each stored row allowed?"""
        a = np.asarray(allowed_ids if isinstance(allowed_ids, (np.ndarray, list, tuple)) else list(allowed_ids))
        if a.size and a.dtype.kind not in "iu":
            raise ValueError(f"allowed_ids must be integer ids, got dtype {a.dtype}")
        return np.isin(self.ids, a.ravel())

    @staticmethod
    def _pad(scores, pos, k):
        short = k - scores.shape[1]
        if short == 0:
            return scores, pos
        nq = scores.shape[0]
        return (np.hstack([scores, np.full((nq, short), -np.inf, np.float32)]),
                np.hstack([pos, np.full((nq, short), -1, np.int64)]))

    def _search(self, q: np.ndarray, k: int, rows: np.ndarray | None = None):
        """Top-``k`` (scores, positions) of normalised queries ``q`` ``(nq, d)`` among all
        stored rows, or only among ``rows`` (sorted positions); ``k <= `` their number."""
        if rows is None:
            return exact_search(q, self._vectors, k, fast=self.fast, threads=self.threads)
        # search the allowed rows only
        scores, local = exact_search(q, self._vectors[rows], k, fast=self.fast, threads=self.threads)
        return scores, rows[local]


class FaissIndex(VectorIndex):
    """:class:`VectorIndex`'s interface on a FAISS index (inner product; cosine by
    normalising, as there).

    Args:
        kind: ``"flat"`` (``IndexFlatIP``: exact, every vector scored),
            ``"hnsw"`` (``IndexHNSWFlat``: a graph walked greedily from an entry
            point) or ``"ivf"`` (``IndexIVFFlat``: vectors grouped into ``nlist``
            k-means cells; a query scans only the ``nprobe`` nearest cells).
        dim, metric: as in :class:`VectorIndex`.
        **params: for ``"hnsw"``: ``M`` (links per node, default 32),
            ``ef_construction`` (default 80), ``ef_search`` (default 64);
            for ``"ivf"``: ``nlist`` (default ``round(4 * sqrt(n))`` at the first
            ``add``, which also trains the k-means cells on those vectors) and
            ``nprobe`` (default 8). ``ef_search`` and ``nprobe`` trade recall for
            speed and may be changed between searches (``index.nprobe = 32``).

    ``filtering="before"`` hands FAISS an ``IDSelectorBatch``: the index skips
    disallowed vectors while it searches. For HNSW and IVF this can return fewer
    than ``k`` results, and recall drops, when the filter is selective.
    """

    _DEFAULTS = {
        "flat": {},
        "hnsw": {"M": 32, "ef_construction": 80, "ef_search": 64},
        "ivf": {"nlist": None, "nprobe": 8},
    }

    def __init__(self, kind: str = "flat", dim: int | None = None, metric: str = "cosine", **params):
        if kind not in self._DEFAULTS:
            raise ValueError(f"kind must be one of {sorted(self._DEFAULTS)}, got {kind!r}")
        unknown = set(params) - set(self._DEFAULTS[kind])
        if unknown:
            allowed = sorted(self._DEFAULTS[kind]) or "none"
            raise ValueError(f"unknown parameter(s) {sorted(unknown)} for kind={kind!r}; allowed: {allowed}")
        for name, value in params.items():
            if value is not None:
                positive_int(value, name)
        try:
            import faiss
        except ImportError:  # pragma: no cover - faiss-cpu is a dev dependency
            raise ImportError("FaissIndex needs FAISS: pip install faiss-cpu") from None
        self._faiss = faiss
        self.kind = kind
        self.params = {**self._DEFAULTS[kind], **params}
        self.index = None  # the faiss index, made at the first add (when d is known)
        super().__init__(dim=dim, metric=metric)

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.params.items())
        return f"FaissIndex(kind={self.kind!r}, dim={self.dim}, metric={self.metric!r}{extra}, n={len(self)})"

    # search-time knobs, validated
    @property
    def ef_search(self) -> int:
        return self._param("ef_search", "hnsw")

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._param("ef_search", "hnsw")
        self.params["ef_search"] = positive_int(value, "ef_search")

    @property
    def nprobe(self) -> int:
        return self._param("nprobe", "ivf")

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._param("nprobe", "ivf")
        self.params["nprobe"] = positive_int(value, "nprobe")

    def _param(self, name: str, kind: str):
        if self.kind != kind:
            raise ValueError(f"{name} is a parameter of kind={kind!r}, not of kind={self.kind!r}")
        return self.params[name]

    def _add(self, x: np.ndarray) -> None:
        faiss = self._faiss
        if self.index is None:
            d = x.shape[1]
            if self.kind == "flat":
                self.index = faiss.IndexFlatIP(d)
            elif self.kind == "hnsw":
                self.index = faiss.IndexHNSWFlat(d, self.params["M"], faiss.METRIC_INNER_PRODUCT)
                self.index.hnsw.efConstruction = self.params["ef_construction"]
            else:
                nlist = self.params["nlist"] or max(1, min(x.shape[0], round(4 * math.sqrt(x.shape[0]))))
                if x.shape[0] < nlist:
                    raise ValueError(
                        f"an IVF index with nlist={nlist} cells is trained on the first add, which needs at "
                        f"least {nlist} vectors (got {x.shape[0]}); add more vectors at once or lower nlist"
                    )
                self.params["nlist"] = nlist
                self._quantizer = faiss.IndexFlatIP(d)  # kept alive: the IVF index points to it
                self.index = faiss.IndexIVFFlat(self._quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
                self.index.cp.min_points_per_centroid = 1  # we checked n >= nlist; no warning on stderr
                self.index.train(x)
        self.index.add(x)

    def _search(self, q: np.ndarray, k: int, rows: np.ndarray | None = None):
        faiss = self._faiss
        sel = None if rows is None else faiss.IDSelectorBatch(rows.astype(np.int64))
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=self.params["ef_search"], sel=sel)
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=self.params["nprobe"], sel=sel)
        else:
            params = faiss.SearchParameters(sel=sel)
        scores, pos = self.index.search(q, k, params=params)  # (nq, k) each; -1 where missing
        return scores, pos.astype(np.int64)
