"""Milvus Lite, a dedicated vector database, behind a small typed interface (chapter 14).

Chapter 14 compares three places for the same vectors: pgvector inside PostgreSQL, FAISS in
the process's memory, and a database made only for vectors. This module is the third, through
pymilvus's ``MilvusClient``::

    with MilvusLite(folder / "course.db", dim=384, fields={"chapter": "int64"}) as db:
        db.insert(vectors, [{"chapter": 3}, ...])             # (n, 384) float32, one dict a row
        scores, ids = db.search(queries, k=10, filter="chapter == 3")   # (nq, 10), (nq, 10)

**What Milvus Lite is.** milvus-lite 3 is Milvus rewritten in pure Python, for one machine:
a log-structured store (a write-ahead log and an in-memory table, flushed to Parquet files,
merged in the background) with Milvus's schema, filter expressions and index types. Its
vector indexes: ``FLAT`` (also ``BRUTE_FORCE``: exact, NumPy), ``HNSW``, ``HNSW_SQ``, ``IVF_FLAT``
and ``IVF_SQ8`` (FAISS underneath; ``AUTOINDEX`` is HNSW), with the metrics ``IP``, ``COSINE``
and ``L2``. A filter is evaluated first, and the index then searches only the rows that pass
(FAISS's ``IDSelector``): an exact index returns k rows whenever k rows pass, and so does HNSW
almost always, though it may miss some of the true nearest (its walk stops early).

**How it runs.** ``MilvusClient("<folder>/course.db")`` starts no other process: pymilvus
asks milvus-lite for a gRPC server on a free port of 127.0.0.1, served by threads of this
Python process, over a data *folder* named ``course.db`` (holding a ``LOCK`` file, locked with
``flock`` while it is open: a second process cannot open it), and talks to it as it would to
a Milvus cluster. The same client code reaches Milvus on a server, or Zilliz Cloud, with an
``http://`` URI instead of a path (this class takes only a path). :meth:`MilvusLite.close`
closes the client, stops that server and its threads and unlocks the folder, which can then be
removed.

**When the index is built.** New rows wait in the in-memory table, searched exactly; an index
covers only rows flushed to a file. So :meth:`~MilvusLite.insert` writes the rows, flushes them
and builds the index on them before it returns (``release``, insert, ``flush``, ``load``: Milvus
builds indexes on ``load``), and its time is the build time. Where that time goes, measured for
20,000 rows of 384 floats and HNSW (M=16, efConstruction=64) on one thread: about 0.7 s on this
side (pymilvus packs NumPy rows into protobuf; making the row dicts takes 0.01 s), and the rest
in milvus-lite, in Python: the insert about 2.9 s (of which 1.7 s check every number of every
row, ``validate_record``), the flush to Parquet about 1.4 s, and FAISS's HNSW build about 2 s,
as long as FAISS alone takes. Only the last is the index; a Milvus server does the rest in Go
and C++.

Scores are "higher is better", as elsewhere in the course: the inner product (``IP``), the
cosine (``COSINE``), or minus the squared Euclidean distance (``L2``, which Milvus reports squared).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import numpy as np

__all__ = ["MilvusLite", "INDEX_TYPES", "METRICS", "FIELD_TYPES"]

#: The vector indexes milvus-lite builds (``FLAT`` and ``BRUTE_FORCE`` are exact; the others FAISS).
INDEX_TYPES = ("FLAT", "BRUTE_FORCE", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8", "AUTOINDEX")
METRICS = ("IP", "COSINE", "L2")
#: The metadata types a field may have: ``"varchar"`` holds up to 1,024 characters, ``"varchar(64)"`` 64.
FIELD_TYPES = ("int64", "int32", "int16", "int8", "float", "double", "bool", "varchar")
VARCHAR_DEFAULT_LENGTH = 1024
ID_FIELD, VECTOR_FIELD = "id", "vector"

# Clients open on each data folder in this process: milvus-lite runs one server per folder, shared
# by every client of that folder, and the last one to close stops it.
_open: dict[str, int] = {}
_open_lock = threading.Lock()


def _pymilvus():
    """pymilvus (and milvus-lite behind it), or an ImportError that says what to do."""
    # gRPC prints its INFO messages on stderr unless told otherwise (a cell could show, now and
    # then, that a stopped server said goodbye): only errors, unless set, before gRPC is imported
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        import milvus_lite  # noqa: F401  (pymilvus opens a .db path through it)
        import pymilvus
    except ImportError as err:
        raise ImportError(f"Milvus Lite needs the packages pymilvus and milvus-lite ({err}); they install on "
                          "Linux and macOS only. Run `python -m attnedu doctor` for the command that "
                          "installs them.") from None
    return pymilvus


def _field_type(name: str, kind: str):
    """``"int64"`` -> (DataType.INT64, {}); ``"varchar(64)"`` -> (DataType.VARCHAR, {"max_length": 64})."""
    from pymilvus import DataType

    match = re.fullmatch(r"\s*(\w+)\s*(?:\(\s*(\d+)\s*\))?\s*", str(kind).lower())
    base = match.group(1) if match else ""
    if base not in FIELD_TYPES or (match.group(2) and base != "varchar"):
        raise ValueError(f"field {name!r} has type {kind!r}; use one of {', '.join(FIELD_TYPES)} "
                         "(or varchar(N) for at most N characters)")
    if base == "varchar":
        return DataType.VARCHAR, {"max_length": int(match.group(2) or VARCHAR_DEFAULT_LENGTH)}
    return getattr(DataType, base.upper()), {}


class MilvusLite:
    """One Milvus Lite collection: ``id`` (int64 primary key), ``vector`` (float32, ``dim``), and
    the scalar ``fields``, with a vector index. A context manager; :meth:`close` when done.

    Args:
        path: the database, a path ending in ``.db`` in an existing folder (milvus-lite makes a
            folder of that name). Opening an existing one reuses its collection (same ``dim``).
        dim: the vectors' length.
        index: one of :data:`INDEX_TYPES` (``"FLAT"``: exact search).
        metric: ``"IP"`` (inner product: the cosine for unit vectors), ``"COSINE"`` or ``"L2"``.
        fields: metadata fields and their types, e.g. ``{"chapter": "int64", "page": "varchar"}``
            (:data:`FIELD_TYPES`); every inserted row gives a value for each.
        params: the index's build parameters, e.g. ``{"M": 16, "efConstruction": 64}`` (HNSW)
            or ``{"nlist": 128}`` (IVF).
        collection: the collection's name.
    """

    def __init__(self, path: str | Path, dim: int, *, index: str = "HNSW", metric: str = "IP",
                 fields: dict[str, str] | None = None, params: dict | None = None,
                 collection: str = "chunks"):
        pymilvus = _pymilvus()
        path = Path(os.path.abspath(path))  # the key milvus-lite keeps its server under
        if path.suffix != ".db":
            raise ValueError(f"path must end in .db (Milvus Lite's name for a local database), got {str(path)!r}")
        if not path.parent.is_dir():
            raise ValueError(f"the folder {str(path.parent)!r} of path does not exist: make it first")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        index, metric = str(index).upper(), str(metric).upper()
        if index not in INDEX_TYPES:
            raise ValueError(f"index must be one of {', '.join(INDEX_TYPES)}, got {index!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if params is not None and not isinstance(params, dict):
            raise ValueError(f"params must be a dict of build parameters, e.g. {{'M': 16}}, got {params!r}")
        fields = dict(fields or {})
        clash = {ID_FIELD, VECTOR_FIELD} & set(fields)
        if clash:
            raise ValueError(f"fields may not be named {sorted(clash)}: the collection's id and vector use them")
        types = {name: _field_type(name, kind) for name, kind in fields.items()}  # checked before starting

        self.path, self.dim, self.index, self.metric = path, int(dim), index, metric
        self.fields, self.params, self.collection = fields, dict(params or {}), collection
        self._client = None
        self._client = self._connect(pymilvus)
        try:
            self._open_collection(pymilvus, types)
        except BaseException:
            self.close()
            raise

    def _open_collection(self, pymilvus, types: dict) -> None:
        """Reuse the collection if the database has it (with the same dim), else create it."""
        c, collection = self._client, self.collection
        if c.has_collection(collection):
            have = next(f for f in c.describe_collection(collection)["fields"] if f["name"] == VECTOR_FIELD)
            if int(have["params"]["dim"]) != self.dim:
                raise ValueError(f"{self.path} holds vectors of dim {have['params']['dim']} in {collection!r}, "
                                 f"not {self.dim}")
            c.load_collection(collection)  # an indexed collection opens released: load reads its indexes
        else:
            schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field(ID_FIELD, pymilvus.DataType.INT64, is_primary=True)
            schema.add_field(VECTOR_FIELD, pymilvus.DataType.FLOAT_VECTOR, dim=self.dim)
            for name, (dtype, extra) in types.items():
                schema.add_field(name, dtype, **extra)
            index_params = c.prepare_index_params()
            # the build parameters as one JSON "params" entry: pymilvus 3 would send each as an entry
            # of its own ("M", "efConstruction"), which milvus-lite 3.2 ignores (it builds with its
            # defaults then, efConstruction 200); this older form is what it reads
            index_params.add_index(VECTOR_FIELD, index_type=self.index, metric_type=self.metric,
                                   params={"params": self.params} if self.params else None)
            c.create_collection(collection, schema=schema)
            # milvus-lite records the index at once (it builds it on load): pymilvus need not poll
            # for it (sync=False saves its half-second sleep)
            c.create_index(collection, index_params, sync=False)
        self._next_id = int(c.get_collection_stats(collection)["row_count"])

    def _connect(self, pymilvus):
        """A client of this folder's server, started by milvus-lite on first use."""
        try:
            # a connection of its own, closed by close() (a shared one would stay open after it)
            client = pymilvus.MilvusClient(str(self.path), dedicated=True)
        except Exception as err:
            raise RuntimeError(f"could not open Milvus Lite at {self.path} ({err}); if another process has it "
                               "open (its LOCK file is locked), close that one first") from None
        with _open_lock:
            _open[str(self.path)] = _open.get(str(self.path), 0) + 1
        return client

    def __repr__(self) -> str:
        state = "closed" if self._client is None else f"{len(self)} rows"
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"MilvusLite({self.path.name}, {self.collection!r}: {self.index}({params}), {self.metric}, {state})"

    def __len__(self) -> int:
        return int(self._open_client().get_collection_stats(self.collection)["row_count"])

    def index_info(self) -> dict:
        """The index as the database describes it: ``{"index_type": "HNSW", "metric_type": "IP",
        "params": {"M": 16, "efConstruction": 64}, "indexed_rows": ..., ...}``."""
        return self._open_client().describe_index(self.collection, VECTOR_FIELD)

    def _open_client(self):
        if self._client is None:
            raise RuntimeError("this MilvusLite is closed; open a new one")
        return self._client

    def _matrix(self, x, name: str) -> np.ndarray:
        """x as an (n, dim) float32 array, or a ValueError that names what was wrong."""
        x = np.asarray(x) if not isinstance(x, np.ndarray) else x
        if x.ndim == 1 and name == "queries":
            x = x[None, :]  # one query
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{name} must be (n, {self.dim}) float32, got {x.shape} {x.dtype}"
                             + (" (use .astype(np.float32))" if x.dtype != np.float32 else ""))
        if not np.isfinite(x).all():
            raise ValueError(f"{name} must be finite, but some values are NaN or infinite")
        return x

    def insert(self, vectors: np.ndarray, metadata: list[dict] | None = None, ids: np.ndarray | None = None,
               batch: int = 5_000) -> int:
        """Store rows and index them; returns how many rows were stored.

        Args:
            vectors: (n, dim) float32.
            metadata: n dicts, each with a value for every field of ``fields`` (and no other key);
                None when the collection has no fields.
            ids: (n,) distinct integers; by default the next n integers (0, 1, ... on a new collection).
                An id already stored replaces its row (Milvus's upsert semantics are not used: pass new ids).
            batch: rows per request (a request of 5,000 rows of 384 floats is about 8 MB).
        """
        c = self._open_client()
        vectors = self._matrix(vectors, "vectors")
        n = len(vectors)
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = np.asarray(ids)
            if ids.shape != (n,) or ids.dtype.kind not in "iu":
                raise ValueError(f"ids must be ({n},) integers, one per vector, got {ids.shape} {ids.dtype}")
            if len(np.unique(ids)) != n:
                raise ValueError("ids must be distinct")
        if metadata is None:
            if self.fields:
                raise ValueError(f"metadata is needed: one dict per vector with the fields {sorted(self.fields)}")
            metadata = [{}] * n
        if len(metadata) != n:
            raise ValueError(f"metadata must have one dict per vector: {len(metadata)} dicts for {n} vectors")
        for i, m in enumerate(metadata):
            if not isinstance(m, dict) or m.keys() != self.fields.keys():
                got = sorted(m) if isinstance(m, dict) else type(m).__name__
                raise ValueError(f"metadata[{i}] must have the keys {sorted(self.fields)}, got {got}")
        if n == 0:
            return 0
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch!r}")
        # the rows go in while the collection is released (no index is built on the way), then
        # flush writes them to a file and load builds the index on it before this returns
        c.release_collection(self.collection)
        try:
            for start in range(0, n, batch):
                stop = min(start + batch, n)
                # NumPy rows as they are: pymilvus packs each with one .tolist()
                rows = [{ID_FIELD: int(i), VECTOR_FIELD: v, **m}
                        for i, v, m in zip(ids[start:stop].tolist(), vectors[start:stop], metadata[start:stop])]
                c.insert(self.collection, rows)
            c.flush(self.collection)
        finally:
            c.load_collection(self.collection)
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        return n

    def search(self, queries: np.ndarray, k: int, *, filter: str | None = None,
               search_params: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k best rows for each query: (scores (nq, k) float32, ids (nq, k) int64), best first.

        Args:
            queries: (nq, dim) float32, or one (dim,) query.
            k: how many rows a query returns; where fewer rows pass the filter, the rest of the
                row is padded with id -1 and score -inf.
            filter: a Milvus boolean expression over the fields, e.g. ``"chapter == 3"``,
                ``"chapter in [1, 2] and page like 'notebooks/%'"``; the index searches only the
                rows that pass.
            search_params: the index's search parameters, e.g. ``{"ef": 64}`` (HNSW; the default
                is 64, raised to k when k is larger) or ``{"nprobe": 8}`` (IVF).
        """
        c = self._open_client()
        queries = self._matrix(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        params = dict(search_params or {})
        if self.index in ("HNSW", "HNSW_SQ", "AUTOINDEX"):
            params["ef"] = max(int(params.get("ef", 64)), int(k))  # HNSW finds at most ef rows
        nq = len(queries)
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        ids = np.full((nq, k), -1, dtype=np.int64)
        if nq == 0:
            return scores, ids
        hits = c.search(self.collection, data=queries, limit=int(k), filter=filter or "",
                        output_fields=[], search_params={"params": params}, anns_field=VECTOR_FIELD)
        sign = -1.0 if self.metric == "L2" else 1.0  # L2 comes back as a squared distance: smaller is nearer
        for q, found in enumerate(hits):
            for j, hit in enumerate(found):
                ids[q, j] = hit["id"]
                scores[q, j] = sign * hit["distance"]
        return scores, ids

    def close(self) -> None:
        """Close the client; the last client of this folder also stops its server (and its threads)
        and unlocks the folder. Closing twice does nothing."""
        if self._client is None:
            return
        client, self._client = self._client, None
        try:
            client.close()
        finally:
            key = str(self.path)
            with _open_lock:
                _open[key] -= 1
                last = _open[key] == 0
                if last:
                    del _open[key]
            if last:
                _stop_server(key)

    def __enter__(self) -> "MilvusLite":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten close(): the server stops with the last client anyway
        try:
            self.close()
        except Exception:
            pass


def _stop_server(path: str) -> None:
    """Stop milvus-lite's server of this data folder and everything it runs: the gRPC server
    (at once: its last client has closed, so no call is in flight; milvus-lite's own stop would
    leave a thread waiting out a 2-second grace period), the worker threads that milvus-lite
    leaves idle, and the database (which flushes what is still in memory, waits for its
    background thread and unlocks the folder)."""
    from milvus_lite.server_manager import server_manager_instance as manager

    with manager._lock:
        entry = manager._servers.get(path)
    pool = None
    if entry is not None:
        server = entry[0]
        pool = getattr(getattr(server, "_state", None), "thread_pool", None)  # grpc's server state holds it
        server.stop(None).wait(10)
    manager.release_server(path)  # stopping again does nothing; then it closes the database
    if pool is not None:
        pool.shutdown(wait=True)
