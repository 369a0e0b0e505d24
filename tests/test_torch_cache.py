"""The empty compile-cache folder that importing torch._dynamo makes (transformers and
sentence-transformers import it; chapter 7 imports both) is removed when the process ends, and a
cache that holds anything, or was there before, is kept. Two tests run a fresh Python (about 3 s
each: it imports torch); the rest test the watch in this process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from attnedu import _torch_cache

IMPORT = "import attnedu, torch._dynamo, os; print(os.path.isdir(os.environ['TORCHINDUCTOR_CACHE_DIR']))"


def run(tmp_path, code: str) -> str:
    """Run ``code`` in a fresh Python whose temporary folder is ``tmp_path`` and whose
    TORCHINDUCTOR_CACHE_DIR is unset (the tests set one), as a learner's kernel would be."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def default_folder(tmp_path, monkeypatch) -> str:
    """Where torch puts its cache when the temporary folder is ``tmp_path``."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    return str(_torch_cache.default_folder())


def test_torch_makes_the_folder_on_import_and_the_process_leaves_none(tmp_path, monkeypatch):
    folder = default_folder(tmp_path, monkeypatch)
    assert run(tmp_path, IMPORT).strip() == "True"  # torch made it, where default_folder says
    assert not os.path.exists(folder), os.listdir(tmp_path)
    assert os.listdir(tmp_path) == []


def test_without_attnedu_torch_leaves_it(tmp_path, monkeypatch):
    """The test above would fail without the watch: torch alone leaves the folder."""
    run(tmp_path, "import torch._dynamo")
    assert os.listdir(tmp_path) == [os.path.basename(default_folder(tmp_path, monkeypatch))]


def test_a_folder_that_was_there_is_not_watched(tmp_path, monkeypatch):
    """(and one that holds a file is kept: test_remove_if_empty_removes_nested_empty_folders_only)"""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setattr(_torch_cache, "_watched", set())
    os.makedirs(default_folder(tmp_path, monkeypatch))
    _torch_cache.watch()
    assert _torch_cache._watched == set()
    os.rmdir(default_folder(tmp_path, monkeypatch))
    _torch_cache.watch()  # the test of the test: a folder that is not there is watched
    assert _torch_cache._watched == {Path(default_folder(tmp_path, monkeypatch))}


def test_a_chosen_folder_is_not_watched(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setattr(_torch_cache, "_watched", set())
    _torch_cache.watch()
    assert _torch_cache._watched == set()


def test_remove_if_empty_removes_nested_empty_folders_only(tmp_path):
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    assert _torch_cache.remove_if_empty(tmp_path / "a") and not (tmp_path / "a").exists()
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.bin").write_bytes(b"x")
    assert not _torch_cache.remove_if_empty(tmp_path / "d") and (tmp_path / "d" / "e" / "f.bin").exists()
    assert _torch_cache.remove_if_empty(tmp_path / "missing")
