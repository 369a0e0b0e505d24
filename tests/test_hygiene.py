"""Notebook hygiene: what every chapter notebook must look like to be a book page and an assignment."""

import ast
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
    # nbformat.read gives a cell without an id a random one (and warns): the file itself must have them
    ids = [cell.get("id") for cell in load_notebook(path)["cells"]]
    missing = [i for i, cell_id in enumerate(ids) if not (isinstance(cell_id, str) and re.fullmatch(r"[\w-]{1,64}", cell_id))]
    assert not missing, f"cells {missing} have no valid id (nbformat 4.5: 1-64 letters, digits, - or _)"
    assert len(set(ids)) == len(ids), "cell ids must be unique"


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


# ------------------------------------------------------------------ accessibility
# Colour maps that run through red and green at equal lightness (or through every hue): a reader
# with red-green colour blindness cannot read their values, and in grey scale they are not monotone.
NOT_COLOUR_BLIND_SAFE = ("jet", "rainbow", "gist_rainbow", "hsv", "RdYlGn", "nipy_spectral", "turbo", "gist_ncar")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_figures_use_colour_blind_safe_colours(path):
    """Every chapter switches to the course's palette in its first cell, and no figure uses a
    colour map that only people with full colour vision can read."""
    cells = [c for c in load_notebook(path)["cells"] if c["cell_type"] == "code"]
    assert "course_style()" in source(cells[0]), "the first code cell should call attnedu.plot.course_style()"
    for i, cell in enumerate(cells):
        for name in re.findall(r"cmap\s*=\s*[\"']([A-Za-z_]+)[\"']", source(cell)):
            assert name.removesuffix("_r") not in NOT_COLOUR_BLIND_SAFE, f"code cell {i} uses cmap={name!r}"


def test_the_library_uses_colour_blind_safe_colours():
    from attnedu.plot import CMAP, COLORS

    assert CMAP not in NOT_COLOUR_BLIND_SAFE and len(set(COLORS)) == len(COLORS) == 8
    for module in (REPO / "attnedu").rglob("*.py"):
        for name in re.findall(r"cmap\s*=\s*[\"']([A-Za-z_]+)[\"']", module.read_text(encoding="utf-8")):
            assert name.removesuffix("_r") not in NOT_COLOUR_BLIND_SAFE, f"{module} uses cmap={name!r}"


def heatmap_calls(text):
    """The calls of attention_heatmap(s) in a cell's code, as ast.Call nodes."""
    try:
        tree = ast.parse(text)
    except SyntaxError:  # IPython syntax (a magic): no Python calls to inspect
        return []
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", "")) in ("attention_heatmap", "attention_heatmaps")]


def names_its_axes(call) -> bool:
    """Tick labels (x_labels, or attention_heatmap's second positional argument) or an axis name."""
    def given(node):
        return node is not None and not (isinstance(node, ast.Constant) and node.value is None)

    keywords = {k.arg: k.value for k in call.keywords}
    positional = call.args[1] if getattr(call.func, "id", "") == "attention_heatmap" and len(call.args) > 1 else None
    return given(keywords.get("x_labels", positional)) or "xlabel" in keywords


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_attention_heatmaps_label_their_axes(path):
    """An attention map is read by its tokens: every heatmap call names its keys (tick labels,
    an axis name of its own, or ticks set by hand in the same cell)."""
    for i, cell in enumerate(load_notebook(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        for call in heatmap_calls(source(cell)):
            assert names_its_axes(call) or "set_xticks" in source(cell), \
                f"cell {i}, line {call.lineno}: an attention heatmap without its tokens on the axes"


def test_the_axis_check_sees_an_unlabelled_heatmap():
    [bare] = heatmap_calls("attention_heatmap(w, ax=axes[0])")
    [none] = heatmap_calls("attention_heatmaps([w], x_labels=None)")
    [good] = heatmap_calls("attention_heatmap(w, tokens, tokens)")
    assert not names_its_axes(bare) and not names_its_axes(none) and names_its_axes(good)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_every_figure_has_alt_text_that_describes_it(path):
    """A cell that shows a figure carries its description for screen readers in its metadata
    (mystnb.image.alt, which the book puts on every image the cell outputs); without it the
    book's alt text would be the image's file name."""
    for i, cell in enumerate(load_notebook(path)["cells"]):
        text = source(cell)
        if cell["cell_type"] != "code" or not ("plt.show()" in text or re.search(r"^explorer\(", text, re.M)):
            continue
        alt = cell.get("metadata", {}).get("mystnb", {}).get("image", {}).get("alt", "")
        assert len(alt.split()) >= 8, f"cell {i} shows a figure but has no alt text that describes it: {alt!r}"
