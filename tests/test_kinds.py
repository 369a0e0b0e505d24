"""Exercise kinds: code, predict, debug, measure.

Every solution cell says its kind in its metadata (``"attnedu": {"kind": ...}``), the same as
its record's; every chapter asks for more than code; a prediction's visible check confirms only
its form and its hidden check grades it; a debug exercise's student version starts from the
given code with the bug, which fails its check naming the bug; the grades by exercise show
each exercise's kind."""

import json

import pytest

from attnedu import grading
from attnedu.checks import KINDS, Case, CheckFailed, Exercise, ExerciseSet, exercises_of
from conftest import NOTEBOOKS, load_notebook


def solution_cells(nb) -> list[dict]:
    return [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution")]


def records_by_grade_id(chapter: str) -> dict:
    return {ex.grade_id: ex for ex in exercises_of(chapter).values()}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_every_solution_cell_says_its_kind_as_its_record_does(notebook):
    records = records_by_grade_id(notebook.parent.name)
    for cell in solution_cells(load_notebook(notebook)):
        gid = cell["metadata"]["nbgrader"]["grade_id"]
        kind = grading.exercise_meta(cell).get("kind")
        assert kind in KINDS, f"{gid}: its cell metadata needs \"attnedu\": {{\"kind\": one of {KINDS}}}"
        assert kind == records[gid].kind, f"{gid}: the cell says {kind!r}, the record {records[gid].kind!r}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_every_chapter_asks_for_more_than_code(notebook):
    kinds = {grading.exercise_meta(c).get("kind") for c in solution_cells(load_notebook(notebook))}
    assert kinds - {"code"}, f"{notebook.parent.name} has only code exercises"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.parent.name)
def test_debug_exercises_give_code_that_fails_naming_its_bug(notebook):
    chapter = notebook.parent.name
    records = records_by_grade_id(chapter)
    for cell in solution_cells(load_notebook(notebook)):
        meta = grading.exercise_meta(cell)
        if meta.get("kind") != "debug":
            continue
        ex = records[cell["metadata"]["nbgrader"]["grade_id"]]
        given = meta.get("given")
        assert given and "NotImplementedError" not in given, f"{ex.grade_id}: a debug cell needs its given code"
        source = "".join(cell["source"])
        start, end = source.index("### BEGIN SOLUTION"), source.index("### END SOLUTION")
        start = source.rindex("\n", 0, start) + 1
        end = source.index("\n", end) + 1 if "\n" in source[end:] else len(source)
        buggy = source[:start] + given.rstrip("\n") + "\n" + source[end:]
        scope = {}
        exec(compile("import numpy as np\nimport torch\nimport math\n" + buggy, f"<{ex.grade_id} as given>", "exec"),
             scope)
        with pytest.raises(CheckFailed, match="Likely cause"):
            ExerciseSet(ex).check(ex.name, scope[ex.name])


def _prediction():
    return Exercise("predict_growth", [], lambda: "b", lambda: [Case(mistakes=[("a", "a is the slow one.")])],
                    compare="choice", options={"choices": ("a", "b", "c")}, kind="predict",
                    explain="The experiment shows b.")


def test_a_predictions_visible_check_confirms_only_its_form(capsys):
    exercises = ExerciseSet(_prediction())
    exercises.check("predict_growth", lambda: "a")  # wrong, but of the right form
    assert "recorded" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="not what happens"):
        exercises.check("predict_growth", lambda: "a", hidden=True)
    exercises.check("predict_growth", lambda: "b", hidden=True)
    with pytest.raises(CheckFailed, match="one of 'a', 'b', 'c'"):
        exercises.check("predict_growth", lambda: "d")
    with pytest.raises(CheckFailed, match="exactly one of"):
        exercises.check("predict_growth", lambda: "B")

    def stub():
        raise NotImplementedError()
    with pytest.raises(CheckFailed, match="not written yet"):
        exercises.check("predict_growth", stub)


def test_a_numeric_prediction_must_be_a_finite_number():
    ex = Exercise("predict_ratio", [], lambda: 4.0, lambda: [Case(rtol=0.1)], compare="number", kind="predict")
    exercises = ExerciseSet(ex)
    exercises.check("predict_ratio", lambda: 2)  # the form only
    for bad in ("four", float("nan"), True):
        with pytest.raises(CheckFailed, match="number"):
            exercises.check("predict_ratio", lambda bad=bad: bad)
    with pytest.raises(CheckFailed):
        exercises.check("predict_ratio", lambda: 2, hidden=True)
    exercises.check("predict_ratio", lambda: 4.2, hidden=True)


def test_reveal_says_the_answer_and_never_raises(capsys):
    exercises = ExerciseSet(_prediction())

    def stub():
        raise NotImplementedError()
    for answer, said in [(lambda: "b", "(right)"), (lambda: "a", "not what happens"), (stub, "not answered yet"),
                         (lambda: 1 / 0, "ZeroDivisionError"), (lambda: "zzz", "right form"), (None, "not a function")]:
        exercises.reveal("predict_growth", answer)
        out = capsys.readouterr().out
        assert said in out and "'b'" in out and "The experiment shows b." in out


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        Exercise("f", ["x"], abs, lambda: [Case((1,))], kind="essay")


def test_the_release_puts_the_given_code_where_the_stub_was(tmp_path):
    cell = {"cell_type": "code", "execution_count": None, "outputs": [], "source":
            "def f(x):\n    \"\"\"Doubles x.\"\"\"\n    # YOUR CODE HERE\n    raise NotImplementedError()\n",
            "metadata": {"nbgrader": {"solution": True, "grade_id": "f"},
                         "attnedu": {"kind": "debug", "given": "    return x + x + x  # a bug\n"}}}
    other = {**cell, "metadata": {"nbgrader": {"solution": True, "grade_id": "g"}, "attnedu": {"kind": "code"}}}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [cell, other], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert grading.give_debug_code(path) == 1
    first, second = (c["source"] for c in json.loads(path.read_text())["cells"])
    assert first == "def f(x):\n    \"\"\"Doubles x.\"\"\"\n    return x + x + x  # a bug\n"
    assert "raise NotImplementedError()" in second
