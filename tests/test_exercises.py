"""The course's exercises as a whole: every graded exercise of every notebook has one record,
its cells call the one check, the library's version passes it, and notebooks import only
public names."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from attnedu.checks import exercises_of
from conftest import NOTEBOOKS, REPO, load_notebook

ids = [p.parent.name for p in NOTEBOOKS]


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def source(cell) -> str:
    return "".join(cell["source"])


def graded_cells(path: Path) -> dict[str, str]:
    return {nbgrader(c)["grade_id"]: source(c) for c in load_notebook(path)["cells"] if nbgrader(c)}


def resolve(dotted: str):
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_exercise_of_the_notebook_has_one_record_and_calls_the_one_check(path):
    exercises = exercises_of(path.parent.name)
    cells = graded_cells(path)
    solutions = [gid for gid in cells if f"{gid}-check" in cells]
    assert sorted(solutions) == sorted(ex.grade_id for ex in exercises.values()), "records and solution cells differ"
    for ex in exercises.values():
        # a measure exercise may also be judged on the chapter's own measurement: own=(its arguments)
        own = r"(, own=\([\w, ]+\))?" if ex.kind == "measure" else ""
        assert re.fullmatch(re.escape(f'check("{ex.name}", {ex.name}') + own + r"\)", cells[f"{ex.grade_id}-check"].strip())
        hidden = cells[f"{ex.grade_id}-hidden"]
        assert re.search(r"### BEGIN HIDDEN TESTS\n" + re.escape(f'check("{ex.name}", {ex.name}, hidden=True') + own + r"\)",
                         hidden)
        assert re.search(rf"\b(def|class) {ex.name}\b", cells[ex.grade_id]), f"{ex.grade_id} does not define {ex.name}"


def test_the_course_has_44_exercises_with_unique_names():
    names = [name for p in NOTEBOOKS for name in exercises_of(p.parent.name)]
    assert len(names) >= 44 and len(set(names)) == len(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_the_librarys_version_of_every_exercise_passes_its_checks_visible_and_hidden(path, capsys):
    for ex in exercises_of(path.parent.name).values():
        assert ex.library, f"{ex.name}: name the library's version (Exercise.library)"
        for dotted in ex.library:
            version = resolve(dotted)
            exercises_of(path.parent.name).check(ex.name, version)
            exercises_of(path.parent.name).check(ex.name, version, hidden=True)
    out, records = capsys.readouterr().out, exercises_of(path.parent.name).values()
    # a prediction's visible check confirms only the form ("recorded"); the hidden one grades it
    assert out.count("passes all") == sum(len(e.library) for e in records if e.kind != "predict")
    assert out.count("is recorded") == sum(len(e.library) for e in records if e.kind == "predict")


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from attnedu... import name` in the notebook's code cells."""
    out = []
    for cell in load_notebook(path)["cells"]:
        if cell["cell_type"] != "code":
            continue
        text = "\n".join(ln for ln in source(cell).splitlines() if not ln.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnedu"):
                out += [(node.module, alias.name) for alias in node.names]
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebooks_import_only_public_names_and_no_reference_implementation(path):
    for module, name in imported_names(path):
        assert not name.startswith("_"), f"{path.name} imports the private {module}.{name}"
        assert not name.endswith(("_reference", "Reference")), f"{path.name} imports {module}.{name}"
        if module.startswith("attnedu.checks"):
            assert name in ("check", "reveal"), f"{path.name} imports {module}.{name}: notebooks use only `check` " \
                "(and `reveal` after a prediction's experiment)"


def test_the_package_has_one_causal_mask():
    defs = [str(p.relative_to(REPO)) for p in (REPO / "attnedu").rglob("*.py")
            if re.search(r"^\s*def causal_mask\b", p.read_text(encoding="utf-8"), re.M)]
    assert defs == ["attnedu/functional.py"], defs


def test_references_live_in_concept_modules_not_in_the_checks():
    for p in (REPO / "attnedu" / "checks").glob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert not re.search(r"^(def \w+_reference|class \w+Reference)\b", text, re.M), p.name
