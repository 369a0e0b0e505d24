"""Execute the chapter notebooks once, into the book's execution cache.

This is what ``make book`` runs before ``jupyter-book build``, and what
``tests/test_notebooks.py`` runs for each chapter::

    python -m attnedu.build                 # every chapter, two at a time
    python -m attnedu.build 01-weighted-sums 06-gpt --workers 1
    python -m attnedu.build --force         # execute again even if the cache is up to date

How it works:

- Each chapter ``notebooks/NN-slug/NN-slug.ipynb`` is executed with nbclient, on the
  ``python3`` kernel, in the notebook's own folder (as Jupyter Book does), with the cell
  timeout of ``_config.yml`` (``execute: timeout``, 300 s), stopping at the first cell that
  raises. Kernels run with one thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``):
  two notebooks at a time on two cores run faster than with two threads each. The kernel
  skips the interpreter's last garbage collection when it ends (``attnedu._lean_process``):
  about a second saved on every notebook.
- The executed notebook goes into Jupyter Book's cache, ``_build/.jupyter_cache``
  (jupyter-cache). Its key is a hash of the code cells' sources and metadata and of the
  notebook's kernelspec, the key myst-nb looks up with ``execute_notebooks: cache``: the book
  build then finds every chapter there and starts no kernel. A notebook is not executed
  again while the cache holds the outputs of its current source, made with the current
  library (``library_fingerprint``: the ``attnedu`` package, ``data/`` and the versions of
  Python, NumPy, PyTorch, Matplotlib; the book's pages, which chapters 10-14 search, are not
  in it: ``--force`` executes anyway). Older entries of the same notebook are removed; a
  notebook that fails leaves no entry, so the book never shows stale outputs.
- Each execution writes a report, ``_build/execution/NN-slug.json``: total seconds (kernel
  start included), seconds per code cell, and the errors (cell, source, exception). The
  timing table at the end of ``make test`` is made from these.
- The book's extension (``book/_ext/attnedu_book.py``) makes each chapter page depend on its
  report, so that Sphinx reads a page again (from the cache) when its notebook was executed
  again, even if the notebook's file did not change.
- A lock per notebook (``_build/execution/NN-slug.lock``) makes "look in the cache, else
  execute" one step, so two processes asking for the same notebook (two pytest workers, the
  book's test and a notebook's test) execute it once: the second waits and reuses the result.

The library's notebooks need nothing from this module; it only needs what ``pip install -e
".[dev]"`` installs (nbclient, nbformat, jupyter-cache, filelock, PyYAML).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "REPO",
    "chapters",
    "notebook_path",
    "cache_dir",
    "report_path",
    "book_timeout",
    "hashkey",
    "is_cached",
    "library_fingerprint",
    "execute",
    "run",
    "execute_all",
    "format_errors",
    "describe",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
KERNEL = "python3"
DEFAULT_TIMEOUT = 300  # seconds per cell, as the book's _config.yml says
# Set by `make grade` to shorten training; the book shows the fully trained models.
_GRADING_ONLY = ("ATTNEDU_MAX_TRAIN_SECONDS",)


def chapters(root: Path | str = REPO) -> list[Path]:
    """Every chapter notebook, ``notebooks/NN-slug/NN-slug.ipynb``, in order."""
    folder = Path(root) / "notebooks"
    return sorted(p for p in folder.glob("*/*.ipynb") if p.stem == p.parent.name)


def notebook_path(chapter: str | Path, root: Path | str = REPO) -> Path:
    """The notebook of a chapter given as ``NN-slug``, ``NN`` or a path."""
    path = Path(chapter)
    if path.suffix == ".ipynb":
        return path.resolve()
    found = [p for p in chapters(root) if p.stem == str(chapter) or p.stem.split("-")[0] == str(chapter)]
    if len(found) != 1:
        raise ValueError(f"no single chapter called {chapter!r} in {Path(root) / 'notebooks'}")
    return found[0]


def cache_dir(root: Path | str = REPO) -> Path:
    """Jupyter Book's execution cache (what ``execute_notebooks: cache`` reads)."""
    return Path(root) / "_build" / ".jupyter_cache"


def report_path(notebook: Path, root: Path | str = REPO) -> Path:
    return Path(root) / "_build" / "execution" / f"{Path(notebook).stem}.json"


