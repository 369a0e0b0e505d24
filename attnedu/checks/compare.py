"""How a result is compared with the expected one: a registry, one entry per kind of result.
``compare(got, case, lead, exercise)`` raises a :class:`~attnedu.checks.engine.CheckFailed`
naming the first difference (``lead`` starts the sentence: "`name` on x = ..."), and
``same(got, wrong, exercise)`` says whether a wrong result equals a typical mistake's.

========== ===========================================================================
``array``  numbers (NumPy or torch), or a tuple of them named by ``Exercise.outputs``:
           shape, NaN/inf, the exercise's properties, then values within tolerance
``mask``   the same for boolean arrays (a 0/1 float mask would be *added* by PyTorch)
``text``   a string, line by line
``list``   a list of ``options["item"]`` of type ``options["kind"]``, item by item
``scores`` a dict ``{doc_id: score}``: the same keys, scores within tolerance
``value``  plain Python values (numbers within 1e-9, tuples, lists)
``number`` a real number within the case's ``rtol``/``atol`` (a numeric prediction or measurement)
``choice`` one of ``options["choices"]`` (a prediction); a wrong choice's sentence is a case's mistake
========== ===========================================================================

A chapter registers a comparison of its own with :func:`register` (e.g. chapter 10's
top-k, which compares the scores at the returned columns so ties may come in any order).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from .engine import Case, CheckFailed, with_article

__all__ = ["COMPARISONS", "Comparison", "register", "rows_sum_to_one", "as_numbers", "short", "close"]

class Comparison(NamedTuple):
    compare: Callable[[Any, Case, str, Any], None]
    same: Callable[[Any, Any, Any], bool]

COMPARISONS: dict[str, Comparison] = {}

def register(name: str, compare: Callable, same: Callable) -> None:
    """Add a comparison to the registry (a chapter's own kind of result)."""
    COMPARISONS[name] = Comparison(compare, same)

def short(value, n: int = 60) -> str:
    """``repr(value)``, cut to ``n`` characters."""
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."

def _fail(message: str) -> None:
    """A result of the wrong kind: the case's hint, about values, would not help."""
    raise CheckFailed(message, about_values=False)

# ------------------------------------------------------------------ arrays
def as_numbers(got, lead: str, thing: str, boolean: bool = False) -> np.ndarray:
    """``got`` as a real array (float64), or a CheckFailed saying why it is not one."""
    kind = with_article(type(got).__name__)
    if got is None:
        _fail(f"{lead} returned None{' as ' + thing if thing != 'a result' else ''}: did you forget to `return` the "
              "result?")
    if callable(got) and not hasattr(got, "shape"):
        _fail(f"{lead} returned a function as {thing}: did you forget to call it?")
    if hasattr(got, "detach") and hasattr(got, "numpy"):  # a torch tensor, maybe with grad
        got = got.detach().cpu().numpy()
    try:
        arr = np.asarray(got)
    except Exception:
        _fail(f"{lead} returned {kind} as {thing}, which NumPy cannot turn into an array of numbers (are the rows of "
              "different lengths?).")
    if arr.dtype == object or arr.dtype.kind in "USVMm":
        _fail(f"{lead} returned {kind} of dtype {arr.dtype} as {thing}, not an array of numbers.")
    if boolean and arr.dtype.kind != "b":
        _fail(f"{lead} returned numbers of dtype {arr.dtype} as {thing}; expected booleans (True / False): build it "
              "with a comparison, or convert it with `.astype(bool)`.")
    if arr.dtype.kind == "b" and not boolean:
        _fail(f"{lead} returned booleans as {thing}; expected floating-point numbers.")
    if arr.dtype.kind == "c":
        _fail(f"{lead} returned complex numbers as {thing}; expected real numbers.")
    return arr.astype(np.float64)

def _largest_input(case: Case) -> float:
    largest = 0.0
    for a in list(case.args) + list(case.kwargs.values()):
        try:
            arr = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            continue
        largest = max(largest, float(np.abs(arr[np.isfinite(arr)]).max(initial=0.0)))
    return largest

def _one_array(got, expected, lead: str, thing: str, case: Case, properties, boolean: bool) -> None:
    exp = np.asarray(expected.detach().numpy() if hasattr(expected, "detach") else expected, dtype=np.float64)
    arr = as_numbers(got, lead, thing, boolean)
    if arr.shape != exp.shape:
        extra = (" (transposed?)" if arr.shape == exp.shape[::-1] and arr.ndim == 2 else
                 " (did you sum or average over everything?)" if arr.size == 1 and exp.size > 1 else "")
        raise CheckFailed(f"{lead} returned {thing} of shape {arr.shape}; expected shape {exp.shape}{extra}.")
    bad = ~np.isfinite(arr) & np.isfinite(exp)
    if bad.any():
        biggest = _largest_input(case)
        hint = f" The inputs go up to {biggest:g}, and np.exp overflows above about 709." if biggest >= 100 else ""
        raise CheckFailed(f"{lead} returned {thing} with {'NaN' if np.isnan(arr[bad]).any() else 'inf'} at "
                          f"{int(bad.sum())} position(s).{hint}")
    for problem in filter(None, (prop(arr, case) for prop in properties)):
        raise CheckFailed(f"{lead} returned {thing} {problem}")
    if not np.allclose(arr, exp, rtol=case.rtol, atol=case.atol, equal_nan=True):
        with np.errstate(invalid="ignore"):  # -inf - (-inf) where both are -inf: no difference
            diff = np.where(np.isnan(exp) | (arr == exp), 0.0, np.abs(arr - exp))
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        where = f" at index {tuple(int(i) for i in idx)}" if idx else ""
        raise CheckFailed(f"{lead} returned {thing} that is off by up to {float(np.max(diff)):.3g}{where}: "
                          f"got {float(arr[idx]):.6g}, expected {float(exp[idx]):.6g}.")

def _compare_arrays(got, case: Case, lead: str, ex, boolean: bool = False) -> None:
    if ex.outputs is None:
        return _one_array(got, case.expected, lead, "a result", case, ex.properties, boolean)
    if not isinstance(got, tuple) or len(got) != len(ex.outputs):
        _fail(f"{lead} returned {len(got) if isinstance(got, tuple) else 1} value(s); expected a tuple of "
              f"{len(ex.outputs)}: `return {', '.join(ex.outputs)}`.")
    for i, (part, exp, label) in enumerate(zip(got, case.expected, ex.outputs)):  # the properties: the last part's
        _one_array(part, exp, lead, f"`{label}`", case, ex.properties if i == len(got) - 1 else (), boolean)

def _as_parts(result) -> list[np.ndarray] | None:
    try:
        return [np.asarray(p.detach().cpu().numpy() if hasattr(p, "detach") else p, dtype=np.float64)
                for p in (result if isinstance(result, tuple) else (result,))]
    except (TypeError, ValueError):
        return None

def _same_arrays(got, wrong, ex=None) -> bool:
    mine, theirs = _as_parts(got), _as_parts(wrong)
    if mine is None or theirs is None or len(mine) != len(theirs):
        return False
    with np.errstate(all="ignore"):
        return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True)
                   for a, b in zip(mine, theirs))

