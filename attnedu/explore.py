"""Explorers: a figure with sliders in JupyterLab, the same figure at a few settings in the book.

One explorer per part of the course lets a learner move a knob and watch attention change
(kernel width and softmax temperature in chapter 1, each head of a real model over a sentence
they type in chapter 7, the weight of hybrid search in chapter 11). Each is a drawing function
and its knobs::

    explorer(draw, {"h": [0.1, 0.2, 0.5, 1.0, 2.0], "temperature": [0.1, 1.0, 10.0]},
             static=[{"h": 0.1, "temperature": 0.1}, {"h": 2.0, "temperature": 10.0}])

``draw(fig, **settings)`` draws one setting into an empty Matplotlib figure. In a live notebook
(a kernel with ipywidgets) :func:`explorer` shows sliders (a list of values) and text boxes (a
string) and redraws on every change. Where no one can move a slider, in the book's build and in
grading (``ATTNEDU_STATIC_OUTPUTS=1``, set by :mod:`attnedu.build` and :mod:`attnedu.grading`) or
without ipywidgets, it draws the ``static`` settings one after another instead, each a figure of
its own with its settings in the title: a plain image, so the book page loads no widget code.
"""

from __future__ import annotations

import os
from typing import Callable

__all__ = ["STATIC_ENV", "live", "explorer"]

#: Set (to anything but ``""`` or ``"0"``) where outputs are kept and nobody interacts: the book's
#: build and grading. Explorers then draw static figures, and progress bars print text.
STATIC_ENV = "ATTNEDU_STATIC_OUTPUTS"


def live() -> bool:
    """True in a notebook kernel that can show widgets to someone: an IPython kernel, ipywidgets
    installed, and not a build or a grading run (:data:`STATIC_ENV`)."""
    if os.environ.get(STATIC_ENV, "") not in ("", "0"):
        return False
    try:
        from IPython import get_ipython

        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _title(settings: dict) -> str:
    return ", ".join(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v:g}" if isinstance(v, float)
                     else f"{k} = {v}" for k, v in settings.items())


def explorer(draw: Callable, controls: dict, *, static: list[dict], figsize=(9.0, 3.4)):
    """Show ``draw`` with a control per knob (live), or at each ``static`` setting (book, grading).

    Args:
        draw: ``draw(fig, **settings)`` draws one setting into the empty figure ``fig``.
        controls: knob name -> a list of values (a slider over them, starting at the first
            static setting's value) or a string (a text box holding it).
        static: the settings drawn where nothing is live: a list of dicts with every knob.
        figsize: the figure's size in inches. (The book's description of the figures, their alt
            text, is the cell's ``mystnb.image.alt`` metadata, as for every figure.)

    Returns:
        The ipywidgets box when live, else ``None`` (the figures are shown).
    """
    import matplotlib.pyplot as plt

    if not static:
        raise ValueError("give at least one static setting: it is what the book shows")
    for i, settings in enumerate(static):
        if set(settings) != set(controls):
            raise ValueError(f"static[{i}] has knobs {sorted(settings)}, the controls are {sorted(controls)}")
    for name, values in controls.items():
        if not isinstance(values, str) and not list(values):
            raise ValueError(f"the control {name!r} has no values")

    if not live():
        for settings in static:
            fig = plt.figure(figsize=figsize, layout="constrained")
            draw(fig, **settings)
            fig.suptitle(_title(settings), fontsize=10)
            plt.show()
        return None

    import ipywidgets as widgets
    from IPython.display import display

    first = static[0]
    boxes = {}
    for name, values in controls.items():
        if isinstance(values, str):
            boxes[name] = widgets.Text(value=first[name], description=name, continuous_update=False,
                                       layout=widgets.Layout(width="95%"))
        else:
            values = list(values)
            boxes[name] = widgets.SelectionSlider(options=values, value=first[name] if first[name] in values
                                                  else values[0], description=name, continuous_update=True)
    out = widgets.Output()

    def redraw(*_):
        with out:
            out.clear_output(wait=True)
            fig = plt.figure(figsize=figsize, layout="constrained")
            draw(fig, **{name: box.value for name, box in boxes.items()})
            plt.show()

    for box in boxes.values():
        box.observe(redraw, names="value")
    panel = widgets.VBox([*boxes.values(), out])
    display(panel)
    redraw()
    return panel
