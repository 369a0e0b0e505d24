"""attnedu.diagrams: the course's drawn diagrams show the right parts, in the right order, readably."""

import io
import itertools

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnedu import diagrams  # noqa: E402
from attnedu.diagrams import ALT, heads_by_reshaping, qkv_flow, rag_pipeline, transformer_block  # noqa: E402

DIAGRAMS = {
    "transformer_block": transformer_block,
    "qkv_flow": qkv_flow,
    "heads_by_reshaping": heads_by_reshaping,
    "rag_pipeline": rag_pipeline,
}
VARIANTS = [
    ("transformer_block", {}),
    ("transformer_block", {"norm_first": False}),
    ("transformer_block", {"cross_attention": True}),
    ("transformer_block", {"cross_attention": True, "norm_first": False}),
    ("qkv_flow", {}),
    ("heads_by_reshaping", {}),
    ("heads_by_reshaping", {"T": 3, "d_model": 8, "n_head": 4}),
    ("rag_pipeline", {}),
]
variant_ids = [name + "".join(f"-{k}={v}" for k, v in kw.items()) for name, kw in VARIANTS]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def texts(fig) -> list:
    return [t for ax in fig.axes for t in ax.texts]


def strings(fig) -> list[str]:
    return [t.get_text() for t in texts(fig)]


def ys(fig, label: str) -> list[float]:
    """The heights (data units, bottom to top) of the text artists that read exactly ``label``."""
    return sorted(t.get_position()[1] for t in texts(fig) if t.get_text() == label)


def joined(fig) -> str:
    return "\n".join(strings(fig))


def overlapping_texts(fig) -> list[tuple[str, str]]:
    """Pairs of texts whose drawn boxes overlap by more than a pixel each way."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig) if t.get_text().strip()]
    pairs = []
    for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2):
        both = box_a.intersection(box_a, box_b)
        if both is not None and both.width > 1 and both.height > 1:
            pairs.append((a, b))
    return pairs


# ------------------------------------------------------------------------------ every diagram
@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=variant_ids)
def test_each_diagram_returns_a_figure_with_its_axes_off_and_saves_to_png(name, kwargs):
    fig = DIAGRAMS[name](**kwargs)
    assert isinstance(fig, Figure)
    assert fig.axes and not any(ax.axison for ax in fig.axes)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", DIAGRAMS)
def test_each_diagram_draws_into_a_given_axes(name):
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 8))
    assert DIAGRAMS[name](ax=right) is fig
    assert right.texts and not left.texts and not right.axison


@pytest.mark.parametrize("name", DIAGRAMS)
def test_in_a_smaller_axes_the_text_shrinks_with_the_picture(name):
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    DIAGRAMS[name](ax=left)
    assert max(t.get_fontsize() for t in left.texts) < 9
    assert not overlapping_texts(fig)


@pytest.mark.parametrize("name", DIAGRAMS)
def test_each_diagram_is_8_inches_wide_and_deterministic(name):
    first, second = DIAGRAMS[name](), DIAGRAMS[name]()
    assert first.get_size_inches()[0] == pytest.approx(8.0)
    assert 3.0 <= first.get_size_inches()[1] <= 9.0
    a, b = io.BytesIO(), io.BytesIO()
    first.savefig(a, format="png", metadata={"Software": None})
    second.savefig(b, format="png", metadata={"Software": None})
    assert a.getvalue() == b.getvalue()


@pytest.mark.parametrize(("name", "kwargs"), VARIANTS, ids=variant_ids)
def test_no_text_is_under_9_points_overlaps_other_text_or_leaves_the_figure(name, kwargs):
    fig = DIAGRAMS[name](**kwargs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    drawn = [t for t in texts(fig) if t.get_text().strip()]
    assert min(t.get_fontsize() for t in drawn) >= 9
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in drawn]
    page = fig.bbox
    for text, box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, \
            f"{text!r} is cut off by the edge of the figure"
    overlapping = overlapping_texts(fig)
    assert not overlapping, f"texts that overlap: {overlapping}"


def test_alt_text_describes_each_diagram_in_one_or_two_sentences():
    assert set(ALT) == set(DIAGRAMS)
    for name, text in ALT.items():
        assert text.strip() and text == text.strip(), name
        assert 1 <= text.count(". ") + text.endswith(".") <= 2, f"{name}: one or two sentences"
        assert "diagram" not in text.lower(), f"{name}: describe the picture, not that it is one"


def test_the_module_names_the_chapter_of_each_diagram():
    doc = diagrams.__doc__
    for name, chapter in (("qkv_flow", 3), ("heads_by_reshaping", 4), ("transformer_block", 5),
                          ("rag_pipeline", 12)):
        assert f":func:`{name}` (chapter {chapter})" in doc
        assert DIAGRAMS[name].__doc__


# --------------------------------------------------------------------------- the Transformer block
def test_block_has_its_sublayers_and_shapes():
    text = joined(transformer_block())
    for label in ("LayerNorm", "multi-head self-attention", "feed-forward", "d_model → d_ff → d_model",
                  "input x", "output", "(B, T, d_model)", "residual"):
        assert label in text
    assert "cross-attention" not in text and "memory" not in text


def test_cross_attention_adds_a_layernorm_a_residual_add_and_the_encoders_memory():
    plain, cross = transformer_block(), transformer_block(cross_attention=True)
    assert len(ys(plain, "LayerNorm")) == 2 and len(ys(cross, "LayerNorm")) == 3
    assert len(ys(plain, "+")) == 2 and len(ys(cross, "+")) == 3
    text = joined(cross)
    assert "multi-head cross-attention" in text and "masked multi-head self-attention" in text
    assert "memory" in text and "(B, S, d_model)" in text and "keys,\nvalues" in text


def _order(fig) -> list[str]:
    """The block's parts from bottom to top, by the heights of their labels."""
    names = {"LayerNorm": "norm", "+": "add", "multi-head self-attention": "attn",
             "masked multi-head self-attention": "attn", "multi-head cross-attention": "cross",
             "feed-forward": "ff"}
    parts = [(t.get_position()[1], names[t.get_text()]) for t in texts(fig) if t.get_text() in names]
    return [name for _, name in sorted(parts)]


