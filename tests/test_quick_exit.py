"""The processes the course starts itself (the kernels of attnedu.build and attnedu.grading, each
grading job) freeze the garbage collector at exit (attnedu._quick_exit), so that the
interpreter's last collection has nothing to scan; a kernel's namespace is untouched."""

from __future__ import annotations

import subprocess
import sys

import nbformat

from attnedu import _quick_exit, build, grading

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
    assert exit_report("from attnedu import _quick_exit; _quick_exit.load_ipython_extension(None); _quick_exit.freeze_at_exit()") == \
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
    assert "'attnedu._quick_exit'" in output["text"] and output["text"].endswith(" False False\n"), output["text"]


def test_grading_kernels_load_it_beside_the_configured_arguments():
    execute = grading._capped_execute()(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    assert execute.extra_arguments == ["--HistoryManager.hist_file=:memory:", *_quick_exit.KERNEL_ARGUMENTS]


def test_a_grading_jobs_process_freezes_at_exit_too(monkeypatch, tmp_path):
    asked, graded = [], []
    monkeypatch.setattr(_quick_exit, "freeze_at_exit", lambda: asked.append(True))
    monkeypatch.setattr(grading, "_worker", lambda job, student, chapter: graded.append((job, student, chapter)) or 0)
    assert grading.main(["_worker", str(tmp_path), "ada", "01-weighted-sums"]) == 0
    assert asked == [True] and graded == [(tmp_path.resolve(), "ada", "01-weighted-sums")]
