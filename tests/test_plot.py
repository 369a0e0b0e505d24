"""attnedu.plot: heatmaps with labelled axes, and clear errors for the wrong input."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from attnedu.plot import attention_heatmap, attention_heatmaps  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_heatmap_labels_the_axes_and_ticks_and_draws_the_weights():
    w = np.array([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    ax = attention_heatmap(w, x_labels=["a", "b"], y_labels=["x", "y", "z"], title="t")
    assert ax.get_xlabel() == "keys" and ax.get_ylabel() == "queries" and ax.get_title() == "t"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    np.testing.assert_array_equal(ax.images[0].get_array(), w)
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.2f}" for v in w.ravel())


def test_large_heatmaps_are_not_annotated_by_default():
    ax = attention_heatmap(np.full((20, 20), 0.05))
    assert len(ax.texts) == 0


def test_heatmap_rejects_the_wrong_shapes_naming_them():
    with pytest.raises(ValueError, match=r"\(Tq, Tk\) matrix, got shape \(2, 3, 4\)"):
        attention_heatmap(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"x_labels has 3 entries but the weights have shape \(2, 2\)"):
        attention_heatmap(np.zeros((2, 2)), x_labels=["a", "b", "c"])


def test_several_heatmaps_share_one_colour_scale():
    mats = [np.eye(3) * 0.5, np.eye(3)]
    fig = attention_heatmaps(mats, titles=["half", "full"])
    axes = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in axes] == ["half", "full"]
    assert {ax.images[0].get_clim() for ax in axes} == {(0.0, 1.0)}
    with pytest.raises(ValueError, match="2 titles for 1"):
        attention_heatmaps([np.eye(2)], titles=["a", "b"])
