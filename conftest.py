"""pytest plugin for the whole repository: the table of notebook execution times that
`make test` prints at its end.

Each notebook is executed once, by attnedu.build (tests/test_notebooks.py), which writes a
report per notebook to _build/execution/NN-slug.json; each test passes the report's times
on as a user property, which reaches this process from any pytest-xdist worker. A notebook
whose outputs were reused from an earlier run shows that run's times, marked "cached".
Speed is measured, not asserted: an over-budget notebook is marked here, not failed.
"""

from __future__ import annotations

GRADER_CELL_LIMIT = 60  # seconds: nbgrader's Execute.timeout (nbgrader_config.py)
TOTAL_LIMIT = 600  # seconds: all notebooks together, on a two-core machine

_runs: dict[str, dict] = {}


def pytest_runtest_logreport(report):
    for name, value in getattr(report, "user_properties", ()):
        if name == "notebook_execution":
            _runs[value["notebook"]] = value


def _status(run: dict) -> str:
    if run["status"] != "ok":
        return "FAILED"
    over = run["budget"] and run["seconds"] is not None and run["seconds"] > run["budget"]
    status = "OVER BUDGET" if over else "ok"
    return status if run["this_run"] else f"{status} (cached, {run['finished']})"


def pytest_terminal_summary(terminalreporter):
    if not _runs:
        return
    tr = terminalreporter
    tr.section("notebook execution times (attnedu.build, _build/execution/*.json)")
    width = max(len(p) for p in _runs)
    tr.write_line(f"{'notebook':<{width}} {'cells':>5} {'seconds':>8} {'budget':>7}  "
                  f"{'slowest cell':<24} status")
    total = 0.0
    for path in sorted(_runs):
        run = _runs[path]
        seconds = run["seconds"] or 0.0
        total += seconds
        budget = f"{run['budget']:>6}s" if run["budget"] else "      -"
        slowest = ""
        if run["slowest_cell"] is not None:
            over = f" > {GRADER_CELL_LIMIT} s!" if run["slowest_seconds"] > GRADER_CELL_LIMIT else ""
            slowest = f"cell {run['slowest_cell']}: {run['slowest_seconds']:.1f} s{over}"
        tr.write_line(f"{path:<{width}} {run['code_cells'] or 0:>5} {seconds:>8.1f} {budget}  {slowest:<24} {_status(run)}")
    verdict = "ok" if total <= TOTAL_LIMIT else f"OVER {TOTAL_LIMIT} s"
    tr.write_line(f"{'all notebooks together':<{width}} {'':>5} {total:>8.1f} {TOTAL_LIMIT:>6}s  {'':<24} {verdict}")
    tr.write_line(f"(slowest cell: a cell over {GRADER_CELL_LIMIT} s would be interrupted when grading; "
                  "seconds include the kernel's start)")
