"""attnedu.store.milvus: Milvus Lite (a vector database in this process) against exact search.

One database per test, in pytest's tmp_path. The whole file runs in a few seconds: small
sets (2,000 vectors of 32 dimensions), as the chapter's section is the place for timings.
"""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest


pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from attnedu.store.milvus import MilvusLite  # noqa: E402

N, DIM, K = 2_000, 32, 10
FIELDS = {"chapter": "int64", "page": "varchar(16)"}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """(vectors (N, DIM), queries (20, DIM), metadata: N dicts) and the same metadata as arrays."""
    rng = np.random.default_rng(0)
    vectors, queries = unit(rng.standard_normal((N, DIM))), unit(rng.standard_normal((20, DIM)))
    chapter = rng.integers(1, 8, N)
    page = np.array(["a", "b", "c"])[rng.integers(0, 3, N)]
    metadata = [{"chapter": int(c), "page": str(p)} for c, p in zip(chapter, page)]
    return vectors, queries, metadata, {"chapter": chapter, "page": page, "id": np.arange(N)}


# each filter as Milvus writes it, and as NumPy computes it over the metadata
FILTERS = {
    "chapter == 3": lambda m: m["chapter"] == 3,
    "chapter in [1, 2] and page == 'b'": lambda m: np.isin(m["chapter"], [1, 2]) & (m["page"] == "b"),
    "chapter == 3 and id < 40": lambda m: (m["chapter"] == 3) & (m["id"] < 40),  # fewer rows than K
}


def exact(queries, vectors, passes, k=K):
    """Brute force over the rows that pass: (scores, ids), (nq, k), padded with -inf / -1."""
    rows = np.flatnonzero(passes)
    scores = queries @ vectors[rows].T  # (nq, n_passing)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top_s, top_i = np.take_along_axis(scores, order, axis=1), rows[order]
    short = k - top_i.shape[1]
    return (np.pad(top_s, ((0, 0), (0, short)), constant_values=-np.inf),
            np.pad(top_i, ((0, 0), (0, short)), constant_values=-1))


@pytest.fixture(scope="module")
def flat(data, tmp_path_factory):
    vectors, _, metadata, _ = data
    with MilvusLite(tmp_path_factory.mktemp("flat") / "course.db", DIM, index="FLAT", fields=FIELDS) as db:
        assert db.insert(vectors, metadata) == N
        yield db


@pytest.mark.parametrize("expression", FILTERS)
def test_a_filtered_search_on_a_flat_index_returns_exactly_the_nearest_rows_that_pass(flat, data, expression):
    vectors, queries, _, columns = data
    passes = FILTERS[expression](columns)
    want_scores, want_ids = exact(queries, vectors, passes)
    scores, ids = flat.search(queries, K, filter=expression)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == scores.shape == (len(queries), K)
    np.testing.assert_array_equal(ids, want_ids)  # the same rows, in the same order
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)  # -inf where fewer than K pass
    if passes.sum() < K:
        assert (ids[:, passes.sum():] == -1).all() and np.isneginf(scores[:, passes.sum():]).all()


def test_an_unfiltered_flat_search_is_exact_search(flat, data):
    vectors, queries, _, _ = data
    np.testing.assert_array_equal(flat.search(queries, K)[1], exact(queries, vectors, np.ones(N, bool))[1])
    one_scores, one_ids = flat.search(queries[0], K)  # one (DIM,) query is a batch of one
    assert one_ids.shape == (1, K) and (one_ids[0] == flat.search(queries, K)[1][0]).all()


def test_hnsw_finds_most_true_neighbours_and_k_rows_whenever_k_rows_pass_the_filter(data, tmp_path):
    vectors, queries, metadata, columns = data
    rng = np.random.default_rng(1)
    topics = unit(rng.standard_normal((20, DIM)))  # a clustered set, as real embeddings are
    clustered = unit(topics[rng.integers(0, 20, N)] * np.sqrt(DIM) + rng.standard_normal((N, DIM)))
    near = unit(topics[rng.integers(0, 20, 50)] * np.sqrt(DIM) + rng.standard_normal((50, DIM)))
    with MilvusLite(tmp_path / "hnsw.db", DIM, index="HNSW", params={"M": 16, "efConstruction": 64},
                    fields=FIELDS) as db:
        db.insert(clustered, metadata)
        _, ids = db.search(near, K, search_params={"ef": 64})
        truth = exact(near, clustered, np.ones(N, bool))[1]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, truth)])
        assert recall >= 0.9, recall
        passes = FILTERS["chapter == 3"](columns)  # about 1 row in 7
        _, ids = db.search(near, K, filter="chapter == 3")
        assert passes[ids].all() and (ids >= 0).all()  # the filter runs inside the search: K rows, all passing


def test_the_index_is_built_with_the_parameters_given(tmp_path):
    """pymilvus 3 sends build parameters one by one, which milvus-lite 3.2 would drop (it then
    builds HNSW with efConstruction=200); the class sends them in the form milvus-lite reads."""
    params = {"M": 8, "efConstruction": 40}
    with MilvusLite(tmp_path / "params.db", 8, index="HNSW", metric="COSINE", params=params) as db:
        info = db.index_info()
        assert (info["index_type"], info["metric_type"], info["params"]) == ("HNSW", "COSINE", params)
        scores, ids = db.search(np.ones((2, 8), np.float32), 3)  # nothing stored yet: only padding
        assert (ids == -1).all() and np.isneginf(scores).all()


