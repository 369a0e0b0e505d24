"""The course's benchmarks as data: JSON results, and the book's performance page made from them.

Every script in ``benchmarks/`` ends with :func:`save`, which writes its table, its goals and a
description of the machine to ``benchmarks/results/<name>.json``. ``make bench`` runs them all and
then this module::

    python -m attnedu.perf            # benchmarks/results/*.json -> book/performance.md + its figures
    python -m attnedu.perf --check    # exit 1 if the page is not what the JSON gives (tests run this)

The JSON and the page are committed, so a fresh clone's book has the page without running
anything. A benchmark run with ``--quick`` (a smoke test) saves nothing, unless the environment
variable ``ATTNEDU_BENCH_DIR`` names a folder to save it in (the tests do that).

One result file::

    {"benchmark": "retrieval", "title": ..., "about": ..., "command": "python benchmarks/retrieval.py",
     "date": "2026-12-06T21:00:00+00:00", "seconds": 412.0,
     "machine": {"cpu": ..., "cores": 2, "memory_gib": 23.5, "os": ..., "load_before": 0.4, "load_after": 1.9},
     "versions": {"python": "3.11.2", "numpy": "2.4.6", ...},
     "columns": [{"key": "qps", "label": "queries/s", "format": ",.0f"}, ...],
     "rows": [{"method": "numpy exact", "qps": 2501.3, ...}, ...],
     "plot": {"kind": "bar", ...} or {"kind": "line", ...},
     "goals": [{"text": ..., "measured": 0.84, "target": 0.7, "unit": "x", "higher_is_better": true}],
     "notes": ["..."]}

Figures use the Okabe-Ito colours, which stay distinct with the common kinds of colour blindness,
and differ in marker or hatching as well, so they read in grey scale too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from attnedu.plot import COLORS

__all__ = ["RESULTS", "PAGE", "FIGURES", "machine", "versions", "save", "validate", "load",
           "goal_met", "render", "write_page", "main"]

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PAGE = REPO / "book" / "performance.md"
FIGURES = REPO / "book" / "images" / "performance"

_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_HATCHES = ["", "//", "..", "xx", "\\\\", "--", "++", "oo"]

_STARTED = time.time()
_LOAD_BEFORE = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
_PLOT_KINDS = {"bar": ("label", "value"), "line": ("x", "y", "series")}


# -------------------------------------------------------------------------- the machine
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The CPU, its cores (and how many this process may use), memory and operating system."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        memory = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_name(), "architecture": platform.machine(), "cores": os.cpu_count(), "usable_cores": usable,
            "memory_gib": None if memory is None else round(memory, 1), "os": platform.platform(terse=True)}


def versions(packages=("numpy", "torch")) -> dict:
    """Python's version and each installed package's (``None`` if not installed)."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


# ------------------------------------------------------------------------------ saving
def _check_columns(columns, rows) -> list[dict]:
    out = []
    for c in columns:
        key, label, fmt = (c["key"], c["label"], c.get("format", "")) if isinstance(c, dict) else (tuple(c) + ("",))[:3]
        out.append({"key": key, "label": label, "format": fmt})
    keys = {c["key"] for c in out}
    for i, row in enumerate(rows):
        missing = keys - set(row)
        if missing:
            raise ValueError(f"row {i} has no value for column(s) {sorted(missing)}: give every row every column")
    return out


def validate(data: dict) -> dict:
    """Raise ``ValueError`` naming what is wrong with a result file's content; return it."""
    need = ["benchmark", "title", "about", "command", "date", "machine", "versions", "columns", "rows", "plot", "goals"]
    missing = [k for k in need if k not in data]
    if missing:
        raise ValueError(f"result of {data.get('benchmark', '?')!r} lacks {missing}")
    if not data["rows"]:
        raise ValueError(f"result of {data['benchmark']!r} has no rows")
    _check_columns(data["columns"], data["rows"])
    plot = data["plot"]
    if plot.get("kind") not in _PLOT_KINDS:
        raise ValueError(f"plot kind must be one of {sorted(_PLOT_KINDS)}, got {plot.get('kind')!r}")
    for field in _PLOT_KINDS[plot["kind"]]:
        names = plot.get(field)
        for name in names if isinstance(names, list) else [names]:
            if name is not None and any(name not in row for row in data["rows"]):
                raise ValueError(f"plot {field} {name!r} is not a column of every row")
    for g in data["goals"]:
        if not {"text", "measured", "target"} <= set(g):
            raise ValueError(f"goal {g} needs text, measured and target")
    return data


