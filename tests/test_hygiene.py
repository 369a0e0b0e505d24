"""Notebook hygiene: what every chapter notebook must look like to be a book page and an assignment."""

import re

import nbformat
import pytest
import yaml

from conftest import NOTEBOOKS, REPO, load_notebook

ids = [p.parent.name for p in NOTEBOOKS]


def nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def source(cell) -> str:
    return "".join(cell["source"])


def test_there_is_at_least_one_chapter():
    assert NOTEBOOKS, "no notebooks/NN-slug/NN-slug.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_valid_and_lives_at_nn_slug(path):
    assert re.fullmatch(r"\d\d-[a-z0-9-]+", path.parent.name)
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_outputs(path):
    for i, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] == "code":
            assert not cell["outputs"], f"cell {i} has outputs: clear them before committing"
            assert cell["execution_count"] is None, f"cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_has_a_title_a_kernel_and_a_time_budget(path):
    nb = load_notebook(path)
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and source(first).startswith("# "), "the first cell must be the H1 title"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["attnedu"]["time_budget_s"] > 0


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_graded_cell_has_points_and_a_unique_grade_id(path):
    cells = [c for c in load_notebook(path)["cells"] if nbgrader(c)]
    grade_ids = [nbgrader(c)["grade_id"] for c in cells]
    assert len(grade_ids) == len(set(grade_ids)), f"duplicate grade ids: {grade_ids}"
    for c in cells:
        meta = nbgrader(c)
        assert meta["schema_version"] == 3
        if meta.get("grade"):
            assert meta.get("points", 0) > 0, f"{meta['grade_id']} is graded but has no points"
            assert meta.get("locked"), f"{meta['grade_id']}: test cells must be locked"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_solution_cell_is_behind_a_toggle_and_marked(path):
    for c in load_notebook(path)["cells"]:
        if nbgrader(c).get("solution"):
            text = source(c)
            assert "### BEGIN SOLUTION" in text and "### END SOLUTION" in text, nbgrader(c)["grade_id"]
            assert "hide-input" in tags(c), f"{nbgrader(c)['grade_id']}: tag the solution cell hide-input"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_hidden_test_cell_is_removed_from_the_book(path):
    for c in load_notebook(path)["cells"]:
        if "BEGIN HIDDEN TESTS" in source(c):
            assert nbgrader(c).get("grade"), "hidden tests must sit in a graded (autograder) cell"
            assert "remove-cell" in tags(c), f"{nbgrader(c)['grade_id']}: tag hidden-test cells remove-cell"
            assert "### END HIDDEN TESTS" in source(c)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_at_least_three_exercises_each_with_a_visible_check_and_hidden_tests(path):
    exercises = []  # [solution id, visible checks, hidden tests]
    for c in load_notebook(path)["cells"]:
        meta = nbgrader(c)
        if meta.get("solution"):
            exercises.append([meta["grade_id"], 0, 0])
        elif meta.get("grade") and exercises:
            exercises[-1][2 if "BEGIN HIDDEN TESTS" in source(c) else 1] += 1
    assert len(exercises) >= 3, f"only {len(exercises)} graded exercises"
    for grade_id, visible, hidden in exercises:
        assert visible >= 1, f"exercise {grade_id} has no visible check"
        assert hidden >= 1, f"exercise {grade_id} has no hidden tests"


def test_the_table_of_contents_lists_every_chapter_and_only_existing_files():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for f in files:
        assert any((REPO / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f"{f} is in _toc.yml but missing"
    chapters = {str(p.relative_to(REPO).with_suffix("")) for p in NOTEBOOKS}
    assert chapters <= set(files), f"not in _toc.yml: {chapters - set(files)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_only_solution_cells_are_folded_behind_the_solution_toggle(path):
    # the book labels hide-input toggles "Show the solution" (_config.yml)
    for c in load_notebook(path)["cells"]:
        if "hide-input" in tags(c):
            assert nbgrader(c).get("solution"), f"hide-input on a cell that is not a solution: {source(c)[:60]!r}"


def test_every_heading_of_the_book_has_a_unique_label():
    """Questions about the course (chapter 11) name sections by label, so labels must exist,
    be unique, and stay put. `python -m attnedu.coursebook label` adds missing ones."""
    from attnedu import coursebook

    sections = coursebook.sections(REPO)  # raises on a heading without a label
    labels = [s.id for s in sections]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    assert not duplicates, f"labels used twice: {duplicates}"
    assert all(re.fullmatch(r"[a-z0-9-]+", x) for x in labels), [x for x in labels if not re.fullmatch(r"[a-z0-9-]+", x)]
    pages = {s.page for s in sections}
    assert {f"notebooks/{p.parent.name}/{p.stem}" for p in NOTEBOOKS} <= pages, "every chapter is in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_no_chapter_points_to_a_chapter_that_does_not_exist(path):
    """A reader who follows "chapter 9" must find it: every chapter a chapter names has its folder
    (and so its page), and none is promised as "planned"."""
    existing = {int(nb.parent.name[:2]) for nb in NOTEBOOKS}
    for cell in load_notebook(path)["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = source(cell)
        assert not re.search(r"planned chapter", text, re.I), (
            f"{path.parent.name} promises a planned chapter: {text[text.lower().index('planned chapter'):][:60]!r}")
        for m in re.finditer(r"\b[Cc]hapters? ((?:\d+(?:\s*(?:,|and|or|to|-)\s*)?)+)", text):
            missing = [n for n in map(int, re.findall(r"\d+", m.group(1))) if n not in existing]
            assert not missing, (f"{path.parent.name} points to chapter {missing[0]}, which does not exist: "
                                 f"{text[m.start():m.end() + 40]!r}")
