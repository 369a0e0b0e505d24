"""attnedu.retrieval.vector: exact search equals brute force, FAISS equals NumPy,
approximate indexes reach their recall, filters keep only allowed ids, bad input is named;
chapter 10's exercises (cosine_similarity, top_k, filter_after) are what the indexes do."""

from __future__ import annotations

import numpy as np
import pytest

from attnedu.retrieval import FaissIndex, VectorIndex, cosine_similarity, exact_search, filter_after, recall_at_k, top_k

faiss = pytest.importorskip("faiss")


@pytest.fixture(scope="module", autouse=True)
def few_faiss_threads():
    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # tiny searches: threads only add overhead on a busy machine
    yield
    faiss.omp_set_num_threads(n)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def brute_force(queries, vectors, k):
    """The definition: score every pair, sort every row completely."""
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def clustered(n, d, n_clusters, noise, seed):
    rng = np.random.default_rng(seed)
    centers = unit(rng.normal(size=(n_clusters, d)))
    x = centers[rng.integers(0, n_clusters, n)] + noise * rng.normal(size=(n, d)) / np.sqrt(d)
    return unit(x).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)


# ------------------------------------------------------------------ exact search
@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("chunk", [None, 7])
def test_exact_search_equals_brute_force(data, fast, chunk):
    x, q = data
    scores, pos = exact_search(q, x, 10, fast=fast, chunk=chunk)
    ref_scores, ref_pos = brute_force(q, x, 10)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert scores.dtype == np.float32 and pos.dtype == np.int64 and pos.shape == (40, 10)