def book_timeout(root: Path | str = REPO) -> int:
    """The book's cell timeout, ``execute: timeout`` in ``_config.yml``."""
    try:
        import yaml

        config = yaml.safe_load((Path(root) / "_config.yml").read_text(encoding="utf-8"))
        return int(config["execute"]["timeout"])
    except (OSError, KeyError, TypeError, ValueError, ImportError):
        return DEFAULT_TIMEOUT


def _read(notebook: Path):
    import nbformat

    return nbformat.read(str(notebook), as_version=4)  # as myst-nb reads it


def _cache(root: Path | str):
    from jupyter_cache import get_cache

    return get_cache(str(cache_dir(root)))


def hashkey(nb, root: Path | str = REPO) -> str:
    """The key under which jupyter-cache stores (and myst-nb looks up) this notebook."""
    return _cache(root).create_hashed_notebook(nb)[1]


def _cached_record(nb, root: Path | str):
    try:
        return _cache(root).match_cache_notebook(nb)
    except KeyError:
        return None


def is_cached(notebook: Path | str, root: Path | str = REPO) -> bool:
    """Whether the cache holds the outputs of this notebook's current source."""
    return _cached_record(_read(Path(notebook)), root) is not None


def _load_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def _first_line(source: str) -> str:
    lines = [ln for ln in source.splitlines() if ln.strip()]
    return lines[0][:80] if lines else ""


def _error_outputs(nb) -> list[dict]:
    """Every error output, and every stderr stream that shows a traceback."""
    errors = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                errors.append({"cell": index, "source": cell.source, "ename": out.get("ename", ""),
                               "evalue": out.get("evalue", ""), "traceback": _plain("\n".join(out.get("traceback", [])))})
            elif out.get("output_type") == "stream" and out.get("name") == "stderr" \
                    and "Traceback (most recent call last)" in out.get("text", ""):
                errors.append({"cell": index, "source": cell.source, "ename": "stderr",
                               "evalue": "a traceback was printed to stderr", "traceback": out["text"]})
    return errors


