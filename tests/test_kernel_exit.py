"""The kernels the course starts itself (attnedu.build, attnedu.grading) load attnedu._kernel_exit,
which freezes the garbage collector at exit, so that the interpreter's last collection has
nothing to scan; the kernel's namespace is untouched."""

from __future__ import annotations

import subprocess
import sys

import nbformat

from attnedu import _kernel_exit, build, grading

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
    assert exit_report("from attnedu import _kernel_exit; _kernel_exit.load_ipython_extension(None)") == \
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
    assert "'attnedu._kernel_exit'" in output["text"] and output["text"].endswith(" False False\n"), output["text"]


def test_grading_kernels_load_it_beside_the_configured_arguments():
    execute = grading._capped_execute()(extra_arguments=["--HistoryManager.hist_file=:memory:"])
    assert execute.extra_arguments == ["--HistoryManager.hist_file=:memory:", *_kernel_exit.KERNEL_ARGUMENTS]
