"""Checks for the graded exercises: :mod:`attnedu.checks.core` is the machinery,
and ``chNN_<slug>`` holds the visible checks of chapter NN."""

from .core import Case, CheckFailed, call_learner, check_function, describe, rows_sum_to_one

__all__ = ["Case", "CheckFailed", "call_learner", "check_function", "describe", "rows_sum_to_one"]