def save(name: str, *, title: str, about: str, columns, rows: list[dict], plot: dict, goals=(), notes=(),
         packages=("numpy", "torch"), quick: bool = False, settings: dict | None = None,
         command: str | None = None) -> Path | None:
    """Write a benchmark's result to ``benchmarks/results/<name>.json`` (see the module's docstring).

    Args:
        name: the script's name, ``benchmarks/<name>.py``.
        title, about: the page's heading for it, and a paragraph (Markdown) on what it measures.
        columns: ``(key, label, format)`` triples; ``format`` is a format spec (``",.0f"``).
        rows: one dict per row of the table, with every column's key (and any other keys).
        plot: ``{"kind": "bar", "label": [keys], "value": key, "group": key or None, "xlabel": ...,
            "log": bool}`` or ``{"kind": "line", "x": key, "y": key, "series": key, "xlabel", "ylabel",
            "logx", "logy"}``.
        goals: ``{"text", "measured", "target", "unit", "higher_is_better"}`` dicts.
        notes: sentences (Markdown) for the page: what explains a number, what falls short and why.
        packages: whose versions to record.
        quick: a ``--quick`` run: saved only where ``$ATTNEDU_BENCH_DIR`` says.
        settings: the run's parameters (sizes, repeats, threads), shown with the command.
        command: how to repeat the run (default: ``python benchmarks/<name>.py`` and this
            process's arguments).

    Returns the path written, or ``None`` for a quick run with nowhere to save it.
    """
    folder = os.environ.get("ATTNEDU_BENCH_DIR")
    if quick and not folder:
        print("(--quick: results not saved; a full run writes benchmarks/results/" + name + ".json)")
        return None
    data = validate({
        "benchmark": name, "title": title, "about": about,
        "command": command or ("python benchmarks/" + name + ".py" + "".join(" " + a for a in sys.argv[1:])),
        "settings": settings or {}, "quick": bool(quick),
        "date": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "seconds": round(time.time() - _STARTED, 1),
        "machine": {**machine(), "load_before": _LOAD_BEFORE,
                    "load_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None},
        "versions": versions(packages),
        "columns": _check_columns(columns, rows), "rows": rows, "plot": plot,
        "goals": list(goals), "notes": list(notes),
    })
    path = Path(folder or RESULTS) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"saved {path}")
    return path


def load(folder: Path | str = RESULTS) -> list[dict]:
    """Every result in ``folder``, validated, in the page's order (``ORDER``, then by name)."""
    found = {}
    for path in sorted(Path(folder).glob("*.json")):
        try:
            found[path.stem] = validate(json.loads(path.read_text(encoding="utf-8")))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    order = {name: i for i, name in enumerate(ORDER)}
    return [found[k] for k in sorted(found, key=lambda k: (order.get(k, len(order)), k))]


#: The page's order: from the attention of Part I to the stores of Part III.
ORDER = ["softmax", "attention", "attention_cost", "kv_cache", "gpt_train", "pretrained", "retrieval", "store",
         "vector_databases", "grading"]


def goal_met(goal: dict) -> bool:
    """Whether a goal was reached (``measured >= target``, or ``<=`` when lower is better)."""
    if goal.get("higher_is_better", True):
        return goal["measured"] >= goal["target"]
    return goal["measured"] <= goal["target"]


# ----------------------------------------------------------------------------- the page
def _fmt(value, spec: str) -> str:
    if value is None:
        return "\u2013"  # an en dash: nothing measured here
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).replace("|", "\\|")
    try:
        return format(value, spec)
    except (ValueError, TypeError):
        return str(value)


def _numeric(data: dict, key: str) -> bool:
    """Whether a column holds numbers (judged by its first value that is not missing)."""
    value = next((r[key] for r in data["rows"] if r[key] is not None), None)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _table(data: dict) -> list[str]:
    cols = data["columns"]
    lines = ["| " + " | ".join(c["label"] for c in cols) + " |",
             "|" + "|".join("---:" if _numeric(data, c["key"]) else ":---" for c in cols) + "|"]
    for row in data["rows"]:
        lines.append("| " + " | ".join(_fmt(row[c["key"]], c["format"]) for c in cols) + " |")
    return lines


def _label(row: dict, keys) -> str:
    keys = keys if isinstance(keys, list) else [keys]
    return " ".join(str(row[k]) for k in keys if row.get(k) not in (None, ""))