def rows_sum_to_one(axis: int = -1, allow_zero_rows: bool = False) -> Callable:
    """A property: the array is non-negative and sums to 1 along ``axis`` (or the case's ``axis``)."""
    def prop(arr: np.ndarray, case: Case) -> str | None:
        ax = case.kwargs.get("axis", axis)
        if arr.ndim == 0:
            return None
        if (arr < -1e-12).any():
            return "with negative weights; weights must be non-negative."
        sums = arr.sum(axis=ax)
        ok = np.isclose(sums, 1.0, rtol=1e-5, atol=1e-6) | (allow_zero_rows & np.isclose(sums, 0.0, atol=1e-12))
        if not ok.all():
            return (f"that does not sum to 1 along axis {ax} (one of them sums to "
                    f"{float(np.ravel(sums)[np.argmin(np.ravel(ok))]):.4g}): divide by the sum over that axis, "
                    "with keepdims=True.")
        return None
    return prop

register("array", _compare_arrays, _same_arrays)
register("mask", lambda got, case, lead, ex: _compare_arrays(got, case, lead, ex, boolean=True), _same_arrays)

# ------------------------------------------------------------------ text and lists
def _compare_text(got, case: Case, lead: str, ex) -> None:
    expected = case.expected
    if not isinstance(got, str):
        extra = " (join the lines with '\\n'.join(...))" if isinstance(got, (list, tuple)) else ""
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a string{extra}.")
    got_lines, exp_lines = got.split("\n"), expected.split("\n")
    if got == expected:
        return
    if len(got_lines) == len(exp_lines) == 1:
        raise CheckFailed(f"{lead} returned {got!r}; expected {expected!r}.")
    for i, (g, e) in enumerate(zip(got_lines, exp_lines)):
        if g != e:
            raise CheckFailed(f"{lead} returned line {i + 1} as {short(g)}; expected {short(e)}.")
    raise CheckFailed(f"{lead} returned {len(got_lines)} line(s); expected {len(exp_lines)} "
                      f"({short(got)} instead of {short(expected)}).")

