"""The grading pipeline, end to end, on a copy of the course.

What is covered where, and why (the costs are measured on the course's two-core machine,
with training capped at a few seconds as `make grade` does):

- Release: the student version of every chapter, without solutions or hidden tests (cheap:
  nbgrader needs about 5 s for all chapters together).
- nbgrader's autograding (autograde, feedback, both CSVs; each submission in its own process, two
  at a time), the full matrix, on the two cheapest chapters, FULL_MATRIX (about 11 s a
  submission, process start included; chapters 3-14 take 10 to 80 s each):
  (a) the source notebook itself             -> full marks
  (b) the untouched student version          -> zero, and feedback that says so
  (c) the first exercise's solution raises   -> zero for that exercise, the others graded
  (d) the second solution cell loops forever -> nbgrader's time limit ends it; zero for that
                                                exercise, the others graded
  (c) and (d) share one submission per chapter ("broken"), which shows that neither failure
  spills into the other exercises. Only the first chapter loops (an endless loop costs a whole
  time limit); in the second, the second exercise raises too (a different error). The graded
  cells of these chapters take well under a second, so the limit here is CELL_TIMEOUT (10 s),
  not the course's 60 s: the loop costs 10 s. These submissions are graded in one run with
  tests/test_grading_robust.py's (tests/grading_class.py), so the class has more students than
  these three; the tests here read the rows of these three.
- Every chapter's student version is executed top to bottom (attnedu.build.run, every cell,
  errors allowed), and the only cells that may fail are the exercises' stubs and the checks
  that test them, each check saying that the function is not written yet. That is the
  course's promise to a learner, and what nbgrader's partial credit rests on: right after each
  exercise a chapter switches to the library's tested version, so later cells never depend on
  the learner's answer. It costs one execution per chapter (about 150 s for all of them, spread
  over both pytest workers), where grading an untouched and a broken submission of every
  chapter through nbgrader cost about 300 s more, all on one worker.

That the source notebooks run and pass their own hidden tests is checked for every chapter by
tests/test_notebooks.py (their single execution, also used by the book).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from attnedu import build, grading
from conftest import NOTEBOOKS_LONGEST_FIRST, REPO, load_notebook
from grading_class import (CHAPTER, CHAPTERS, FULL_MATRIX, LOOPING_CHAPTER, MATRIX_STUDENTS,  # noqa: F401
                           SKIPPED_BY_SOURCE, TAGGED_BY_STUDENT, TRAIN_SECONDS, code_cell, course, exercises, graded,
                           make_course, nbgrader)  # (course, graded: fixtures)

# The matrix and tests/test_grading_robust.py's submissions are one grading run (conftest.py's
# graded_class), made once by the worker that runs both files.
pytestmark = pytest.mark.xdist_group("grading")


def test_every_chapter_is_released_without_solutions_or_hidden_tests(released):
    assert sorted(released) == CHAPTERS
    for chapter, path in released.items():
        text = path.read_text(encoding="utf-8")
        assert "### BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
        nb = json.loads(text)
        stubs = [c for c in nb["cells"] if nbgrader(c).get("solution")]
        debug = [c for c in stubs if grading.exercise_meta(c).get("kind") == "debug"]  # they start from buggy code
        assert stubs and all("raise NotImplementedError()" in "".join(c["source"]) for c in stubs if c not in debug)
        assert all(grading.exercise_meta(c)["given"] in "".join(c["source"]) for c in debug)
        source = load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
        assert len(nb["cells"]) == len(source["cells"])


def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_grades_csv_has_full_marks_zero_and_partial_credit(graded):
    matrix = {(w, c) for w in MATRIX_STUDENTS for c in FULL_MATRIX}
    assert matrix <= set(graded["graded"])
    rows = read_csv(graded["grades"])
    assert {"assignment", "student_id", "score", "max_score", "status", "flags"} <= set(rows[0])
    by = {(r["student_id"], r["assignment"]): r for r in rows if r["student_id"] in MATRIX_STUDENTS}
    assert len(by) == 3 * len(CHAPTERS), "a row for every student and chapter"
    for (who, chapter), r in by.items():  # (flags: tests/test_grading_robust.py)
        assert r["status"] == ("graded" if chapter in FULL_MATRIX else "missing")
    for chapter in FULL_MATRIX:
        source = load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
        total = sum(e["points"] for e in exercises(source))
        first_two = sum(e["points"] for e in exercises(source)[:2])
        assert float(by["broken", chapter]["max_score"]) == total
        assert float(by["solutions", chapter]["score"]) == total, "the source notebook must get full marks"
        assert float(by["untouched", chapter]["score"]) == 0, "an untouched student version must get zero"
        assert float(by["broken", chapter]["score"]) == total - first_two


def test_grades_by_exercise_zero_only_the_broken_exercises(graded):
    rows = read_csv(graded["by_exercise"])
    score = defaultdict(dict)
    for r in rows:
        score[r["student_id"], r["assignment"]][r["grade_id"]] = (float(r["score"]), float(r["max_score"]))
    for chapter in FULL_MATRIX:
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
    for chapter in FULL_MATRIX:
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


def test_the_grader_skips_the_cells_the_source_tags_not_those_a_student_tags(graded, course):
    def outputs(who, first_line):
        nb = load_notebook(course / "_grading" / "autograded" / who / CHAPTER / f"{CHAPTER}.ipynb")
        return code_cell(nb, first_line)["outputs"]

    for who in ("solutions", "untouched", "reference"):  # (on disk, a text is a list of lines)
        assert ["".join(o.get("text", "")) for o in outputs(who, SKIPPED_BY_SOURCE)] == [grading.SKIPPED_NOTE], who
    ran = outputs("reference", TAGGED_BY_STUDENT)  # tagged by the student only: it ran and drew its figure
    assert any(o["output_type"] == "display_data" for o in ran), ran


def test_skip_tags_come_from_the_source_and_never_skip_nbgrader_cells():
    def cell(code, tags=None, **nbgrader):
        meta = {"tags": tags if isinstance(tags, str) else list(tags or [])} | ({"nbgrader": nbgrader} if nbgrader else {})
        return {"cell_type": "code", "source": code, "metadata": meta, "outputs": []}

    tag = [grading.SKIP_TAG]
    source = {"cells": [cell("compare()\n", tag), cell("show()\n", ["hide-input"]), cell("check()\n", tag, grade=True),
                        cell("def f():\n    pass\n", tag, solution=True, grade_id="f")]}
    assert [grading.skipped_when_grading(c) for c in source["cells"]] == [True, False, False, False]
    submission = {"cells": [cell(["compare()\n"]), cell("show()\n", ["hide-input", *tag]), cell("compare(2)\n", tag),
                            {"cell_type": "markdown", "source": "compare()\n", "metadata": {}},
                            cell([1, 2], tag), cell("compare()\n", "not a list"), {"cell_type": "code", "metadata": None}]}
    assert grading.skip_tags_from_source(submission, source) == 2
    assert [(c["metadata"] or {}).get("tags") for c in submission["cells"]] == [tag, ["hide-input"], [], None, [], tag, None]


def stub_and_check_cells(nb) -> tuple[set[int], set[int]]:
    """Positions of the solution cells and of the autograder test cells (visible checks and
    what is left of the hidden-tests cells) of a notebook."""
    solutions = {i for i, c in enumerate(nb["cells"]) if nbgrader(c).get("solution")}
    checks = {i for i, c in enumerate(nb["cells"]) if nbgrader(c).get("grade") and not nbgrader(c).get("solution")}
    return solutions, checks


def debug_exercise(nb, i: int) -> bool:
    """Whether the graded cell at position i belongs to a debug exercise (its solution cell is the last one above)."""
    above = [c for c in nb["cells"][:i] if nbgrader(c).get("solution")]
    return bool(above) and grading.exercise_meta(above[-1]).get("kind") == "debug"


@pytest.mark.parametrize("chapter", [
    pytest.param(nb.parent.name, marks=pytest.mark.xdist_group(f"student-{nb.parent.name}"))
    for nb in NOTEBOOKS_LONGEST_FIRST
])
def test_the_student_version_runs_top_to_bottom_with_only_the_unfinished_checks_failing(chapter, released, course,
                                                                                          tmp_path):
    """A learner who has written nothing yet can still run the whole chapter: the only errors
    are the checks of the exercises (or a stub run at the top level), each saying in one
    sentence that the function is not written yet (a debug exercise's check names its bug).
    It runs as the grader runs it: training capped, and the cells tagged `skip-when-grading` in
    the source not run (so no later cell may need them).
    (Each chapter has its own xdist group, so that the chapters spread over both workers; each
    worker releases every chapter once, and runs a chapter's student version in a folder of its own.)"""
    student = tmp_path / chapter / released[chapter].name
    shutil.copytree(released[chapter].parent, student.parent)
    report, nb = build.run(student, allow_errors=True, timeout=60, grading=True,
                           env={"ATTNEDU_MAX_TRAIN_SECONDS": TRAIN_SECONDS})
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip()]
    assert [c["cell"] for c in report["cells"]] == code, "every code cell should have run"
    source = load_notebook(course / "notebooks" / chapter / f"{chapter}.ipynb")
    tagged = [i for i, c in enumerate(source["cells"]) if grading.skipped_when_grading(c)]
    skipped = [i for i in code if [o.get("text") for o in nb.cells[i].outputs] == [grading.SKIPPED_NOTE]]
    assert skipped == tagged, "the student version keeps the source's skip-when-grading tags, and only those skip"
    solutions, checks = stub_and_check_cells(nb)
    failing = {e["cell"]: e for e in report["errors"]}
    outside = {i: f"{e['ename']}: {e['evalue']}" for i, e in failing.items() if i not in solutions | checks}
    assert not outside, f"cells other than stubs and checks failed in the student version: {outside}"
    for i in solutions & set(failing):  # a stub raises when it runs: at the top level, or when called
        assert failing[i]["ename"] == "NotImplementedError", f"cell {i}: {failing[i]['ename']}"
    failed_checks = [failing[i] for i in checks if i in failing]
    assert failed_checks, "the checks of unfinished exercises should fail"
    debug_checks = {i for i in checks if debug_exercise(nb, i)}  # a debug exercise's check names its bug
    for i in checks & set(failing):
        e = failing[i]
        said = "Likely cause: " if i in debug_checks else "is not written yet"
        assert said in e["evalue"] and "\n" not in e["evalue"], e["evalue"]
    assert len(failed_checks) >= len(solutions), "every exercise's check should fail while it is a stub"


def test_a_learners_workspace_is_created_once_and_never_overwritten(tmp_path):
    course = make_course(tmp_path / "course", *FULL_MATRIX)  # (every chapter's release: the test above)
    dest = tmp_path / "my-work"
    added = grading.workspace(course, dest)
    assert sorted(p.parent.name for p in added) == FULL_MATRIX
    mine = added[0]
    assert "raise NotImplementedError()" in mine.read_text()
    mine.write_text('{"my": "work"}')
    assert grading.workspace(course, dest) == []
    assert mine.read_text() == '{"my": "work"}'


def test_make_lab_says_which_chapters_changed_and_keeps_the_learners_copy(tmp_path, capsys):
    root = make_course(tmp_path / "course", "01-weighted-sums")
    dest = root / "my-work"
    [mine] = grading.workspace(root, dest)
    mine.write_text(mine.read_text().replace("# YOUR CODE HERE", "# my answer", 1))
    assert grading.changed_chapters(root, dest) == []  # the learner's edits are not a change of the chapter

    source = root / "notebooks" / "01-weighted-sums" / "01-weighted-sums.ipynb"
    nb = json.loads(source.read_text())
    nb["cells"][0]["source"] = ["# Weighted sums, revised\n"] + nb["cells"][0]["source"][1:]
    source.write_text(json.dumps(nb))
    before = mine.read_text()
    assert grading.main(["workspace", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "01-weighted-sums has changed since your copy was made" in out and "rename your copy" in out
    assert mine.read_text() == before  # never overwritten
    mine.rename(mine.with_name("01-weighted-sums.mine.ipynb"))  # what the message says to do
    [new] = grading.workspace(root, dest)
    assert "Weighted sums, revised" in new.read_text() and grading.changed_chapters(root, dest) == []


def test_the_gradebook_revision_read_in_process_is_the_one_alembic_reports(tmp_path):
    """nbgrader stamps each new gradebook with `alembic heads`, run as a command; the course reads
    the same revision in its own process (4.5 s less per new gradebook). The gradebook it makes
    opens again, and nbgrader's own check finds it up to date."""
    import subprocess
    import sys

    import nbgrader.api
    from nbgrader.dbutil import _temp_alembic_ini

    alembic = str(Path(sys.executable).parent / "alembic")
    with _temp_alembic_ini(f"sqlite:///{tmp_path / 'x.db'}") as ini:
        heads = subprocess.run([alembic, "-c", ini, "heads"], capture_output=True, text=True, timeout=120)
    assert heads.returncode == 0, heads.stderr
    assert heads.stdout.split()[0] == grading.gradebook_revision()
    [student] = grading.release(make_course(tmp_path / "course", FULL_MATRIX[0]))
    assert nbgrader.api.get_alembic_version is grading.gradebook_revision
    db = tmp_path / "course" / "_grading" / "gradebook.db"
    with nbgrader.api.Gradebook(f"sqlite:///{db}") as gb:
        assert [a.name for a in gb.assignments] == [FULL_MATRIX[0]]
        version = gb.db.execute(nbgrader.api.text("SELECT version_num FROM alembic_version")).scalar()
    assert version == heads.stdout.split()[0]


def test_grading_with_no_submissions_says_where_to_put_them(tmp_path, capsys):
    make_course(tmp_path)
    assert grading.main(["grade", "--root", str(tmp_path)]) == 1
    assert "_grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb" in capsys.readouterr().err
