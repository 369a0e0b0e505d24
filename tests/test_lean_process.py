"""What the course's own processes do without (attnedu._lean_process): jsonschema's IRI grammar at
start (grading processes, `python -m attnedu.build`, the test processes), and the interpreter's
last garbage collection at exit (the kernels of attnedu.build and attnedu.grading, each grading
job), without touching a kernel's namespace."""

from __future__ import annotations

import subprocess
import sys

import nbformat

from attnedu import _lean_process, build, grading
from conftest import REPO

# The probe is registered before the extension, so it runs after it (atexit runs last in, first out).
PROBE = """
import atexit, gc
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0))
{load}
print("frozen before exit:", gc.get_freeze_count() > 0)
"""


def exit_report(load: str) -> str:
    result = subprocess.run([sys.executable, "-c", PROBE.format(load=load)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_extension_freezes_the_collector_only_when_the_process_ends():
    assert exit_report("from attnedu import _lean_process; _lean_process.load_ipython_extension(None); _lean_process.freeze_at_exit()") == \
        "frozen before exit: False\nfrozen at exit: True\n"
    assert exit_report("") == "frozen before exit: False\nfrozen at exit: False\n"  # Python's own exit


def test_build_kernels_load_it_and_their_namespace_is_untouched(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "print(sorted(get_ipython().extension_manager.loaded), 'gc' in dir(), 'atexit' in dir())")]
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    report, executed = build.run(path, timeout=60)
    assert report["status"] == "ok", report["errors"]
    [output] = executed.cells[0].outputs
    assert "'attnedu._lean_process'" in output["text"] and output["text"].endswith(" False False\n"), output["text"]


def test_grading_kernels_load_it_beside_the_configured_arguments():
    execute = grading._capped_execute()(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    assert execute.extra_arguments == ["--HistoryManager.hist_file=:memory:", *_lean_process.KERNEL_ARGUMENTS]


def test_a_grading_jobs_process_freezes_at_exit_too(monkeypatch, tmp_path):
    asked, graded = [], []
    monkeypatch.setattr(_lean_process, "freeze_at_exit", lambda: asked.append(True))
    monkeypatch.setattr(grading, "_worker", lambda job, student, chapter: graded.append((job, student, chapter)) or 0)
    assert grading.main(["_worker", str(tmp_path), "ada", "01-weighted-sums"]) == 0
    assert asked == [True] and graded == [(tmp_path.resolve(), "ada", "01-weighted-sums")]


def test_grading_processes_skip_jsonschemas_iri_grammar_and_still_validate_notebooks():
    """Every graded submission is a `python -m attnedu.grading` process: without the optional IRI
    grammar (2.4 s of Earley parser construction at import), nbformat still reads and validates
    notebooks, and still rejects a broken one."""
    code = """
import sys
from attnedu import _lean_process
_lean_process.without_the_iri_grammar()
import nbformat, nbgrader.apps
nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
nb.cells[0].cell_type = "bogus"
try:
    nbformat.validate(nb)
except nbformat.ValidationError:
    print("rejected")
print(sys.modules["rfc3987_syntax"] is None)
"""
    notebook = REPO / "notebooks" / "01-weighted-sums" / "01-weighted-sums.ipynb"
    result = subprocess.run([sys.executable, "-c", code, str(notebook)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["rejected", "True"]


def test_the_test_processes_and_attnedu_build_skip_the_iri_grammar_too():
    """tests/conftest.py does it before any test module imports nbformat (each pytest worker
    collected the tests in 10-11 s with the grammar, 5-6 s without), and `python -m attnedu.build`
    (make book's first step) as it starts."""
    assert sys.modules.get("rfc3987_syntax", "imported") is None  # this process: conftest.py
    code = """
import sys
from attnedu import build
try:
    build.main(["--help"])
except SystemExit:
    pass
print(sys.modules.get("rfc3987_syntax", "imported"))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "None"
