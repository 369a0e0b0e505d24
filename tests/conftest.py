"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*/*.ipynb") if p.stem == p.parent.name)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread: on tiny tensors extra threads only add
    overhead (and stall on a busy machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Typical garbage a learner's function returns, shared by the chapters' check tests.
def stub(*args, **kwargs):
    raise NotImplementedError()


def returns_none(*args, **kwargs):
    return None


def returns_text(*args, **kwargs):
    return "42"
