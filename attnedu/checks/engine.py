"""One record per exercise, one loop for all of them.

An :class:`Exercise` is data: the name the learner defines, its parameters, the library's
tested version (the *reference*), the visible and hidden cases, how results are compared (a
name in :data:`attnedu.checks.compare.COMPARISONS`) and the typical mistakes, each a *setting*
of a wrong-on-purpose variant of the reference with the sentence that names it. A check runs
in two steps that never need to share a process:

1. :func:`run_cases` (the learner's side) calls the learner's function on each case and
   returns one :class:`Outcome` per case: a value, or what went wrong (the stub, an exception
   with the learner's own traceback, the time limit); plain, picklable data.
2. :func:`judge` (the grader's side) computes the expected results with the reference,
   compares, and names the typical mistake when a wrong result equals one.

:func:`check` does both in one process: what a notebook's check cell calls.
"""

from __future__ import annotations

import copy
import os
import signal
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["KINDS", "Case", "CheckFailed", "Exercise", "ExerciseSet", "Outcome", "REFERENCE", "check", "describe",
           "judge", "reveal", "run_cases", "with_article"]

#: Seconds a learner's function may run on one case before the check gives up.
DEFAULT_TIME_LIMIT = 10.0

#: What an exercise may ask of the learner (an :class:`Exercise`'s ``kind``).
KINDS = ("code", "predict", "debug", "measure")

#: A case's ``expected`` by default: the exercise's reference called on the case's arguments.
REFERENCE = type("Reference", (), {"__repr__": lambda self: "REFERENCE"})()

class CheckFailed(AssertionError):
    """A check found a problem; ``str(self)`` is the one-sentence explanation. ``learner_traceback``:
    the learner's own frames when their function raised; ``about_values`` is False when the result
    is not even of the right kind (a case's hint, about the numbers, would only distract)."""

    def __init__(self, message: str, learner_traceback: str | None = None, *, about_values: bool = True):
        super().__init__(message)
        self.learner_traceback = learner_traceback
        self.about_values = about_values

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback through this package."""
        lines = [f"\x1b[1;31mCheckFailed\x1b[0m: {self}"]
        if self.learner_traceback:
            lines += ["", "Where your function raised:", self.learner_traceback.rstrip()]
        return lines

@dataclass
class Case:
    """One call of the learner's function: ``args``, ``kwargs`` (deep-copied before the call
    unless the exercise says not to); ``expected`` (default: the reference on these arguments);
    ``about`` (how messages name the case; default: the arguments' shapes); ``hint`` (added to a
    failure on this case); ``mistakes`` (``(wrong result or function, sentence)`` for this case
    only); ``rtol``, ``atol``; ``raises`` (the exception the function must raise here);
    ``call(obj, *args, **kwargs)`` (how to use the learner's object on this case; default: the
    exercise's ``run``, or a plain call); ``compare`` (default: the exercise's)."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    expected: Any = REFERENCE
    about: str | None = None
    hint: str | None = None
    mistakes: Sequence[tuple[Any, str]] = ()
    rtol: float = 1e-5
    atol: float = 1e-7
    raises: type | None = None
    call: Callable | None = None
    compare: str | None = None

