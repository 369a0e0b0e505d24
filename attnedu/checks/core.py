"""Checks that explain a wrong answer in one sentence.

A check calls the learner's function on a list of :class:`Case` s and compares
what comes back with what should. The first problem it finds becomes a
:class:`CheckFailed`, an ``AssertionError`` (so nbgrader gives the cell zero)
whose message says what is wrong and, where we can tell, why:

* the name is not a function (``None``, a list, a number: the cell was not run);
* the function is still the stub (``NotImplementedError``), or raised another
  exception, or ran for too long (the learner's own traceback is kept);
* it returned ``None`` (a forgotten ``return``), or not an array of numbers;
* the shape is wrong, or it returned NaN or inf (overflow on large inputs);
* a property fails (for example rows that do not sum to 1);
* the numbers differ from the expected ones (the largest difference is named).

In Jupyter the failure is shown as that message alone, without a traceback
through this module: :meth:`CheckFailed._render_traceback_` is the IPython hook
for that. When everything passes, the check prints one line saying so.

A check never crashes on garbage: whatever the learner's function does, the
outcome is either a printed success or a ``CheckFailed``.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["Case", "CheckFailed", "check_function", "check_each", "call_learner", "explain_mismatch",
           "rows_sum_to_one", "describe"]

#: Seconds a learner's function may run on one case before the check gives up.
DEFAULT_TIME_LIMIT = 10.0


class CheckFailed(AssertionError):
    """A check found a problem; ``str(self)`` is the one-sentence explanation.

    ``learner_traceback`` holds the formatted traceback of the learner's own code
    when their function raised, so that they can see the line at fault.
    """

    def __init__(self, message: str, learner_traceback: str | None = None, *, about_values: bool = True):
        super().__init__(message)
        self.learner_traceback = learner_traceback
        # False when the result is not even an array of the right kind: a case's hint,
        # which is about the numbers, would then only distract.
        self.about_values = about_values

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback through this module."""
        lines = [f"\x1b[1;31mCheckFailed\x1b[0m: {self}"]
        if self.learner_traceback:
            lines += ["", "Where your function raised:", self.learner_traceback.rstrip()]
        return lines


class _TimeLimit(BaseException):
    """Raised inside the learner's function when it runs too long.

    A ``BaseException``, so that an ``except Exception`` in their code does not swallow it.
    """


@dataclass
class Case:
    """One call of the learner's function and what it should return.

    Args:
        args: positional arguments (copied before each call, so a function that
            modifies its inputs in place cannot spoil the next case).
        expected: the right result: an array, a number, or a tuple of them.
        kwargs: keyword arguments.
        about: how the case is described in a message, e.g. ``"x of shape (2, 3)"``;
            by default it is made from the arguments' shapes.
        hint: added to a failure on this case (wrong numbers, or an exception raised by
            the learner's function), e.g. what large inputs test.
        mistakes: typical wrong answers on this case, as ``(result, explanation)`` pairs:
            when the learner's result equals ``result`` (an array or a tuple like the
            expected one), ``explanation`` names the mistake instead of the hint.
        rtol, atol: tolerances of the value comparison.
    """

    args: tuple
    expected: Any
    kwargs: dict = field(default_factory=dict)
    about: str | None = None
    hint: str | None = None
    mistakes: Sequence[tuple[Any, str]] = ()
    rtol: float = 1e-5
    atol: float = 1e-7


def describe(value) -> str:
    """A short description of an argument, for messages: shape for arrays, repr otherwise."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _about(case: Case, params: Sequence[str]) -> str:
    if case.about:
        return case.about
    parts = []
    for i, a in enumerate(case.args):
        name = params[i] if i < len(params) else f"argument {i + 1}"
        parts.append(f"{name} = {describe(a)}")
    parts += [f"{k} = {describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts) or "no arguments"


@contextmanager
def _time_limit(seconds: float | None):
    """Interrupt the body after ``seconds`` (main thread on POSIX only; else no limit)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeLimit()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _learner_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the frames of ``attnedu.checks`` (ours, not theirs)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) != _PACKAGE_DIR]
    text = "".join(traceback.format_list(frames))
    return text + "".join(traceback.format_exception_only(type(exc), exc))


