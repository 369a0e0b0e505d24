"""One made-up class, graded once, for tests/test_grading.py and tests/test_grading_robust.py.

Grading a chapter-1 submission takes about 11 s on the course's machine (its own process,
nbgrader, a kernel, the chapter's cells, the feedback page), so the two files share one
`grading.grade` run (two submissions at a time) of every submission they check:

    the full matrix, on the two cheapest chapters (FULL_MATRIX), for test_grading.py:
    solutions    the source notebook                              full marks
    untouched    the student version                              zero, "not written yet"
    broken       the first exercise raises; the second loops       zero for those two exercises,
                 forever in chapter 1 (the cell's time limit ends   the others graded
                 it) and raises a different error in chapter 2

    one of each kind of trouble, on chapter 1, for test_grading_robust.py (see its docstring)

Every student gets a row for every chapter: a `missing` one for the chapters they did not hand in.
The fixtures that use these (in conftest.py) are session-scoped, and both files are one xdist
group, so that one worker grades the class once.
"""

from __future__ import annotations

import json
import shutil

import pytest

from attnedu import grading
from conftest import NOTEBOOKS, REPO, load_notebook

CHAPTERS = [p.parent.name for p in NOTEBOOKS]
FULL_MATRIX = CHAPTERS[:2]  # the two cheapest chapters to grade (measured)
LOOPING_CHAPTER = FULL_MATRIX[0]
CHAPTER, OTHER = FULL_MATRIX  # the hostile submissions are chapter 1's
# A cell that runs longer is interrupted; the course's nbgrader_config.py says 60 s, which the
# endless loop would wait out in full. The graded cells of chapters 1 and 2 take about 2 s at most.
CELL_TIMEOUT = 10
# Chapters that train a model stop training after this many seconds when grading, as
# `make grade` does: grades must not depend on how long the model trained.
TRAIN_SECONDS = "1"
MEMORY_MB = 1500  # an honest submission of chapter 1 or 2 peaks at about 250-700 MB (worker and kernel)
FLOOD_BYTES = 20_000_000
MATRIX_STUDENTS = ("solutions", "untouched", "broken")
# The class's copy of chapter 1 tags one demonstration cell `skip-when-grading` (the real chapter
# tags none): the grader must show its note there. The "reference" student tags another cell in
# the submission: that one must run, as the source does not tag it.
SKIPPED_BY_SOURCE = "from attnedu.explore import explorer"  # the cell's first line
TAGGED_BY_STUDENT = "scores = np.array([2.0, 1.0, 0.5, 0.0, -1.0])"


# The names both test files use for the session fixtures of conftest.py (they import these two).
@pytest.fixture
def course(grading_course):
    return grading_course


@pytest.fixture
def graded(graded_class):
    return graded_class


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


def with_code(source: dict, code: str, grade_id: str = "attention-pool") -> dict:
    """The source notebook with ``code`` put at the top of one solution cell."""
    nb = json.loads(json.dumps(source))
    cell = next(c for c in nb["cells"] if nbgrader(c).get("grade_id") == grade_id)
    cell["source"] = code + "\n" + "".join(cell["source"])
    return nb


def put(root, student, chapter, content) -> None:
    path = root / "_grading" / "submitted" / student / chapter / f"{chapter}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")


def make_course(root, *chapters: str):
    """A course folder at ``root``: nbgrader's configuration and the chapters named, or every
    chapter when none is (nbgrader works on every chapter it finds: about 1 s each)."""
    if not chapters:
        shutil.copytree(REPO / "notebooks", root / "notebooks")
    else:
        (root / "notebooks").mkdir(parents=True)
        for chapter in chapters:
            shutil.copytree(REPO / "notebooks" / chapter, root / "notebooks" / chapter)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    return root


def code_cell(nb: dict, first_line: str) -> dict:
    """The one code cell of ``nb`` whose code starts with ``first_line``."""
    [cell] = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(first_line)]
    return cell


