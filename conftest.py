"""pytest plugin for the whole repository: the table of notebook execution times that
`make test` prints at its end (the notebooks are run by nbval, one test per cell)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


_seconds: dict[str, float] = defaultdict(float)
_cells: dict[str, int] = defaultdict(int)
_failed: set[str] = set()


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if not path.endswith(".ipynb"):
        return
    _seconds[path] += report.duration  # setup (kernel start) + call + teardown
    if report.when == "call":
        _cells[path] += 1
    if report.failed:
        _failed.add(path)


def pytest_terminal_summary(terminalreporter):
    if not _seconds:
        return
    tr = terminalreporter
    tr.section("notebook execution times (nbval)")
    width = max(len(p) for p in _seconds)
    tr.write_line(f"{'notebook':<{width}} {'cells':>5} {'seconds':>8} {'budget':>7}  status")
    for path in sorted(_seconds):
        try:
            meta = load_notebook(REPO / path)["metadata"].get("attnedu", {})
        except (OSError, ValueError):
            meta = {}
        budget = meta.get("time_budget_s")
        status = "FAILED" if path in _failed else ("ok" if budget is None or _seconds[path] <= budget else "OVER BUDGET")
        budget_text = f"{budget:>6}s" if budget else "      -"
        tr.write_line(f"{path:<{width}} {_cells[path]:>5} {_seconds[path]:>8.1f} {budget_text}  {status}")
