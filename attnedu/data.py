"""Small data sets, made on the spot from a seed: nothing is downloaded."""

from __future__ import annotations

import numpy as np

from ._validate import positive_int

__all__ = ["toy_curve", "toy_regression"]


def toy_curve(x):
    """The function behind :func:`toy_regression`: ``sin(2x) + 0.4 x``."""
    x = np.asarray(x, dtype=float)
    return np.sin(2.0 * x) + 0.4 * x


def toy_regression(n: int = 40, noise: float = 0.25, seed: int = 0):
    """Noisy samples of :func:`toy_curve` on ``[0, 5]``, sorted by ``x``.

    Args:
        n: number of samples (``n >= 1``).
        noise: standard deviation of the Gaussian noise added to ``y``.
        seed: the random seed; the same seed always gives the same data.

    Returns:
        ``(x, y)``, two ``(n,)`` float64 arrays.
    """
    n = positive_int(n, "n")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0.0, 5.0, size=int(n)))
    y = toy_curve(x) + rng.normal(0.0, noise, size=int(n))
    return x, y