def _alt(data: dict) -> str:
    """A figure's alt text: what kind of chart, and the numbers it shows."""
    plot, rows = data["plot"], data["rows"]
    if plot["kind"] == "bar":
        parts = [f"{_label(r, plot['label'])} {_fmt(r[plot['value']], _spec(data, plot['value']))}" for r in rows
                 if r.get(plot["value"]) is not None]
        label = plot.get("xlabel", plot["value"])
        return (f"Bar chart of {label}" + (" (log scale)" if plot.get("log") and "log" not in label else "")
                + ": " + "; ".join(parts) + ".")
    series = {}
    for r in rows:
        if r.get(plot["y"]) is not None:
            series.setdefault(str(r[plot["series"]]), []).append(r)
    parts = []
    for name, rs in series.items():
        first, last = rs[0], rs[-1]
        parts.append(f"{name} from {_fmt(first[plot['y']], _spec(data, plot['y']))} at {plot['x']} "
                     f"{first[plot['x']]} to {_fmt(last[plot['y']], _spec(data, plot['y']))} at {last[plot['x']]}")
    return (f"Line chart of {plot.get('ylabel', plot['y'])} against {plot.get('xlabel', plot['x'])}"
            + (", both axes logarithmic" if plot.get("logx") and plot.get("logy") else "") + ": " + "; ".join(parts)
            + ".")


def _spec(data: dict, key: str) -> str:
    return next((c["format"] for c in data["columns"] if c["key"] == key), "")


def _figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot, rows = data["plot"], data["rows"]
    with plt.rc_context({"font.size": 10}):
        if plot["kind"] == "bar":
            rows = [r for r in rows if r.get(plot["value"]) is not None]
            groups = list(dict.fromkeys(str(r.get(plot.get("group"), "")) for r in rows)) if plot.get("group") else [""]
            fig, ax = plt.subplots(figsize=(9.5 if plot.get("group") else 7.5, 0.45 * len(rows) + 1.4))
            y = range(len(rows))[::-1]
            for yi, r in zip(y, rows):
                g = groups.index(str(r.get(plot.get("group"), ""))) if plot.get("group") else 0
                ax.barh(yi, r[plot["value"]], color=COLORS[g % 8], hatch=_HATCHES[g % 8], edgecolor="black",
                        linewidth=0.5, label=groups[g] if plot.get("group") else None)
                ax.text(r[plot["value"]], yi, " " + _fmt(r[plot["value"]], _spec(data, plot["value"])),
                        va="center", fontsize=8)
            ax.set_yticks(list(y), [_label(r, plot["label"]) for r in rows])
            ax.set_xlabel(plot.get("xlabel", plot["value"]))
            if plot.get("log"):
                ax.set_xscale("log")
            ax.margins(x=0.18)
            if plot.get("group"):
                handles, labels = ax.get_legend_handles_labels()
                unique = dict(zip(labels, handles))
                ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        else:
            fig, ax = plt.subplots(figsize=(7.5, 4.2))
            series = list(dict.fromkeys(str(r[plot["series"]]) for r in rows))
            for i, name in enumerate(series):
                rs = [r for r in rows if str(r[plot["series"]]) == name and r.get(plot["y"]) is not None]
                ax.plot([r[plot["x"]] for r in rs], [r[plot["y"]] for r in rs], marker=_MARKERS[i % 8],
                        color=COLORS[i % 8], linestyle=["-", "--", "-.", ":"][i % 4], label=name)
            ax.set_xlabel(plot.get("xlabel", plot["x"]))
            ax.set_ylabel(plot.get("ylabel", plot["y"]))
            if plot.get("logx"):
                ax.set_xscale("log", base=2)
            if plot.get("logy"):
                ax.set_yscale("log")
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=8)
        ax.set_title(data["title"], fontsize=11)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)


def _machine_line(data: dict) -> str:
    m, v = data["machine"], data["versions"]
    load = ""
    if m.get("load_before") is not None:
        load = f"; load average {m['load_before']:.2f} when it started, {m['load_after']:.2f} when it ended"
    packages = ", ".join(f"{k} {val}" for k, val in v.items() if k != "python" and val)
    return (f"Run on {data['date'][:10]}: {m['cpu']} ({m['usable_cores']} of "
            f"{m['cores']} cores usable), {m['memory_gib']} GiB, {m['os']}; Python {v['python']}, {packages}{load}. "
            f"It took {data.get('seconds', 0):.0f} s.")


