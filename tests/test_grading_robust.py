"""`make grade` never stops, and tampering never pays: every submission is graded or reported (issue 15).

Chapter 1 (the cheapest to grade: about 11 s a submission) is handed in honestly beside one
submission of each kind of trouble, graded in one `grading.grade` run, two jobs at a time (with
tests/test_grading.py's matrix: tests/grading_class.py), and every row of grades.csv is checked
for its exact score, status and flags:

    solutions    the source notebook                          15 of 15, graded
    untouched    the student version                          0, graded
    broken       the first exercise raises, the second loops  15 minus those two exercises' points,
                 forever                                      graded (the cell's time limit ends it)
    notjson      a file that is not JSON                      0, failed: ... not valid JSON ...
    otherchapter chapter 2's notebook handed in as chapter 1  0, failed: ... of chapter 02-...
    osexit       os._exit(0) in a solution cell               15, graded without it, flagged tampering
    sysexit      sys.exit() in a solution cell                15, graded without it, flagged tampering
    segfault     ctypes.string_at(0) in a solution cell       0, failed: ... kernel died ...
    hog          allocates 2 GB, over a 1,500 MB cap          0, failed: ... more than 1,500 MB ...
    flood        prints 20 MB (capped at 1 MB a cell)         15, graded; small feedback
    deleted      the solutions without any test cell          15, graded, flagged tests-restored
    tamper       stubs, and check() replaced in the kernel    0 (15 if judged in the kernel), tampering
    forge        stubs, and the recorder made to record the   0, graded without that statement,
                 library's results                            flagged tampering
    reference    the solutions, softmax imported from attnedu 15, graded, flagged reference-import
    (and every student gets a `missing` row for the chapters they did not hand in: 0 of their points)

Then: regrading one student and chapter keeps the other rows, and results from several
"machines" merge with `python -m attnedu.grading merge`.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pytest

from attnedu import grading
from conftest import REPO, load_notebook
from grading_class import (CHAPTER, FULL_MATRIX, MEMORY_MB, OTHER, course, exercises, graded,  # noqa: F401
                           nbgrader, put)  # (course, graded: fixtures)

# One grading run with tests/test_grading.py's matrix (conftest.py's graded_class).
pytestmark = pytest.mark.xdist_group("grading")


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def rows_by_key(path) -> dict:
    return {(r["student_id"], r["assignment"]): r for r in read_csv(path)}


_SOURCE = load_notebook(REPO / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb")
_FIRST_TWO = sum(e["points"] for e in exercises(_SOURCE)[:2])  # what "broken" loses

EXPECTED = {  # student: (score, status prefix, flags)
    "solutions": (15, "graded", ""),
    "untouched": (0, "graded", ""),
    "broken": (15 - _FIRST_TWO, "graded", ""),
    "notjson": (0, "failed: the file is not a notebook: it is not valid JSON", ""),
    "otherchapter": (0, f"failed: this is a notebook of chapter {OTHER}, not of {CHAPTER}", ""),
    "osexit": (15, "graded", "tampering"),  # graded without the exit
    "sysexit": (15, "graded", "tampering"),
    "segfault": (0, "failed: the notebook's kernel died while running it", ""),
    "hog": (0, f"failed: it used more than {MEMORY_MB:,} MB of memory", ""),
    "flood": (15, "graded", ""),
    "deleted": (15, "graded", "tests-restored"),
    "tamper": (0, "graded", "tampering"),  # without sealed checks: 15
    "forge": (0, "graded", "tampering"),  # graded without the forging statement
    "reference": (15, "graded", "reference-import"),
}


def test_every_submission_is_graded_or_reported_with_its_exact_score(graded, course):
    rows = rows_by_key(graded["grades"])
    assert list(read_csv(graded["grades"])[0]) == grading.GRADES_FIELDS
    for student, (score, status, flags) in EXPECTED.items():
        row = rows[student, CHAPTER]
        assert row["status"].startswith(status), (student, row["status"])
        assert "\n" not in row["status"]
        assert (float(row["score"]), row["flags"]) == (score, flags), (student, row)
        assert float(row["max_score"]) == 15
    chapters = len(grading.chapters(course))
    matrix = 3 * (len(FULL_MATRIX) - 1)  # the matrix's students also hand in chapter 2
    assert graded["summary"] == {"graded": 10 + matrix, "failed": 4, "flagged": 6,
                                 "missing": len(EXPECTED) * chapters - len(EXPECTED) - matrix}


def test_a_chapter_not_handed_in_is_a_missing_row(graded, course):
    rows = rows_by_key(graded["grades"])
    other_max = grading.max_points(load_notebook(course / "notebooks" / OTHER / f"{OTHER}.ipynb"))
    assert other_max == 18
    for student in EXPECTED:
        for chapter in grading.chapters(course):
            assert (student, chapter) in rows
        row = rows[student, grading.chapters(course)[-1]]
        assert (row["status"], float(row["score"]), row["flags"]) == ("missing", 0, "")
        if student not in ("solutions", "untouched", "broken"):  # they hand in chapter 2 too
            row = rows[student, OTHER]
            assert (row["status"], float(row["score"]), float(row["max_score"]), row["flags"]) == ("missing", 0, 18, "")


def test_exercise_rows_and_feedback_exist_for_the_graded_only(graded, course):
    cells = read_csv(graded["by_exercise"])
    per_student = {}
    for r in cells:
        per_student.setdefault(r["student_id"], []).append(r)
    for student, (score, status, _) in EXPECTED.items():
        feedback = course / "_grading" / "feedback" / student / CHAPTER / f"{CHAPTER}.html"
        if status == "graded":
            mine = [r for r in per_student[student] if r["assignment"] == CHAPTER]
            assert len(mine) == 10 and sum(float(r["score"]) for r in mine) == score
            assert feedback.exists()
        else:
            assert student not in per_student and not feedback.exists()
    assert (course / "_grading" / "logs" / "segfault" / f"{CHAPTER}.log").exists(), "a failure keeps its log"


def test_deleted_test_cells_come_back_in_their_places(graded, course):
    source = load_notebook(course / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb")
    autograded = load_notebook(course / "_grading" / "autograded" / "deleted" / CHAPTER / f"{CHAPTER}.ipynb")
    ids = [nbgrader(c)["grade_id"] for c in autograded["cells"] if nbgrader(c).get("grade_id")]
    assert ids == [nbgrader(c)["grade_id"] for c in source["cells"] if nbgrader(c).get("grade_id")]


def test_an_output_flood_is_capped_and_its_feedback_stays_small(graded, course):
    feedback = course / "_grading" / "feedback" / "flood" / CHAPTER / f"{CHAPTER}.html"
    autograded = course / "_grading" / "autograded" / "flood" / CHAPTER / f"{CHAPTER}.ipynb"
    assert feedback.stat().st_size < 5_000_000 and autograded.stat().st_size < 5_000_000
    assert "the rest was left out" in autograded.read_text(encoding="utf-8")


def test_regrading_one_student_and_chapter_keeps_the_other_rows(graded, course, capsys):
    """What `make grade CHAPTER=01-weighted-sums STUDENT=segfault` runs, after that student
    handed in a corrected notebook. (Not a student of tests/test_grading.py's matrix, whose rows
    must stay as graded whichever file's tests run first.)"""
    before = rows_by_key(graded["grades"])
    assert before["segfault", CHAPTER]["status"].startswith("failed")
    put(course, "segfault", CHAPTER, load_notebook(course / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb"))
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNEDU_MAX_TRAIN_SECONDS", "3")
        mp.setattr(grading, "integrity_flags", lambda nb, chapter: [])
        rc = grading.main(["grade", "--root", str(course), "--chapter", CHAPTER, "--student", "segfault"])
    assert rc == 0
    assert "summary: 1 graded, 0 failed, 0 flagged, 0 missing" in capsys.readouterr().out
    after = rows_by_key(graded["grades"])
    assert (float(after["segfault", CHAPTER]["score"]), after["segfault", CHAPTER]["status"]) == (15, "graded")
    assert {k: v for k, v in after.items() if k != ("segfault", CHAPTER)} == \
        {k: v for k, v in before.items() if k != ("segfault", CHAPTER)}
    exercise_rows = read_csv(graded["by_exercise"])
    assert sum(float(r["score"]) for r in exercise_rows if r["student_id"] == "segfault") == 15
    assert sum(float(r["score"]) for r in exercise_rows
               if r["student_id"] == "solutions" and r["assignment"] == CHAPTER) == 15


def machine(folder, rows, cells=()) -> None:
    """A _grading folder as another machine's `make grade` leaves it."""
    folder.mkdir(parents=True)
    with open(folder / "grades.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=grading.GRADES_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with open(folder / "grades_by_exercise.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=grading.BY_EXERCISE_FIELDS)
        writer.writeheader()
        writer.writerows(cells)
    for r in rows:
        if r["status"] == "graded":
            page = folder / "feedback" / r["student_id"] / r["assignment"] / f"{r['assignment']}.html"
            page.parent.mkdir(parents=True)
            page.write_text(f"feedback of {r['student_id']} from {folder.name}")


def row(student, chapter, score, status="graded", flags=""):
    return {"assignment": chapter, "student_id": student, "score": score, "raw_score": score, "max_score": 15,
            "status": status, "flags": flags}


def cell(student, chapter, score):
    return {"student_id": student, "assignment": chapter, "notebook": chapter, "exercise": "softmax",
            "kind": "code", "grade_id": "softmax-check", "score": score, "max_score": 1}


def test_results_of_several_machines_merge(tmp_path):
    """Two machines each graded a slice of the class (each knows only its own students; the
    second also has a chapter its students did not hand in); the merge has every graded row,
    exercise rows and feedback, and a slice's `missing` never hides another's grade."""
    machine(tmp_path / "a", [row("ann", CHAPTER, 15), row("bob", CHAPTER, 0, "failed: the file is not a notebook"),
                             row("ann", OTHER, 0, "missing")], [cell("ann", CHAPTER, 1)])
    machine(tmp_path / "b", [row("cat", CHAPTER, 12, flags="tests-restored;reference-import"),
                             row("ann", OTHER, 9), row("cat", OTHER, 0, "missing")],
            [cell("cat", CHAPTER, 0), cell("ann", OTHER, 1)])
    machine(tmp_path / "c", [row("ann", OTHER, 0, "missing")])  # a third slice that lacks ann's chapter 2
    (tmp_path / "course").mkdir()
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "course" / "nbgrader_config.py")
    result = subprocess.run([sys.executable, "-m", "attnedu.grading", "merge", str(tmp_path / "a"), str(tmp_path / "b"),
                             str(tmp_path / "c"), "--root", str(tmp_path / "course")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "course" / "_grading"
    rows = rows_by_key(out / "grades.csv")
    assert {k: (float(r["score"]), r["status"], r["flags"]) for k, r in rows.items()} == {
        ("ann", CHAPTER): (15, "graded", ""),
        ("bob", CHAPTER): (0, "failed: the file is not a notebook", ""),
        ("cat", CHAPTER): (12, "graded", "tests-restored;reference-import"),
        ("ann", OTHER): (9, "graded", ""),
        ("cat", OTHER): (0, "missing", ""),
    }
    cells = {(r["student_id"], r["assignment"]): float(r["score"]) for r in read_csv(out / "grades_by_exercise.csv")}
    assert cells == {("ann", CHAPTER): 1, ("cat", CHAPTER): 0, ("ann", OTHER): 1}
    assert (out / "feedback" / "cat" / CHAPTER / f"{CHAPTER}.html").read_text() == "feedback of cat from b"
    assert (out / "feedback" / "ann" / OTHER / f"{OTHER}.html").read_text() == "feedback of ann from b"
    # merging again (a machine's results sent twice) changes nothing
    before = (out / "grades.csv").read_text()
    grading.merge(out, [tmp_path / "b"])
    assert (out / "grades.csv").read_text() == before


def test_a_forged_record_would_have_scored_without_the_sealing_and_stripping(tmp_path, monkeypatch, capsys):
    """The forging statement of the "forge" submission does work in its kernel: the library's results
    are recorded and pass. Only grading without it keeps its score honest."""
    from attnedu.checks import exercises_of, sealed
    import attnedu.functional as F

    exercises = exercises_of(CHAPTER)
    monkeypatch.setattr(sealed, "record", lambda ex, fn, _r=sealed.record, **k: _r(ex, getattr(F, ex.name, fn), **k))
    monkeypatch.setenv(sealed.ENV, str(tmp_path))

    def stub(x, axis=-1):
        raise NotImplementedError()
    exercises.check("softmax", stub, hidden=True)
    assert sealed.judge_recorded(exercises["softmax"], hidden=True, where=tmp_path)[0]


def test_read_submission_says_what_is_wrong_in_one_sentence(tmp_path):
    sources = {CHAPTER: load_notebook(REPO / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb"),
               OTHER: load_notebook(REPO / "notebooks" / OTHER / f"{OTHER}.ipynb")}
    cases = {
        "": "not valid JSON",
        "[1, 2]": "not a Jupyter notebook",
        '{"nbformat": 4, "cells": [1]}': "not a Jupyter notebook",
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}):
            f"none of the exercise cells of {CHAPTER}",
        json.dumps(sources[OTHER]): f"a notebook of chapter {OTHER}",
    }
    for text, said in cases.items():
        path = tmp_path / "nb.ipynb"
        path.write_text(text)
        nb, reason = grading.read_submission(path, CHAPTER, sources)
        assert nb is None and said in reason and "\n" not in reason, (text[:40], reason)
    path.write_text(json.dumps(sources[CHAPTER]))
    assert grading.read_submission(path, CHAPTER, sources)[1] is None


def test_an_instructors_override_is_kept_in_the_csv_and_can_be_withdrawn(graded, course):
    out = course / "_grading"
    (out / grading.OVERRIDES).write_text("student_id,assignment,score,reason\n"
                                         f"reference,{CHAPTER},12,imported softmax: its 3 points withdrawn\n")
    assert grading.apply_overrides(out) == 1
    row = rows_by_key(out / "grades.csv")["reference", CHAPTER]
    assert (float(row["score"]), float(row["raw_score"]), row["flags"]) == (12, 15, "reference-import")
    assert row["override"].startswith("imported softmax") and "graded: 15" in row["override"]
    (out / grading.OVERRIDES).write_text("student_id,assignment,score,reason\n")
    assert grading.apply_overrides(out) == 0
    row = rows_by_key(out / "grades.csv")["reference", CHAPTER]
    assert (float(row["score"]), row["override"]) == (15, "")
    (out / grading.OVERRIDES).write_text("student_id,assignment,score\nreference,x,twelve\n")
    with pytest.raises(ValueError, match="numeric score"):
        grading.apply_overrides(out)
    (out / grading.OVERRIDES).unlink()
