"""Sealed checks: the learner's code runs in one process, the judging in another.

A solution cell can change anything in its own kernel, the checking code included, so a
check that judges inside that kernel can be talked into passing. When grading sets
``ATTNEDU_SEALED_DIR``, a check cell does not judge: it only runs the learner's function on
the exercise's cases (:func:`~attnedu.checks.engine.run_cases`) and writes what came back to
``<dir>/<grade id>[-hidden].json``. The grader's own process then reads those results with
:func:`judge_recorded`, computes every expected result with the references on cases it makes
itself, and decides the points. Whatever the kernel did, the worst a learner can do is hand in
results, and results are judged against the grader's references; a missing or unreadable file
scores zero.

The file is plain JSON (arrays as base64 bytes with their dtype and shape): reading it runs
nothing, unlike a pickle.
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .engine import CheckFailed, Exercise, Outcome, _answer_form, judge, own_case, run_cases, run_one

__all__ = ["ENV", "decode", "encode", "judge_recorded", "record", "recording_dir"]

#: The environment variable that turns check cells into recorders (set only by the grader).
ENV = "ATTNEDU_SEALED_DIR"

_NUMERIC = set("biufc")  # bool, int, unsigned, float, complex


def recording_dir() -> Path | None:
    """Where check cells record results instead of judging, or None (the usual case)."""
    where = os.environ.get(ENV)
    return Path(where) if where else None


def encode(value: Any) -> Any:
    """A JSON-safe form of a result: numbers, strings, bytes, lists, tuples, dicts, NumPy arrays and
    torch tensors; anything else becomes a marker the judge reports as the wrong type."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return {"__int__": str(int(value))}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMERIC:
        return {"__array__": _array(value)}
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        array = value.detach().cpu().numpy()
        return {"__tensor__": _array(array)} if array.dtype.kind in _NUMERIC else {"__unsupported__": "tensor"}
    return {"__unsupported__": type(value).__name__}


def _array(a: np.ndarray) -> dict:
    shape = list(a.shape)  # np.ascontiguousarray makes a 0-d array 1-d: keep the shape it had
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": shape, "data": base64.b64encode(a.tobytes()).decode("ascii")}


class Unsupported:
    """A result the recorder could not carry (an object of another kind): never equal to anything."""

    def __init__(self, kind: str):
        self.kind = str(kind)

    def __repr__(self) -> str:
        return f"<a {self.kind}>"


def _from_array(spec: dict) -> np.ndarray:
    dtype = np.dtype(str(spec["dtype"]))
    if dtype.kind not in _NUMERIC:
        raise ValueError(f"unexpected dtype {dtype}")
    shape = tuple(int(n) for n in spec["shape"])
    data = base64.b64decode(spec["data"], validate=True)
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


def decode(obj: Any) -> Any:
    """The value :func:`encode` wrote; raises ValueError on anything it did not write."""
    if obj is None or isinstance(obj, (bool, str, float)):
        return obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, dict) and len(obj) == 1:
        (tag, body), = obj.items()
        if tag == "__int__":
            return int(body)
        if tag == "__float__":
            return float(body)
        if tag == "__bytes__":
            return base64.b64decode(body, validate=True)
        if tag == "__tuple__":
            return tuple(decode(v) for v in body)
        if tag == "__dict__":
            return {_hashable(decode(k)): decode(v) for k, v in body}
        if tag == "__array__":
            return _from_array(body)
        if tag == "__tensor__":
            import torch

            return torch.from_numpy(_from_array(body))
        if tag == "__unsupported__":
            return Unsupported(body)
    raise ValueError(f"not a recorded result: {str(obj)[:80]}")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _outcome_to_json(o: Outcome) -> dict:
    return {"kind": o.kind, "value": encode(o.value), "error": o.error, "error_type": o.error_type,
            "changed": o.changed}


def _outcome_from_json(d: dict) -> Outcome:
    kind = str(d["kind"])
    if kind not in ("value", "raised", "stub", "timeout"):
        raise ValueError(f"unknown outcome {kind!r}")
    return Outcome(kind, decode(d.get("value")), error=str(d.get("error") or ""),
                   error_type=str(d.get("error_type") or ""),
                   changed=None if d.get("changed") is None else str(d["changed"]))


def _path(where: Path, ex: Exercise, hidden: bool) -> Path:
    return Path(where) / f"{ex.grade_id}{'-hidden' if hidden else ''}.json"


def record(ex: Exercise, fn, *, hidden: bool, where: Path, own: tuple | None = None) -> Path:
    """The learner's side: run ``fn`` on the exercise's cases and write the outcomes (a
    prediction's visible check: the one answer, judged for its form only). ``own``, the
    arguments of the learner's own measurement, is written too: the grader runs the reference
    on it (a kernel that rewrote it gains nothing: the record's own cases are judged as well)."""
    extra = own_case(own) if isinstance(own, tuple) else []
    if ex.kind == "predict" and not hidden:
        outcomes = [run_one(ex, fn, ex.all_cases()[0])]
    elif not callable(fn):
        outcomes = [Outcome("raised", error=f"TypeError: `{ex.name}` is not defined as a function or class",
                            error_type="TypeError")]
    else:
        outcomes = run_cases(ex, fn, ex.all_cases(hidden) + extra)
    path = _path(where, ex, hidden)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exercise": ex.name, "hidden": hidden, "own": encode(own) if extra else None,
                                "outcomes": [_outcome_to_json(o) for o in outcomes]}), encoding="utf-8")
    print(f"`{ex.name}`: results recorded for grading.")
    return path


def judge_recorded(ex: Exercise, *, hidden: bool, where: Path) -> tuple[bool, str]:
    """The grader's side: judge the recorded results of ``ex`` against the references, on
    cases made here. Returns ``(passed, one sentence)``; never raises on a bad file."""
    path = _path(where, ex, hidden)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("exercise") != ex.name or bool(data.get("hidden")) != hidden:
            raise ValueError("the file belongs to another check")
        outcomes = [_outcome_from_json(d) for d in data["outcomes"]]
        own = decode(data.get("own"))
        if own is not None and not isinstance(own, tuple):
            raise ValueError("the recorded measurement is not a tuple of arguments")
    except FileNotFoundError:
        return False, f"no results were recorded for `{ex.name}` (its check cell did not run to the end)"
    except (ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        return False, f"the results recorded for `{ex.name}` cannot be read ({str(exc)[:80]})"
    try:
        if ex.kind == "predict" and not hidden:
            if len(outcomes) != 1 or outcomes[0].kind != "value" or _answer_form(ex, outcomes[0].value):
                return False, f"`{ex.name}()` did not return an answer of the right form"
            return True, "the prediction has the right form"
        cases = ex.all_cases(hidden) + own_case(own)
        if len(outcomes) != len(cases):
            if outcomes and outcomes[-1].kind in ("stub", "timeout") and len(outcomes) < len(cases):
                cases = cases[:len(outcomes)]
            else:
                return False, f"the results recorded for `{ex.name}` do not match its cases"
        judge(ex, cases, outcomes)
    except CheckFailed as failure:
        return False, str(failure)
    except Exception as exc:  # a value the comparisons cannot handle is a wrong value
        return False, f"`{ex.name}`'s results could not be compared ({type(exc).__name__}: {str(exc)[:80]})"
    return True, "passed"