def test_rows_stay_in_the_folder_after_close_and_a_reopened_database_finds_them(data, tmp_path):
    vectors, queries, metadata, _ = data
    with MilvusLite(tmp_path / "kept.db", DIM, index="FLAT", fields=FIELDS) as db:
        db.insert(vectors[:500], metadata[:500])
        before = db.search(queries, K)
    with MilvusLite(tmp_path / "kept.db", DIM, index="FLAT", fields=FIELDS) as db:
        assert len(db) == 500
        after = db.search(queries, K)
        db.insert(vectors[500:600], metadata[500:600])  # new ids follow the stored ones
        assert len(db) == 600 and db.search(vectors[550:551], 1)[1][0, 0] == 550
    np.testing.assert_array_equal(before[1], after[1])
    with pytest.raises(ValueError, match="dim 32 .* not 16"):
        MilvusLite(tmp_path / "kept.db", 16, fields=FIELDS)


def child_processes() -> set[str]:
    """The ids of this process's children (from /proc on Linux; elsewhere none are seen)."""
    return {pid for f in Path("/proc/self/task").glob("*/children") for pid in f.read_text().split()}


def test_close_stops_the_server_and_its_threads_and_unlocks_the_folder(tmp_path):
    threads, children = set(threading.enumerate()), child_processes()
    db = MilvusLite(tmp_path / "gone.db", 4, index="FLAT")
    db.insert(np.eye(4, dtype=np.float32))
    assert set(threading.enumerate()) - threads  # a gRPC server on threads of this process
    assert child_processes() == children  # and no other process
    db.close()
    db.close()  # twice does nothing
    assert not set(threading.enumerate()) - threads  # no thread of it left
    with pytest.raises(RuntimeError, match="closed"):
        db.search(np.eye(4, dtype=np.float32), 1)
    shutil.rmtree(tmp_path / "gone.db")
    assert not (tmp_path / "gone.db").exists()


def test_two_clients_of_one_database_share_its_server_until_the_last_closes(tmp_path):
    first = MilvusLite(tmp_path / "shared.db", 4, index="FLAT")
    second = MilvusLite(tmp_path / "shared.db", 4, index="FLAT")
    first.insert(np.eye(4, dtype=np.float32))
    first.close()
    assert second.search(np.eye(4, dtype=np.float32)[:1], 1)[1][0, 0] == 0  # still served
    second.close()


@pytest.mark.parametrize("call, message", [
    (lambda db: db.insert(np.zeros((3, 16), np.float32), [{"chapter": 1, "page": "a"}] * 3),
     r"vectors must be \(n, 32\) float32, got \(3, 16\) float32"),
    (lambda db: db.insert(np.zeros((3, 32)), [{"chapter": 1, "page": "a"}] * 3),
     r"vectors must be \(n, 32\) float32, got \(3, 32\) float64 \(use .astype"),
    (lambda db: db.insert(np.zeros(32, np.float32), [{"chapter": 1, "page": "a"}]), r"got \(32,\) float32"),
    (lambda db: db.insert(np.zeros((2, 32), np.float32), [{"chapter": 1}] * 2),
     r"metadata\[0\] must have the keys \['chapter', 'page'\], got \['chapter'\]"),
    (lambda db: db.insert(np.zeros((2, 32), np.float32)), "metadata is needed"),
    (lambda db: db.insert(np.zeros((2, 32), np.float32), [{"chapter": 1, "page": "a"}] * 2, ids=np.array([5, 5])),
     "ids must be distinct"),
    (lambda db: db.search(np.zeros((2, 8), np.float32), 3), r"queries must be \(n, 32\) float32, got \(2, 8\)"),
    (lambda db: db.search(np.zeros((2, 32), np.float32), 0), "k must be a positive int"),
])
def test_wrong_shapes_and_dtypes_say_what_was_expected(tmp_path, call, message):
    with MilvusLite(tmp_path / "checks.db", DIM, fields=FIELDS) as db:
        with pytest.raises(ValueError, match=message):
            call(db)
        assert len(db) == 0  # nothing half-written


@pytest.mark.parametrize("kwargs, message", [
    ({"path": "course.sqlite"}, "path must end in .db"),
    ({"path": "no-such-folder/course.db"}, "does not exist"),
    ({"index": "ANNOY"}, "index must be one of FLAT, BRUTE_FORCE, HNSW"),
    ({"metric": "hamming"}, "metric must be one of IP, COSINE, L2"),
    ({"fields": {"chapter": "text"}}, "field 'chapter' has type 'text'"),
    ({"fields": {"vector": "int64"}}, "may not be named"),
])
def test_a_wrong_setting_is_refused_before_anything_starts(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.chdir(tmp_path)
    threads = set(threading.enumerate())
    with pytest.raises(ValueError, match=message):
        MilvusLite(**{"path": tmp_path / "x.db", "dim": DIM, **kwargs})
    assert not set(threading.enumerate()) - threads


def test_without_pymilvus_the_error_names_the_doctor(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # import pymilvus now raises ImportError
    with pytest.raises(ImportError, match="python -m attnedu doctor"):
        MilvusLite(tmp_path / "x.db", DIM)
