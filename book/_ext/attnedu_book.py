"""Sphinx extension for the attnedu book: show solutions cleanly, never show hidden tests.

* nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` marker lines are removed from
  the code shown on the page (the solution cell itself sits behind a toggle, through its
  ``hide-input`` tag).
* Hidden-test cells are removed from the page by their ``remove-cell`` tag. The book also
  publishes each page's source notebook (the download button); this extension removes those
  cells, and any text between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, from
  the published copies as well.
* A chapter page depends on its execution report, ``_build/execution/NN-slug.json``, which
  ``python -m attnedu.build`` (run by ``make book``) rewrites whenever it executes the
  notebook again: Sphinx then reads the page again, with the new outputs from the cache,
  even though the notebook's file did not change (for instance after a change to the library).
* A chapter's number is the one in its folder's name (``notebooks/10-vector-search/``), not
  its position in the table of contents: a learner should find chapter 10 in the folder
  called 10, even while a chapter before it is missing from the book.
* A script that the page would carry twice is kept once. sphinx-thebe adds its inline
  configuration (``const THEBE_JS_URL = ...``) each time Sphinx starts reading documents, and
  an incremental build reads twice; the second ``const`` is a SyntaxError in the browser's
  console on every page (``tests/test_browser.py`` fails on any console error).
* The theme's colour mode defaults to ``auto`` (the reader's system setting) instead of the
  empty string, which the theme's script reports as an error on every page.
* pybtex (behind sphinxcontrib-bibtex's citations) asks ``importlib.metadata`` for its plugins
  (the citation style, the plain-text backend) at every citation it resolves, and each ask reads
  the entry points of every installed package (about 260 in the course's venv): 154 asks, 3.4 of
  the 26.7 s of a profiled build. The packages do not change during a build, so each distinct
  ask is answered once (:func:`pybtex_entry_points_once`).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from docutils import nodes

SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", re.DOTALL)


def strip_solution_markers(app, doctree) -> None:
    for block in doctree.findall(nodes.literal_block):
        text = block.astext()
        if "### BEGIN SOLUTION" in text:
            clean = SOLUTION_MARKER.sub("", text)
            block.children = [nodes.Text(clean)]
            block.rawsource = clean


def clean_notebook(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    kept = []
    for cell in nb.get("cells", []):
        if "remove-cell" in cell.get("metadata", {}).get("tags", []):
            continue
        source = "".join(cell.get("source", []))
        if "### BEGIN HIDDEN TESTS" in source:
            cell["source"] = HIDDEN_BLOCK.sub("", source)
        kept.append(cell)
    nb["cells"] = kept
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def clean_published_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    for path in Path(app.outdir).rglob("*.ipynb"):
        clean_notebook(path)


CHAPTER_DOC = re.compile(r"(?:^|/)(\d\d)-[^/]+/\1-[^/]+$")


def _renumbered(number, chapter: int):
    return (chapter, *number[1:]) if number else number


def number_chapters_by_folder(app, env):
    """Replace the first component of every section (and figure) number of a chapter with the
    chapter's folder number. Sphinx numbers the table of contents consecutively across parts;
    this runs after it (priority 900), on every build."""
    for docname in list(env.toc_secnumbers):
        match = CHAPTER_DOC.search(docname)
        if not match:
            continue
        chapter = int(match.group(1))
        env.toc_secnumbers[docname] = {anchor: _renumbered(number, chapter)
                                       for anchor, number in env.toc_secnumbers[docname].items()}
        for ref in env.tocs[docname].findall(nodes.reference):
            if ref.get("secnumber"):
                ref["secnumber"] = _renumbered(ref["secnumber"], chapter)
        for figtype, numbers in env.toc_fignumbers.get(docname, {}).items():
            env.toc_fignumbers[docname][figtype] = {key: _renumbered(number, chapter)
                                                    for key, number in numbers.items()}
    return []


def depend_on_execution_report(app, doctree) -> None:
    match = CHAPTER_DOC.search(app.env.docname)
    if match and str(app.env.doc2path(app.env.docname)).endswith(".ipynb"):
        stem = app.env.docname.rsplit("/", 1)[-1]
        app.env.note_dependency(str(Path(app.srcdir) / "_build" / "execution" / f"{stem}.json"))


def one_of_each_script(app, pagename, templatename, context, doctree) -> None:
    """Drop the repeats of a script: same file, or the same inline body, with the same attributes."""
    seen, kept = set(), []
    for script in context.get("script_files", []):
        # an inline script's file name is None or "" depending on who added it: the body decides
        name = getattr(script, "filename", script) or ""
        key = (str(name), tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


def default_colour_mode(app, pagename, templatename, context, doctree) -> None:
    """pydata-sphinx-theme reads the default mode from the page's context (``html_context``)."""
    if not context.get("default_mode"):
        context["default_mode"] = "auto"


def pybtex_entry_points_once() -> None:
    """Memoise pybtex's ``entry_points(group=..., name=...)`` for this process (see the module's docstring).
    Plugins registered at run time (``pybtex.plugin.register_plugin``) are looked up before the
    entry points and are unaffected."""
    try:
        import pybtex.plugin as plugin
    except ImportError:  # no bibliography extension: nothing to speed up
        return
    if not hasattr(plugin.entry_points, "cache_info"):
        plugin.entry_points = functools.lru_cache(maxsize=None)(plugin.entry_points)


def setup(app):
    pybtex_entry_points_once()
    app.connect("html-page-context", default_colour_mode, priority=100)
    app.connect("html-page-context", one_of_each_script, priority=100)  # before any handler that returns (emit_firstresult stops there)
    app.connect("doctree-read", depend_on_execution_report)
    app.connect("env-get-updated", number_chapters_by_folder, priority=900)
    app.connect("doctree-read", strip_solution_markers)
    app.connect("build-finished", clean_published_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
