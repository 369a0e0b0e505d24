"""Chapter 10's checks: the library's versions pass them, visible and hidden, typical mistakes get the
sentence meant for them, and garbage never crashes a check; the prediction's visible check records any answer
of the right form and its hidden check grades it against a run of the experiment. (That the references are the
real thing, top_k what exact_search ranks, filter_after what VectorIndex.search(..., filtering="after") keeps,
recall@k what setting_for_recall builds on, is tested in test_retrieval_vector.py and test_retrieval_eval.py.)"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage, stub  # what learners typically get wrong
from attnedu.checks import CheckFailed
from attnedu.checks import ch10_vector_search as ch10
from attnedu.checks.engine import check as run_check
from attnedu.retrieval import filter_after as filter_ref
from attnedu.retrieval import recall_at_k as recall_ref
from attnedu.retrieval import setting_for_recall as setting_ref
from attnedu.retrieval import top_k as topk_ref


def checker(name):
    return partial(ch10.check, name)


# ------------------------------------------------------------------ wrong learner functions
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


def setting_positionwise(found, truth, target=0.9):
    good = [s for s, f in found.items() if (f == truth).mean() >= target]
    return min(good) if good else None


def setting_over_returned(found, truth, target=0.9):
    def recall(f):
        return np.mean([len(set(a) & set(b)) / max(sum(x >= 0 for x in a), 1)
                        for a, b in zip(f.tolist(), truth.tolist())])
    good = [s for s, f in found.items() if recall(f) >= target]
    return min(good) if good else None


def setting_strictly_above(found, truth, target=0.9):
    good = [s for s, f in found.items() if recall_ref(f, truth) > target]
    return min(good) if good else None


def setting_first_in_the_dict(found, truth, target=0.9):
    for s, f in found.items():
        if recall_ref(f, truth) >= target:
            return s
    return None


def setting_largest(found, truth, target=0.9):
    good = [s for s, f in found.items() if recall_ref(f, truth) >= target]
    return max(good) if good else None


def setting_every_query(found, truth, target=0.9):
    good = [s for s, f in found.items()
            if all(len(set(a) & set(b)) / len(b) >= target for a, b in zip(f.tolist(), truth.tolist()))]
    return min(good) if good else None


def setting_zero_when_none(found, truth, target=0.9):
    return setting_ref(found, truth, target) or 0


def setting_last_when_none(found, truth, target=0.9):
    answer = setting_ref(found, truth, target)
    return max(found) if answer is None else answer


def setting_returns_the_recall(found, truth, target=0.9):
    answer = setting_ref(found, truth, target)
    return None if answer is None else recall_ref(found[answer], truth)


def setting_all_recalls(found, truth, target=0.9):
    return {s: recall_ref(f, truth) for s, f in found.items()}


def setting_as_float(found, truth, target=0.9):
    answer = setting_ref(found, truth, target)
    return None if answer is None else float(answer)


def setting_forgets_return(found, truth, target=0.9):
    setting_ref(found, truth, target)


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
    for name, n in [("top_k", 7), ("setting_for_recall", 6), ("filter_after", 5)]:
        assert f"`{name}` passes all {n} checks" in out
    assert "Your prediction, 'c', is recorded" in out


def test_the_exercises_are_these_and_of_these_kinds():
    assert {name: ex.kind for name, ex in ch10.EXERCISES.items()} == {
        "top_k": "code", "predict_uniform_cells": "predict", "setting_for_recall": "measure", "filter_after": "code"}
    assert ch10.EXERCISES["setting_for_recall"].reference is setting_ref


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def top_k(scores, k):
        n = scores.shape[1]
        if k > n:
            raise ValueError(f"k={k} but there are only {n} scores per row")
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1)
        return np.take_along_axis(part, order, axis=1)

    def predict_uniform_cells():
        return "c"

    def setting_for_recall(found, truth, target=0.9):
        reached = []
        for setting, ids in found.items():
            per_query = [len(set(f) & set(t)) / len(t) for f, t in zip(ids.tolist(), truth.tolist())]
            if np.mean(per_query) >= target:
                reached.append(setting)
        return min(reached) if reached else None

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

    for name, fn in [("top_k", top_k), ("predict_uniform_cells", predict_uniform_cells),
                     ("setting_for_recall", setting_for_recall), ("filter_after", filter_after)]:
        ch10.check(name, fn)
        ch10.check(name, fn, hidden=True)
    ch10.check("top_k", lambda s, k: np.argsort(-s, axis=1, kind="stable")[:, :k] if k <= s.shape[1]
               else np.argpartition(s, k - 1))  # argsort is fine too; argpartition raises for k > n
    ch10.check("setting_for_recall", lambda found, truth, target=0.9: min(  # with the library's recall@k: fine
        (s for s, f in found.items() if recall_ref(f, truth) >= target), default=None))
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


# ------------------------------------------------------------------ predict: how much of the index uniform data need
def test_the_prediction_is_decided_by_a_small_run_of_the_experiment():
    ex = ch10.EXERCISES["predict_uniform_cells"]
    assert ex.kind == "predict" and ex.compare == "choice" and ex.options["choices"] == ("a", "b", "c")
    assert ex.reference() == "c"  # 5,000 uniform vectors, 64 cells: half of them find less than 90%
    assert ch10.reveal == ch10.EXERCISES.reveal  # the notebook imports it beside check


@pytest.mark.parametrize("answer", ["a", "b", "c"])
def test_the_visible_check_of_the_prediction_records_any_choice(answer, capsys):
    ch10.check("predict_uniform_cells", lambda: answer)
    assert f"Your prediction, {answer!r}, is recorded" in capsys.readouterr().out


@pytest.mark.parametrize("answer, message", [
    ("a", r"returned 'a', which is not what happens\. Likely cause: that is what clustered data allow"),
    ("b", r"returned 'b', which is not what happens\. Likely cause: even half of the cells finds only about 70%"),
])
def test_a_wrong_prediction_fails_the_hidden_check_with_its_sentence(answer, message):
    with pytest.raises(CheckFailed, match=message):
        ch10.check("predict_uniform_cells", lambda: answer, hidden=True)


@pytest.mark.parametrize("fn, message", [
    (lambda: "C", "exactly one of 'a', 'b', 'c'"), (lambda: 3, "answer with one of 'a', 'b', 'c', not"),
    (lambda: ["c"], "answer with one of"),
])
def test_a_prediction_of_the_wrong_form_is_told_so(fn, message):
    assert_one_sentence(checker("predict_uniform_cells"), fn, message)


def test_reveal_shows_the_answer_and_why_and_never_raises(capsys):
    def stub():
        raise NotImplementedError()

    for answer, said in [(lambda: "c", "(right)"), (lambda: "a", "not what happens"), (stub, "not answered yet")]:
        ch10.reveal("predict_uniform_cells", answer)
        out = capsys.readouterr().out
        assert said in out and "'c'" in out and "three quarters of its cells or more" in out


# ------------------------------------------------------------------ measure: the smallest setting that reaches a recall
@pytest.mark.parametrize("name, wrong, sentence",
                         [("setting_for_recall", w, t) for w, t in ch10.EXERCISES["setting_for_recall"].mistakes])
@pytest.mark.parametrize("hidden", [False, True])
def test_every_typical_mistake_of_setting_for_recall_is_named_with_its_own_sentence(name, wrong, sentence, hidden):
    ex = ch10.EXERCISES[name]
    with pytest.raises(CheckFailed) as info:
        ch10.check(name, partial(ex.wrong, **wrong), hidden=hidden)
    assert str(info.value).endswith(f"Likely cause: {sentence}")


@pytest.mark.parametrize(
    "fn, message",
    [
        (setting_positionwise, r"truth = \[\[1, 2, 3, 4\]\].*returned 8; expected 4\. Likely cause: it compares the "
                               r"ids position by position"),
        (setting_over_returned, r"2 queries.*returned 8; expected 16\. Likely cause: it divides by the number of "
                                r"results returned"),
        (setting_strictly_above, r"target = 0\.5 returned 4; expected 2\. Likely cause: it asks for a recall above the "
                                 r"target"),
        (setting_first_in_the_dict, r"listed as.*returned 4; expected 1\. Likely cause: it returns the first setting, "
                                    r"in the order of the dict"),
        (setting_largest, r"target = 0\.9 returned 8; expected 4\. Likely cause: it returns the largest setting"),
        (setting_every_query, r"50 queries.*Likely cause: it asks every query to reach the target"),
        (setting_zero_when_none, r"returned 0; expected None\. Likely cause: when no setting reaches the target it "
                                 r"returns 0"),
        (setting_last_when_none, r"returned 2; expected None\. Likely cause: when no setting reaches the target it "
                                 r"returns the largest setting"),
        (setting_returns_the_recall, r"returned 1\.0; expected 4\. Likely cause: it returns the recall"),
        (setting_all_recalls, r"returned \{1: 0\.25, 2: 0\.5, 4: 1\.0, 8: 1\.0\}; expected 4\."),
        (setting_as_float, r"returned 4\.0; expected 4\."),
        (setting_forgets_return, r"returned None; expected 4\. Hint: by hand"),
    ],
)
def test_setting_for_recall_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch10.check("setting_for_recall", fn)


def test_setting_for_recall_stubs_fail_as_not_written():
    for name in ("predict_uniform_cells", "setting_for_recall"):
        with pytest.raises(CheckFailed, match="is not written yet"):
            ch10.check(name, stub)
        with pytest.raises(CheckFailed, match="is not written yet"):
            ch10.check(name, stub, hidden=True)


def test_setting_for_recall_cases_never_sit_within_rounding_of_the_target():
    # a recall that equals the target only up to rounding would make >= depend on how the mean is summed
    for case in ch10.EXERCISES["setting_for_recall"].all_cases(hidden=True)[4:]:
        found, truth, target = case.args
        assert all(abs(recall_ref(f, truth) - target) > 1e-6 for f in found.values())


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
@pytest.mark.parametrize("name", ["top_k", "filter_after"])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|expected a tuple of 2"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(checker(name), fn, message)


@pytest.mark.parametrize("name, text_message", [("predict_uniform_cells", "answer with one of"),
                                                ("setting_for_recall", "returned '42'; expected 4")])
@pytest.mark.parametrize("hidden", [False, True])
def test_garbage_gets_a_sentence_from_the_prediction_and_the_measure(name, text_message, hidden):
    for fn, message in garbage(text_message):
        if hidden and name == "predict_uniform_cells" and message == "answer with one of":
            message = "answer with one of 'a', 'b', 'c'"
        assert_one_sentence(partial(ch10.check, name, hidden=hidden), fn, message)


def test_a_function_that_loops_forever_is_stopped():
    def forever(scores, k):
        while True:
            pass

    with pytest.raises(CheckFailed, match="ran for more than 0.2 s"):
        run_check(replace(ch10.EXERCISES["top_k"], time_limit=0.2), forever)


def test_setting_for_recall_asks_for_a_dict_of_settings():
    truth = np.array([[1, 2, 3]])
    assert setting_ref({4: truth, 2: truth[:, ::-1]}, truth, 1.0) == 2
    for found in ({}, [truth], truth):
        with pytest.raises(ValueError, match="non-empty dict"):
            setting_ref(found, truth)