@dataclass
class Exercise:
    """The record of one exercise.

    Args:
        name, params: what the learner defines (``"softmax"``, a class ``"SelfAttention"``), and
            its parameters' names for messages.
        reference: the library's tested version, from a concept module (a class is used through ``run``).
        cases, hidden: functions returning the visible cases (the first checkable by hand) and the
            hidden ones (run when work is graded).
        compare, options: how results are compared (a name in ``COMPARISONS``) and its settings.
        outputs: the names of a tuple's parts, e.g. ``("output", "weights")``.
        properties: ``prop(array, case) -> str | None``, rules the (last) array must obey.
        wrong, mistakes: the reference with switches, and ``(settings, sentence)`` pairs: a dict of
            ``wrong``'s keywords (or a function called like the learner's); a wrong result equal to
            its result is named, "Likely cause: <sentence>".
        library: dotted names of the library's versions, which a solution must not simply import
            (default: the reference's).
        grade_id: the notebook's solution cell (default: ``name`` with dashes).
        run: ``run(obj, *args, **kwargs)``, how to use the learner's object on a case (learner side).
        probes: more arguments to run the learner's function on, never judged: they tell apart
            mistakes that agree on a case.
        copy_args, time_limit, timeout_hint: deep-copy the arguments (not a database connection);
            seconds per call; what to add when the time limit stops a call.
        kind: what the exercise asks (:data:`KINDS`): ``"code"`` (write the mechanism), ``"predict"``
            (a function of no arguments returns a prediction, made before the chapter's experiment:
            the visible check confirms only its form, the hidden one grades it), ``"debug"`` (fix
            a given function with a bug: the student version shows the buggy code, which the
            release takes from the solution cell's ``attnedu.given`` metadata) or ``"measure"`` (a
            conclusion from an experiment, judged against the reference on the same data). The
            solution cell's metadata says the same: ``"attnedu": {"kind": ...}``.
        explain: for a prediction, what the experiment shows and why (printed by :meth:`ExerciseSet.reveal`).
    """

    name: str
    params: Sequence[str]
    reference: Callable
    cases: Callable[[], list[Case]]
    hidden: Callable[[], list[Case]] | None = None
    compare: str = "array"
    outputs: Sequence[str] | None = None
    properties: Sequence[Callable] = ()
    wrong: Callable | None = None
    mistakes: Sequence[tuple[Any, str]] = ()
    library: Sequence[str] = ()
    grade_id: str | None = None
    run: Callable | None = None
    probes: Callable[[], list[Case]] | None = None
    options: dict = field(default_factory=dict)
    time_limit: float | None = DEFAULT_TIME_LIMIT
    copy_args: bool = True
    timeout_hint: str = ""
    kind: str = "code"
    explain: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"exercise {self.name!r}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.grade_id is None:
            self.grade_id = self.name.lower().replace("_", "-")
        if not self.library:  # the reference is the library's version
            self.library = [f"{self.reference.__module__}.{self.reference.__qualname__}"]

    def all_cases(self, hidden: bool = False) -> list[Case]:
        """The visible cases, or the hidden ones (``hidden=True``)."""
        make = self.hidden if hidden else self.cases
        if make is None and self.kind == "predict":  # a prediction is one case, graded when hidden
            make = self.cases
        if make is None:
            raise ValueError(f"exercise {self.name!r} has no {'hidden' if hidden else 'visible'} cases")
        return list(make())

class ExerciseSet(dict):
    """A chapter's exercises by name; ``check(name, fn)`` runs one of them."""

    def __init__(self, *exercises: Exercise):
        super().__init__((ex.name, ex) for ex in exercises)
        if len(self) < len(exercises):
            raise ValueError(f"two exercises have the same name among {[ex.name for ex in exercises]}")

    def check(self, name: str, fn, *, hidden: bool = False, own: tuple | None = None) -> None:
        """Check the learner's ``fn`` on exercise ``name``'s visible cases (one line printed on
        success) or hidden ones (quietly); :class:`CheckFailed` says what is wrong.

        ``own``: the arguments of one more case, the learner's own measurement (a measure
        exercise judged on the data the chapter measured on this machine): the reference runs on
        the same arguments, here and, when grading, in the grader's process."""
        if name not in self:
            raise KeyError(f"no exercise called {name!r} here; the exercises are {', '.join(self)}")
        from . import sealed

        where = sealed.recording_dir()
        if where is not None:  # grading: record the results; the grader judges them in its own process
            sealed.record(self[name], fn, hidden=hidden, where=where, own=own)
            return
        check(self[name], fn, hidden=hidden, own=own)

    def reveal(self, name: str, fn) -> None:
        """After the experiment: print the learner's prediction beside the right answer and why.
        Never raises (an unanswered or broken prediction is said so)."""
        if name not in self:
            raise KeyError(f"no exercise called {name!r} here; the exercises are {', '.join(self)}")
        reveal(self[name], fn)

# ------------------------------------------------------------------ messages
def with_article(word: str) -> str:
    """'a list', 'an int': a type's name for a message."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word

def describe(value) -> str:
    """A short description of an argument: its shape for arrays, its repr otherwise."""
    if isinstance(value, np.ndarray) or (hasattr(value, "shape") and hasattr(value, "dtype")):
        return f"an array of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return f"a {type(value).__name__} of length {len(value)}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

def about(case: Case, params: Sequence[str]) -> str:
    """How a case is named in messages: its ``about``, or its arguments described."""
    if case.about:
        return case.about
    parts = [f"{params[i] if i < len(params) else f'argument {i + 1}'} = {describe(a)}"
             for i, a in enumerate(case.args)]
    parts += [f"{k} = {describe(v)}" for k, v in case.kwargs.items()]
    return ", ".join(parts) or "no arguments"

# ------------------------------------------------------------------ the learner's side
class _TimeLimit(BaseException):
    """Stops a learner's function that runs too long (their ``except Exception`` cannot catch it)."""

