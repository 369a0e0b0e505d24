"""The grading pipeline, end to end, on a copy of the course: release the student version of
every chapter, autograde four kinds of submission, and read the exported grades.

(a) the source notebook itself             -> full marks
(b) the untouched student version          -> zero
(c) the first exercise's solution raises   -> zero for that exercise, the others graded
(d) the second solution cell loops forever -> nbgrader's time limit ends it; zero for that
                                              exercise, the others graded
(c) and (d) share one submission per chapter ("broken"), which shows that neither failure
spills into the other exercises. The endless loop costs a whole time limit, so only the first
chapter loops; in the others the second exercise raises too (a different error).

Every submission executes a whole chapter, so the suite grades (a) for the first chapter only:
that the source notebook's hidden tests pass in every chapter is what nbval already checks
when it runs the source notebooks; here (a) checks nbgrader's side of full marks.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict

import pytest

from attnedu import grading
from conftest import NOTEBOOKS, REPO, load_notebook

CELL_TIMEOUT = 60  # seconds, as in the course's own nbgrader_config.py
# Chapters that train a model stop training after this many seconds when grading, as
# `make grade` does: grades must not depend on how long the model trained.
TRAIN_SECONDS = "3"
CHAPTERS = [p.parent.name for p in NOTEBOOKS]
LOOPING_CHAPTER = FULL_MARKS_CHAPTER = CHAPTERS[0]


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def exercises(nb) -> list[dict]:
    """[{solution, cells: [graded grade ids], points}] in notebook order."""
    out = []
    for cell in nb["cells"]:
        meta = nbgrader(cell)
        if meta.get("solution"):
            out.append({"solution": meta["grade_id"], "cells": [], "points": 0.0})
        elif meta.get("grade") and out:
            out[-1]["cells"].append(meta["grade_id"])
            out[-1]["points"] += meta["points"]
    return out


def submission(released: dict, source: dict, override: dict[str, str]) -> dict:
    """A student's notebook: the released version, with each solution cell filled in with the
    source's code (markers removed) unless `override` gives other code for it."""
    nb = json.loads(json.dumps(released))
    solutions = {nbgrader(c)["grade_id"]: c for c in source["cells"] if nbgrader(c).get("solution")}
    for cell in nb["cells"]:
        gid = nbgrader(cell).get("grade_id")
        if nbgrader(cell).get("solution"):
            if gid in override:
                cell["source"] = override[gid]
            else:
                lines = "".join(solutions[gid]["source"]).splitlines(keepends=True)
                cell["source"] = "".join(ln for ln in lines if "### BEGIN SOLUTION" not in ln
                                         and "### END SOLUTION" not in ln)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


@pytest.fixture(scope="module")
def config(course):
    return grading.load_config(course, **{"Execute.timeout": CELL_TIMEOUT})


@pytest.fixture(scope="module")
def released(course, config):
    paths = grading.release(course, config)
    return {p.parent.name: p for p in paths}


@pytest.fixture(scope="module")
def graded(course, config, released):
    """Write the four submissions of every chapter, then run what `make grade` runs."""
    for chapter in CHAPTERS:
        source = load_notebook(course / "notebooks" / chapter / f"{chapter}.ipynb")
        student = load_notebook(released[chapter])
        first, second = (e["solution"] for e in exercises(source)[:2])
        stubs = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
                 for c in student["cells"] if nbgrader(c).get("solution")}
        assert "raise NotImplementedError()" in stubs[first]
        notebooks = {
            "solutions": source if chapter == FULL_MARKS_CHAPTER else None,
            "untouched": student,
            "broken": submission(student, source, {
                first: stubs[first].replace("raise NotImplementedError()", 'raise RuntimeError("broken on purpose")'),
                second: ("while True:\n    pass\n\n" if chapter == LOOPING_CHAPTER else
                         "raise ValueError('also broken on purpose')\n\n") + stubs[second],
            }),
        }
        for who, nb in notebooks.items():
            if nb is None:
                continue
            target = course / "_grading" / "submitted" / who / chapter / f"{chapter}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(nb), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNEDU_MAX_TRAIN_SECONDS", TRAIN_SECONDS)
        return grading.grade(course, config)