def _call(fn: Callable, name: str, case: Case, about: str, time_limit: float | None, *,
          copy_args: bool = True, timeout_hint: str = ""):
    """Call the learner's function on a case; every problem becomes a :class:`CheckFailed`.
    ``copy_args=False`` passes the arguments as they are (a database connection cannot be
    copied); ``timeout_hint`` is added to the message when the time limit stops the call."""
    args = copy.deepcopy(case.args) if copy_args else case.args
    kwargs = copy.deepcopy(case.kwargs) if copy_args else case.kwargs
    try:
        with _time_limit(time_limit):
            return fn(*args, **kwargs)
    except _TimeLimit:
        raise CheckFailed(
            f"`{name}` ran for more than {time_limit:g} s on {about}: look for a loop that never ends"
            f"{timeout_hint}."
        ) from None
    except NotImplementedError:
        raise CheckFailed(
            f"`{name}` is not written yet: replace `raise NotImplementedError()` with your code, "
            "then run that cell again."
        ) from None
    except Exception as exc:
        raise CheckFailed(
            f"`{name}` raised {type(exc).__name__}: {exc} (on {about}).",
            learner_traceback=_learner_traceback(exc),
        ) from None


def call_learner(fn: Callable, name: str, case: Case, time_limit: float | None = DEFAULT_TIME_LIMIT):
    """Call ``fn`` on ``case`` as a check does (copied arguments, time limit); a problem
    becomes a :class:`CheckFailed`. For checks that need the raw result."""
    return _call(fn, name, case, _about(case, ()), time_limit)


def with_article(word: str) -> str:
    """'a list', 'an int': a type's name for a message."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


_a = with_article


def _as_numbers(got, lead: str, thing: str, boolean: bool = False) -> np.ndarray:
    """``got`` as a real numeric array, or a CheckFailed saying why it is not one."""
    if got is None:
        raise CheckFailed(f"{lead} returned None{' as ' + thing if thing != 'a result' else ''}: "
                          "did you forget to `return` the result?", about_values=False)
    if callable(got):
        raise CheckFailed(f"{lead} returned a function as {thing}: did you forget to call it?",
                          about_values=False)
    if hasattr(got, "detach") and hasattr(got, "numpy"):  # a torch tensor, maybe with grad
        got = got.detach().cpu().numpy()
    try:
        arr = np.asarray(got)
    except Exception:
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)} as {thing}, "
                          "which NumPy cannot turn into an array of numbers (are the rows of different lengths?).",
                          about_values=False) from None
    if arr.dtype == object or arr.dtype.kind in "USVMm":
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)} of dtype {arr.dtype} as {thing}, "
                          "not an array of numbers.", about_values=False)
    if boolean and arr.dtype.kind != "b":
        raise CheckFailed(f"{lead} returned numbers of dtype {arr.dtype} as {thing}; expected booleans "
                          "(True / False): build it with a comparison, or convert it with `.astype(bool)`.",
                          about_values=False)
    if arr.dtype.kind == "b" and not boolean:
        raise CheckFailed(f"{lead} returned booleans as {thing}; expected floating-point numbers.",
                          about_values=False)
    if arr.dtype.kind == "c":
        raise CheckFailed(f"{lead} returned complex numbers as {thing}; expected real numbers.",
                          about_values=False)
    return arr.astype(np.float64)


def _largest_input(case: Case) -> float:
    """The largest finite absolute value among a case's numeric arguments (0 if none)."""
    largest = 0.0
    for a in list(case.args) + list(case.kwargs.values()):
        try:
            arr = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            continue
        finite = arr[np.isfinite(arr)]
        if finite.size:
            largest = max(largest, float(np.max(np.abs(finite))))
    return largest


def _compare(got, expected, lead: str, thing: str, case: Case, properties, boolean: bool = False) -> None:
    """Compare one returned array with the expected one, most telling problem first.

    ``lead`` says which call it was; ``thing`` names the returned value in messages.
    """
    exp = np.asarray(expected, dtype=np.float64)
    arr = _as_numbers(got, lead, thing, boolean)
    if arr.shape != exp.shape:
        extra = ""
        if arr.shape == exp.shape[::-1] and arr.ndim == 2:
            extra = " (transposed?)"
        elif arr.size == 1 and exp.size > 1:
            extra = " (did you sum or average over everything?)"
        raise CheckFailed(f"{lead} returned {thing} of shape {arr.shape}; expected shape {exp.shape}{extra}.")
    bad = ~np.isfinite(arr) & np.isfinite(exp)
    if bad.any():
        kind = "NaN" if np.isnan(arr[bad]).any() else "inf"
        biggest = _largest_input(case)
        hint = ""
        if biggest >= 100:
            hint = f" The inputs go up to {biggest:g}, and np.exp overflows above about 709."
        raise CheckFailed(f"{lead} returned {thing} with {kind} at {int(bad.sum())} position(s).{hint}")
    for prop in properties:
        problem = prop(arr, case)
        if problem:
            raise CheckFailed(f"{lead} returned {thing} {problem}")
    if not np.allclose(arr, exp, rtol=case.rtol, atol=case.atol, equal_nan=True):
        diff = np.where(np.isnan(exp), 0.0, np.abs(arr - exp))
        idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        where = f" at index {tuple(int(i) for i in idx)}" if idx else ""
        raise CheckFailed(
            f"{lead} returned {thing} that is off by up to {float(np.max(diff)):.3g}{where}: "
            f"got {float(arr[idx]):.6g}, expected {float(exp[idx]):.6g}."
        )