@pytest.mark.parametrize("threads", [1, 3])
def test_exact_search_splits_the_top_k_over_threads_with_the_same_result(threads):
    rng = np.random.default_rng(5)
    x, q = rng.normal(size=(5000, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    scores, pos = exact_search(q, x, 7, threads=threads, chunk=20)
    np.testing.assert_array_equal(pos, brute_force(q, x, 7)[1])


@pytest.mark.parametrize("block", [1, 7, 64, 499])
@pytest.mark.parametrize("k", [1, 10, 37])
def test_the_blocked_search_equals_brute_force(data, block, k):
    """The fast path scores the vectors `block` rows at a time with a running top k per query."""
    x, q = data
    scores, pos = exact_search(q, x, k, block=block, threads=1)
    ref_scores, ref_pos = brute_force(q, x, k)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_the_blocked_search_when_every_block_beats_the_last():
    """Vectors in increasing order of score: every block's scores all enter the running top k."""
    rng = np.random.default_rng(3)
    q = unit(rng.normal(size=(1, 8))).astype(np.float32)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    x = x[np.argsort(x @ q[0])]  # worst case for a running threshold
    _, pos = exact_search(q, x, 20, block=16)
    np.testing.assert_array_equal(pos, brute_force(q, x, 20)[1])
    assert pos[0, 0] == 299


def test_the_blocked_search_keeps_the_lower_position_of_equal_scores():
    """A later block's exact copy of a result ties with it and must not replace it."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(50, 6)).astype(np.float32)
    x = np.concatenate([base, base, base])  # rows i, 50 + i and 100 + i are equal
    q = rng.normal(size=(5, 6)).astype(np.float32)
    scores, pos = exact_search(q, x, 30, block=50)
    np.testing.assert_array_equal(pos, brute_force(q, x, 30)[1])  # stable: lower positions first
    assert set(np.unique(pos % 50).tolist()) <= set(range(50)) and (np.diff(scores, axis=1) <= 0).all()


def test_exact_search_with_k_equal_to_n_sorts_everything(data):
    x, q = data
    _, pos = exact_search(q[:3], x[:20], 20)
    np.testing.assert_array_equal(pos, brute_force(q[:3], x[:20], 20)[1])


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_vector_index_equals_brute_force(data, metric):
    x, q = data
    index = VectorIndex(metric=metric).add(x)
    scores, ids = index.search(q, k=10)
    xs, qs = (unit(x), unit(q)) if metric == "cosine" else (x, q)
    ref_scores, ref_ids = brute_force(qs, xs, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    if metric == "cosine":
        assert np.all(scores <= 1 + 1e-6) and np.all(scores >= -1 - 1e-6)


def test_readable_and_fast_index_agree(data):
    x, q = data
    a = VectorIndex(fast=False).add(x).search(q, 5)
    b = VectorIndex(fast=True).add(x).search(q, 5)
    np.testing.assert_array_equal(a[1], b[1])


def test_ids_follow_the_vectors_and_add_appends(data):
    x, q = data
    index = VectorIndex().add(x[:200], ids=np.arange(200) * 10 + 7).add(x[200:])
    assert len(index) == 500
    scores, ids = index.search(q, 5)
    _, pos = brute_force(unit(q), unit(x), 5)
    expected = np.where(pos < 200, pos * 10 + 7, 1998 + (pos - 200))  # the next free ids after the max, 1997
    np.testing.assert_array_equal(ids, expected)


def test_a_single_query_gives_one_dimensional_results(data):
    x, q = data
    index = VectorIndex().add(x)
    scores, ids = index.search(q[0], 4)
    assert scores.shape == ids.shape == (4,)
    np.testing.assert_array_equal(ids, index.search(q[:1], 4)[1][0])


def test_the_nearest_neighbour_of_a_stored_vector_is_itself(data):
    x, _ = data
    scores, ids = VectorIndex().add(x).search(x[:50], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


# ------------------------------------------------------------------------- FAISS
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_faiss_flat_equals_numpy_exact(data, metric):
    x, q = data
    s1, i1 = VectorIndex(metric=metric).add(x).search(q, 10)
    s2, i2 = FaissIndex("flat", metric=metric).add(x).search(q, 10)
    np.testing.assert_allclose(s2, s1, rtol=1e-5, atol=1e-5)
    gaps = np.abs(np.diff(s1, axis=1)).min(axis=1) > 1e-4  # rows without near-ties: the same ids
    np.testing.assert_array_equal(i2[gaps], i1[gaps])
    assert gaps.mean() > 0.9


@pytest.fixture(scope="module")
def clusters():
    x = clustered(6000, 32, 60, noise=0.5, seed=1)
    q = clustered(100, 32, 60, noise=0.5, seed=2)
    return x, q, VectorIndex().add(x).search(q, 10)[1]


@pytest.mark.parametrize("kind, params", [("hnsw", {"M": 32, "ef_search": 128}), ("ivf", {"nlist": 60, "nprobe": 12})])
def test_approximate_indexes_reach_recall_at_10_of_0_9_on_clustered_data(clusters, kind, params):
    x, q, truth = clusters
    index = FaissIndex(kind, **params).add(x)
    _, ids = index.search(q, 10)
    assert recall_at_k(ids, truth) >= 0.9


def test_more_probes_or_a_wider_beam_never_lose_recall_here(clusters):
    x, q, truth = clusters
    ivf = FaissIndex("ivf", nlist=60, nprobe=1).add(x)
    low = recall_at_k(ivf.search(q, 10)[1], truth)
    ivf.nprobe = 60  # every cell: exact
    assert recall_at_k(ivf.search(q, 10)[1], truth) == 1.0 >= low
    assert "nlist=60" in repr(ivf)


def test_ivf_chooses_nlist_from_the_first_add():
    x = clustered(400, 8, 10, noise=1.0, seed=3)
    index = FaissIndex("ivf").add(x)
    assert index.params["nlist"] == 80  # round(4 * sqrt(400))


# --------------------------------------------------------- chapter 10's exercises, as the library does them
def test_cosine_similarity_equals_what_a_cosine_vector_index_scores():
    rng = np.random.default_rng(1)
    docs, queries = rng.normal(size=(50, 16)) * 3, rng.normal(size=(4, 16))
    scores, ids = VectorIndex(metric="cosine").add(docs).search(queries, k=50)
    expected = cosine_similarity(queries, docs)  # (4, 50)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, axis=1), rtol=1e-5, atol=1e-6)
    assert np.allclose(np.diag(cosine_similarity(docs, docs)), 1) and np.abs(expected).max() <= 1 + 1e-12
    np.testing.assert_allclose(cosine_similarity([[3.0, 4.0]], [[4.0, 3.0], [0.0, 2.0], [-3.0, -4.0]]),
                               [[0.96, 0.8, -1.0]])


@pytest.mark.parametrize("n, k", [(1, 1), (10, 3), (1000, 10), (257, 257)])
@pytest.mark.parametrize("fast", [False, True])
def test_top_k_is_the_ranking_of_exact_search(n, k, fast):
    rng = np.random.default_rng(n)
    q, x = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(n, 8)).astype(np.float32)
    _, positions = exact_search(q, x, k, fast=fast)
    np.testing.assert_array_equal(top_k(q @ x.T, k), positions)


def test_top_k_breaks_ties_by_column_and_names_a_bad_k():
    s = np.array([[1.0, 3.0, 3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(top_k(s, 3), [[1, 2, 4]])
    np.testing.assert_array_equal(top_k(s, 5), [[1, 2, 4, 0, 3]])
    assert top_k(s, 2).dtype == np.int64
    for bad in (6, 0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k"):
            top_k(s, bad)
    with pytest.raises(ValueError, match="scores"):
        top_k(np.ones(3), 1)


@pytest.mark.parametrize("selectivity", [0.5, 0.05, 0.005])
def test_filter_after_is_what_vector_index_filtering_after_keeps(selectivity):
    rng = np.random.default_rng(2)
    x, q = rng.normal(size=(2000, 16)), rng.normal(size=(5, 16))
    allowed = rng.uniform(size=2000) < selectivity
    index = VectorIndex().add(x)
    k, fetch_k = 10, 100
    fetched_scores, fetched_ids = index.search(q, fetch_k)
    ours = filter_after(fetched_scores, fetched_ids, allowed, k)
    theirs = index.search(q, k, allowed_ids=np.flatnonzero(allowed), filtering="after", fetch_k=fetch_k)
    np.testing.assert_array_equal(ours[1], theirs[1])
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)


def test_filter_after_by_hand_pads_and_never_keeps_a_missing_result():
    s, i = np.array([[0.9, 0.8, 0.7, -np.inf]]), np.array([[4, 1, 2, -1]])
    allowed = np.array([False, True, False, False, False])
    allowed[-1] = True  # allowed[-1] is the last document, not the missing result -1
    scores, ids = filter_after(s, i, allowed, 3)
    assert ids.tolist() == [[4, 1, -1]] and scores[0, :2].tolist() == [0.9, 0.8] and np.isneginf(scores[0, 2])
    assert filter_after(s, i, allowed, 6)[1].tolist() == [[4, 1, -1, -1, -1, -1]]  # k > m: padded
    for bad, message in [((s, i.astype(float), allowed, 2), "ids"), ((s, i, allowed.astype(int), 2), "allowed"),
                         ((s, i, allowed[:3], 2), "allowed"), ((s, i, allowed, 0), "k")]:
        with pytest.raises(ValueError, match=message):
            filter_after(*bad)


# ----------------------------------------------------------------------- filters
@pytest.mark.parametrize("make", [lambda: VectorIndex(), lambda: FaissIndex("flat")], ids=["numpy", "faiss-flat"])
def test_filtering_before_equals_brute_force_over_the_allowed_vectors(data, make):
    x, q = data
    allowed = np.arange(0, 500, 7)  # 72 of 500
    scores, ids = make().add(x).search(q, 10, allowed_ids=set(allowed.tolist()), filtering="before")
    ref_scores, local = brute_force(unit(q), unit(x[allowed]), 10)
    np.testing.assert_array_equal(ids, allowed[local])
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_filtering_after_keeps_the_allowed_among_the_fetched(data):
    x, q = data
    index = VectorIndex().add(x)
    allowed = np.arange(0, 500, 7)
    scores, ids = index.search(q, 10, allowed_ids=allowed, filtering="after", fetch_k=50)
    top_scores, top50 = index.search(q, 50)
    for row, (found, fetched) in enumerate(zip(ids, top50)):
        expected = [i for i in fetched if i in set(allowed)][:10]
        assert found[: len(expected)].tolist() == expected
        assert (found[len(expected):] == -1).all() and np.isneginf(scores[row, len(expected):]).all()
    assert (ids == -1).any(), "a selective filter after the search loses results"


def test_filters_that_allow_fewer_than_k_pad_with_minus_one(data):
    x, q = data
    for index in (VectorIndex().add(x), FaissIndex("flat").add(x)):
        scores, ids = index.search(q[:3], 5, allowed_ids=[4, 9], filtering="before")
        assert all(sorted(row[:2]) == [4, 9] for row in ids.tolist()) and (ids[:, 2:] == -1).all()
        assert np.isneginf(scores[:, 2:]).all() and np.isfinite(scores[:, :2]).all()
        scores, ids = index.search(q[:3], 5, allowed_ids=[], filtering="before")
        assert (ids == -1).all() and np.isneginf(scores).all()


def test_hnsw_with_a_very_selective_filter_may_miss_allowed_vectors_but_marks_the_gaps(data):
    x, q = data
    scores, ids = FaissIndex("hnsw").add(x).search(q, 5, allowed_ids=[4, 9], filtering="before")
    assert set(ids[ids >= 0].tolist()) <= {4, 9} and (ids[:, 2:] == -1).all()
    np.testing.assert_array_equal(ids == -1, np.isneginf(scores))


def test_hnsw_and_ivf_filters_return_only_allowed_ids(clusters):
    x, q, _ = clusters
    allowed = set(range(0, 6000, 3))
    for index in (FaissIndex("hnsw").add(x), FaissIndex("ivf", nlist=60, nprobe=8).add(x)):
        for filtering in ("before", "after"):
            _, ids = index.search(q, 10, allowed_ids=allowed, filtering=filtering)
            assert set(ids[ids >= 0].tolist()) <= allowed


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: VectorIndex().search(np.ones((1, 4)), 1), "index is empty"),
        (lambda: VectorIndex().add(np.ones((5, 4))).search(np.ones((1, 3)), 1), "dimension 3.*4-dimensional"),
        (lambda: VectorIndex().add(np.ones((5, 4))).add(np.ones((2, 3))), "dimension 3.*4-dimensional"),
        (lambda: VectorIndex(dim=8).add(np.ones((5, 4))), "dimension 4.*8-dimensional"),
        (lambda: VectorIndex().add(np.ones((5, 4))).search(np.ones(4), 6), "k=6 but the index holds only 5"),
        (lambda: VectorIndex().add(np.ones((5, 4))).search(np.ones(4), 0), "k must be a positive integer"),
        (lambda: VectorIndex().add(np.ones((5, 4))).search(np.ones(4), 2.5), "k must be a positive integer"),
        (lambda: VectorIndex().add(np.array([[1.0, np.nan], [1, 2]])), r"NaN or inf in row\(s\) \[0\]"),
        (lambda: VectorIndex().add(np.ones((3, 2))).search([[np.inf, 1]], 1), "queries has NaN or inf"),
        (lambda: VectorIndex().add(np.zeros((2, 3))), "zero vectors"),
        (lambda: cosine_similarity(np.ones((2, 3)), np.zeros((1, 3))), r"b row\(s\) \[0\] are zero vectors"),
        (lambda: cosine_similarity(np.ones((2, 3)), np.ones((1, 4))), "the same d"),
        (lambda: cosine_similarity(np.ones(3), np.ones((1, 3))), "a must have at least 2"),
        (lambda: VectorIndex().add(np.ones((0, 3))), "vectors is empty"),
        (lambda: VectorIndex().add(np.ones((2, 3, 4))), "at most 2 dimension"),
        (lambda: VectorIndex().add([["a", "b"]]), "array of numbers"),
        (lambda: VectorIndex().add(np.ones((3, 2)), ids=[1, 1, 2]), "unique"),
        (lambda: VectorIndex().add(np.ones((3, 2))).add(np.ones((1, 2)), ids=[2]), "unique"),
        (lambda: VectorIndex().add(np.ones((3, 2)), ids=[1, 2]), "one id per vector"),
        (lambda: VectorIndex().add(np.ones((2, 2)), ids=["a", "b"]), "ids must be integers"),
        (lambda: VectorIndex().add(np.ones((2, 2)), ids=[-1, 0]), ">= 0"),
        (lambda: VectorIndex(metric="l2"), "metric must be"),
        (lambda: VectorIndex(dim=0), "dim must be a positive integer"),
        (lambda: VectorIndex().add(np.ones((3, 2))).search(np.ones(2), 1, allowed_ids=[1], filtering="during"),
         "filtering must be"),
        (lambda: VectorIndex().add(np.ones((3, 2))).search(np.ones(2), 2, allowed_ids=[1], filtering="after",
                                                           fetch_k=1), "fetch_k=1 is smaller than k=2"),
        (lambda: VectorIndex().add(np.ones((3, 2))).search(np.ones(2), 1, allowed_ids=["a"]), "integer ids"),
        (lambda: FaissIndex("lsh"), "kind must be one of"),
        (lambda: FaissIndex("flat", nprobe=3), r"unknown parameter\(s\) \['nprobe'\] for kind='flat'"),
        (lambda: FaissIndex("hnsw", M=0), "M must be a positive integer"),
        (lambda: FaissIndex("ivf", nlist=50).add(np.random.rand(10, 4)), "needs at least 50 vectors"),
        (lambda: FaissIndex("flat").ef_search, "ef_search is a parameter of kind='hnsw'"),
        (lambda: setattr(FaissIndex("ivf"), "nprobe", 0), "nprobe must be a positive integer"),
        (lambda: FaissIndex("flat").add(np.ones((5, 4))).search(np.ones((1, 3)), 1), "dimension 3.*4-dimensional"),
        (lambda: exact_search(np.ones((1, 2)), np.ones((3, 2)), 4), "k=4 but there are only 3 vectors"),
        (lambda: exact_search(np.ones((1, 2)), np.ones((3, 2)), 1, threads=0), "threads must be a positive integer"),
        (lambda: VectorIndex(threads=-2), "threads must be a positive integer"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_failed_add_leaves_the_index_unchanged():
    index = VectorIndex().add(np.ones((3, 2)))
    with pytest.raises(ValueError):
        index.add(np.ones((2, 2)), ids=[0, 9])
    assert len(index) == 3 and index.ids.tolist() == [0, 1, 2]
