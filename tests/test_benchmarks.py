"""Benchmark scripts stay runnable: each runs in --quick mode, prints its table and saves a
result the performance page can show. (Speed itself is measured by running them, never asserted
in a test.)"""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("*.py"))
# The decoder half of pretrained.py loads SmolLM2 twice, ours and transformers' from the GGUF file
# (about 35 s); tests/test_pretrained_smollm.py already checks that the two generate the same tokens,
# so here the smoke test runs the encoder half (`make bench` runs both).
EXTRA = {"pretrained": ["--part", "encoder"]}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_runs_and_prints_a_table(script, tmp_path):
    from attnedu import perf

    env = {**os.environ, "ATTNEDU_BENCH_DIR": str(tmp_path)}  # a quick run saves only where asked
    result = subprocess.run([sys.executable, str(script), "--quick", *EXTRA.get(script.stem, [])], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    header = next((i for i, ln in enumerate(lines) if "median" in ln), None)
    assert header is not None and len(lines) > header + 1, result.stdout
    saved = perf.validate(json.loads((tmp_path / f"{script.stem}.json").read_text()))
    assert saved["quick"] and saved["benchmark"] == script.stem
    perf.render([saved])  # the page can show it
