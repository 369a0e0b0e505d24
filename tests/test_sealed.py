"""Sealed checks: results recorded in the learner's process, judged in the grader's."""

import json
import math

import numpy as np
import pytest
import torch

from attnedu.checks import exercises_of
from attnedu.checks import sealed


@pytest.mark.parametrize("value", [
    None, True, 3, -2**70, 2.5, b"\x00key", float("nan"), float("-inf"), "text", [1, "a"], (1, (2.0, None)),
    {"a": 1, 3: [2]}, {(1, 2): "pair"}, np.arange(6, dtype=np.float32).reshape(2, 3), np.array([True, False]),
    np.int64(7), np.float64(0.5), torch.tensor([[1.0, 2.0]], dtype=torch.float64),
    torch.tensor(0.25, dtype=torch.float64), np.array(3.0)])  # a 0-d tensor (a loss) keeps its shape ()
def test_results_survive_the_trip_through_json(value):
    back = sealed.decode(json.loads(json.dumps(sealed.encode(value))))
    if isinstance(value, torch.Tensor):
        assert isinstance(back, torch.Tensor) and back.dtype == value.dtype and torch.equal(back, value)
        assert back.shape == value.shape
    elif isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and np.array_equal(back, value) and back.shape == value.shape
    elif isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value and type(back) is type(value) or (isinstance(value, np.generic) and back == value)


def test_objects_it_cannot_carry_become_a_marker_equal_to_nothing():
    back = sealed.decode(json.loads(json.dumps(sealed.encode(object()))))
    assert isinstance(back, sealed.Unsupported) and back != 0


@pytest.mark.parametrize("garbage", [{"__array__": {"dtype": "|O", "shape": [1], "data": ""}}, {"__pickle__": "x"},
                                     {"a": 1, "b": 2}, {"__array__": {"dtype": "<f8", "shape": [3], "data": "AAAA"}}])
def test_decoding_refuses_what_it_did_not_write(garbage):
    with pytest.raises((ValueError, TypeError)):
        sealed.decode(garbage)


def softmax_right(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_wrong(x, axis=-1):
    return np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)  # overflows


def stub(x, axis=-1):
    raise NotImplementedError()


@pytest.mark.parametrize("fn, passes", [(softmax_right, True), (softmax_wrong, False), (stub, False)])
@pytest.mark.parametrize("hidden", [False, True])
def test_a_check_under_grading_records_and_the_grader_judges(tmp_path, monkeypatch, capsys, fn, passes, hidden):
    exercises = exercises_of("01-weighted-sums")
    monkeypatch.setenv(sealed.ENV, str(tmp_path))
    exercises.check("softmax", fn, hidden=hidden)  # never raises: it only records
    assert "recorded for grading" in capsys.readouterr().out
    monkeypatch.delenv(sealed.ENV)
    ok, why = sealed.judge_recorded(exercises["softmax"], hidden=hidden, where=tmp_path)
    assert ok is passes, why


def test_forged_or_missing_results_score_nothing(tmp_path, monkeypatch):
    ex = exercises_of("01-weighted-sums")["softmax"]
    assert sealed.judge_recorded(ex, hidden=True, where=tmp_path) == (False, "no results were recorded for "
                                                                      "`softmax` (its check cell did not run to the end)")
    path = tmp_path / "softmax-hidden.json"
    for forged in ["not json", json.dumps({"exercise": "softmax", "hidden": True, "outcomes": []}),
                   json.dumps({"exercise": "softmax", "hidden": True, "outcomes": [{"kind": "passed"}]}),
                   json.dumps({"exercise": "attention_pool", "hidden": True, "outcomes": []})]:
        path.write_text(forged)
        ok, why = sealed.judge_recorded(ex, hidden=True, where=tmp_path)
        assert not ok and why


def test_results_are_judged_on_the_graders_cases_not_the_kernels(tmp_path, monkeypatch):
    """A kernel that swaps the hidden cases for easy ones records results for those: judged against the
    grader's own cases, they fail."""
    ex = exercises_of("01-weighted-sums")["softmax"]
    monkeypatch.setattr(type(ex), "all_cases", lambda self, hidden=False: [])  # the kernel's tampering
    monkeypatch.setenv(sealed.ENV, str(tmp_path))
    exercises_of("01-weighted-sums").check("softmax", softmax_right, hidden=True)
    monkeypatch.undo()
    ok, why = sealed.judge_recorded(ex, hidden=True, where=tmp_path)
    assert not ok and "do not match its cases" in why


def test_a_predictions_visible_check_records_the_form_only(tmp_path, monkeypatch):
    exercises = exercises_of("02-scaled-dot-product")
    monkeypatch.setenv(sealed.ENV, str(tmp_path))
    exercises.check("predict_spread", lambda: "a")  # wrong but well formed
    exercises.check("predict_spread", lambda: "a", hidden=True)
    monkeypatch.delenv(sealed.ENV)
    assert sealed.judge_recorded(exercises["predict_spread"], hidden=False, where=tmp_path)[0]
    assert not sealed.judge_recorded(exercises["predict_spread"], hidden=True, where=tmp_path)[0]


def _notebooks():
    from conftest import NOTEBOOKS

    return NOTEBOOKS


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.parent.name)
def test_every_exercises_library_version_passes_when_recorded_and_judged_apart(path, tmp_path, monkeypatch, capsys):
    """Every kind of result a check compares survives the JSON between the two processes."""
    from test_exercises import resolve

    exercises = exercises_of(path.parent.name)
    for ex in exercises.values():
        version = resolve(ex.library[0])
        for hidden in (False, True):
            monkeypatch.setenv(sealed.ENV, str(tmp_path))
            exercises.check(ex.name, version, hidden=hidden)
            monkeypatch.delenv(sealed.ENV)
            ok, why = sealed.judge_recorded(ex, hidden=hidden, where=tmp_path)
            assert ok, f"{ex.name} (hidden={hidden}): {why}"
