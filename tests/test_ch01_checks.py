"""Chapter 1's checks beside tests/test_checks.py (which tests the machinery on chapter 1's code
exercises): the prediction about a far query, and the by-hand examples of the statements."""

from functools import partial

import numpy as np
import pytest

from attnedu import functional as F
from attnedu.checks import CheckFailed
from attnedu.checks import ch01_weighted_sums as ch01


def failure(check, fn) -> str:
    """The message of the CheckFailed that `check(fn)` raises (one line, as every message is)."""
    with pytest.raises(CheckFailed) as info:
        check(fn)
    text = str(info.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ predict: a query far from every key
def test_the_far_query_prediction_is_decided_by_the_experiment():
    assert ch01.EXERCISES["predict_far_query"].reference() == "d"


def test_the_visible_check_of_the_prediction_records_any_answer_of_the_right_form(capsys):
    for answer in "abcd":
        ch01.check("predict_far_query", lambda answer=answer: answer)
        assert f"Your prediction, '{answer}', is recorded" in capsys.readouterr().out
    assert "answer with exactly one of 'a', 'b', 'c', 'd'" in failure(partial(ch01.check, "predict_far_query"),
                                                                     lambda: "D")

    def stub():
        raise NotImplementedError()
    assert "is not written yet" in failure(partial(ch01.check, "predict_far_query"), stub)
    assert "should be a function" in failure(partial(ch01.check, "predict_far_query"), "d")


@pytest.mark.parametrize("answer, message", [
    ("a", "Likely cause: the softmax subtracts the largest score first, so the nearest key's kernel value becomes "
          "exp(0) = 1"),
    ("b", "Likely cause: softmax weights always sum to 1, however poor every match is: attention cannot attend to "
          "nothing."),
    ("c", "Likely cause: the softmax sees only the differences between the scores"),
])
def test_a_wrong_prediction_of_the_far_query_is_explained_by_the_hidden_check(answer, message):
    text = failure(partial(ch01.check, "predict_far_query", hidden=True), lambda: answer)
    assert "which is not what happens" in text and message in text, text


def test_the_right_prediction_passes_the_hidden_check(capsys):
    ch01.check("predict_far_query", lambda: "d", hidden=True)
    assert capsys.readouterr().out == ""  # hidden checks are quiet


def test_the_reveal_prints_the_answer_and_why_and_never_raises(capsys):
    def stub():
        raise NotImplementedError()

    for answer, said in [(lambda: "d", "(right)"), (lambda: "b", "(not what happens)"), (stub, "not answered yet")]:
        ch01.reveal("predict_far_query", answer)
        out = capsys.readouterr().out
        assert said in out and "'d'" in out and "cannot attend to nothing" in out


def test_the_far_query_takes_the_nearest_keys_value_with_weight_one():
    from attnedu.data import toy_regression

    x, y = toy_regression(n=40, noise=0.25, seed=0)
    pred, weights = F.attention_pool(np.array([10.0]), x, y, 0.05)
    assert weights[0, np.argmax(x)] == pytest.approx(1.0) and pred[0] == pytest.approx(y[np.argmax(x)])


# ------------------------------------------------------------------ the statements' examples, by hand
def test_the_statements_by_hand_examples_are_what_the_library_computes():
    np.testing.assert_allclose(F.softmax(np.array([1001.0, 1002.0, 1003.0])), [0.090, 0.245, 0.665], atol=5e-4)
    np.testing.assert_allclose(F.softmax(np.array([-999.0, -998.0, -997.0])), [0.090, 0.245, 0.665], atol=5e-4)
    out, weights = F.attention_pool(np.array([0.0]), np.array([0.0, 1.0]), np.array([1.0, 3.0]), 1.0)
    np.testing.assert_allclose(weights, [[0.622, 0.378]], atol=5e-4)
    np.testing.assert_allclose(out, [1.755], atol=5e-4)
    assert F.leave_one_out_mse(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.0]), 1.0) == pytest.approx(0.779,
                                                                                                          abs=5e-4)
    out, weights = F.soft_lookup(np.array([2.0, 0.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                 np.array([[10.0], [20.0], [30.0]]))
    np.testing.assert_allclose(weights, [0.468, 0.063, 0.468], atol=5e-4)
    np.testing.assert_allclose(out, [20.0], atol=1e-9)
