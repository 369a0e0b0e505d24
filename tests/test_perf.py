"""The performance page: benchmark results saved as JSON, and the book page made from them.
(Speeds themselves are never asserted: the benchmarks measure them, this checks the plumbing.)"""

import json
import re
from datetime import datetime

import pytest

from attnedu import perf
from conftest import REPO

SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


def result(**changes):
    """A small valid result, as perf.save writes it."""
    data = {
        "benchmark": "toy", "title": "A toy benchmark", "about": "Two contenders.", "command": "python benchmarks/toy.py",
        "date": "2026-12-06T21:00:00+00:00", "seconds": 3.0, "settings": {"repeats": 5},
        "machine": {"cpu": "a CPU", "cores": 2, "usable_cores": 2, "memory_gib": 8.0, "os": "Linux",
                    "load_before": 0.1, "load_after": 0.2},
        "versions": {"python": "3.11.7", "numpy": "2.4.6"},
        "columns": [{"key": "who", "label": "implementation", "format": ""},
                    {"key": "qps", "label": "queries/s", "format": ",.0f"}],
        "rows": [{"who": "ours", "qps": 500.0}, {"who": "theirs", "qps": 1000.0}],
        "plot": {"kind": "bar", "label": ["who"], "value": "qps", "xlabel": "queries per second"},
        "goals": [{"text": "ours at least 0.7x theirs", "measured": 0.5, "target": 0.7, "unit": "x"}],
        "notes": ["Ours is in Python."],
    }
    data.update(changes)
    return data


def test_every_benchmark_has_a_committed_result_on_the_page():
    assert sorted(perf.ORDER) == SCRIPTS, "perf.ORDER should list every script in benchmarks/"
    saved = sorted(p.stem for p in perf.RESULTS.glob("*.json"))
    assert saved == SCRIPTS, f"run `make bench`: results missing for {sorted(set(SCRIPTS) - set(saved))}"
    makefile = re.search(r"^BENCHMARKS := (.+)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert makefile == perf.ORDER, "make bench should run the benchmarks in the page's order"


def test_the_committed_page_is_made_from_the_committed_results(capsys):
    assert perf.main(["--check"]) == 0, capsys.readouterr().out
    assert "book/performance" in (REPO / "_toc.yml").read_text()


@pytest.mark.parametrize("data", perf.load(), ids=lambda d: d["benchmark"])
def test_each_result_is_a_full_run_with_its_machine_and_versions(data):
    assert not data["quick"], "a --quick run is a smoke test, not a result for the page"
    datetime.fromisoformat(data["date"])
    assert data["machine"]["cpu"] and data["machine"]["cores"] >= 1 and data["versions"]["python"]
    assert (perf.FIGURES / f"{data['benchmark']}.png").stat().st_size > 5000
    assert data["command"].startswith(f"python benchmarks/{data['benchmark']}.py")


def test_a_goal_that_was_missed_says_so_on_the_page():
    text, figures = perf.render([result()])
    assert "| **no** |" in text and "- **Not met**: ours at least 0.7x theirs; measured 0.50x." in text
    met, _ = perf.render([result(goals=[{"text": "t", "measured": 0.9, "target": 0.7, "unit": "x"}])])
    assert "**no**" not in met and "- Met: t; measured 0.90x." in met
    lower = {"text": "at most 1.1x", "measured": 1.3, "target": 1.1, "higher_is_better": False}
    assert not perf.goal_met(lower) and perf.goal_met({**lower, "measured": 1.0})
    assert list(figures) == ["toy.png"]


def test_the_page_gives_the_machine_the_table_and_a_described_figure():
    text, _ = perf.render([result()])
    assert "(performance-toy)=\n## A toy benchmark" in text
    assert "a CPU (2 of 2 cores usable), 8.0 GiB, Linux; Python 3.11.7, numpy 2.4.6; load average 0.10" in text
    assert "| ours | 500 |" in text and "| theirs | 1,000 |" in text
    assert ":alt: Bar chart of queries per second: ours 500; theirs 1,000." in text


def test_a_line_plot_is_described_by_its_ends():
    data = result(rows=[{"who": "ours", "T": 512, "qps": 10.0}, {"who": "ours", "T": 1024, "qps": 5.0}],
                  plot={"kind": "line", "x": "T", "y": "qps", "series": "who", "xlabel": "tokens",
                        "ylabel": "queries/s", "logx": True, "logy": True})
    text, _ = perf.render([data])
    assert ":alt: Line chart of queries/s against tokens, both axes logarithmic: ours from 10 at T 512 to 5 at 1024." \
        in text


def test_a_figure_is_drawn_and_the_page_written(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "toy.json").write_text(json.dumps(result()))
    page = perf.write_page(folder, tmp_path / "performance.md", tmp_path / "figures")
    assert page.read_text().startswith("<!-- Made by `python -m attnedu.perf`")
    assert (tmp_path / "figures" / "toy.png").stat().st_size > 5000


def test_quick_runs_are_not_saved_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("ATTNEDU_BENCH_DIR", raising=False)
    kwargs = {k: result()[k] for k in ("title", "about", "columns", "rows", "plot", "goals", "notes")}
    assert perf.save("toy", quick=True, **kwargs) is None and "not saved" in capsys.readouterr().out
    monkeypatch.setenv("ATTNEDU_BENCH_DIR", str(tmp_path))
    path = perf.save("toy", quick=True, **kwargs)
    assert path == tmp_path / "toy.json" and json.loads(path.read_text())["quick"] is True


@pytest.mark.parametrize("change, message", [
    ({"rows": [{"who": "ours"}]}, r"row 0 has no value for column\(s\) \['qps'\]"),
    ({"plot": {"kind": "pie"}}, "plot kind must be one of"),
    ({"plot": {"kind": "bar", "label": ["who"], "value": "speed"}}, "plot value 'speed' is not a column"),
    ({"goals": [{"text": "fast"}]}, "needs text, measured and target"),
    ({"rows": []}, "has no rows"),
])
def test_a_malformed_result_is_refused_with_what_is_wrong(change, message):
    with pytest.raises(ValueError, match=message):
        perf.validate(result(**change))
