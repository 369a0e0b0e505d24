"""Release student versions and autograde submissions, through nbgrader.

This is what ``make release``, ``make grade`` and ``make lab`` run; the tests
drive the same functions on a copy of the course. The layout (set in
``nbgrader_config.py`` at the top of the repository)::

    notebooks/<NN-slug>/<NN-slug>.ipynb                 source: solutions and hidden tests
    _grading/release/<NN-slug>/<NN-slug>.ipynb          student version (make release)
    _grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb   what students hand in
    _grading/autograded/...  _grading/feedback/...      results (make grade)
    _grading/grades.csv                                 one row per student and chapter
    _grading/grades_by_exercise.csv                     one row per graded cell
    my-work/<NN-slug>/<NN-slug>.ipynb                   a learner's own copy (make lab)

Usage: ``python -m attnedu.grading {release,grade,workspace} [--root DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "load_config",
    "chapters",
    "release",
    "autograde_all",
    "export_grades",
    "export_grades_by_exercise",
    "grade",
    "workspace",
]


def load_config(root: Path | str = ".", **overrides):
    """nbgrader's configuration from ``root/nbgrader_config.py``, anchored at ``root``.

    ``overrides`` are ``"Section.name": value`` pairs, e.g. ``{"Execute.timeout": 10}``.
    """
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    config_file = root / "nbgrader_config.py"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} not found: run this from the top of the attnedu repository")
    config = PyFileConfigLoader(config_file.name, path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / '_grading' / 'gradebook.db'}"
    extra = Config()
    for key, value in overrides.items():
        section, name = key.split(".")
        setattr(getattr(extra, section), name, value)
    config.merge(extra)
    (root / "_grading").mkdir(exist_ok=True)
    return config


def _tools_on_path() -> None:
    """nbgrader runs the ``alembic`` command, installed beside this Python; make sure it is
    found even when the virtual environment is not activated."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _api(config):
    _tools_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def chapters(root: Path | str = ".") -> list[str]:
    """The assignment ids, one per chapter: the folders of ``notebooks/`` that hold a notebook."""
    source = Path(root) / "notebooks"
    return sorted(d.name for d in source.iterdir() if d.is_dir() and (d / f"{d.name}.ipynb").exists())


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader failed to {what}:\n{result.get('error') or result.get('log')}")


STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def exercise_meta(cell: dict) -> dict:
    """A solution cell's course metadata, ``{"kind": "code" | "predict" | "debug" | "measure", ...}``
    (a debug exercise also has ``"given"``: the buggy lines the student version shows)."""
    return cell.get("metadata", {}).get("attnedu", {})


def give_debug_code(notebook: Path) -> int:
    """In a student version, put each debug exercise's given (buggy) lines where nbgrader wrote
    its stub, so the learner starts from the code with the bug; returns how many cells changed.
    The stub's indentation is the solution region's, and so is that of the given lines."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    changed = 0
    for cell in nb["cells"]:
        meta = exercise_meta(cell)
        if meta.get("kind") != "debug" or not cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            continue
        source = "".join(cell["source"])
        lines = source.splitlines(keepends=True)
        out, i = [], 0
        while i < len(lines):  # the stub is two lines: "# YOUR CODE HERE", "raise NotImplementedError()"
            if lines[i].strip() == "# YOUR CODE HERE" and i + 1 < len(lines) and \
                    lines[i + 1].strip() == "raise NotImplementedError()":
                given = meta["given"] if meta["given"].endswith("\n") or i + 2 == len(lines) else meta["given"] + "\n"
                out.append(given)
                i += 2
                changed += 1
            else:
                out.append(lines[i])
                i += 1
        cell["source"] = "".join(out)
    if changed:
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def _generate(api, chapter: str, what: str) -> Path:
    """nbgrader's student version of ``chapter``, with the debug exercises' given code; its path."""
    _check(api.generate_assignment(chapter, force=True, create=True), f"{what} {chapter}")
    path = Path(api.coursedir.format_path(api.coursedir.release_directory, ".", chapter)) / f"{chapter}.ipynb"
    give_debug_code(path)
    return path


def release(root: Path | str = ".", config=None) -> list[Path]:
    """Write the student version of every chapter; return their paths."""
    root = Path(root).resolve()
    config = config or load_config(root)
    api = _api(config)
    return [_generate(api, chapter, "release") for chapter in chapters(root)]


def submissions(root: Path | str = ".", config=None) -> list[tuple[str, str]]:
    """``(student_id, chapter)`` for every notebook found in the submitted folder."""
    root = Path(root).resolve()
    config = config or load_config(root)
    submitted = root / config.CourseDirectory.submitted_directory
    found = []
    known = set(chapters(root))
    for nb in sorted(submitted.glob("*/*/*.ipynb")):
        student, chapter = nb.parent.parent.name, nb.parent.name
        if chapter in known and nb.stem == chapter:
            found.append((student, chapter))
    return found


def autograde_all(root: Path | str = ".", config=None) -> list[tuple[str, str]]:
    """Autograde every submission and write its feedback; return what was graded."""
    root = Path(root).resolve()
    config = config or load_config(root)
    api = _api(config)
    graded = []
    for chapter in chapters(root):  # the gradebook needs each assignment before grading it
        _generate(api, chapter, "register")
    for student, chapter in submissions(root, config):
        _check(api.autograde(chapter, student, force=True, create=True), f"autograde {student}/{chapter}")
        _check(api.generate_feedback(chapter, student, force=True), f"write feedback for {student}/{chapter}")
        graded.append((student, chapter))
    return graded


def _gradebook(config):
    _tools_on_path()
    from nbgrader.api import Gradebook

    return Gradebook(config.CourseDirectory.db_url, course_id=config.CourseDirectory.course_id)


def export_grades(path: Path | str, config) -> Path:
    """nbgrader's own CSV: one row per student and chapter (``score``, ``max_score``, ...)."""
    from nbgrader.plugins import CsvExportPlugin

    plugin = CsvExportPlugin(config=config)
    plugin.to = str(path)
    with _gradebook(config) as gb:
        plugin.export(gb)
    return Path(path)


