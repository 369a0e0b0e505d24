"""Explorers (attnedu.explore): sliders in JupyterLab, fixed settings where nobody can move them."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from attnedu import explore  # noqa: E402


def recorder():
    calls = []

    def draw(fig, h, word="x"):
        calls.append((h, word))
        fig.subplots().plot([0, 1], [0, h])

    return draw, calls


def test_where_nobody_can_move_a_slider_it_draws_each_static_setting(monkeypatch):
    monkeypatch.setenv(explore.STATIC_ENV, "1")
    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()._suptitle.get_text()))
    draw, calls = recorder()
    assert explore.explorer(draw, {"h": [0.1, 0.5, 2.0], "word": "cat"},
                            static=[{"h": 0.1, "word": "cat"}, {"h": 2.0, "word": "dog"}]) is None
    assert calls == [(0.1, "cat"), (2.0, "dog")]
    assert shown == ["h = 0.1, word = 'cat'", "h = 2, word = 'dog'"]  # each figure says its setting
    plt.close("all")


def test_outside_a_notebook_kernel_nothing_is_live(monkeypatch):
    monkeypatch.delenv(explore.STATIC_ENV, raising=False)
    assert explore.live() is False  # pytest is no Jupyter kernel
    monkeypatch.setenv(explore.STATIC_ENV, "0")
    assert explore.live() is False


def test_live_it_shows_a_control_per_knob_and_redraws_when_one_moves(monkeypatch):
    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(explore, "live", lambda: True)
    monkeypatch.setattr(plt, "show", lambda: None)
    draw, calls = recorder()
    panel = explore.explorer(draw, {"h": [0.1, 0.5, 2.0], "word": "cat"},
                             static=[{"h": 0.5, "word": "cat"}])
    slider, box, _ = panel.children
    assert type(slider).__name__ == "SelectionSlider" and slider.options == (0.1, 0.5, 2.0) and slider.value == 0.5
    assert type(box).__name__ == "Text" and box.value == "cat"
    slider.value = 2.0
    box.value = "a sentence of my own"
    assert calls == [(0.5, "cat"), (2.0, "cat"), (2.0, "a sentence of my own")]
    plt.close("all")


@pytest.mark.parametrize("controls, static, message", [
    ({"h": [1]}, [], "give at least one static setting"),
    ({"h": [1]}, [{"w": 1}], r"static\[0\] has knobs \['w'\], the controls are \['h'\]"),
    ({"h": []}, [{"h": 1}], "the control 'h' has no values"),
])
def test_a_wrong_explorer_says_what_is_wrong(controls, static, message):
    with pytest.raises(ValueError, match=message):
        explore.explorer(lambda fig, **k: None, controls, static=static)