def render(results: list[dict]) -> tuple[str, dict[str, dict]]:
    """The page's Markdown and, per figure file name, the result it is drawn from."""
    out = [
        "<!-- Made by `python -m attnedu.perf` from benchmarks/results/*.json (`make bench` runs every benchmark,",
        "     then that). Do not edit by hand: tests/test_perf.py fails when this page and the JSON differ. -->",
        "(performance)=",
        "# Performance",
        "",
        "The course measures its own code against the libraries that practitioners use: its softmax and",
        "attention against PyTorch's, its MiniLM and SmolLM2 against the reference implementations, its",
        "exact search against FAISS, its BM25 against SQLite's FTS5, and more. Every number on this page",
        "was measured by one of the scripts in `benchmarks/`, which saved it as JSON in",
        "`benchmarks/results/`; this page is made from those files. The machine, the versions, the date and",
        "the load average of the machine are given with each table, because the numbers belong to them.",
        "",
        "Where a benchmark has a goal, the page says whether it was met; where the course's code is slower",
        "than the reference, the notes under its table say by how much, and why where the script measured",
        "why. A laptop that is busy with other work gives slower and noisier numbers: the scripts report",
        "medians of repeated runs, with the contenders taking turns.",
        "",
        "(performance-run-them-yourself)=",
        "## Run them yourself",
        "",
        "```bash",
        "make bench                                  # every benchmark, then this page (about 20 minutes)",
        "python benchmarks/retrieval.py --quick      # one of them, small sizes (a smoke test; not saved)",
        "```",
        "",
        "(performance-summary-of-the-goals)=",
        "## Summary of the goals",
        "",
        "| benchmark | goal | measured | met? |",
        "|:---|:---|---:|:---|",
    ]
    for data in results:
        for g in data["goals"]:
            out.append(f"| {{ref}}`{data['title']} <performance-{data['benchmark'].replace('_', '-')}>` | {g['text']} "
                       f"| {_fmt(g['measured'], '.2f')}{g.get('unit', '')} | {'yes' if goal_met(g) else '**no**'} |")
    figures = {}
    for data in results:
        slug = data["benchmark"].replace("_", "-")
        figure = f"{data['benchmark']}.png"
        figures[figure] = data
        out += ["", f"(performance-{slug})=", f"## {data['title']}", "", data["about"].strip(), "",
                f"Command: `{data['command']}`" + (
                    " (" + ", ".join(f"{k} {v}" for k, v in data.get("settings", {}).items()) + ")"
                    if data.get("settings") else "") + ".", "", _machine_line(data), ""]
        out += _table(data)
        out += ["", f"```{{figure}} images/performance/{figure}", f":alt: {_alt(data)}",
                f":name: performance-{slug}-figure", ":width: 90%", "",
                f"{data['title']}, from `benchmarks/results/{data['benchmark']}.json`.", "```", ""]
        for g in data["goals"]:
            verdict = "Met" if goal_met(g) else "**Not met**"
            out.append(f"- {verdict}: {g['text']}; measured {_fmt(g['measured'], '.2f')}{g.get('unit', '')}.")
        for note in data.get("notes", []):
            out.append(f"- {note}")
    return "\n".join(out).rstrip() + "\n", figures


def write_page(folder: Path | str = RESULTS, page: Path = PAGE, figures: Path = FIGURES) -> Path:
    """Write the page and its figures from the results in ``folder``."""
    text, drawn = render(load(folder))
    figures.mkdir(parents=True, exist_ok=True)
    for stale in figures.glob("*.png"):
        if stale.name not in drawn:
            stale.unlink()
    for name, data in drawn.items():
        _figure(data, figures / name)
    page.write_text(text, encoding="utf-8")
    return page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnedu.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if book/performance.md is out of date")
    args = parser.parse_args(argv)
    if args.check:
        text, drawn = render(load())
        stale = [] if PAGE.exists() and PAGE.read_text(encoding="utf-8") == text else [str(PAGE)]
        stale += [str(FIGURES / n) for n in drawn if not (FIGURES / n).exists()]
        if stale:
            print("out of date: " + ", ".join(stale) + "\nrun: python -m attnedu.perf (or make bench)")
            return 1
        print(f"{PAGE} is up to date with {len(drawn)} results")
        return 0
    print(f"wrote {write_page()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