def _exercise_of_each_cell(root: Path, chapter: str) -> dict[str, tuple[int, str, str]]:
    """grade_id -> (position in the source notebook, grade_id of the exercise's solution cell, its kind)."""
    path = root / "notebooks" / chapter / f"{chapter}.ipynb"
    if not path.exists():
        return {}
    out, exercise, kind = {}, "", ""
    for i, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            exercise, kind = meta["grade_id"], exercise_meta(cell).get("kind", "code")
        if meta.get("grade_id"):
            out[meta["grade_id"]] = (i, exercise, kind)
    return out


def export_grades_by_exercise(path: Path | str, config) -> Path:
    """One row per student and graded cell, in notebook order: which exercise lost which points."""
    root = Path(config.CourseDirectory.root)
    fields = ["student_id", "assignment", "notebook", "exercise", "kind", "grade_id", "score", "max_score"]
    with _gradebook(config) as gb, open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for assignment in gb.assignments:
            where = _exercise_of_each_cell(root, assignment.name)
            for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                for notebook in submission.notebooks:
                    grades = sorted(notebook.grades, key=lambda g: (where.get(g.name, (1e9,))[0], g.name))
                    for grade in grades:
                        writer.writerow({
                            "student_id": submission.student.id,
                            "assignment": assignment.name,
                            "notebook": notebook.name,
                            "exercise": where.get(grade.name, (0, "", ""))[1],
                            "kind": where.get(grade.name, (0, "", ""))[2],
                            "grade_id": grade.name,
                            "score": grade.score,
                            "max_score": grade.max_score,
                        })
    return Path(path)


def grade(root: Path | str = ".", config=None) -> dict:
    """``make grade``: autograde all submissions, write feedback and both CSVs."""
    root = Path(root).resolve()
    config = config or load_config(root)
    graded = autograde_all(root, config)
    out = root / "_grading"
    return {
        "graded": graded,
        "grades": export_grades(out / "grades.csv", config),
        "by_exercise": export_grades_by_exercise(out / "grades_by_exercise.csv", config),
        "feedback": root / config.CourseDirectory.feedback_directory,
    }


def workspace(root: Path | str = ".", dest: Path | str | None = None) -> list[Path]:
    """Give a learner their own student copy of each chapter in ``my-work/``.

    Existing copies are never overwritten: a learner's work is not lost when a
    new chapter arrives. Returns the notebooks that were added.
    """
    root = Path(root).resolve()
    dest = Path(dest) if dest else root / "my-work"
    added = []
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(root, **{"CourseDirectory.release_directory": str(Path(tmp) / "release")})
        config.CourseDirectory.db_url = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
        for nb in release(root, config):
            target = dest / nb.parent.name / nb.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(nb, target)
                added.append(target)
    return added


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnedu.grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["release", "grade", "workspace"])
    parser.add_argument("--root", default=".", help="the top of the attnedu repository (default: .)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.command == "release":
        for path in release(root):
            print(f"student version: {path}")
    elif args.command == "workspace":
        added = workspace(root)
        print(f"my-work/: {len(added)} new chapter(s) added; existing copies were left as they are.")
    else:
        found = submissions(root)
        if not found:
            print(f"No submissions in {root / '_grading/submitted'}: put each one at "
                  "_grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb", file=sys.stderr)
            return 1
        result = grade(root)
        print(f"graded {len(result['graded'])} submission(s)")
        print(f"grades: {result['grades']}\nby exercise: {result['by_exercise']}\nfeedback: {result['feedback']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