def _as_parts(result) -> list[np.ndarray] | None:
    """A result (an array or a tuple of them, maybe torch tensors) as float arrays, or None."""
    parts = result if isinstance(result, tuple) else (result,)
    out = []
    for p in parts:
        if hasattr(p, "detach") and hasattr(p, "numpy"):
            p = p.detach().cpu().numpy()
        try:
            out.append(np.asarray(p, dtype=np.float64))
        except (TypeError, ValueError):
            return None
    return out


def _same_result(got, wrong) -> bool:
    mine, theirs = _as_parts(got), _as_parts(wrong)
    if mine is None or theirs is None or len(mine) != len(theirs):
        return False
    with np.errstate(all="ignore"):
        return all(a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True)
                   for a, b in zip(mine, theirs))


def _recognised_mistake(got, case: Case, mistakes: Sequence[tuple[Any, str]],
                        same: Callable = None, copy_args: bool = True) -> str | None:
    """The explanation of the first known mistake whose result equals ``got`` on ``case``.

    A mistake is ``(result, explanation)``; ``result`` may be a function, which is then
    called with the case's arguments to produce the wrong answer. ``same(got, wrong)``
    decides equality (default: arrays and values compared as the checks compare them).
    """
    same = same or _same_result
    for wrong, explanation in list(case.mistakes) + list(mistakes):
        if callable(wrong):
            try:
                with np.errstate(all="ignore"):
                    if copy_args:
                        wrong = wrong(*copy.deepcopy(case.args), **copy.deepcopy(case.kwargs))
                    else:
                        wrong = wrong(*case.args, **case.kwargs)
            except Exception:
                continue
        if same(got, wrong):
            return explanation
    return None


def explain_mismatch(failure: "CheckFailed", got, case: Case, mistakes=(), same: Callable = None,
                     copy_args: bool = True) -> "CheckFailed":
    """The failure to raise for a wrong answer: with "Likely cause: ..." when ``got`` equals a
    known mistake's result, else with the case's hint, else unchanged. Failures that are not
    about the values (wrong type, wrong shape) are returned as they are."""
    if not failure.about_values:
        return failure
    named = _recognised_mistake(got, case, mistakes, same, copy_args)
    if named:
        return CheckFailed(f"{failure} Likely cause: {named}")
    if case.hint:
        return CheckFailed(f"{failure} Hint: {case.hint}")
    return failure


def _require_function(fn, name: str) -> None:
    if not callable(fn):
        kind = "None" if fn is None else _a(type(fn).__name__)
        raise CheckFailed(
            f"`{name}` should be a function, but it is {kind}: run the cell that defines "
            f"`def {name}(...)` first."
        )


def check_each(
    fn,
    name: str,
    cases: Sequence[Case],
    compare: Callable,
    *,
    same: Callable = None,
    params: Sequence[str] = (),
    mistakes: Sequence[tuple[Any, str]] = (),
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    quiet: bool = False,
    copy_args: bool = True,
    timeout_hint: str = "",
) -> None:
    """:func:`check_function` for results that are not arrays (text, lists, dicts, pairs).

    Runs ``fn`` on every case and raises :class:`CheckFailed` at the first problem: the
    learner's code raised (with the case's hint), ran too long, returned ``None`` or a
    function, or ``compare(got, case, lead)`` raised a :class:`CheckFailed` naming the first
    difference from ``case.expected`` (``lead`` starts the message: "`name` on x = ...").
    A wrong result that equals a typical mistake's (``same(got, theirs)``) is named.

    Args:
        copy_args: deep-copy the arguments before each call (``False`` for arguments that
            cannot be copied, such as a database connection).
        timeout_hint: added to the message when the time limit stops a call.
    """
    _require_function(fn, name)
    for case in cases:
        about = _about(case, params)
        try:
            got = _call(fn, name, case, about, time_limit, copy_args=copy_args, timeout_hint=timeout_hint)
        except CheckFailed as failure:
            if case.hint and failure.learner_traceback is not None:  # it raised: the hint may say why
                raise CheckFailed(f"{failure} Hint: {case.hint}", failure.learner_traceback) from None
            raise
        lead = f"`{name}` on {about}"
        if got is None:
            raise CheckFailed(f"{lead} returned None: did you forget to `return` the result?")
        if callable(got):
            raise CheckFailed(f"{lead} returned a function: did you forget to call it?")
        try:
            compare(got, case, lead)
        except CheckFailed as failure:
            explained = explain_mismatch(failure, got, case, mistakes, same=same, copy_args=copy_args)
            if explained is failure:
                raise
            raise explained from None
    if not quiet:
        print(f"\u2713 `{name}` passes all {len(cases)} checks.")


