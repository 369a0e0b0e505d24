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
