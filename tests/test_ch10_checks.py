"""Chapter 10's checks: the library's versions pass them, visible and hidden, typical mistakes get the
sentence meant for them, and garbage never crashes a check. (That the references are the real thing, the
cosine what VectorIndex scores, top_k what exact_search ranks, filter_after what VectorIndex.search(...,
filtering="after") keeps, is tested in test_retrieval_vector.py and test_retrieval_eval.py.)"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import CheckFailed
from attnedu.checks import ch10_vector_search as ch10
from attnedu.checks.engine import check as run_check
from attnedu.retrieval import filter_after as filter_ref
from attnedu.retrieval import recall_at_k as recall_ref
from attnedu.retrieval import top_k as topk_ref


def checker(name):
    return partial(ch10.check, name)


# ------------------------------------------------------------------ wrong learner functions
def unit(x, axis=1):
    return x / np.linalg.norm(x, axis=axis, keepdims=True)


def cos_dot(a, b):
    return a @ b.T


def cos_only_a(a, b):
    return unit(a) @ b.T


def cos_only_b(a, b):
    return a @ unit(b).T


def cos_axis0(a, b):
    return unit(a, 0) @ unit(b, 0).T


def cos_distance(a, b):
    return 1 - unit(a) @ unit(b).T


def cos_l1(a, b):
    return (a / np.abs(a).sum(1, keepdims=True)) @ (b / np.abs(b).sum(1, keepdims=True)).T


def cos_whole_norms(a, b):
    return a @ b.T / (np.linalg.norm(a) * np.linalg.norm(b))


def cos_transposed(a, b):
    return unit(b) @ unit(a).T


def topk_smallest(scores, k):
    return np.argsort(scores, axis=1)[:, :k]


def topk_ascending(scores, k):
    return np.argsort(scores, axis=1)[:, -k:]


def topk_sorted_by_column(scores, k):
    return np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)


def topk_kth_is_k(scores, k):
    part = np.argpartition(-scores, k, axis=1)[:, :k]  # fails for k = n
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def topk_axis0(scores, k):
    return np.argsort(-scores, axis=0)[:k]


def topk_all_columns(scores, k):
    return np.argsort(-scores, axis=1)


def topk_no_error(scores, k):
    return np.argsort(-scores, axis=1)[:, :k]  # silently returns n < k columns


def topk_wrong_error(scores, k):
    if k > scores.shape[1]:
        raise IndexError("k too large")
    return np.argsort(-scores, axis=1)[:, :k]


def topk_returns_scores(scores, k):
    return -np.sort(-scores, axis=1)[:, :k]


def topk_returns_a_pair(scores, k):
    return -np.sort(-scores, axis=1)[:, :k], np.argsort(-scores, axis=1)[:, :k]  # like exact_search


def topk_out_of_range(scores, k):
    return np.argsort(-scores, axis=1)[:, :k] + 1


def topk_duplicates(scores, k):
    best = np.argmax(scores, axis=1)
    return np.repeat(best[:, None], k, axis=1)


def topk_off_by_one(scores, k):
    if k > scores.shape[1]:
        raise ValueError("k > n")
    return np.argsort(-scores, axis=1)[:, :k + 1] if k < scores.shape[1] else np.argsort(-scores, axis=1)


def topk_flat(scores, k):
    if k > scores.shape[1]:
        raise ValueError("k > n")
    return np.argsort(-scores[0])[:k]


def recall_positionwise(found, truth):
    return (found == truth).mean()


def recall_over_returned(found, truth):
    return np.mean([len(set(f) & set(t)) / max((f >= 0).sum(), 1) for f, t in zip(found, truth)])


def recall_pooled(found, truth):
    return len(set(found.ravel()) & set(truth.ravel())) / truth.size


def recall_per_query(found, truth):
    return np.array([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])


def recall_sum(found, truth):
    return sum(len(set(f) & set(t)) / len(t) for f, t in zip(found, truth))


def recall_count(found, truth):
    return sum(len(set(f) & set(t)) for f, t in zip(found, truth))


def recall_percent(found, truth):
    return 100 * recall_ref(found, truth)


def filter_pad_zero_id(scores, ids, allowed, k):
    s, i = filter_ref(scores, ids, allowed, k)
    return s, np.where(i < 0, 0, i)


def filter_pad_zero_score(scores, ids, allowed, k):
    s, i = filter_ref(scores, ids, allowed, k)
    return np.where(i < 0, 0.0, s), i


def filter_cut_first(scores, ids, allowed, k):
    s, i = scores[:, :k], ids[:, :k]
    keep = (i >= 0) & allowed[np.maximum(i, 0)]
    return np.where(keep, s, -np.inf), np.where(keep, i, -1)


def filter_gaps(scores, ids, allowed, k):
    keep = (ids >= 0) & allowed[np.maximum(ids, 0)]
    return np.where(keep, scores, -np.inf)[:, :k], np.where(keep, ids, -1)[:, :k]


def filter_inverted(scores, ids, allowed, k):
    return filter_ref(scores, ids, ~allowed, k)


def filter_ignores_filter(scores, ids, allowed, k):
    return scores[:, :k], ids[:, :k]


def filter_ragged(scores, ids, allowed, k):
    keep = (ids >= 0) & allowed[np.maximum(ids, 0)]
    return [s[m][:k] for s, m in zip(scores, keep)], [i[m][:k] for i, m in zip(ids, keep)]


def filter_one_output(scores, ids, allowed, k):
    return filter_ref(scores, ids, allowed, k)[1]


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_10_check_visible_and_hidden(capsys):
    for name, ex in ch10.EXERCISES.items():
        ch10.check(name, ex.reference)
        ch10.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name, n in [("cosine_similarity", 4), ("top_k", 7), ("recall_at_k", 5), ("filter_after", 5)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def cosine_similarity(a, b):
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return a @ b.T

    def top_k(scores, k):
        n = scores.shape[1]
        if k > n:
            raise ValueError(f"k={k} but there are only {n} scores per row")
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1)
        return np.take_along_axis(part, order, axis=1)

    def recall_at_k(found, truth):
        per_query = [len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]
        return float(np.mean(per_query))

    def filter_after(scores, ids, allowed, k):
        nq = scores.shape[0]
        out_scores = np.full((nq, k), -np.inf)
        out_ids = np.full((nq, k), -1)
        keep = (ids >= 0) & allowed[np.maximum(ids, 0)]
        for r in range(nq):
            cols = np.flatnonzero(keep[r])[:k]
            out_scores[r, :len(cols)] = scores[r, cols]
            out_ids[r, :len(cols)] = ids[r, cols]
        return out_scores, out_ids

    for name, fn in [("cosine_similarity", cosine_similarity), ("top_k", top_k), ("recall_at_k", recall_at_k),
                     ("filter_after", filter_after)]:
        ch10.check(name, fn)
        ch10.check(name, fn, hidden=True)
    ch10.check("top_k", lambda s, k: np.argsort(-s, axis=1, kind="stable")[:, :k] if k <= s.shape[1]
               else np.argpartition(s, k - 1))  # argsort is fine too; argpartition raises for k > n
    assert capsys.readouterr().out.count("passes all") == 5


def test_a_torch_or_float_index_array_is_accepted(capsys):
    import torch

    def torch_top_k(scores, k):
        if k > scores.shape[1]:
            raise ValueError("k > n")  # torch.topk raises RuntimeError itself
        return torch.topk(torch.as_tensor(scores), k, dim=1).indices

    ch10.check("top_k", torch_top_k)
    ch10.check("top_k", lambda s, k: topk_ref(s, k).astype(float))
    assert capsys.readouterr().out.count("passes all") == 2


# ------------------------------------------------------------------ cosine similarity
@pytest.mark.parametrize(
    "fn, message",
    [
        (cos_dot, r"a = \[\[3, 4\]\].*Likely cause: it returns the plain dot products"),
        (cos_only_a, r"Likely cause: only a is normalised"),
        (cos_only_b, r"Likely cause: only b is normalised"),
        (cos_axis0, r"Likely cause: it normalises the columns \(axis=0\)"),
        (cos_distance, r"Likely cause: it returns the cosine distance 1 - cos"),
        (cos_l1, r"Likely cause: it divides by the sum of the absolute values"),
        (cos_whole_norms, r"Likely cause: it divides by the norms of the whole matrices"),
        (cos_transposed, r"shape \(3, 1\); expected shape \(1, 3\).*Likely cause: the result is transposed"),
    ],
)
def test_cosine_similarity_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch10.check("cosine_similarity", fn)


# ------------------------------------------------------------------ top k
@pytest.mark.parametrize(
    "fn, message",
    [
        (topk_smallest, r"Likely cause: it returns the k smallest scores"),
        (topk_ascending, r"Likely cause: the right columns, but smallest first"),
        (topk_sorted_by_column, r"Likely cause: the right columns, but not in order of score"),
        (topk_kth_is_k, r"raised ValueError.*k = 5 \(= n\).*Hint: with k = n .*k - 1"),
        (topk_axis0, r"shape \(2, 4\); expected \(3, 2\).*top k of each column \(axis 0\)"),
        (topk_all_columns, r"expected \(3, 2\).*It returns every column: keep only the first k"),
        (topk_no_error, r"k = 5 \(> n\) returned an array of shape \(2, 4\) instead of raising ValueError"),
        (topk_wrong_error, r"raised IndexError on .*k = 5 \(> n\); expected ValueError: there are fewer than k "
                           r"scores to choose from"),
        (topk_returns_scores, r"not whole: return the positions of the scores"),
        (topk_returns_a_pair, r"returned a tuple of 2; return only the \(nq, k\) array of column indices"),
        (topk_duplicates, r"lists the same column twice in row 0"),
        (topk_out_of_range, r"holds the column 4, which is not a column of scores \(0 to 3\)\. Hint: by hand"),
        (topk_off_by_one, r"shape \(3, 3\); expected \(3, 2\).*Off by one"),
        (topk_flat, r"shape \(2,\); expected \(3, 2\).*Keep the query axis"),
    ],
)
def test_top_k_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        ch10.check("top_k", fn)
    assert "\n" not in str(info.value) and str(info.value).count("Likely cause") <= 1


def test_top_k_accepts_any_order_of_equal_scores(capsys):
    def ties_last_column_first(scores, k):
        # among equal scores, the higher column first: still a right answer
        order = np.lexsort((-np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), -scores), axis=1)
        if k > scores.shape[1]:
            raise ValueError("k > n")
        return order[:, :k]

    ch10.check("top_k", ties_last_column_first)
    ch10.check("top_k", ties_last_column_first, hidden=True)
    assert "passes all 7 checks" in capsys.readouterr().out


def test_top_k_cases_with_many_ties_and_k_larger_than_n_work():
    rng = np.random.default_rng(0)
    cases = [ch10._top_k_case(rng.integers(0, 3, size=(5, 30)).astype(float), 7, "many ties"),
             ch10._top_k_case(rng.normal(size=(3, 3)), 4, "k > n")]
    ex = replace(ch10.EXERCISES["top_k"], cases=lambda: cases)
    run_check(ex, topk_ref)
    with pytest.raises(CheckFailed, match="many ties"):
        run_check(ex, topk_smallest)


def test_a_hint_is_added_only_where_no_cause_is_named():
    def wrong_everywhere(scores, k):
        if k > scores.shape[1]:
            raise ValueError("k > n")
        return np.tile(np.arange(k), (scores.shape[0], 1))  # the first k columns

    with pytest.raises(CheckFailed, match=r"scores in row 0 are \[0\.1, 0\.9\]; the 2 largest, largest first, are "
                                          r"\[0\.9, 0\.7\]\. Hint: by hand") as info:
        ch10.check("top_k", wrong_everywhere)
    assert "Likely cause" not in str(info.value)


# ------------------------------------------------------------------ recall@k
@pytest.mark.parametrize(
    "fn, message",
    [
        (recall_positionwise, r"Likely cause: it compares position by position"),
        (recall_over_returned, r"two missing results.*Likely cause: it divides by the number of results returned"),
        (recall_pooled, r"Likely cause: it pools the ids of all queries in one set"),
        (recall_per_query, r"shape \(1,\); expected shape \(\).*Likely cause: it returns one recall per query"),
        (recall_sum, r"Likely cause: it adds the queries' recalls up"),
        (recall_count, r"Likely cause: it returns the number of true neighbours found"),
        (recall_percent, r"Likely cause: it returns a percentage"),
    ],
)
def test_recall_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch10.check("recall_at_k", fn)


# ------------------------------------------------------------------ filter after
@pytest.mark.parametrize(
    "fn, message",
    [
        (filter_pad_zero_id, r"Likely cause: it pads with id 0"),
        (filter_pad_zero_score, r"Likely cause: it pads the scores with 0"),
        (filter_cut_first, r"Likely cause: it keeps the allowed results among the first k only"),
        (filter_gaps, r"Likely cause: it keeps the allowed results among the first k only"),
        (filter_inverted, r"Likely cause: it keeps the results that are not allowed"),
        (filter_ignores_filter, r"Likely cause: it ignores the filter"),
        (filter_ragged, r"only 2 results pass.*(cannot turn|shape)"),
        (filter_one_output, r"returned 1 value\(s\); expected a tuple of 2: `return scores, ids`"),
    ],
)
def test_filter_after_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch10.check("filter_after", fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("name", list(ch10.EXERCISES))
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|expected a tuple of 2"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(checker(name), fn, message)


def test_a_function_that_loops_forever_is_stopped():
    def forever(scores, k):
        while True:
            pass

    with pytest.raises(CheckFailed, match="ran for more than 0.2 s"):
        run_check(replace(ch10.EXERCISES["top_k"], time_limit=0.2), forever)