def _plain(text: str) -> str:
    """Text without the ANSI colour codes of IPython's tracebacks."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _kernel_env(threads: int, extra: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _GRADING_ONLY}
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
                "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                # nobody moves a slider here: explorers draw static figures, progress bars print text
                "ATTNEDU_STATIC_OUTPUTS": "1"})
    env.update(extra or {})
    return env


def _run(nb, folder: Path, timeout: int, env: dict, allow_errors: bool = False, grading: bool = False) -> dict:
    """Execute ``nb`` in place; return seconds, per-cell seconds and the first error. ``grading``:
    skip the cells the grader skips."""
    from nbclient import NotebookClient

    from ._lean_process import KERNEL_ARGUMENTS
    from .grading import show_skipped, skipped_when_grading

    class TimedClient(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            start = time.perf_counter()
            try:
                if grading and skipped_when_grading(cell):
                    return show_skipped(cell)
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            finally:
                if cell.cell_type == "code" and cell.source.strip():
                    seconds[cell_index] = time.perf_counter() - start

    seconds: dict[int, float] = {}
    client = TimedClient(nb, timeout=timeout, kernel_name=KERNEL, allow_errors=allow_errors,
                         record_timing=False,  # it writes cell metadata, which is hashed
                         extra_arguments=list(KERNEL_ARGUMENTS),  # the kernel ends at once (_lean_process)
                         resources={"metadata": {"path": str(folder)}})
    start = time.perf_counter()
    failure = None
    try:
        client.execute(env=env)
    except Exception as exc:  # CellExecutionError, CellTimeoutError, DeadKernelError, ...
        failure = exc
    return {"seconds": time.perf_counter() - start, "cell_seconds": seconds, "failure": failure}


def _failure_entry(nb, seconds: dict, failure: BaseException) -> dict:
    """The error of a cell that stopped the notebook without an error output (a timeout, a
    dead kernel)."""
    index = max(seconds) if seconds else None  # the cell that was running when it stopped
    text = _plain(str(failure)).strip()
    return {"cell": index, "source": nb.cells[index].source if index is not None else "",
            "ename": getattr(failure, "ename", None) or type(failure).__name__,
            "evalue": getattr(failure, "evalue", None) or (text.splitlines()[-1] if text else ""),
            "traceback": text or "".join(traceback.format_exception_only(failure))}


def _report(notebook: Path, root: Path, nb, key: str | None, result: dict, run: str | None) -> dict:
    errors = _error_outputs(nb)
    if result["failure"] is not None and not any(e["ename"] != "stderr" for e in errors):
        errors.insert(0, _failure_entry(nb, result["cell_seconds"], result["failure"]))
    cells = [{"cell": i, "execution_count": nb.cells[i].get("execution_count"), "seconds": round(s, 3),
              "first_line": _first_line(nb.cells[i].source)} for i, s in sorted(result["cell_seconds"].items())]
    slowest = max(cells, key=lambda c: c["seconds"], default=None)
    return {
        "notebook": str(notebook.relative_to(root)) if notebook.is_relative_to(root) else str(notebook),
        "chapter": notebook.stem,
        "hashkey": key,
        "status": "failed" if errors or result["failure"] is not None else "ok",
        "seconds": round(result["seconds"], 3),
        "code_cells": sum(1 for c in nb.cells if c.cell_type == "code"),
        "cells": cells,
        "slowest_cell": slowest,
        "time_budget_s": nb.metadata.get("attnedu", {}).get("time_budget_s"),
        "errors": errors,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run": run,
        "executed": True,
    }


def _store(notebook: Path, root: Path, executed_nb, seconds: float, source_nb) -> None:
    """Put the executed notebook into the cache, drop older entries of the same notebook, and
    check that the book will find it under the key of the current source."""
    from jupyter_cache.base import CacheBundleIn

    uri = str(notebook.resolve())
    with _lock(Path(root) / "_build" / "execution" / "cache.lock"):  # one writer of the database
        cache = _cache(root)
        record = cache.cache_notebook_bundle(CacheBundleIn(executed_nb, uri, data={"execution_seconds": seconds}),
                                             check_validity=False, overwrite=True)
        for old in cache.list_cache_records():
            if old.uri == uri and old.pk != record.pk:
                cache.remove_cache(old.pk)
        if cache.match_cache_notebook(source_nb).pk != record.pk:
            raise RuntimeError(f"{notebook}: the cached outputs are not found under the source's key")


def library_fingerprint(root: Path | str = REPO) -> str:
    """A hash of what the notebooks import and read besides themselves: the ``attnedu``
    package and ``data/`` (file names and contents), and the versions of Python, NumPy,
    PyTorch and Matplotlib. Cached outputs made with another fingerprint are executed again,
    so that a change to the library is tested by the notebooks that use it."""
    from importlib import metadata

    root = Path(root)
    digest = hashlib.sha256(sys.version.encode())
    for package in ("numpy", "torch", "matplotlib"):
        try:
            digest.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            pass
    for folder in ("attnedu", "data"):
        files = sorted(p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                       and p.suffix != ".pyc" and p.resolve() != Path(__file__).resolve())
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:20]


def _forget(notebook: Path, root: Path) -> None:
    """Remove every cached output of a notebook (after it failed: stale outputs under the
    same key would otherwise be published by the book)."""
    uri = str(notebook.resolve())
    with _lock(Path(root) / "_build" / "execution" / "cache.lock"):
        cache = _cache(root)
        for record in cache.list_cache_records():
            if record.uri == uri:
                cache.remove_cache(record.pk)


def run(notebook: Path | str, *, timeout: int | None = None, threads: int = 1, env: dict | None = None,
        allow_errors: bool = False, grading: bool = False, root: Path | str = REPO):
    """Execute any notebook in its own folder, outside the cache (a learner's copy, a student
    version); return ``(report, executed notebook)``. With ``allow_errors`` every cell runs and
    the report lists every error. With ``grading``, the cells that ``make grade`` skips
    (:func:`attnedu.grading.skipped_when_grading`) are not run either: each gets the grader's
    note as its output, and 0 s in the report."""
    root = Path(root).resolve()
    notebook = Path(notebook).resolve()
    nb = _read(notebook)
    result = _run(nb, notebook.parent, timeout or book_timeout(root), _kernel_env(threads, env), allow_errors,
                  grading)
    return _report(notebook, root, nb, None, result, None), nb


def execute(notebook: Path | str, root: Path | str = REPO, *, timeout: int | None = None, threads: int = 1,
            force: bool = False, run: str | None = None, env: dict | None = None) -> dict:
    """Execute one chapter notebook into the cache, unless the cache is up to date; return its
    report (see the module docstring). ``report["executed"]`` says whether this call executed it.

    Up to date: the cache holds the outputs of the notebook's current source, and its report
    says they were made with the current :func:`library_fingerprint`, or in this same ``run``.
    ``run`` is an id of the current test run: within one run a notebook is executed once,
    whether it passed or failed, even if the library changes meanwhile. ``env``: more
    environment variables for the kernel.
    """
    root = Path(root).resolve()
    notebook = notebook_path(notebook, root)
    timeout = timeout or book_timeout(root)
    where = report_path(notebook, root)
    with _lock(where.with_suffix(".lock")):
        source = _read(notebook)
        key = hashkey(source, root)
        library = library_fingerprint(root)
        previous = _load_report(where) or {}
        same_source = previous.get("hashkey") == key
        same_run = run is not None and previous.get("run") == run
        if not force and same_source:
            if previous.get("status") == "ok" and (previous.get("library") == library or same_run) \
                    and _cached_record(source, root) is not None:
                return {**previous, "executed": False}
            if previous.get("status") == "failed" and same_run:
                return {**previous, "executed": False}
        nb = copy.deepcopy(source)
        result = _run(nb, notebook.parent, timeout, _kernel_env(threads, env))
        report = _report(notebook, root, nb, key, result, run)
        report["library"] = library
        if report["status"] == "ok":
            _store(notebook, root, nb, result["seconds"], source)
        else:
            _forget(notebook, root)
        _write_json(where, {k: v for k, v in report.items() if k != "executed"})
        return report


def execute_all(notebooks=None, root: Path | str = REPO, *, workers: int = 2, on_done=None, **kwargs) -> list[dict]:
    """Execute several notebooks, ``workers`` at a time (each in its own kernel); return their
    reports in the order given. ``on_done(report)`` is called as each one finishes."""
    root = Path(root).resolve()
    notebooks = [notebook_path(nb, root) for nb in (notebooks or chapters(root))]

    def one(nb):
        report = execute(nb, root, **kwargs)
        if on_done:
            on_done(report)
        return report

    if workers <= 1:
        return [one(nb) for nb in notebooks]
    # Longest first (by time budget), so that the last one to finish is a short one.
    budget = {nb: _read(nb).metadata.get("attnedu", {}).get("time_budget_s") or 0 for nb in notebooks}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {nb: pool.submit(one, nb) for nb in sorted(notebooks, key=lambda nb: -budget[nb])}
        return [futures[nb].result() for nb in notebooks]


def format_errors(report: dict) -> str:
    """The failing cells of a report, each with its source and its error, for a person."""
    parts = []
    for e in report.get("errors", []):
        parts.append(f"{report['notebook']}, cell {e['cell']} raised {e['ename']}: {e['evalue']}\n"
                     f"--- cell source ---\n{e['source'].rstrip()}\n--- error ---\n{e['traceback'].rstrip()}")
    return "\n\n".join(parts)


def describe(report: dict) -> str:
    """One line about a report, as ``python -m attnedu.build`` prints it."""
    if report["status"] != "ok":
        return f"{report['chapter']:<28} FAILED after {report['seconds']:.1f} s"
    how = "executed in" if report.get("executed") else "cached, took"
    slow = report.get("slowest_cell")
    slowest = f" (slowest cell {slow['cell']}: {slow['seconds']:.1f} s)" if slow else ""
    seconds = f"{report['seconds']:.1f} s" if report.get("seconds") is not None else "? s"
    return f"{report['chapter']:<28} {how} {seconds}{slowest}"


def main(argv=None) -> int:
    from ._lean_process import without_the_iri_grammar

    without_the_iri_grammar()  # about 2.4 s less at every start (nbformat and nbclient check no formats)
    parser = argparse.ArgumentParser(prog="python -m attnedu.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="NN-slug, NN or a notebook's path (default: every chapter)")
    parser.add_argument("--workers", type=int, default=2, help="notebooks executed at a time (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="threads per kernel (default: 1)")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: _config.yml's)")
    parser.add_argument("--force", action="store_true", help="execute even if the cache is up to date")
    parser.add_argument("--root", default=str(REPO), help="the top of the attnedu repository")
    parser.add_argument("--run", default=os.environ.get("ATTNEDU_RUN_ID"),
                        help="id of a test run whose executions count as up to date (default: $ATTNEDU_RUN_ID)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    start = time.perf_counter()
    reports = execute_all(args.chapters or None, root, workers=args.workers, threads=args.threads,
                          timeout=args.timeout, force=args.force, run=args.run,
                          on_done=lambda r: print(describe(r), flush=True))
    ran = sum(1 for r in reports if r.get("executed"))
    print(f"{len(reports)} notebook(s), {ran} executed, in {time.perf_counter() - start:.1f} s; "
          f"outputs in {cache_dir(root)}, reports in {report_path(Path('x'), root).parent}")
    failed = [r for r in reports if r["status"] != "ok"]
    for r in failed:
        print("\n" + format_errors(r), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
