"""Every chapter notebook runs top to bottom without an error.

Each notebook is executed once per `make test`, by attnedu.build (as `make book` does), into
the book's cache: tests/test_book.py then builds the book from those outputs, without a
kernel. Outputs of an earlier run are reused while neither the notebook nor the library has
changed (see attnedu.build). Each test records its notebook's times, which the table at the
end of `make test` shows (conftest.py at the top of the repository).
"""

from __future__ import annotations

import pytest

from attnedu import build
from conftest import NOTEBOOKS_LONGEST_FIRST, REPO, execute_chapter, load_notebook


def summary(report: dict, run_id: str) -> dict:
    """What the timing table needs, small enough to travel from an xdist worker."""
    slowest = report.get("slowest_cell") or {}
    return {
        "notebook": report["notebook"],
        "code_cells": report.get("code_cells"),
        "seconds": report.get("seconds"),
        "budget": report.get("time_budget_s"),
        "slowest_cell": slowest.get("cell"),
        "slowest_seconds": slowest.get("seconds"),
        "status": report["status"],
        "this_run": report.get("run") == run_id,
        "finished": report.get("finished"),
    }


@pytest.mark.parametrize("notebook", [
    pytest.param(nb, id=nb.parent.name, marks=pytest.mark.xdist_group(nb.parent.name))
    for nb in NOTEBOOKS_LONGEST_FIRST
])
def test_notebook_runs_without_errors(notebook, run_id, record_property):
    report = execute_chapter(notebook, run_id)
    record_property("notebook_execution", summary(report, run_id))
    if report["errors"] or report["status"] != "ok":
        pytest.fail(build.format_errors(report) or f"{notebook} failed", pytrace=False)
    code = [c for c in load_notebook(notebook)["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert len(report["cells"]) == len(code), "every code cell should have run"
    assert build.is_cached(notebook, REPO), "the book would not find this notebook's outputs"


def test_a_failing_cell_is_reported_with_its_source_and_error(tmp_path):
    """The executor stops at the first failing cell, names it with its source and error, and
    leaves nothing in the cache; a good notebook is cached and then reused, not executed again."""
    import nbformat

    def write(name, sources):
        folder = tmp_path / "notebooks" / name
        folder.mkdir(parents=True)
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
        return folder / f"{name}.ipynb"

    (tmp_path / "attnedu").mkdir()  # the library fingerprint reads attnedu/ and data/ under the root
    bad = write("01-bad", ["x = 1", "import os\nprint(os.getcwd())", "raise ValueError('broken on purpose')", "y = 2"])
    good = write("02-good", ["import os\nprint(os.getcwd())"])
    report = build.execute(bad, tmp_path, timeout=60)
    assert report["status"] == "failed" and report["executed"]
    [error] = report["errors"]
    assert error["cell"] == 2 and error["ename"] == "ValueError" and error["evalue"] == "broken on purpose"
    text = build.format_errors(report)
    assert "raise ValueError('broken on purpose')" in text and "ValueError: broken on purpose" in text
    assert len(report["cells"]) == 3  # the last cell never ran
    assert not build.is_cached(bad, tmp_path)
    assert build.report_path(bad, tmp_path).exists()

    first = build.execute(good, tmp_path, timeout=60)
    assert first["status"] == "ok" and first["executed"] and build.is_cached(good, tmp_path)
    nb = build._cache(tmp_path).merge_match_into_notebook(nbformat.read(good, as_version=4))[1]
    assert nb.cells[0].outputs[0]["text"].strip() == str(good.parent)  # run in its own folder
    again = build.execute(good, tmp_path, timeout=60)
    assert again["status"] == "ok" and not again["executed"]
    assert again["seconds"] == first["seconds"]
