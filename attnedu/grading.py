"""Release student versions and autograde submissions, through nbgrader.

This is what ``make release``, ``make grade`` and ``make lab`` run; the tests
drive the same functions on a copy of the course. The layout (set in
``nbgrader_config.py`` at the top of the repository)::

    notebooks/<NN-slug>/<NN-slug>.ipynb                 source: solutions and hidden tests
    _grading/release/<NN-slug>/<NN-slug>.ipynb          student version (make release)
    _grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb   what students hand in
    _grading/autograded/...  _grading/feedback/...      results (make grade)
    _grading/grades.csv                                 one row per student and chapter (status, flags)
    _grading/grades_by_exercise.csv                     one row per graded cell
    _grading/logs/<student>/<NN-slug>.log               why a submission failed
    my-work/<NN-slug>/<NN-slug>.ipynb                   a learner's own copy (make lab)

``make grade`` grades each submission in a process and a course folder of its own (a copy of
nbgrader_config.py, the chapter's source, a gradebook with the assignment registered, and the
one submission), watched for memory and time, then merges the results into ``_grading/``: a
submission that crashes, hangs or floods loses only its own row, which says why.

Usage: ``python -m attnedu.grading {release,grade,workspace} [--root DIR]``,
``python -m attnedu.grading grade [--jobs N] [--chapter NN-slug] [--student ID]``,
``python -m attnedu.grading merge FOLDER... [--root DIR]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

__all__ = [
    "SKIP_TAG",
    "SKIPPED_NOTE",
    "WORKSPACE_RECORD",
    "changed_chapters",
    "student_fingerprint",
    "load_config",
    "chapters",
    "release",
    "merge",
    "read_submission",
    "restore_tests",
    "skip_tags_from_source",
    "skipped_when_grading",
    "show_skipped",
    "max_points",
    "export_grades",
    "export_grades_by_exercise",
    "grade",
    "gradebook_revision",
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


def gradebook_revision() -> str:
    """The revision of nbgrader's database migrations that a new gradebook is stamped with (the
    head of ``nbgrader/alembic/versions``), read in this process.

    nbgrader itself asks for it with ``alembic heads`` in a new process whenever it creates a
    gradebook (each release, each chapter's grading template, each `make lab`): about 4.5 s on
    the course's machine, where reading the same migration scripts here takes milliseconds.
    :func:`_api` makes nbgrader use this one; tests/test_grading.py checks that both agree."""
    import nbgrader
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


def _api(config):
    _tools_on_path()
    import nbgrader.api
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    nbgrader.api.get_alembic_version = gradebook_revision  # the same answer, without a process
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


# ---------------------------------------------------------------------------------------------
# `make grade`: every submission graded or reported, each in a process and course folder of its own.

GRADES_FIELDS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                 "raw_score", "late_submission_penalty", "score", "max_score", "status", "flags", "override"]
#: An instructor's decisions, kept across regrades: student_id, assignment, score, reason.
OVERRIDES = "overrides.csv"
BY_EXERCISE_FIELDS = ["student_id", "assignment", "notebook", "exercise", "kind", "grade_id", "score", "max_score"]
# The limits of one submission, each overridable by an environment variable of the same name.
DEFAULT_MEMORY_MB = 6000         # ATTNEDU_GRADE_MEMORY_MB: resident memory of the grading process and its kernel
DEFAULT_OUTPUT_BYTES = 1_000_000  # ATTNEDU_GRADE_OUTPUT_BYTES: output kept per cell
DEFAULT_SUBMISSION_SECONDS = 3600  # ATTNEDU_GRADE_SUBMISSION_SECONDS: the whole submission, every cell included
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "RAYON_NUM_THREADS")}


def _limit(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(float(value)) if value else default


def _read_csv(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path


def _source(root: Path, chapter: str) -> dict:
    return json.loads((root / "notebooks" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))


def _nbgrader_meta(cell) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


#: A code cell of a source notebook with this tag is not run when grading (``make grade``, and
#: the tests that run student versions as the grader does): its output is :data:`SKIPPED_NOTE`.
#: For cells that only compare with other libraries or show something slow; nothing graded, and
#: no later cell, may depend on them (tests/test_grading.py runs every student version so).
SKIP_TAG = "skip-when-grading"
SKIPPED_NOTE = "(not run while grading: nothing graded depends on this cell)\n"


def skipped_when_grading(cell) -> bool:
    """Whether the grader skips this cell: a code cell tagged :data:`SKIP_TAG` that is none of
    nbgrader's (a solution, a test or a locked cell always runs)."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    tags = meta.get("tags") if isinstance(meta, dict) else None
    nbgrader = _nbgrader_meta(cell)
    return (cell.get("cell_type") == "code" and isinstance(tags, list) and SKIP_TAG in tags
            and not (nbgrader.get("solution") or nbgrader.get("grade") or nbgrader.get("locked")))


def show_skipped(cell):
    """Give a skipped cell (a ``nbformat`` node) the grader's note as its only output, as if it ran."""
    from nbformat.v4 import new_output

    cell.outputs, cell.execution_count = [new_output("stream", name="stdout", text=SKIPPED_NOTE)], None
    return cell


def skip_tags_from_source(nb: dict, source: dict) -> int:
    """The source notebook decides which cells of a submission are skipped, not the student: in
    place, :data:`SKIP_TAG` is removed from every cell of ``nb``, then given back to each cell
    whose code is that of a skipped cell of ``source`` (a cell the student changed runs).
    Returns the number of cells tagged."""
    def code(cell):  # a submission's cell may hold anything: None unless it is text
        text = cell.get("source")
        if isinstance(text, list) and all(isinstance(line, str) for line in text):
            return "".join(text)
        return text if isinstance(text, str) else None

    skipped = {code(c) for c in source["cells"] if skipped_when_grading(c)}
    n = 0
    for cell in nb["cells"]:
        meta = cell.get("metadata")
        if not isinstance(meta, dict):
            continue
        tags = meta.get("tags")
        if isinstance(tags, list) and SKIP_TAG in tags:
            meta["tags"] = tags = [t for t in tags if t != SKIP_TAG]
        if cell.get("cell_type") == "code" and code(cell) in skipped:  # (nbgrader's cells: skipped_when_grading)
            meta["tags"] = [*(tags if isinstance(tags, list) else []), SKIP_TAG]
            n += 1
    return n


def _grade_ids(nb: dict) -> list[str]:
    return [str(_nbgrader_meta(c)["grade_id"]) for c in nb.get("cells", []) if _nbgrader_meta(c).get("grade_id")]


def max_points(source: dict) -> float:
    """The most points a chapter gives: the points of its graded cells."""
    graded = [_nbgrader_meta(c) for c in source["cells"] if _nbgrader_meta(c).get("grade")]
    return float(sum(meta.get("points", 0) or 0 for meta in graded))


def read_submission(path: Path, chapter: str, sources: dict[str, dict]) -> tuple[dict | None, str | None]:
    """The submitted notebook, or None and the one sentence that says why it cannot be graded
    (not JSON, not a notebook, a notebook of another chapter). ``sources``: chapter -> source notebook."""
    try:
        nb = json.loads(Path(path).read_text(encoding="utf-8", errors="replace"))
    except json.JSONDecodeError as exc:
        return None, (f"the file is not a notebook: it is not valid JSON "
                      f"({exc.msg} at line {exc.lineno}, column {exc.colno})")
    except (OSError, ValueError, RecursionError) as exc:
        return None, f"the file could not be read ({type(exc).__name__})"
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat") != 4:
        return None, "the file is JSON but not a Jupyter notebook (version 4 with a list of cells)"
    if not all(isinstance(c, dict) and c.get("cell_type") in ("code", "markdown", "raw") for c in nb["cells"]):
        return None, "the file is JSON but not a Jupyter notebook (one of its cells is not a cell)"
    ids = set(_grade_ids(nb))
    overlap = {ch: len(ids & set(_grade_ids(src))) for ch, src in sources.items()}
    if overlap.get(chapter, 0) == 0 or max(overlap.values()) > overlap[chapter]:
        best = max(overlap, key=overlap.get) if overlap and max(overlap.values()) else None
        if best and best != chapter:
            return None, f"this is a notebook of chapter {best}, not of {chapter}"
        return None, f"this notebook has none of the exercise cells of {chapter}"
    return nb, None


def restore_tests(nb: dict, source: dict) -> list[str]:
    """Put back, in place, every locked or graded test cell of ``source`` that ``nb`` lacks (a
    deleted check), each after the cell that precedes it in the source (or before the one that
    follows it); returns the grade ids put back. nbgrader then grades them as it grades an
    edited test cell: from the gradebook's copy."""
    def restorable(cell):
        meta = _nbgrader_meta(cell)
        return meta.get("grade_id") and (meta.get("locked") or (meta.get("grade") and not meta.get("solution")))

    def key(cell):
        gid = _nbgrader_meta(cell).get("grade_id")
        return ("grade_id", str(gid)) if gid else ("id", cell.get("id")) if cell.get("id") else None

    present = {key(c) for c in nb["cells"]} - {None}
    restored = []
    for i, cell in enumerate(source["cells"]):
        if not restorable(cell) or key(cell) in present:
            continue
        where = None
        for j in range(i - 1, -1, -1):  # after the nearest earlier neighbour still there
            k = key(source["cells"][j])
            if k in present:
                where = 1 + next(n for n, c in enumerate(nb["cells"]) if key(c) == k)
                break
        if where is None:
            for j in range(i + 1, len(source["cells"])):  # or before the nearest later one
                k = key(source["cells"][j])
                if k in present:
                    where = next(n for n, c in enumerate(nb["cells"]) if key(c) == k)
                    break
        copy = json.loads(json.dumps(cell))
        if copy.get("cell_type") == "code":
            copy["outputs"], copy["execution_count"] = [], None
        nb["cells"].insert(len(nb["cells"]) if where is None else where, copy)
        present.add(key(cell))
        restored.append(str(_nbgrader_meta(cell)["grade_id"]))
    return restored


def integrity_flags(nb: dict, chapter: str) -> list[str]:
    """``attnedu.integrity.flags(nb, chapter)``: reference-import, tampering."""
    from . import integrity

    return [str(f) for f in integrity.flags(nb, chapter) or []]


def _config_lines(config) -> str:
    """The settings of ``config`` outside CourseDirectory, as lines of an nbgrader_config.py
    (so that a job's course folder grades as the caller's configuration says, e.g. Execute.timeout)."""
    import ast

    lines = []
    for section, values in config.items():
        if section == "CourseDirectory" or not hasattr(values, "items"):
            continue
        for name, value in values.items():
            try:
                if ast.literal_eval(repr(value)) == value:
                    lines.append(f"c.{section}.{name} = {value!r}")
            except (ValueError, SyntaxError):
                pass
    return "\n".join(lines) + "\n"


def _template(root: Path, chapter: str, config, where: Path) -> Path:
    """A course folder holding only ``chapter``: nbgrader_config.py (with the caller's settings),
    the source notebook, its student version and a gradebook with the assignment registered."""
    folder = where / f"template-{chapter}"
    (folder / "notebooks" / chapter).mkdir(parents=True)
    shutil.copy2(root / "notebooks" / chapter / f"{chapter}.ipynb", folder / "notebooks" / chapter)
    text = (root / "nbgrader_config.py").read_text(encoding="utf-8")
    (folder / "nbgrader_config.py").write_text(text + "\n# the grading run's settings\n" + _config_lines(config),
                                              encoding="utf-8")
    _generate(_api(load_config(folder)), chapter, "register")
    return folder


def _capped_execute():
    """nbgrader's Execute, keeping at most ATTNEDU_GRADE_OUTPUT_BYTES of output per cell (an
    error's first lines are always kept: they decide the cell's points)."""
    from nbformat.v4 import new_output
    from nbgrader.preprocessors import Execute

    from ._lean_process import KERNEL_ARGUMENTS

    cap = _limit("ATTNEDU_GRADE_OUTPUT_BYTES", DEFAULT_OUTPUT_BYTES)

    class CappedExecute(Execute):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.extra_arguments = [*self.extra_arguments, *KERNEL_ARGUMENTS]  # the kernel ends at once

        def preprocess_cell(self, cell, resources, index):
            if skipped_when_grading(cell):  # (the submission's tags are the source's: skip_tags_from_source)
                return show_skipped(cell), resources
            return super().preprocess_cell(cell, resources, index)

        def output(self, outs, msg, display_id, cell_index):
            sizes = self.__dict__.setdefault("_attnedu_sizes", {})
            used = sizes.get(cell_index, 0)
            content = msg.get("content", {})
            kind = msg.get("msg_type")
            if kind == "error":
                content["evalue"] = str(content.get("evalue", ""))[:cap]
                content["traceback"] = [str(t)[:cap // 100 or 1] for t in content.get("traceback", [])[:200]]
                return super().output(outs, msg, display_id, cell_index)
            if kind == "stream":
                size = len(content.get("text", ""))
            elif kind in ("display_data", "execute_result", "update_display_data"):
                size = sum(len(str(v)) for v in content.get("data", {}).values())
            else:
                return super().output(outs, msg, display_id, cell_index)
            if used >= cap:
                return None
            if used + size > cap:
                sizes[cell_index] = cap
                note = (f"\n[grading kept the first {cap // 1000:,} kB of this cell's output; "
                        "the rest was left out]\n")
                if kind == "stream":
                    content["text"] = content["text"][:cap - used]
                    super().output(outs, msg, display_id, cell_index)
                outs.append(new_output("stream", name="stderr", text=note))
                return None
            sizes[cell_index] = used + size
            return super().output(outs, msg, display_id, cell_index)

    return CappedExecute


def _worker(job: Path, student: str, chapter: str) -> int:
    """Inside a job's own process: autograde its one submission and write feedback and both CSVs
    into ``job/_grading``. Exits 1, with nbgrader's message in ``job/error.txt``, when that fails."""
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute

    tempfile.tempdir = str(job / "tmp")  # the kernel's connection file, gone with the job even when it is killed
    (job / "tmp").mkdir(exist_ok=True)
    config = load_config(job)
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    config.Autograde.autograde_preprocessors = [_capped_execute() if p is Execute else p for p in default]
    api = _api(config)
    from .checks import sealed

    os.environ[sealed.ENV] = str(job / "sealed")  # the kernel's check cells record; this process judges
    for what, result in (("autograde", lambda: api.autograde(chapter, student, force=True, create=True)),
                         ("judge", lambda: judge_sealed(job, student, chapter, config)),
                         ("write feedback for", lambda: api.generate_feedback(chapter, student, force=True))):
        result = result()
        if not result.get("success"):
            (job / "error.txt").write_text(f"nbgrader failed to {what} it:\n{result.get('error')}\n"
                                           f"{result.get('log')}", encoding="utf-8")
            return 1
    export_grades(job / "_grading" / "grades.csv", config)
    export_grades_by_exercise(job / "_grading" / "grades_by_exercise.csv", config)
    return 0


def _check_cell(grade_id: str) -> tuple[str, bool] | None:
    """``(exercise grade id, hidden)`` of a test cell named by the course's convention."""
    for suffix, hidden in (("-check", False), ("-hidden", True)):
        if grade_id.endswith(suffix):
            return grade_id[: -len(suffix)], hidden
    return None


def judge_sealed(job: Path, student: str, chapter: str, config) -> dict:
    """Decide the points of every test cell from the results the kernel recorded (see
    :mod:`attnedu.checks.sealed`), here, outside the learner's kernel: a cell earns its points
    only when the recorded results pass the references on this process's own cases, whatever the
    kernel printed or raised. Each test cell's output in the graded notebook becomes the verdict,
    so the feedback explains it."""
    from nbformat.v4 import new_output

    from .checks import exercises_of, sealed

    records = {ex.grade_id: ex for ex in exercises_of(chapter).values()}
    where = job / "sealed"
    graded_nb = Path(config.CourseDirectory.root) / config.CourseDirectory.autograded_directory / student / \
        chapter / f"{chapter}.ipynb"
    nb = json.loads(graded_nb.read_text(encoding="utf-8"))
    verdicts = {}
    with _gradebook(config) as gb:
        submission = gb.find_submission_notebook(chapter, chapter, student)
        for grade in submission.grades:
            cell = _check_cell(grade.name)
            if cell is None or cell[0] not in records:
                continue
            ok, why = sealed.judge_recorded(records[cell[0]], hidden=cell[1], where=where)
            grade.auto_score = grade.max_score if ok else 0.0
            grade.manual_score, grade.needs_manual_grade = None, False
            verdicts[grade.name] = (ok, why)
        gb.db.commit()
    for cell in nb["cells"]:
        name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if name in verdicts:
            ok, why = verdicts[name]
            cell["outputs"] = [new_output("stream", name="stdout", text=f"\u2713 passed (judged by the grader).\n")
                               if ok else new_output("error", ename="CheckFailed", evalue=why, traceback=[
                                   f"CheckFailed: {why}"])]
    graded_nb.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"success": True}


def apply_overrides(out: Path) -> int:
    """Apply ``out/overrides.csv`` (an instructor's decisions: ``student_id, assignment, score,
    reason``) to ``out/grades.csv``: an overridden row's ``score`` is the decided one and its
    ``override`` column says why and what grading gave (``raw_score`` keeps that too); a row whose
    override was removed gets its graded score back. Returns the number of rows overridden."""
    grades, path = out / "grades.csv", out / OVERRIDES
    if not grades.exists():
        return 0
    decisions = {}
    if path.exists():
        for row in _read_csv(path):
            try:
                decisions[row["student_id"].strip(), row["assignment"].strip()] = (float(row["score"]),
                                                                                   (row.get("reason") or "").strip())
            except (KeyError, ValueError, AttributeError) as exc:
                raise ValueError(f"{path}: every row needs student_id, assignment, a numeric score and a reason "
                                 f"({row}): {exc}") from None
    rows, n = _read_csv(grades), 0
    for row in rows:
        key = (row["student_id"], row["assignment"])
        if key in decisions:
            score, reason = decisions[key]
            row["score"], row["override"] = f"{score:g}", f"{reason} (graded: {row.get('raw_score') or 0})"
            n += 1
        elif row.get("override"):
            row["score"], row["override"] = row.get("raw_score") or "0", ""
    _write_csv(grades, GRADES_FIELDS, rows)
    return n


def _family(pid: int) -> list[int]:
    """``pid`` and all its descendants (psutil where installed, else Linux's /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return [pid]
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    family, todo = [], [pid]
    while todo:
        family.append(todo.pop())
        todo += parents.get(family[-1], [])
    return family


def _rss(pid: int) -> int:
    """Resident bytes of one process (0 once it is gone)."""
    try:
        import psutil
    except ImportError:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            return 0
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _kill_tree(pid: int) -> None:
    import signal

    for member in reversed(_family(pid)):
        try:
            os.kill(member, signal.SIGKILL)
        except OSError:
            pass


def _failure_reason(job: Path, log: str) -> str:
    text = ((job / "error.txt").read_text(encoding="utf-8") if (job / "error.txt").exists() else "") + "\n" + log
    if "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text.lower():
        return ("the notebook's kernel died while running it (os._exit, a crash, or something that "
                "ended the Python process)")
    if "Timeout" in text and "kernel" in text.lower():
        return "the notebook's kernel stopped answering"
    last = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
    return "nbgrader could not grade it (" + (last[-1][:200] if last else "no message") + ")"


def _run_job(job: Path, student: str, chapter: str, env: dict) -> tuple[str, dict]:
    """Grade one prepared job in its own process, watching its memory and time; returns its
    status (``graded`` or ``failed: ...``) and the peak resident memory in bytes."""
    import subprocess

    memory = _limit("ATTNEDU_GRADE_MEMORY_MB", DEFAULT_MEMORY_MB) * 2**20
    seconds = _limit("ATTNEDU_GRADE_SUBMISSION_SECONDS", DEFAULT_SUBMISSION_SECONDS)
    log_path = job / "log.txt"
    start, peak, reason = time.monotonic(), 0, None
    with open(log_path, "wb") as log:
        popen = subprocess.Popen([sys.executable, "-m", "attnedu.grading", "_worker", str(job), student, chapter],
                                 cwd=job, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        while popen.poll() is None:
            rss = sum(_rss(pid) for pid in _family(popen.pid))
            peak = max(peak, rss)
            if rss > memory:
                reason = (f"it used more than {memory // 2**20:,} MB of memory "
                          f"(ATTNEDU_GRADE_MEMORY_MB), so its grading was stopped")
            elif time.monotonic() - start > seconds:
                reason = (f"grading it took longer than {seconds} s (ATTNEDU_GRADE_SUBMISSION_SECONDS), "
                          "so it was stopped")
            if reason:
                _kill_tree(popen.pid)
                break
            time.sleep(0.1)
        popen.wait()
    stats = {"peak_rss": peak, "seconds": time.monotonic() - start}
    if reason:
        return "failed: " + reason, stats
    if popen.returncode != 0 or not (job / "_grading" / "grades.csv").exists():
        return "failed: " + _failure_reason(job, log_path.read_text(encoding="utf-8", errors="replace")[-20000:]), stats
    return "graded", stats


def _key(row: dict) -> tuple[str, str]:
    return row["student_id"], row["assignment"]


def merge(dest: Path | str, sources: list[Path | str], replace_with_missing: bool = False) -> dict:
    """Merge grading results into ``dest`` (a ``_grading`` folder): each source is a folder of
    the same layout (``grades.csv``, ``grades_by_exercise.csv``, ``feedback/``, ``autograded/``),
    made by ``make grade`` on another machine or by one job. A source's row for a student and
    chapter replaces dest's, with its exercise rows, feedback and graded copy; a ``missing`` row
    replaces nothing but another missing row, unless ``replace_with_missing`` (one machine's
    slice does not know what another graded). Returns ``{"grades": path, "by_exercise": path}``."""
    dest = Path(dest)
    grades = {_key(r): r for r in _read_csv(dest / "grades.csv")}
    by_exercise = defaultdict(list)
    for r in _read_csv(dest / "grades_by_exercise.csv"):
        by_exercise[_key(r)].append(r)
    for source in map(Path, sources):
        if not (source / "grades.csv").exists():
            raise FileNotFoundError(f"{source / 'grades.csv'} not found: a source is a folder that `make grade` wrote")
        source_cells = defaultdict(list)
        for r in _read_csv(source / "grades_by_exercise.csv"):
            source_cells[_key(r)].append(r)
        for row in _read_csv(source / "grades.csv"):
            key = _key(row)
            row.setdefault("status", "graded")
            row["flags"] = row.get("flags") or ""
            old = grades.get(key)
            if row["status"] == "missing" and old and old.get("status", "graded") != "missing" \
                    and not replace_with_missing:
                continue
            grades[key] = row
            by_exercise[key] = source_cells.get(key, [])
            for folder in ("feedback", "autograded"):
                target = dest / folder / key[0] / key[1]
                if source.resolve() != dest.resolve():
                    if target.exists():
                        shutil.rmtree(target)
                    if (source / folder / key[0] / key[1]).exists():
                        shutil.copytree(source / folder / key[0] / key[1], target)
    order = sorted(grades, key=lambda k: (k[1], k[0]))
    return {
        "grades": _write_csv(dest / "grades.csv", GRADES_FIELDS, [grades[k] for k in order]),
        "by_exercise": _write_csv(dest / "grades_by_exercise.csv", BY_EXERCISE_FIELDS,
                                  [r for k in order for r in by_exercise.get(k, [])]),
    }


def _students(root: Path, config) -> list[str]:
    submitted = root / config.CourseDirectory.submitted_directory
    return sorted(d.name for d in submitted.iterdir() if d.is_dir()) if submitted.exists() else []


def grade(root: Path | str = ".", config=None, jobs: int = 1, chapter: str | None = None,
          student: str | None = None, verbose: bool = False) -> dict:
    """``make grade``: grade every submission, each in its own process and course folder, ``jobs``
    at a time, and merge the results into ``_grading/`` (feedback, graded copies, both CSVs).

    Every student (a folder of ``_grading/submitted``) gets a row for every chapter, with a
    ``status``: ``graded``, ``missing`` or ``failed: <why>``, and ``flags``. ``chapter`` and
    ``student`` regrade only those rows, keeping the others. Returns the paths, the rows graded
    and a ``summary`` count."""
    from concurrent.futures import ThreadPoolExecutor

    root = Path(root).resolve()
    config = config or load_config(root)
    out = root / "_grading"
    all_chapters = chapters(root)
    if chapter and chapter not in all_chapters:
        raise ValueError(f"no chapter {chapter!r}: the chapters are {', '.join(all_chapters)}")
    wanted_chapters = [chapter] if chapter else all_chapters
    students = [s for s in _students(root, config) if student in (None, s)]
    if student and not students:
        raise ValueError(f"no student {student!r} in {root / config.CourseDirectory.submitted_directory}")
    sources = {ch: _source(root, ch) for ch in all_chapters}
    submitted = root / config.CourseDirectory.submitted_directory
    env = {**os.environ, **ONE_THREAD, "PYDEVD_DISABLE_FILE_VALIDATION": "1",
           "ATTNEDU_STATIC_OUTPUTS": "1"}  # explorers draw static figures, progress bars print text
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    rows, stats = {}, {}
    with tempfile.TemporaryDirectory(prefix="jobs-", dir=out) as tmp:
        tmp = Path(tmp)
        results = tmp / "results"
        (results / "feedback").mkdir(parents=True)
        todo, templates = [], {}
        for ch in wanted_chapters:
            for who in students:
                path = submitted / who / ch / f"{ch}.ipynb"
                base = {"assignment": ch, "student_id": who, "raw_score": 0.0, "score": 0.0,
                        "max_score": max_points(sources[ch]), "flags": ""}
                if not path.exists():
                    rows[who, ch] = {**base, "status": "missing"}
                    continue
                nb, reason = read_submission(path, ch, sources)
                if reason:
                    rows[who, ch] = {**base, "status": "failed: " + reason}
                    continue
                flags = ["tests-restored"] if restore_tests(nb, sources[ch]) else []
                try:
                    flags += integrity_flags(json.loads(path.read_text(encoding="utf-8")), ch)
                except Exception as exc:  # a bug in the checks must not stop the run
                    print(f"warning: attnedu.integrity failed on {who}/{ch}: {exc!r}", file=sys.stderr)
                from .integrity import without_tampering

                nb, tampered = without_tampering(nb, ch)  # graded as the code would be without it
                skip_tags_from_source(nb, sources[ch])
                flags += ["tampering"] if tampered else []
                if ch not in templates:
                    templates[ch] = _template(root, ch, config, tmp)
                job = tmp / "jobs" / who / ch
                shutil.copytree(templates[ch], job)
                target = job / "_grading" / "submitted" / who / ch / f"{ch}.ipynb"
                target.parent.mkdir(parents=True)
                target.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
                for extra in path.parent.iterdir():  # files handed in beside the notebook
                    if extra != path and extra.is_file():
                        shutil.copy2(extra, target.parent / extra.name)
                rows[who, ch] = {**base, "status": "graded", "flags": flags}
                todo.append((who, ch, job))

        def run(item):
            who, ch, job = item
            status, stats[who, ch] = _run_job(job, who, ch, env)
            if verbose:
                print(f"{who}/{ch}: {status} ({stats[who, ch]['seconds']:.1f} s)", flush=True)
            return item, status

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            finished = list(pool.map(run, todo))
        by_exercise = []
        for (who, ch, job), status in finished:
            row = rows[who, ch]
            row["flags"] = ";".join(dict.fromkeys(row["flags"]))
            row["status"] = status
            if status != "graded":
                log = out / "logs" / who / f"{ch}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                error = job / "error.txt"
                log.write_text((error.read_text(encoding="utf-8") + "\n" if error.exists() else "") +
                               (job / "log.txt").read_text(encoding="utf-8", errors="replace"), encoding="utf-8")
                continue
            [graded] = _read_csv(job / "_grading" / "grades.csv")
            rows[who, ch] = {**graded, "status": "graded", "flags": row["flags"]}
            by_exercise += _read_csv(job / "_grading" / "grades_by_exercise.csv")
            for folder in ("feedback", "autograded"):
                if (job / "_grading" / folder / who / ch).exists():
                    shutil.copytree(job / "_grading" / folder / who / ch, results / folder / who / ch)
        for row in rows.values():
            if isinstance(row["flags"], list):
                row["flags"] = ";".join(dict.fromkeys(row["flags"]))
        _write_csv(results / "grades.csv", GRADES_FIELDS, list(rows.values()))
        _write_csv(results / "grades_by_exercise.csv", BY_EXERCISE_FIELDS, by_exercise)
        if not chapter and not student:  # a full run starts afresh
            for name in ("grades.csv", "grades_by_exercise.csv"):
                (out / name).unlink(missing_ok=True)
        paths = merge(out, [results], replace_with_missing=True)
    apply_overrides(out)
    statuses = [r["status"] for r in rows.values()]
    summary = {
        "graded": statuses.count("graded"),
        "failed": sum(s.startswith("failed") for s in statuses),
        "flagged": sum(bool(r["flags"]) for r in rows.values()),
        "missing": statuses.count("missing"),
    }
    return {
        "graded": sorted(k for k, r in rows.items() if r["status"] == "graded"),
        "rows": rows,
        "summary": summary,
        "stats": stats,
        "grades": paths["grades"],
        "by_exercise": paths["by_exercise"],
        "feedback": root / config.CourseDirectory.feedback_directory,
    }


#: In ``my-work/``: for each chapter copied there, a fingerprint of the student version it was
#: copied from, so that ``make lab`` can tell when the course's chapter has changed since.
WORKSPACE_RECORD = ".attnedu-copies.json"


def student_fingerprint(notebook: Path | str) -> str:
    """A short hash of a student version's cells (their types and sources, not outputs or metadata)."""
    import hashlib

    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    text = json.dumps([[c.get("cell_type"), "".join(c.get("source", ""))] for c in nb.get("cells", [])])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def workspace(root: Path | str = ".", dest: Path | str | None = None) -> list[Path]:
    """Give a learner their own student copy of each chapter in ``my-work/``.

    Existing copies are never overwritten: a learner's work is not lost when a
    new chapter arrives. Returns the notebooks that were added. See :func:`changed_chapters`
    for the chapters that changed since the learner's copy was made.
    """
    return _workspace(root, dest)[0]


def changed_chapters(root: Path | str = ".", dest: Path | str | None = None) -> list[str]:
    """Bring ``my-work/`` up to date as :func:`workspace` does, and return the chapters
    (``NN-slug``) whose student version has changed since the learner's copy was made
    (their copies are left as they are)."""
    return _workspace(root, dest)[1]


def _workspace(root: Path | str, dest: Path | str | None) -> tuple[list[Path], list[str]]:
    root = Path(root).resolve()
    dest = Path(dest) if dest else root / "my-work"
    record_path = dest / WORKSPACE_RECORD
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    added, changed = [], []
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(root, **{"CourseDirectory.release_directory": str(Path(tmp) / "release")})
        config.CourseDirectory.db_url = f"sqlite:///{Path(tmp) / 'gradebook.db'}"
        for nb in release(root, config):
            chapter, now = nb.parent.name, student_fingerprint(nb)
            target = dest / chapter / nb.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(nb, target)
                added.append(target)
                record[chapter] = now
            elif record.setdefault(chapter, now) != now:  # a copy from before the record: as of now
                changed.append(chapter)
    dest.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return added, changed


def _say_changed(changed: list[str]) -> None:
    for chapter in changed:
        print(f"{chapter} has changed since your copy was made. Your copy, my-work/{chapter}/{chapter}.ipynb, "
              f"is untouched. To get the new version, rename your copy (for example to {chapter}.mine.ipynb) "
              "and run `make lab` again; then bring your answers across.")


def main(argv=None) -> int:
    from ._lean_process import freeze_at_exit, without_the_iri_grammar

    without_the_iri_grammar()  # about 2.4 s less at every start (see attnedu._lean_process)
    parser = argparse.ArgumentParser(prog="python -m attnedu.grading", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["release", "grade", "workspace", "merge", "_worker"])
    parser.add_argument("folders", nargs="*", help="merge: the result folders (each a _grading/ made by "
                        "`make grade` elsewhere), merged into ROOT/_grading")
    parser.add_argument("--root", default=".", help="the top of the attnedu repository (default: .)")
    parser.add_argument("--jobs", type=int, default=1, help="grade: submissions graded at a time (default: 1)")
    parser.add_argument("--chapter", default=None, help="grade: only this chapter (e.g. 01-weighted-sums)")
    parser.add_argument("--student", default=None, help="grade: only this student")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.command == "_worker":  # one job's own process (see grade)
        freeze_at_exit()  # it ends 0.6 s sooner
        job, student, chapter = args.folders
        return _worker(Path(job).resolve(), student, chapter)
    if args.command == "release":
        for path in release(root):
            print(f"student version: {path}")
    elif args.command == "workspace":
        added, changed = _workspace(root, None)
        print(f"my-work/: {len(added)} new chapter(s) added; existing copies were left as they are.")
        _say_changed(changed)
    elif args.command == "merge":
        if not args.folders:
            parser.error("merge needs at least one result folder")
        paths = merge(root.resolve() / "_grading", args.folders)
        apply_overrides(root.resolve() / "_grading")
        print(f"merged {len(args.folders)} folder(s)\ngrades: {paths['grades']}\nby exercise: {paths['by_exercise']}")
    else:
        if not submissions(root) and not any((root / "_grading" / "submitted").glob("*/*/*")):
            print(f"No submissions in {root / '_grading/submitted'}: put each one at "
                  "_grading/submitted/<student>/<NN-slug>/<NN-slug>.ipynb", file=sys.stderr)
            return 1
        result = grade(root, jobs=args.jobs, chapter=args.chapter, student=args.student, verbose=True)
        for (who, chapter), row in sorted(result["rows"].items()):
            if row["status"].startswith("failed") or row["flags"]:
                print(f"{who}/{chapter}: {row['status']}" + (f" [flags: {row['flags']}]" if row["flags"] else ""))
        s = result["summary"]
        print(f"grades: {result['grades']}\nby exercise: {result['by_exercise']}\nfeedback: {result['feedback']}")
        print(f"summary: {s['graded']} graded, {s['failed']} failed, {s['flagged']} flagged, {s['missing']} missing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