def tag_the_demonstration(course) -> None:
    """Tag chapter 1's SKIPPED_BY_SOURCE cell `skip-when-grading` in the course's source."""
    path = course / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb"
    nb = load_notebook(path)
    code_cell(nb, SKIPPED_BY_SOURCE)["metadata"].setdefault("tags", []).append(grading.SKIP_TAG)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def matrix_submissions(course, released: dict) -> None:
    """The three submissions of each FULL_MATRIX chapter."""
    for chapter in FULL_MATRIX:
        source = load_notebook(course / "notebooks" / chapter / f"{chapter}.ipynb")
        student = load_notebook(released[chapter])
        first, second = (e["solution"] for e in exercises(source)[:2])
        stubs = {c["metadata"]["nbgrader"]["grade_id"]: "".join(c["source"])
                 for c in student["cells"] if nbgrader(c).get("solution")}
        assert "raise NotImplementedError()" in stubs[first]
        put(course, "solutions", chapter, source)
        put(course, "untouched", chapter, student)
        put(course, "broken", chapter, submission(student, source, {
            first: stubs[first].replace("raise NotImplementedError()", 'raise RuntimeError("broken on purpose")'),
            second: ("while True:\n    pass\n\n" if chapter == LOOPING_CHAPTER else
                     "raise ValueError('also broken on purpose')\n\n") + stubs[second],
        }))


def hostile_submissions(course, released: dict) -> list[str]:
    """One chapter-1 submission of each kind of trouble; returns their students."""
    source = load_notebook(course / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb")
    student_version = load_notebook(released[CHAPTER])
    deleted = json.loads(json.dumps(source))
    tests = [c for c in deleted["cells"] if nbgrader(c).get("grade") and not nbgrader(c).get("solution")]
    deleted["cells"] = [c for c in deleted["cells"] if c not in tests]
    assert len(deleted["cells"]) == len(source["cells"]) - 10
    reference = json.loads(json.dumps(source))
    for cell in reference["cells"]:
        if nbgrader(cell).get("grade_id") == "softmax":
            cell["source"] = "from attnedu.functional import softmax\n"
    code_cell(reference, TAGGED_BY_STUDENT)["metadata"].setdefault("tags", []).append(grading.SKIP_TAG)
    cases = {
        "notjson": '{"cells": [ this is not JSON',
        "otherchapter": load_notebook(course / "notebooks" / OTHER / f"{OTHER}.ipynb"),
        "osexit": with_code(source, "import os\nos._exit(0)"),
        "sysexit": with_code(source, "import sys\nsys.exit()"),
        "segfault": with_code(source, "import ctypes\nctypes.string_at(0)"),
        "hog": with_code(source, "import time\nhog = b'x' * 2_000_000_000\ntime.sleep(5)"),
        "flood": with_code(source, f"print('x' * {FLOOD_BYTES})"),
        "deleted": deleted,
        # untouched stubs, and a solution cell that makes every check pass in its own kernel
        "tamper": with_code(student_version, "import attnedu.checks.engine as E\n"
                            "E.ExerciseSet.check = lambda *a, **k: None", "softmax"),
        # untouched stubs, and a cell that makes the recorder record the library's results instead
        "forge": with_code(student_version, "import attnedu.checks.sealed as S\nimport attnedu.functional as F\n"
                           "_record = S.record\n"
                           "S.record = lambda ex, fn, **k: _record(ex, getattr(F, ex.name, fn), **k)", "softmax"),
        # the solutions, except that softmax is the library's
        "reference": reference,
    }
    for student, content in cases.items():
        put(course, student, CHAPTER, content)
    return list(cases)


def grade_the_class(course, config, released: dict) -> dict:
    matrix_submissions(course, released)
    hostile_submissions(course, released)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNEDU_MAX_TRAIN_SECONDS", TRAIN_SECONDS)
        mp.setenv("ATTNEDU_GRADE_MEMORY_MB", str(MEMORY_MB))
        return grading.grade(course, config, jobs=2)  # two at a time, each in its own process
