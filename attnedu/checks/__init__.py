"""The course's graded exercises: one record each, one loop for all.

``chNN_<slug>`` holds chapter NN's exercises as :class:`Exercise` records in its
``EXERCISES``; a notebook calls ``check("softmax", softmax)`` (its visible check) and, in
the hidden-test cell, ``check("softmax", softmax, hidden=True)``. The machinery is in
:mod:`~attnedu.checks.engine` (the record, the learner's side and the grader's side of a
check) and :mod:`~attnedu.checks.compare` (how each kind of result is compared).

How a check works: it calls the learner's function on a few cases (the first small
enough to check by hand, each later one adding one new thing that can go wrong) and either
prints one line of success or raises :class:`CheckFailed` with one sentence about the first
problem: the name is not a function (the cell was not run); the function is still the stub,
raised (the learner's own traceback is kept), ran too long, returned ``None``, or changed its
input in place; the result has the wrong type or shape, NaN or inf, breaks a rule (rows that
do not sum to 1), or differs from the reference. A wrong result that equals a typical
mistake is named ("Likely cause: ..."); otherwise the case's hint says what it tests. In
Jupyter the message is shown without a traceback through this package. A check never
crashes on garbage.

Adding an exercise is adding a record to its chapter's ``EXERCISES``::

    Exercise(
        "softmax", ["x"],                 # the name the learner defines, its parameters
        F.softmax,                        # the reference: the library's tested version
        visible_cases, hidden_cases,      # functions returning lists of Case
        properties=[rows_sum_to_one()],   # rules every result must obey
        wrong=_softmax_with,              # the reference with switches, and each typical
        mistakes=[({"stable": False},     # mistake as one setting of it with its sentence
                   "it overflows: ...")],
        library=["attnedu.functional.softmax"],  # what a solution must not simply import
    )

Its solution cell's grade id is the name with dashes (or ``grade_id=``); the notebook's
check cells are ``check("softmax", softmax)`` and ``check("softmax", softmax, hidden=True)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

from .engine import REFERENCE, Case, CheckFailed, Exercise, ExerciseSet, Outcome, describe, judge, run_cases
from .compare import COMPARISONS, register, rows_sum_to_one

__all__ = ["COMPARISONS", "REFERENCE", "Case", "CheckFailed", "Exercise", "ExerciseSet", "Outcome", "describe",
           "exercises_of", "judge", "register", "rows_sum_to_one", "run_cases"]


def exercises_of(chapter: str) -> ExerciseSet:
    """The exercises of a chapter, by its folder name (``"01-weighted-sums"``): module ``ch01_weighted_sums``, or
    the one module ``chNN_*`` of its number where the names differ (``04-multi-head-attention``: ``ch04_multi_head``)."""
    name = f"ch{chapter.replace('-', '_')}"
    if importlib.util.find_spec(f"{__name__}.{name}") is None:
        (name,) = [m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith(f"ch{chapter[:2]}_")]
    return importlib.import_module(f"{__name__}.{name}").EXERCISES