def _compare_list(got, case: Case, lead: str, ex) -> None:
    expected, item, kind = case.expected, ex.options.get("item", "item"), ex.options.get("kind", object)
    if not isinstance(got, list):
        wrap = " (wrap it: list(...))" if hasattr(got, "__iter__") and not isinstance(got, str) else ""
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a list of {item}s{wrap}.")
    for i, g in enumerate(got):
        if not isinstance(g, kind) or isinstance(g, bool):
            extra = (": join each chunk's words with ' '.join(...)" if kind is str and isinstance(g, (list, tuple))
                     else ": convert it with int(...)" if kind is int and isinstance(g, str) else "")
            _fail(f"{lead} returned {short(g, 40)} as {item} {i}, {with_article(type(g).__name__)}; expected "
                  f"{with_article(kind.__name__)}{extra}.")
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            raise CheckFailed(f"{lead} returned {item} {i} as {short(g)}; expected {short(e)}.")
    if len(got) != len(expected):
        raise CheckFailed(f"{lead} returned {len(got)} {item}{'' if len(got) == 1 else 's'}, "
                          f"{'more' if len(got) > len(expected) else 'fewer'} "
                          f"than the {len(expected)} expected ({short(got)} instead of {short(expected)}).")

register("text", _compare_text, lambda a, b, ex=None: a == b)
register("list", _compare_list, lambda a, b, ex=None: a == b)

# ------------------------------------------------------------------ plain values, dicts of scores
def close(a, b) -> bool:
    """Equal values; floats within 1e-9 (relative); a bool is never a number."""
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(b, (float, int)) and not isinstance(b, bool):
        number = numbers.Real if isinstance(b, float) else numbers.Integral
        if not isinstance(a, number) or isinstance(a, (bool, np.bool_)):
            return False
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) if isinstance(b, float) else int(a) == b
    return type(a) is type(b) and a == b

def _compare_value(got, case: Case, lead: str, ex) -> None:
    if not close(got, case.expected):
        raise CheckFailed(f"{lead} returned {short(got)}; expected {short(case.expected)}.")

register("value", _compare_value, lambda a, b, ex=None: close(a, b))

def _is_number(a) -> bool:
    return isinstance(a, numbers.Real) and not isinstance(a, (bool, np.bool_))

def _compare_number(got, case: Case, lead: str, ex) -> None:
    if not _is_number(got):
        _fail(f"{lead} returned {short(got)}; expected a number.")
    if not math.isclose(float(got), float(case.expected), rel_tol=case.rtol, abs_tol=case.atol):
        within = f"within {case.rtol:.0%} of" if case.rtol >= 1e-3 else "close to"
        raise CheckFailed(f"{lead} returned {short(got)}, which is not {within} what happens.")

register("number", _compare_number, lambda a, b, ex=None: _is_number(a) and _is_number(b) and math.isclose(a, b))

def _compare_scores(got, case: Case, lead: str, ex) -> None:
    expected = case.expected
    if not isinstance(got, Mapping):
        ranked = isinstance(got, (list, tuple, np.ndarray))
        extra = " (one score for each document, not a ranked list)" if ranked else ""
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a dict {{doc_id: score}}{extra}.")
    for doc, value in got.items():
        number = np.asarray(value) if not isinstance(value, (bool, np.bool_)) else None
        if number is None or number.shape != () or number.dtype.kind not in "iuf":
            _fail(f"{lead} returned {value!r} as the score of {doc!r}; a score must be a number.")
    def first(ids) -> str:
        return f"{ids[0]!r}" + (f" (and {len(ids) - 1} more)" if len(ids) > 1 else "")
    missing, extra = [d for d in expected if d not in got], [d for d in got if d not in expected]
    if missing:
        raise CheckFailed(f"{lead} gives no score to {first(missing)}, which should get {expected[missing[0]]:.6g}.")
    if extra:
        raise CheckFailed(f"{lead} gives a score to {first(extra)}, which is in none of the inputs.")
    docs = list(expected)
    mine, theirs = np.array([float(got[d]) for d in docs]), np.array([float(expected[d]) for d in docs])  # (n,) each
    bad = ~np.isfinite(mine)
    if bad.any():
        raise CheckFailed(f"{lead} returned {'NaN' if np.isnan(mine[bad]).any() else 'inf'} as the score of "
                          f"{docs[int(np.argmax(bad))]!r} ({int(bad.sum())} in all): look for a division by zero.")
    if not np.allclose(mine, theirs, rtol=case.rtol, atol=case.atol):
        i = int(np.argmax(np.abs(mine - theirs)))
        raise CheckFailed(f"{lead} gives {docs[i]!r} the score {mine[i]:.6g}; expected {theirs[i]:.6g}.")

def _same_scores(got, wrong, ex=None) -> bool:
    if not isinstance(got, Mapping) or not isinstance(wrong, Mapping) or set(got) != set(wrong):
        return False
    return _same_arrays(tuple(got[d] for d in wrong), tuple(wrong[d] for d in wrong))

register("scores", _compare_scores, _same_scores)

def _compare_choice(got, case: Case, lead: str, ex) -> None:
    choices = ex.options["choices"]
    if got not in choices:
        _fail(f"{lead} returned {short(got)}; answer with one of {', '.join(map(repr, choices))}.")
    if got != case.expected:
        raise CheckFailed(f"{lead} returned {got!r}, which is not what happens.")
register("choice", _compare_choice, lambda a, b, ex=None: a == b)