def check_function(
    fn,
    name: str,
    cases: Sequence[Case],
    *,
    params: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    properties: Sequence[Callable] = (),
    mistakes: Sequence[tuple[Any, str]] = (),
    boolean: bool = False,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
    quiet: bool = False,
) -> None:
    """Run ``fn`` on every case; raise :class:`CheckFailed` at the first problem.

    Args:
        fn: the learner's function (or whatever the name is bound to).
        name: its name, as the learner wrote it.
        cases: the calls to make and their expected results.
        params: parameter names, used to describe the arguments in messages.
        outputs: names of the returned values when ``fn`` returns a tuple, e.g.
            ``("output", "weights")``; ``None`` when it returns one array.
        properties: functions ``prop(array, case) -> str | None`` that return a
            message when the (last) returned array breaks a rule.
        mistakes: typical wrong implementations, as ``(wrong_fn, explanation)`` pairs:
            when a result is wrong and equals what ``wrong_fn`` returns on the same
            arguments, the explanation names the mistake (see also ``Case.mistakes``).
        boolean: the function returns a boolean array (a mask), not numbers.
        time_limit: seconds allowed per call (``None``: no limit).
        quiet: do not print the success line.
    """
    _require_function(fn, name)
    for case in cases:
        about = _about(case, params)
        try:
            got = _call(fn, name, case, about, time_limit)
        except CheckFailed as failure:
            stopped = failure.learner_traceback is None  # the stub, or the time limit
            if case.hint and not stopped:
                raise CheckFailed(f"{failure} Hint: {case.hint}", failure.learner_traceback) from None
            raise
        lead = f"`{name}` on {about}"
        try:
            if outputs is None:
                _compare(got, case.expected, lead, "a result", case, properties, boolean)
            else:
                if got is None:
                    raise CheckFailed(f"{lead} returned None: did you forget to `return {', '.join(outputs)}`?",
                                      about_values=False)
                if not isinstance(got, tuple) or len(got) != len(outputs):
                    n = len(got) if isinstance(got, tuple) else 1
                    raise CheckFailed(
                        f"{lead} returned {n} value(s); expected a tuple of {len(outputs)}: "
                        f"`return {', '.join(outputs)}`.",
                        about_values=False,
                    )
                for i, (part, exp, label) in enumerate(zip(got, case.expected, outputs)):
                    last = i == len(outputs) - 1
                    _compare(part, exp, lead, f"`{label}`", case, properties if last else (), boolean)
        except CheckFailed as failure:
            explained = explain_mismatch(failure, got, case, mistakes)
            if explained is failure:
                raise
            raise explained from None
    if not quiet:
        print(f"\u2713 `{name}` passes all {len(cases)} checks.")


def rows_sum_to_one(axis: int = -1, allow_zero_rows: bool = False) -> Callable:
    """A property: the array is non-negative and sums to 1 along ``axis``."""

    def prop(arr: np.ndarray, case: Case) -> str | None:
        ax = case.kwargs.get("axis", axis)
        if arr.ndim == 0:
            return None
        if (arr < -1e-12).any():
            return "with negative weights; weights must be non-negative."
        sums = arr.sum(axis=ax)
        ok = np.isclose(sums, 1.0, rtol=1e-5, atol=1e-6)
        if allow_zero_rows:
            ok |= np.isclose(sums, 0.0, atol=1e-12)
        if not ok.all():
            first = float(np.ravel(sums)[np.argmin(np.ravel(ok))])
            return (f"that does not sum to 1 along axis {ax} (one of them sums to {first:.4g}): "
                    "divide by the sum over that axis, with keepdims=True.")
        return None

    return prop