@pytest.mark.parametrize("cross_attention", [False, True])
def test_pre_norm_puts_each_norm_before_its_sublayer_and_post_norm_after_each_add(cross_attention):
    middle = ["norm", "cross", "add"] if cross_attention else []
    pre = _order(transformer_block(cross_attention=cross_attention, norm_first=True))
    assert pre == ["norm", "attn", "add", *middle, "norm", "ff", "add"]
    post = _order(transformer_block(cross_attention=cross_attention, norm_first=False))
    middle = ["cross", "add", "norm"] if cross_attention else []
    assert post == ["attn", "add", "norm", *middle, "ff", "add", "norm"]
    # Post-norm: the lowest norm sits above the lowest add; pre-norm: below it.
    fig = transformer_block(cross_attention=cross_attention, norm_first=False)
    assert ys(fig, "LayerNorm")[0] > ys(fig, "+")[0]
    fig = transformer_block(cross_attention=cross_attention, norm_first=True)
    assert ys(fig, "LayerNorm")[0] < ys(fig, "+")[0]


def test_the_input_is_at_the_bottom_and_the_output_at_the_top():
    fig = transformer_block(cross_attention=True)
    parts = [y for label in ("LayerNorm", "+") for y in ys(fig, label)]
    assert ys(fig, "input x")[0] < min(parts) and ys(fig, "output")[0] > max(parts)


# ---------------------------------------------------------------------------- queries, keys, values
def test_qkv_flow_shows_every_step_with_its_shape():
    fig = qkv_flow()
    text = joined(fig)
    for label in ("X", "(T, d_model)", "$W_q$", "$W_k$", "$W_v$", "Q", "K", "V", "(T, d_k)", "(T, d_v)",
                  r"$QK^\top/\sqrt{d_k}$", "scores (T, T)", "mask (optional)", "softmax", "A  (T, T)",
                  "A V  (T, d_v)", "output"):
        assert label in text, label


def test_qkv_flow_runs_from_x_down_to_the_output():
    fig = qkv_flow()

    def y(fragment):
        return next(t.get_position()[1] for t in texts(fig) if fragment in t.get_text())

    heights = [y("X"), y("$W_k$"), y(r"$QK^\top"), y("mask (optional)"), y("softmax"), y("A  (T, T)")]
    assert heights == sorted(heights, reverse=True)
    assert y("A V") == pytest.approx(y("A  (T, T)")) and y("output") == pytest.approx(y("A V"))


# -------------------------------------------------------------------------------- heads by reshaping
def test_heads_are_grids_coloured_by_head_with_the_operations_named():
    fig = heads_by_reshaping()
    text = joined(fig)
    for label in ("view", "or reshape", "transpose(1, 2)", "(B, T, d_model)", "(B, T, n_head, d_head)",
                  "(B, n_head, T, d_head)", "(4, 6)", "(4, 2, 3)", "(2, 4, 3)", "merge", "head 0", "head 1"):
        assert label in text, label
    ax = fig.axes[0]
    cells = [p for p in ax.patches if type(p).__name__ == "Rectangle"]
    assert len(cells) == 3 * 4 * 6  # the same 24 numbers, three times
    colours = {tuple(p.get_facecolor()) for p in cells}
    assert len(colours) == 2  # one colour per head
    numbers = [s for s in strings(fig) if s.isdigit()]
    assert sorted(numbers, key=int) == [str(i) for i in range(24) for _ in range(3)]


def test_the_transpose_gathers_each_heads_numbers_into_its_own_matrix():
    fig = heads_by_reshaping(T=2, d_model=4, n_head=2)
    right = max(t.get_position()[0] for t in texts(fig) if t.get_text().isdigit()) - 0.5
    on_the_right = sorted((-t.get_position()[1], t.get_position()[0], t.get_text()) for t in texts(fig)
                          if t.get_text().isdigit() and t.get_position()[0] > right)
    # Head 0 (features 0, 1 of each token) on top, then head 1 (features 2, 3), row by row.
    assert [s for _, _, s in on_the_right] == ["0", "1", "4", "5", "2", "3", "6", "7"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"d_model": 6, "n_head": 4}, "divisible"),
    ({"T": 0}, "T must be a positive integer"),
    ({"n_head": 2.0}, "n_head must be a positive integer"),
])
def test_heads_by_reshaping_rejects_sizes_that_do_not_split(kwargs, match):
    with pytest.raises(ValueError, match=match):
        heads_by_reshaping(**kwargs)


# ------------------------------------------------------------------------------------------ RAG
def test_rag_pipeline_has_both_lanes_and_every_step():
    text = joined(rag_pipeline())
    for label in ("offline", "online", "documents", "chunk", "embed", "vector index", "BM25 index",
                  "question", "retrieve top-k", "vector + BM25", "fused", "prompt", "numbered", "generator",
                  "language", "answer", "citations", "[1]"):
        assert label in text, label


def test_rag_offline_lane_is_above_the_online_lane():
    fig = rag_pipeline()
    assert ys(fig, "documents")[0] > ys(fig, "question")[0]
    assert ys(fig, "vector index")[0] > ys(fig, "retrieve top-k")[0]
    assert ys(fig, "offline")[0] > ys(fig, "online")[0]
