"""The book: `make book` builds with -W (warnings fail it) from the notebooks' outputs that
tests/test_notebooks.py put in the cache, without executing any notebook again; every chapter
page is there with its figures, solutions sit behind toggles, and no hidden test is published
anywhere."""

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from bs4 import BeautifulSoup

from attnedu import build
from conftest import HTML, NOTEBOOKS, REPO, load_notebook

# The first test's setup (the session fixture built_book in conftest.py) waits for the
# notebooks (executing those no other worker has taken yet), then builds the book.
pytestmark = pytest.mark.timeout(1800)


def test_the_book_is_built_from_the_executed_notebooks_without_a_kernel(built_book):
    log = built_book["log"]
    assert f"{len(NOTEBOOKS)} notebook(s), 0 executed" in log, "make book's executor should have found them all"
    # myst-nb caches whatever it executes (a new record) and says so; it did neither.
    assert "Executing notebook" not in log and "Executed notebook" not in log
    assert built_book["cache_after"] == built_book["cache_before"]
    uris = {str(nb.resolve()) for nb in NOTEBOOKS}
    assert uris <= set(built_book["cache_after"]), "every chapter's outputs are in the book's cache"


def page(notebook) -> BeautifulSoup:
    """A chapter's built page, parsed once per version of the file (several tests read each page;
    none changes the parsed tree)."""
    html = HTML / notebook.relative_to(REPO).with_suffix(".html")
    assert html.exists(), f"{html} was not built"
    return _parsed(str(html), html.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _parsed(name: str, mtime_ns: int) -> BeautifulSoup:
    return BeautifulSoup(Path(name).read_text(encoding="utf-8"), "html.parser")


def cells(notebook):
    return load_notebook(notebook)["cells"]


def visible_lines() -> set[str]:
    """Every line of every cell that the book may show, in any chapter."""
    lines = set()
    for nb in NOTEBOOKS:
        for c in cells(nb):
            if "BEGIN HIDDEN TESTS" not in "".join(c["source"]):
                lines |= {ln.strip() for ln in "".join(c["source"]).splitlines()}
    return lines


def hidden_lines(notebook):
    """The distinctive lines of every hidden test (long, and not also in a visible cell of
    any chapter, like an import), which must appear nowhere in the book."""
    lines = set()
    for c in cells(notebook):
        text = "".join(c["source"])
        for block in re.findall(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", text, re.S):
            lines |= {ln.strip() for ln in block.splitlines() if len(ln.strip()) > 25}
    return lines - visible_lines()


def test_every_page_of_the_table_of_contents_is_built(built_book):
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]] + [ch["file"] for part in toc["parts"] for ch in part["chapters"]]
    for f in files:
        assert (HTML / f"{f}.html").exists(), f"{f}.html is missing from the built book"
    landing = BeautifulSoup((HTML / "book" / "index.html").read_text(), "html.parser")
    assert any("course-map" in img.get("src", "") for img in landing.find_all("img"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_chapter_page_has_all_its_figures(built_book, notebook):
    soup = page(notebook)
    n_figures = sum("plt.show()" in "".join(c["source"]) for c in cells(notebook) if c["cell_type"] == "code")
    images = [img for img in soup.select("div.cell_output img")]
    assert len(images) >= n_figures > 0, f"{len(images)} figures on the page, {n_figures} expected"
    for img in images:
        target = (HTML / notebook.relative_to(REPO).parent / img["src"]).resolve()
        assert target.exists() and target.stat().st_size > 5000, f"figure {img['src']} is missing or empty"
        alt = img.get("alt", "")
        assert len(alt.split()) >= 4, f"figure {img['src']} has no alt text that describes it (got {alt!r})"


# Where each drawn diagram (attnedu.diagrams) appears.
DIAGRAMS = {"03-self-attention": "qkv_flow", "04-multi-head-attention": "heads_by_reshaping",
            "05-transformer": "transformer_block", "12-rag": "rag_pipeline"}


@pytest.mark.parametrize("chapter, name", DIAGRAMS.items())
def test_drawn_diagrams_are_on_their_pages_with_alt_text(built_book, chapter, name):
    from attnedu.diagrams import ALT

    soup = page(REPO / "notebooks" / chapter / f"{chapter}.ipynb")
    alts = [img.get("alt", "") for img in soup.select("div.cell_output img")]
    assert ALT[name] in alts, f"{chapter}'s page has no figure with the alt text of attnedu.diagrams.{name}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_hints_are_folded_and_rendered_as_markdown(built_book, notebook):
    soup = page(notebook)
    hints = [d for d in soup.find_all("details") if d.find("summary") and
             d.find("summary").get_text(strip=True).startswith("Hint")]
    n_exercises = sum(bool(c.get("metadata", {}).get("nbgrader", {}).get("solution")) for c in cells(notebook))
    assert len(hints) >= n_exercises, f"{len(hints)} folded hints for {n_exercises} exercises"
    for hint in hints:
        assert not hint.has_attr("open"), "a hint must be folded until opened"
        assert hint.find("p"), f"the inside of {hint.find('summary').get_text()} was not rendered as markdown"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_chapter_page_shows_check_results_and_no_errors(built_book, notebook):
    soup = page(notebook)
    assert "passes all" in soup.get_text()  # the visible checks ran against the solutions
    # An exception in a cell (a failed check included) is rendered as a traceback output.
    # The words alone prove nothing: chapter 13 prints questions about nbgrader that name them.
    errors = soup.select("div.cell_output div.traceback")
    errors += [e for e in soup.select("div.cell_output div.stderr") if "Error" in e.get_text()]
    assert not errors, f"error output on the page: {errors[0].get_text()[:500]}"
    for code in soup.select("div.cell_output"):
        assert "Traceback (most recent call last)" not in code.get_text()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_solutions_are_behind_a_toggle_without_nbgrader_markers(built_book, notebook):
    soup = page(notebook)
    toggled = soup.select("div.cell.tag_hide-input")
    solutions = [c for c in cells(notebook) if c.get("metadata", {}).get("nbgrader", {}).get("solution")]
    assert len(toggled) == len(solutions)
    for div, cell in zip(toggled, solutions):
        first_line = "".join(cell["source"]).splitlines()[0]
        assert first_line in div.get_text()
    for code in soup.select("div.cell_input"):  # the code as shown, solutions included
        assert "BEGIN SOLUTION" not in code.get_text() and "END SOLUTION" not in code.get_text()


def readable_text(path) -> str:
    """What a reader of a published file sees: HTML without its markup (code is split into
    highlighting spans and quotes are escaped), notebooks as their cells' text. (Read once per
    version of the file: each chapter's leak test reads every published file.)"""
    return _readable_text(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _readable_text(name: str, mtime_ns: int) -> str:
    path = Path(name)
    raw = path.read_text(encoding="utf-8", errors="ignore")
    if path.suffix == ".html":
        return BeautifulSoup(raw, "html.parser").get_text()
    if path.suffix == ".ipynb":
        nb = json.loads(raw)
        parts = ["".join(c.get("source", "")) for c in nb.get("cells", [])]
        for c in nb.get("cells", []):
            for out in c.get("outputs", []):
                parts.append("".join(out.get("text", "")) + json.dumps(out.get("data", {})))
        return "\n".join(parts)
    return raw


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_no_hidden_test_appears_anywhere_in_the_built_book(built_book, notebook):
    secrets = hidden_lines(notebook)
    assert secrets, "the notebook should have hidden tests to look for"
    published = [f for f in HTML.rglob("*") if f.is_file() and f.suffix in {".html", ".ipynb", ".js", ".txt"}]
    assert any(f.suffix == ".ipynb" for f in published), "the book should publish the source notebook"
    for f in published:
        text = readable_text(f)
        if f.suffix == ".ipynb" or f.stem == notebook.stem:
            assert "HIDDEN TESTS" not in text, f"hidden-test marker in {f}"
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"hidden test lines published in {f}: {leaked[:3]}"


def test_the_leak_detector_would_see_a_hidden_line_on_a_page(built_book):
    # guard against a vacuous test: text that IS on the page is found by the same means
    notebook = NOTEBOOKS[0]
    visible = [ln.strip() for c in cells(notebook) if "hide-input" in c.get("metadata", {}).get("tags", [])
               for ln in "".join(c["source"]).splitlines() if len(ln.strip()) > 25 and "###" not in ln]
    html = HTML / notebook.relative_to(REPO).with_suffix(".html")
    assert visible and all(v in readable_text(html) for v in visible)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_chapter_page_has_binder_and_colab_launch_buttons(built_book, notebook):
    links = [a.get("href", "") for a in page(notebook).find_all("a")]
    assert any("mybinder.org" in h for h in links) and any("colab.research.google.com" in h for h in links)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def test_chapter_number_on_the_page_is_its_folders_number(built_book, notebook):
    """Chapters 8 and 9 are not written yet; chapter 10 must still be called 10 (the book's
    extension renumbers what Sphinx would number consecutively)."""
    number = int(notebook.parent.name[:2])
    soup = page(notebook)
    numbers = [s.get_text(strip=True) for s in soup.select("main h1 span.section-number, main h2 span.section-number")]
    assert numbers and numbers[0] == f"{number}.", numbers[:3]
    assert all(n.startswith(f"{number}.") for n in numbers), numbers
    sidebar = soup.select_one(f'nav a[href$="{notebook.stem}.html"]') or soup.select_one("nav a.current")
    assert sidebar is not None and sidebar.get_text(strip=True).startswith(f"{number}. "), sidebar


def test_the_book_asks_for_each_pybtex_plugin_once_and_gets_what_importlib_gives(monkeypatch):
    """book/_ext/attnedu_book.py memoises pybtex's entry-point lookups (3.4 s of a 27 s build)."""
    import importlib.metadata
    import importlib.util

    import pybtex.plugin

    spec = importlib.util.spec_from_file_location("attnedu_book", REPO / "book" / "_ext" / "attnedu_book.py")
    ext = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ext)
    monkeypatch.setattr(pybtex.plugin, "entry_points", importlib.metadata.entry_points)  # restored afterwards
    ext.pybtex_entry_points_once()
    ext.pybtex_entry_points_once()  # twice: still one cache around the real function
    cached = pybtex.plugin.entry_points
    assert cached.__wrapped__ is importlib.metadata.entry_points
    first = cached(group="pybtex.style.formatting", name="plain")
    assert cached(group="pybtex.style.formatting", name="plain") is first and cached.cache_info().hits == 1
    assert list(first) == list(importlib.metadata.entry_points(group="pybtex.style.formatting", name="plain"))
    assert pybtex.plugin.find_plugin("pybtex.style.formatting", "plain").__name__ == "Style"