def test_every_chapter_is_released_without_solutions_or_hidden_tests(released):
    assert sorted(released) == CHAPTERS
    for chapter, path in released.items():
        text = path.read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        nb = json.loads(text)
        stubs = [c for c in nb["cells"] if nbgrader(c).get("solution")]
        assert stubs and all("raise NotImplementedError()" in "".join(c["source"]) for c in stubs)
        source = load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
        assert len(nb["cells"]) == len(source["cells"])


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_grades_csv_has_full_marks_zero_and_partial_credit(graded):
    assert sorted(graded["graded"]) == sorted([(w, c) for w in ("broken", "untouched") for c in CHAPTERS]
                                              + [("solutions", FULL_MARKS_CHAPTER)])
    rows = read_csv(graded["grades"])
    assert {"assignment", "student_id", "score", "max_score"} <= set(rows[0])
    by = {(r["student_id"], r["assignment"]): r for r in rows}
    for chapter in CHAPTERS:
        source = load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
        total = sum(e["points"] for e in exercises(source))
        first_two = sum(e["points"] for e in exercises(source)[:2])
        assert float(by["broken", chapter]["max_score"]) == total
        if chapter == FULL_MARKS_CHAPTER:
            assert float(by["solutions", chapter]["score"]) == total, "the source notebook must get full marks"
        assert float(by["untouched", chapter]["score"]) == 0, "an untouched student version must get zero"
        assert float(by["broken", chapter]["score"]) == total - first_two


def test_grades_by_exercise_zero_only_the_broken_exercises(graded):
    rows = read_csv(graded["by_exercise"])
    score = defaultdict(dict)
    for r in rows:
        score[r["student_id"], r["assignment"]][r["grade_id"]] = (float(r["score"]), float(r["max_score"]))
    for chapter in CHAPTERS:
        source = load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
        ex = exercises(source)
        in_order = [r["grade_id"] for r in rows if r["student_id"] == "broken" and r["assignment"] == chapter]
        assert in_order == [g for e in ex for g in e["cells"]], "rows follow the notebook's order"
        exercise_of = {r["grade_id"]: r["exercise"] for r in rows if r["assignment"] == chapter}
        assert all(exercise_of[g] == e["solution"] for e in ex for g in e["cells"])
        cells = score["broken", chapter]
        for grade_id in ex[0]["cells"] + ex[1]["cells"]:
            assert cells[grade_id][0] == 0, f"{grade_id} should get zero"
        for later in ex[2:]:
            for grade_id in later["cells"]:
                assert cells[grade_id][0] == cells[grade_id][1] > 0, f"{grade_id} should be graded"


def test_feedback_explains_the_failure_in_one_sentence(graded, course):
    for chapter in CHAPTERS:
        html = course / "_grading" / "feedback" / "broken" / chapter / f"{chapter}.html"
        text = html.read_text(encoding="utf-8")
        assert "raised RuntimeError: broken on purpose" in text
        untouched = (course / "_grading" / "feedback" / "untouched" / chapter / f"{chapter}.html").read_text()
        assert "is not written yet" in untouched


def test_the_endless_loop_was_interrupted_by_the_time_limit(graded, course):
    for chapter in [LOOPING_CHAPTER]:
        nb = load_notebook(course / "_grading" / "autograded" / "broken" / chapter / f"{chapter}.ipynb")
        second = exercises(nb)[1]["solution"]
        cell = next(c for c in nb["cells"] if nbgrader(c).get("grade_id") == second)
        errors = [o for o in cell["outputs"] if o["output_type"] == "error"]
        assert errors, "the looping cell should end in an error"
        assert errors[0]["ename"] in {"KeyboardInterrupt", "CellTimeoutError"}


def test_a_learners_workspace_is_created_once_and_never_overwritten(course, tmp_path):
    dest = tmp_path / "my-work"
    added = grading.workspace(course, dest)
    assert sorted(p.parent.name for p in added) == CHAPTERS
    mine = added[0]
    assert "raise NotImplementedError()" in mine.read_text()
    mine.write_text('{"my": "work"}')
    assert grading.workspace(course, dest) == []
    assert mine.read_text() == '{"my": "work"}'


def test_grading_with_no_submissions_says_where_to_put_them(tmp_path, capsys):
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    assert grading.main(["grade", "--root", str(tmp_path)]) == 1
    assert "_grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb" in capsys.readouterr().err
