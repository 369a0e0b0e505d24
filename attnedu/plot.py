"""Pictures of attention, the same in every chapter.

The course's central picture is the attention heatmap: one row per query, one
column per key, the colour of a cell its weight. :func:`attention_heatmap` draws
one with labelled axes; :func:`attention_heatmaps` draws several side by side with
a shared colour scale, so that they can be compared (kernel widths, temperatures,
heads).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._validate import as_float_array

__all__ = ["attention_heatmap", "attention_heatmaps", "CMAP", "COLORS", "course_style"]

#: One sequential colour map for every attention picture in the course:
#: light for weight 0, dark for weight 1, readable in grey scale and with any colour vision.
CMAP = "Blues"

#: The course's colours for lines and bars: Okabe and Ito's palette, chosen to stay distinct
#: for people with the common kinds of colour blindness (Okabe & Ito, "Color Universal Design",
#: 2008), with its yellow, hard to see on white, replaced by a neutral grey. Ordered so that
#: the first five keep the names of Matplotlib's default colours (blue, orange, green, red,
#: purple) and the last is grey, as there: a sentence about "the orange line" stays true.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#999999"]


def course_style() -> None:
    """Use :data:`COLORS` for every later figure's lines and bars (``"C0"`` to ``"C7"``), and
    viridis, a colour map that reads the same in grey scale, for images without one. Every
    chapter calls this in its first cell."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams["axes.prop_cycle"] = cycler(color=COLORS)
    mpl.rcParams["image.cmap"] = "viridis"


def _labels(labels, n: int, name: str, shape) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(t) for t in labels]
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} entries but the weights have shape {shape}")
    return labels


def attention_heatmap(
    weights,
    x_labels: Sequence | None = None,
    y_labels: Sequence | None = None,
    *,
    ax=None,
    title: str | None = None,
    xlabel: str = "keys",
    ylabel: str = "queries",
    annotate: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    cmap: str = CMAP,
):
    """Draw a ``(Tq, Tk)`` matrix of attention weights as a heatmap.

    Args:
        weights: ``(Tq, Tk)`` array: row ``i`` is what query ``i`` attends to.
        x_labels: ``Tk`` tick labels for the keys (columns), e.g. tokens.
        y_labels: ``Tq`` tick labels for the queries (rows).
        ax: a Matplotlib ``Axes`` to draw into; a new figure if ``None``.
        title: the title above the heatmap.
        xlabel, ylabel: axis names (default ``"keys"`` and ``"queries"``).
        annotate: write each weight in its cell; by default, when the matrix has
            at most 12 x 12 cells.
        vmin, vmax: the colour scale; ``vmax`` defaults to the largest weight.
        colorbar: add a colour bar beside the heatmap.
        cmap: a Matplotlib colour map name.

    Returns:
        The ``Axes`` drawn into.
    """
    import matplotlib.pyplot as plt

    w = as_float_array(weights, "weights")
    if w.ndim != 2:
        raise ValueError(f"weights must be a (Tq, Tk) matrix, got shape {w.shape}; pick one head or batch element")
    tq, tk = w.shape
    xl = _labels(x_labels, tk, "x_labels", w.shape)
    yl = _labels(y_labels, tq, "y_labels", w.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.45 * tk + 1.5), max(2.5, 0.45 * tq + 1.0)))
    image = ax.imshow(w, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if xl is not None:
        ax.set_xticks(range(tk), xl, rotation=90 if max(map(len, xl)) > 2 else 0)
    if yl is not None:
        ax.set_yticks(range(tq), yl)
    if annotate is None:
        annotate = tq <= 12 and tk <= 12
    if annotate:
        top = image.norm.vmax if image.norm.vmax is not None else (np.nanmax(w) or 1.0)
        for i in range(tq):
            for j in range(tk):
                dark = w[i, j] > 0.6 * top
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax


def attention_heatmaps(
    weights: Sequence,
    titles: Sequence[str] | None = None,
    *,
    x_labels: Sequence | None = None,
    y_labels: Sequence | None = None,
    ncols: int | None = None,
    size: float = 3.0,
    **kwargs,
):
    """Draw several ``(Tq, Tk)`` weight matrices side by side, on one colour scale.

    Args:
        weights: a sequence of 2-D arrays (or one ``(n, Tq, Tk)`` array).
        titles: one title per matrix.
        x_labels, y_labels: tick labels shared by all matrices.
        ncols: matrices per row (default: all in one row).
        size: the width and height of each panel, in inches.
        **kwargs: passed on to :func:`attention_heatmap`.

    Returns:
        The Matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    mats = [as_float_array(m, f"weights[{i}]") for i, m in enumerate(weights)]
    if not mats:
        raise ValueError("attention_heatmaps needs at least one weight matrix")
    if titles is not None and len(titles) != len(mats):
        raise ValueError(f"got {len(titles)} titles for {len(mats)} weight matrices")
    ncols = ncols or len(mats)
    nrows = -(-len(mats) // ncols)
    vmax = kwargs.pop("vmax", max(float(np.nanmax(m)) for m in mats))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 1.0, size * nrows), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        if i >= len(mats):
            ax.axis("off")
            continue
        attention_heatmap(mats[i], x_labels, y_labels, ax=ax, title=titles[i] if titles else None,
                          vmax=vmax, colorbar=False, **kwargs)
    fig.colorbar(axes.flat[0].images[0], ax=axes, shrink=0.8, label="weight")
    return fig
