"""Checks for the graded exercises: :mod:`attnedu.checks.core` is the machinery,
and ``chNN_<slug>`` holds the visible checks of chapter NN.

How a check works: each ``check_*`` takes the learner's function, runs it on a few cases
(the first small enough to check by hand, each later one adding one new thing that can go
wrong) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found. A result
that equals one of the typical wrong implementations is named (``Likely cause: ...``);
otherwise the failing case's hint says what it tests. Arrays are compared by
:func:`~attnedu.checks.core.check_function`, other results (text, lists, dicts) by
:func:`~attnedu.checks.core.check_each`.
"""

from .core import Case, CheckFailed, call_learner, check_each, check_function, describe, rows_sum_to_one

__all__ = ["Case", "CheckFailed", "call_learner", "check_each", "check_function", "describe", "rows_sum_to_one"]
