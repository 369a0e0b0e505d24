"""Input validation shared by the public functions of :mod:`attnedu`.

Every public function checks its inputs before computing anything, and a wrong
input raises :class:`ValueError` with a message that names the argument, the
shape it has and the shape it should have.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def as_float_array(x, name: str, *, min_ndim: int = 0, max_ndim: int | None = None) -> np.ndarray:
    """Return ``x`` as a floating-point NumPy array, or raise ``ValueError``.

    Integer and boolean inputs become float64; float16/32/64 keep their dtype.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and other non-arrays
        raise ValueError(f"{name} must be an array of numbers, but np.asarray({name}) failed: {exc}") from None
    if arr.dtype == object or arr.dtype.kind in "USVMmO":
        raise ValueError(f"{name} must be an array of numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "c":
        raise ValueError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if max_ndim is not None and arr.ndim > max_ndim:
        raise ValueError(f"{name} must have at most {max_ndim} dimension(s), got shape {arr.shape}")
    return arr


def normalize_axis(axis: int, ndim: int, name: str = "axis", shape=None) -> int:
    """Return ``axis`` as a non-negative index into an array of ``ndim`` dimensions."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ValueError(f"{name} must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        where = f"shape {shape}" if shape is not None else f"{ndim} dimension(s)"
        raise ValueError(f"{name}={axis} is out of range for an array of {where}")
    return int(axis) % ndim


def positive_number(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ``ValueError``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive, finite number, got {value!r}")
    return v


# ------------------------------------------------------------------- numbers, checked once
# Every public function of attnedu checks its integer and number arguments with these, so that
# a wrong value gets the same sentence wherever it is passed.
def positive_int(value, name: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= 1`` (not a bool), else raise ``ValueError``.

    NumPy integers are accepted; floats are not, even ``3.0``: a size is a count.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value, name: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= 0`` (not a bool), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def non_negative_number(value, name: str) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number ``>= 0`` (not a bool), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def probability(value, name: str) -> float:
    """Return ``value`` as a ``float`` if it lies in ``(0, 1]`` (a top-p, a fraction to keep), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def dropout_rate(value, name: str = "dropout") -> float:
    """Return ``value`` as a ``float`` if it lies in ``[0, 1)`` (a dropout probability), else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)
