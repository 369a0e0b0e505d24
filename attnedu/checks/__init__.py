"""The course's graded exercises: one record each, one loop for all.

``chNN_<slug>`` holds chapter NN's exercises as :class:`Exercise` records in its
``EXERCISES``; a notebook calls ``check("softmax", softmax)`` (its visible check) and, in
the hidden-test cell, ``check("softmax", softmax, hidden=True)``. The machinery is in
:mod:`~attnedu.checks.engine` (the record, the learner's side and the grader's side of a
check) and :mod:`~attnedu.checks.compare` (how each kind of result is compared).

How a check works: it calls the learner's function on a few cases (the first checkable by
hand) and prints one line of success, or raises :class:`CheckFailed` with one sentence about the
first problem: not a function (the cell was not run), the stub, an exception (the learner's own
traceback kept), too long a run, ``None``, the input changed in place, the wrong type or shape,
NaN or inf, a broken rule (rows that do not sum to 1), or values unlike the reference's. A wrong
result equal to a typical mistake's is named ("Likely cause: ..."); otherwise the case's hint
says what it tests. A check never crashes on garbage.

Adding an exercise is adding a record to its chapter's ``EXERCISES``::

    Exercise("softmax", ["x"], F.softmax,           # the learner's name, its parameters, the reference
             visible_cases, hidden_cases,           # functions returning lists of Case
             properties=[rows_sum_to_one()],        # rules every result must obey
             wrong=_softmax_with,                   # the reference with switches; each mistake is
             mistakes=[({"stable": False}, "...")]) # one setting of it, with its sentence

Its solution cell's grade id is the name with dashes (or ``grade_id=``); the notebook's
check cells are ``check("softmax", softmax)`` and ``check("softmax", softmax, hidden=True)``.
"""

from __future__ import annotations

import importlib

from .engine import KINDS, REFERENCE, Case, CheckFailed, Exercise, ExerciseSet, Outcome, describe, judge, run_cases
from .compare import COMPARISONS, register, rows_sum_to_one

__all__ = ["COMPARISONS", "KINDS", "REFERENCE", "Case", "CheckFailed", "Exercise", "ExerciseSet", "Outcome", "describe",
           "exercises_of", "judge", "register", "rows_sum_to_one", "run_cases"]

def exercises_of(chapter: str) -> ExerciseSet:
    """The exercises of a chapter, by its folder name: ``"01-weighted-sums"`` is ``ch01_weighted_sums``."""
    return importlib.import_module(f"{__name__}.ch{chapter.replace('-', '_')}").EXERCISES
