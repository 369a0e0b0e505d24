"""Sphinx extension for the attnedu book: show solutions cleanly, never show hidden tests.

* nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` marker lines are removed from
  the code shown on the page (the solution cell itself sits behind a toggle, through its
  ``hide-input`` tag).
* Hidden-test cells are removed from the page by their ``remove-cell`` tag. The book also
  publishes each page's source notebook (the download button); this extension removes those
  cells, and any text between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, from
  the published copies as well.
"""

from __future__ import annotations

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


def setup(app):
    app.connect("doctree-read", strip_solution_markers)
    app.connect("build-finished", clean_published_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
