"""Benchmark scripts stay runnable: each runs in --quick mode, prints its table and saves a
result the performance page can show. (Speed itself is measured by running them, never asserted
in a test.)"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
# The decoder half of pretrained.py loads SmolLM2 twice, ours and transformers' from the GGUF file
# (about 35 s); tests/test_pretrained_smollm.py already checks that the two generate the same tokens,
# so here the smoke test runs the encoder half (`make bench` runs both).
EXTRA = {"pretrained": ["--part", "encoder"]}


def run_quick(command: list, tmp_path):
    """Run a benchmark's --quick command, saving into tmp_path: (the finished process, stdout, stderr)."""
    env = {**os.environ, "ATTNEDU_BENCH_DIR": str(tmp_path)}  # a quick run saves only where asked
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc, out, err


def left_behind(pid: int) -> list:
    """The attnedu-* folders in the temporary folder that process ``pid`` made (their marker file
    names their maker: attnedu.store.cleanup.make_folder) and that are still there."""
    found = []
    for folder in Path(tempfile.gettempdir()).glob("attnedu-*"):
        try:
            owner = json.loads((folder / ".attnedu-owner").read_text())
        except (OSError, ValueError):
            continue
        if owner.get("pid") == pid:
            found.append(folder)
    return found


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_runs_and_prints_a_table(script, tmp_path):
    from attnedu import perf

    proc, out, err = run_quick([sys.executable, str(script), "--quick", *EXTRA.get(script.stem, [])], tmp_path)
    assert proc.returncode == 0, err[-3000:]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = next((i for i, ln in enumerate(lines) if "median" in ln), None)
    assert header is not None and len(lines) > header + 1, out
    saved = perf.validate(json.loads((tmp_path / f"{script.stem}.json").read_text()))
    assert saved["quick"] and saved["benchmark"] == script.stem
    perf.render([saved])  # the page can show it
    assert not left_behind(proc.pid), "the benchmark left its temporary folders (a server's, a database's)"
    if script.stem == "vector_databases":
        from attnedu.doctor import MILVUS_SECTION, section_ready

        check_vector_databases(saved, milvus=section_ready(14, MILVUS_SECTION))


VECTOR_STORES = ["numpy exact", "faiss flat", "faiss ivf", "faiss hnsw", "pgvector hnsw", "milvus lite hnsw",
                 "sqlite store"]


def check_vector_databases(saved: dict, milvus: bool) -> None:
    """Every store has a row without and with the filter; the exact ones find every true neighbour."""
    methods = [m for m in VECTOR_STORES if milvus or m != "milvus lite hnsw"]
    rows = {(r["method"], r["search"]): r for r in saved["rows"]}
    assert sorted(rows) == sorted((m, s) for m in methods for s in ("all rows", "filter 10%")), sorted(rows)
    for (method, search), row in rows.items():
        assert 0 <= row["recall"] <= 1 and row["qps_one"] > 0, row
        assert (row["build_s"] is None) == (search == "filter 10%"), row  # built once, for both searches
        if method in ("numpy exact", "faiss flat", "sqlite store"):  # exact: the filter's rows too
            assert row["recall"] == 1.0, f"{method} ({search}) is exact search, but recall@10 = {row['recall']}"
    for m in ("faiss hnsw", "pgvector hnsw", "milvus lite hnsw")[:3 if milvus else 2]:
        assert rows[(m, "all rows")]["recall"] >= 0.9, rows[(m, "all rows")]


def test_vector_databases_without_milvus_lite_leaves_out_its_rows_only(tmp_path):
    script = REPO / "benchmarks" / "vector_databases.py"
    hide = ("import runpy, sys; sys.modules['pymilvus'] = sys.modules['milvus_lite'] = None; "  # not installed
            f"sys.path.insert(0, {str(script.parent)!r}); sys.argv = [{str(script)!r}, '--quick', '--n', '1000']; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')")
    proc, out, err = run_quick([sys.executable, "-c", hide], tmp_path)
    assert proc.returncode == 0, err[-3000:]
    assert "Milvus Lite's rows are left out" in out, out
    saved = json.loads((tmp_path / "vector_databases.json").read_text())
    check_vector_databases(saved, milvus=False)
    assert any("Milvus Lite was not installed" in note for note in saved["notes"])
    assert not left_behind(proc.pid), "the benchmark left its temporary folders (a server's, a database's)"