@contextmanager
def _time_limit(seconds: float | None):
    """Interrupt the body after ``seconds`` (main thread on POSIX only; else no limit)."""
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    def on_alarm(signum, frame):
        raise _TimeLimit()
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

def _learner_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` without the frames of ``attnedu.checks`` (ours, not theirs)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.dirname(os.path.abspath(f.filename)) != _PACKAGE_DIR]
    return "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(exc), exc))

@dataclass
class Outcome:
    """What the learner's function did on one case: ``kind`` is ``"value"``, ``"raised"``
    (``error`` is ``"TypeName: message"``), ``"stub"`` (NotImplementedError) or ``"timeout"``."""

    kind: str
    value: Any = None
    error: str = ""
    error_type: str = ""
    traceback: str | None = None
    changed: str | None = None  # the argument the function changed in place, if any

def _args(ex: Exercise, case: Case) -> tuple[tuple, dict]:
    """The case's arguments, deep-copied unless the exercise says not to (a database connection)."""
    return (copy.deepcopy(case.args), copy.deepcopy(case.kwargs)) if ex.copy_args else (case.args, case.kwargs)

def _changed_argument(before: Sequence, after: Sequence, params: Sequence[str]) -> str | None:
    """The name of the first array argument whose values the call changed."""
    for i, (a, b) in enumerate(zip(before, after)):
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape:
            if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                return params[i] if i < len(params) else f"argument {i + 1}"
    return None

def run_one(ex: Exercise, fn, case: Case) -> Outcome:
    """Call the learner's ``fn`` on one case (copied arguments, time limit)."""
    args, kwargs = _args(ex, case)
    call = case.call or ex.run
    try:
        with _time_limit(ex.time_limit):
            value = call(fn, *args, **kwargs) if call else fn(*args, **kwargs)
    except _TimeLimit:
        return Outcome("timeout")
    except NotImplementedError:
        return Outcome("stub")
    except Exception as exc:
        return Outcome("raised", error=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__,
                       traceback=_learner_traceback(exc))
    changed = _changed_argument(case.args, args, ex.params) if ex.copy_args and call is None else None
    return Outcome("value", value, changed=changed)

def run_cases(ex: Exercise, fn, cases: Sequence[Case]) -> list[Outcome]:
    """The learner's side of a check: one :class:`Outcome` per case, in order. Stops after the
    stub or the time limit (the other cases would only wait as long again)."""
    outcomes = []
    for case in cases:
        outcomes.append(run_one(ex, fn, case))
        if outcomes[-1].kind in ("stub", "timeout"):
            break
    return outcomes

# ------------------------------------------------------------------ the grader's side
def _require_callable(ex: Exercise, fn) -> None:
    is_class = ex.name[:1].isupper()  # a class exercise needs a class
    if isinstance(fn, type) if is_class else callable(fn):
        return
    what, cell = (("a class derived from torch.nn.Module", f"`class {ex.name}(nn.Module)`") if is_class
                  else ("a function", f"`def {ex.name}(...)`"))
    kind = "None" if fn is None else with_article(type(fn).__name__)
    raise CheckFailed(f"`{ex.name}` should be {what}, but it is {kind}: run the cell that defines {cell} first.")

def expected_of(ex: Exercise, case: Case) -> Case:
    """``case`` with its expected result computed by the reference where not given."""
    if case.expected is not REFERENCE or case.raises:
        return case
    reference = ex.reference
    if ex.run and isinstance(reference, type):  # a class: built and called as the learner's is
        reference = lambda *a, **k: ex.run(ex.reference, *a, **k)  # noqa: E731
    args, kwargs = _args(ex, case)
    return replace(case, expected=reference(*args, **kwargs))

def _named_mistake(ex: Exercise, case: Case, got, others: list[tuple[Case, Outcome]]) -> str | None:
    """The sentence of the typical mistake whose result equals ``got``; when several do, the one
    that agrees with the learner on the most other cases and probes (the first of equals wins)."""
    from .compare import COMPARISONS

    same = COMPARISONS[case.compare or ex.compare].same
    def result(make, on: Case):  # a mistake's result on a case, or an exception
        args, kwargs = _args(ex, on)
        with np.errstate(all="ignore"):
            return make(*args, **kwargs)

    candidates = []
    for wrong, sentence in list(case.mistakes) + list(ex.mistakes):
        make = (lambda *a, _s=wrong, **k: ex.wrong(*a, **k, **_s)) if isinstance(wrong, dict) else wrong
        try:
            theirs = result(make, case) if callable(make) else wrong
            if same(got, theirs, ex) and not same(got, case.expected, ex):
                candidates.append((sentence, make if callable(make) else None))
        except Exception:
            continue
    def agreement(make) -> int:
        n = 0
        for other, outcome in others if make else ():
            try:
                n += outcome.kind == "value" and bool(same(outcome.value, result(make, other), ex))
            except Exception:
                continue
        return n
    if len(candidates) <= 1:
        return candidates[0][0] if candidates else None
    return max(candidates, key=lambda c: agreement(c[1]))[0]

def _failure(ex: Exercise, case: Case, outcome: Outcome, where: str) -> CheckFailed | None:
    """A CheckFailed for an outcome that is not a value (or a value where an error was due)."""
    name = ex.name
    if outcome.kind == "timeout":
        return CheckFailed(f"`{name}` ran for more than {ex.time_limit:g} s on {where}: look for a loop that "
                           f"never ends{ex.timeout_hint}.")
    if outcome.kind == "stub":
        return CheckFailed(f"`{name}` is not written yet: replace `raise NotImplementedError()` with your code, "
                           "then run that cell again.")
    if case.raises:
        if outcome.kind == "raised" and outcome.error_type == case.raises.__name__:
            return None
        if outcome.kind == "raised":
            return CheckFailed(f"`{name}` raised {outcome.error_type} on {where}; expected {case.raises.__name__}: "
                               f"{case.hint}", learner_traceback=outcome.traceback)
        return CheckFailed(f"`{name}` on {where} returned {describe(outcome.value)} instead of raising "
                           f"{case.raises.__name__}: {case.hint}")
    if outcome.kind == "raised":
        hint = f" Hint: {case.hint}" if case.hint else ""
        return CheckFailed(f"`{name}` raised {outcome.error} (on {where}).{hint}", learner_traceback=outcome.traceback)
    return None

def judge(ex: Exercise, cases: Sequence[Case], outcomes: Sequence[Outcome], *, probes: Sequence[tuple] = ()) -> None:
    """The grader's side of a check: raise :class:`CheckFailed` at the first case whose outcome
    is wrong. ``probes`` are ``(case, outcome)`` pairs used only to tell mistakes apart."""
    from .compare import COMPARISONS

    judged = [(expected_of(ex, c), o) for c, o in zip(cases, outcomes)]
    for case, outcome in judged:
        where = about(case, ex.params)
        failure = _failure(ex, case, outcome, where)
        if failure:
            raise failure
        if case.raises:
            continue
        lead = f"`{ex.name}` on {where}"
        got = outcome.value
        if got is None and not ex.options.get("none_allowed"):
            returned = f"`return {', '.join(ex.outputs)}`" if ex.outputs else "`return` the result"
            raise CheckFailed(f"{lead} returned None: did you forget to {returned}?")
        if callable(got) and not hasattr(got, "shape"):
            raise CheckFailed(f"{lead} returned a function: did you forget to call it?")
        try:
            COMPARISONS[case.compare or ex.compare].compare(got, case, lead, ex)
        except CheckFailed as failure:
            if not failure.about_values:
                raise
            others = [(c, o) for c, o in judged if c is not case] + list(probes)
            named = _named_mistake(ex, case, got, others)
            if named:
                raise CheckFailed(f"{failure} Likely cause: {named}") from None
            if case.hint:
                raise CheckFailed(f"{failure} Hint: {case.hint}") from None
            raise
        if outcome.changed:
            raise CheckFailed(f"`{ex.name}` changed its argument `{outcome.changed}` in place on {where}: work on a "
                              "copy (x = x - ..., not x -= ...), so that the caller's data stay as they were.")

def _answer_form(ex: Exercise, got) -> str | None:
    """What is wrong with the form of a prediction (None when it has the right form)."""
    if ex.compare == "choice":
        choices = ex.options["choices"]
        if isinstance(got, str) and got.strip().lower() in [str(c).lower() for c in choices] and got not in choices:
            return f"answer with exactly one of {', '.join(map(repr, choices))} (as written there), not {got!r}."
        return None if got in choices else f"answer with one of {', '.join(map(repr, choices))}, not {describe(got)}."
    if isinstance(got, (bool, np.bool_)) or not isinstance(got, (int, float, np.integer, np.floating)):
        return f"answer with a number, not {describe(got)}."
    return None if np.isfinite(got) else f"answer with a finite number, not {got!r}."

def _prediction(ex: Exercise, fn) -> Outcome:
    """The learner's prediction: ``fn()`` run once, as a check runs a case."""
    return run_one(ex, fn, Case())

def check_prediction_form(ex: Exercise, fn) -> Any:
    """The visible check of a prediction: its form only (a choice, a number); returns it."""
    outcome = _prediction(ex, fn)
    failure = _failure(ex, Case(), outcome, "no arguments")
    if failure:
        raise failure
    problem = _answer_form(ex, outcome.value)
    if problem:
        raise CheckFailed(f"`{ex.name}()` returned {describe(outcome.value)}: {problem}", about_values=False)
    return outcome.value

def reveal(ex: Exercise, fn) -> None:
    """Print the learner's prediction, the answer and the exercise's explanation; never raises."""
    right = ex.reference()
    try:
        outcome = _prediction(ex, fn) if callable(fn) else Outcome("raised", error="not a function")
    except BaseException as exc:  # noqa: BLE001 (a reveal must never stop the chapter)
        outcome = Outcome("raised", error=f"{type(exc).__name__}: {exc}")
    shown = {"stub": "you have not answered yet", "timeout": "your function did not return in time",
             "raised": f"your function raised {outcome.error}"}
    if outcome.kind != "value":
        print(f"The answer: {right!r} ({shown[outcome.kind]}).")
    elif _answer_form(ex, outcome.value):
        print(f"You answered {outcome.value!r}, which is not an answer of the right form; the answer: {right!r}.")
    else:
        from .compare import COMPARISONS

        try:
            COMPARISONS[ex.compare].compare(outcome.value, replace(ex.all_cases(True)[0] if ex.hidden else
                                                                   ex.all_cases()[0], expected=right), "", ex)
            verdict = "right"
        except CheckFailed:
            verdict = "not what happens"
        print(f"You predicted {outcome.value!r}; the answer: {right!r} ({verdict}).")
    if ex.explain:
        print(ex.explain)

def own_case(own) -> list[Case]:
    """The learner's own measurement as a case (``[]`` without one): ``own`` is its arguments, a tuple."""
    if own is None:
        return []
    if not isinstance(own, tuple):
        raise TypeError(f"own must be the tuple of arguments of one call, got {type(own).__name__}")
    return [Case(own, about="your own measurement above (the reference reads it too)")]

def check(ex: Exercise, fn, *, hidden: bool = False, own: tuple | None = None) -> None:
    """Run the exercise ``ex`` on the learner's ``fn`` in this process: its visible cases
    (printing one line on success) or its hidden cases (``hidden=True``, quietly), and, with
    ``own``, one more case on the learner's own measurement (see :func:`own_case`)."""
    _require_callable(ex, fn)
    if ex.kind == "predict" and not hidden:  # the experiment has not run yet: the form only
        got = check_prediction_form(ex, fn)
        print(f"\u2713 Your prediction, {got!r}, is recorded. The experiment below decides it; it is graded "
              "with your work.")
        return
    cases = ex.all_cases(hidden) + own_case(own)
    outcomes = run_cases(ex, fn, cases)
    probes = []
    if ex.probes and len(outcomes) == len(cases) and any(o.kind == "value" for o in outcomes):
        extra = ex.probes()
        probes = list(zip(extra, run_cases(ex, fn, extra)))
    judge(ex, cases[:len(outcomes)], outcomes, probes=probes)
    if not hidden:
        print(f"\u2713 `{ex.name}` passes all {len(cases)} checks.")
