"""The course's drawn diagrams: pictures of structure, made by code.

Plots show numbers; these four pictures show how the parts fit together, where a reader would
rather look than read. Each is drawn with Matplotlib in the plain style of the course map on the
landing page (the same colours), for a figure 8 inches wide, with no text under 9 points:

* :func:`qkv_flow` (chapter 3): one attention head's data flow, from ``X`` through the three
  linear maps to ``Q``, ``K`` and ``V``, the scores, the mask, the softmax and ``A V``;
* :func:`heads_by_reshaping` (chapter 4): heads made by a ``view`` and a ``transpose``, drawn as
  coloured grids, and the merge that undoes them;
* :func:`transformer_block` (chapter 5): a Transformer block, pre-norm or post-norm, with or
  without cross-attention, its residual paths and its shapes;
* :func:`rag_pipeline` (chapter 12): retrieval-augmented generation, offline (chunk, embed,
  index) and online (retrieve, prompt, generate).

Each function draws into ``ax`` if one is given, otherwise into a new figure of a sensible size,
turns the axes off and returns the Figure; in an axes smaller than the picture's size the text,
lines and arrowheads shrink with it. :data:`ALT` holds each picture's alt text, for
screen readers; a notebook's diagram cell repeats it in its ``mystnb.image.alt`` metadata.
The pictures are deterministic and need no network.
"""

from __future__ import annotations

from attnedu._validate import positive_int

__all__ = ["transformer_block", "qkv_flow", "heads_by_reshaping", "rag_pipeline", "ALT"]

#: Alt text for each diagram (the function's name is the key): what the picture shows.
ALT = {
    "transformer_block": (
        "A Transformer block drawn from bottom to top: the input x of shape (B, T, d_model) passes through "
        "LayerNorm and multi-head self-attention, then LayerNorm and a feed-forward network (d_model to d_ff "
        "and back), each sublayer with a residual arrow that goes around it into an addition. A decoder "
        "block adds, between the two, LayerNorm and cross-attention whose keys and values come from the "
        "encoder's memory (B, S, d_model); in post-norm the LayerNorm comes after each addition instead."
    ),
    "qkv_flow": (
        "One attention head: X (T, d_model) goes through three linear maps, W_q, W_k and W_v, to Q and K of "
        "shape (T, d_k) and V of shape (T, d_v). Q K-transpose divided by the square root of d_k gives the "
        "scores (T, T), which pass through an optional mask and a softmax on each row to the weights A (T, T); "
        "A times V (T, d_v) is the output."
    ),
    "heads_by_reshaping": (
        "Heads made by reshaping, as coloured grids of numbered entries: one sequence's 4 by 6 matrix "
        "(T by d_model), its first three columns in head 0's colour and the last three in head 1's, is viewed "
        "as (B, T, n_head, d_head), which cuts each row into two pieces without moving a number, and "
        "transpose(1, 2) then gives two separate 4 by 3 matrices, one per head. An arrow back notes that "
        "merging the heads is transpose(1, 2) followed by reshape(B, T, d_model)."
    ),
    "rag_pipeline": (
        "The RAG pipeline in two lanes. Offline, documents are cut into chunks that are embedded into a "
        "vector index and also put in a BM25 index; online, a question is embedded, the top-k chunks are "
        "retrieved from both indexes and fused, put into a prompt as numbered sources (an example prompt "
        "is shown), and a language model writes an answer that cites them by number."
    ),
}

# Colours of the course map (book/images/make_course_map.py): (fill, edge) pairs.
BLUE = ("#dbe9f6", "#2c6fad")
ORANGE = ("#fde7d2", "#c0641c")
GREEN = ("#dcf0dd", "#2f7d3a")
PURPLE = ("#ebe2f4", "#6a47a0")
GREY = ("#eeeeee", "#555555")
WHITE = ("#ffffff", "#555555")
INK = "#222222"  # text
MUTED = "#555555"  # shapes and notes
ARROW = "#444444"
# Stronger fills for the grids' cells, one per head (numbers stay readable on them).
HEAD_FILLS = ["#a9c9e8", "#f6c08f", "#a8d5ab", "#cdb8e6", "#f2a9a9", "#9ed8d3", "#e8d68c", "#d9d9d9"]

FONT = 10  # labels in boxes
SMALL = 9  # shapes and notes: the smallest text in any diagram
TITLE = 11
MONO = "DejaVu Sans Mono"
WIDTH = 8.0  # inches: the book's width


# ------------------------------------------------------------------------------- drawing kit
def _canvas(ax, width: float, height: float):
    """An axes whose data units are inches of a ``width`` x ``height`` picture; a new figure if ``ax``
    is None. Returns ``(figure, axes, mark)``; pass ``mark`` to :func:`_fit` when the drawing is done."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig = plt.figure(figsize=(width, height))
        ax = fig.add_axes((0, 0, 1, 1))
    else:
        fig = ax.figure
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal", adjustable="box")
    ax.axis("off")
    return fig, ax, (len(ax.texts), len(ax.patches), len(ax.lines), width, height)


def _fit(ax, mark):
    """Shrink the text, lines and arrowheads drawn since ``mark`` when ``ax`` is smaller than the
    picture was laid out for, so that the text still fits its boxes (it is then under 9 points:
    give such an axes a larger figure)."""
    texts, patches, lines, width, height = mark
    fig_w, fig_h = ax.figure.get_size_inches()
    box = ax.get_position(original=True)
    scale = min(box.width * fig_w / width, box.height * fig_h / height)
    if scale >= 0.99:
        return
    for t in ax.texts[texts:]:
        t.set_fontsize(t.get_fontsize() * scale)
    for patch in ax.patches[patches:]:
        patch.set_linewidth(patch.get_linewidth() * scale)
        if hasattr(patch, "set_mutation_scale"):
            patch.set_mutation_scale(patch.get_mutation_scale() * scale)
    for line in ax.lines[lines:]:
        line.set_markersize(line.get_markersize() * scale)


def _box(ax, x, y, w, h, text, colors=GREY, *, fontsize=FONT, note=None, dashed=False, bold=False,
         family=None, rounding=0.08, lw=1.3):
    """A rounded box centred at ``(x, y)`` with ``text`` in it, and an optional smaller ``note`` line
    (a shape) under the text. Returns the box's (left, bottom, right, top)."""
    from matplotlib.patches import FancyBboxPatch

    fill, edge = colors
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=f"round,pad=0,rounding_size={rounding}",
                                facecolor=fill, edgecolor=edge, linewidth=lw,
                                linestyle=(0, (4, 2.5)) if dashed else "solid", zorder=2))
    if note is None:
        ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=INK, zorder=3,
                fontweight="bold" if bold else "normal", family=family, linespacing=1.25)
    else:
        ax.text(x, y + 0.02, text, ha="center", va="bottom", fontsize=fontsize, color=INK, zorder=3,
                fontweight="bold" if bold else "normal", family=family, linespacing=1.25)
        ax.text(x, y - 0.02, note, ha="center", va="top", fontsize=SMALL, color=MUTED, zorder=3,
                linespacing=1.2)
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def _arrow(ax, *points, color=ARROW, lw=1.3, dashed=False, head=True):
    """An arrow along the polyline through ``points``, its head at the last point."""
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    path = Path(list(points), [Path.MOVETO] + [Path.LINETO] * (len(points) - 1))
    ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>" if head else "-", mutation_scale=12,
                                 color=color, linewidth=lw, zorder=1, joinstyle="miter",
                                 linestyle=(0, (3, 2)) if dashed else "solid"))


def _add(ax, x, y, r=0.16):
    """The residual addition: a circle with a plus sign."""
    from matplotlib.patches import Circle

    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor=ARROW, linewidth=1.3, zorder=2))
    ax.text(x, y, "+", ha="center", va="center_baseline", fontsize=12, color=INK, zorder=3)


def _dot(ax, x, y):
    ax.plot([x], [y], marker="o", markersize=4, color=ARROW, zorder=3)


def _title(ax, x, y, text, **kw):
    ax.text(x, y, text, ha="left", va="top", fontsize=TITLE, fontweight="bold", color=INK, **kw)


# --------------------------------------------------------------------------- chapter 3: heads
def qkv_flow(ax=None):
    r"""One attention head's data flow, top to bottom, with every shape.

    ``X`` of shape ``(T, d_model)`` goes through three linear maps, :math:`W_q`, :math:`W_k` and
    :math:`W_v`, giving ``Q`` and ``K`` of shape ``(T, d_k)`` and ``V`` of shape ``(T, d_v)``
    (queries blue, keys orange, values green). :math:`QK^\top / \sqrt{d_k}` gives the scores
    ``(T, T)``; an optional mask sets forbidden entries to :math:`-\infty`; a softmax on each row
    gives the weights ``A`` ``(T, T)``; ``A V`` ``(T, d_v)`` is the head's output.

    Args:
        ax: a Matplotlib ``Axes`` to draw into (about 8 x 6 inches); a new figure if ``None``.

    Returns:
        The Matplotlib ``Figure``.
    """
    H = 6.05
    fig, ax, mark = _canvas(ax, WIDTH, H)
    _title(ax, 0.15, H - 0.1, "One attention head: queries, keys and values")

    xq, xk, xv, xs = 1.35, 3.65, 5.75, 2.5  # columns: Q, K, V, and the scores under Q and K
    y_x, y_w, y_d, y_s, y_m, y_sm, y_a = 5.2, 4.3, 3.4, 2.45, 1.65, 1.0, 0.38
    dw, dh = 1.45, 0.56  # data boxes
    ow, oh = 1.75, 0.56  # operation boxes

    _box(ax, xk, y_x, dw, dh, "X", WHITE, bold=True, note="(T, d_model)")
    for x, name, color, shape in ((xq, "q", BLUE, "d_k"), (xk, "k", ORANGE, "d_k"), (xv, "v", GREEN, "d_v")):
        _box(ax, x, y_w, ow, oh, f"linear map $W_{name}$", color, note=f"(d_model, {shape})")
        _box(ax, x, y_d, dw, dh, name.upper(), (WHITE[0], color[1]), bold=True, note=f"(T, {shape})", lw=1.8)
        _arrow(ax, (x, y_w - oh / 2), (x, y_d + dh / 2))
    # X feeds the three maps.
    split = y_x - dh / 2 - 0.22
    _arrow(ax, (xk, y_x - dh / 2), (xk, y_w + oh / 2))
    _dot(ax, xk, split)
    _arrow(ax, (xk, split), (xq, split), (xq, y_w + oh / 2))
    _arrow(ax, (xk, split), (xv, split), (xv, y_w + oh / 2))

    # Q and K meet in the scores.
    top_s = y_s + oh / 2
    meet = y_d - dh / 2 - 0.22
    _arrow(ax, (xq, y_d - dh / 2), (xq, meet), (xs - 0.35, meet), (xs - 0.35, top_s))
    _arrow(ax, (xk, y_d - dh / 2), (xk, meet), (xs + 0.35, meet), (xs + 0.35, top_s))
    ax.text(xq - 0.1, meet - 0.02, "Q", ha="right", va="top", fontsize=SMALL, color=BLUE[1])
    ax.text(xk + 0.1, meet - 0.02, r"$K^\top$", ha="left", va="top", fontsize=SMALL, color=ORANGE[1])
    _box(ax, xs, y_s, 2.05, oh, r"$QK^\top/\sqrt{d_k}$", PURPLE, note="scores (T, T)")
    _box(ax, xs, y_m, 2.05, 0.42, r"mask (optional): $-\infty$", PURPLE, dashed=True, fontsize=SMALL)
    _box(ax, xs, y_sm, 2.05, 0.42, "softmax, row by row", PURPLE)
    _box(ax, xs, y_a, dw, 0.44, "A  (T, T)", (WHITE[0], PURPLE[1]), lw=1.8)
    _arrow(ax, (xs, y_s - oh / 2), (xs, y_m + 0.21))
    _arrow(ax, (xs, y_m - 0.21), (xs, y_sm + 0.21))
    _arrow(ax, (xs, y_sm - 0.21), (xs, y_a + 0.22))
    ax.text(xs + 1.15, y_m, "where a query\nmay not look", ha="left", va="center", fontsize=SMALL, color=MUTED)
    ax.text(xs + 1.15, y_sm, "each row of A\nsums to 1", ha="left", va="center", fontsize=SMALL, color=MUTED)

    # A weighs the rows of V.
    _box(ax, xv, y_a, ow, 0.5, "A V  (T, d_v)", GREY)
    _arrow(ax, (xs + dw / 2, y_a), (xv - ow / 2, y_a))
    _arrow(ax, (xv, y_d - dh / 2), (xv, y_a + 0.25))
    ax.text(xv + 0.1, (y_d + y_a) / 2, "V", ha="left", va="center", fontsize=SMALL, color=GREEN[1])
    _arrow(ax, (xv + ow / 2, y_a), (xv + ow / 2 + 0.45, y_a))
    ax.text(xv + ow / 2 + 0.55, y_a, "output", ha="left", va="center", fontsize=FONT, color=INK, fontweight="bold")
    _fit(ax, mark)
    return fig


def heads_by_reshaping(ax=None, *, T: int = 4, d_model: int = 6, n_head: int = 2):
    """Heads made by reshaping, drawn as grids whose cells are coloured by head and numbered in
    memory order.

    Left: one sequence ``x`` of shape ``(T, d_model)``, its columns coloured by the head they
    belong to (head ``h`` owns features ``h * d_head`` to ``(h + 1) * d_head - 1``). Middle:
    ``view(B, T, n_head, d_head)`` (or ``reshape``) cuts every row into ``n_head`` pieces; no
    number moves. Right: ``transpose(1, 2)`` swaps the token and head axes, giving ``n_head``
    separate ``(T, d_head)`` matrices in the same colours. An arrow back notes the merge:
    ``transpose(1, 2)`` then ``reshape(B, T, d_model)``. Shapes carry the batch axis ``B``, which is
    what makes the transpose ``transpose(1, 2)``; the grids show one sequence of the batch.

    Args:
        ax: a Matplotlib ``Axes`` to draw into (8 inches wide); a new figure if ``None``.
        T, d_model, n_head: the sizes drawn; ``d_model`` must be divisible by ``n_head``.
            The cells are numbered while they are large enough to hold the numbers.

    Returns:
        The Matplotlib ``Figure``.
    """
    from matplotlib.patches import Rectangle

    T, d_model, n_head = (positive_int(v, name) for v, name in ((T, "T"), (d_model, "d_model"), (n_head, "n_head")))
    if d_model % n_head:
        raise ValueError(f"d_model={d_model} must be divisible by n_head={n_head}")
    if n_head > len(HEAD_FILLS):
        raise ValueError(f"n_head={n_head}: at most {len(HEAD_FILLS)} heads can be told apart by colour")
    d_head = d_model // n_head
    gap = 0.12  # between the heads' pieces
    arrow_w, label_w, margin = 1.2, 0.55, 0.2
    fixed = 2 * margin + 2 * arrow_w + 4 * 0.15 + label_w + (n_head - 1) * gap
    c = min(0.34, (WIDTH - fixed) / (2 * d_model + d_head))  # cell size
    c = min(c, 4.6 / (n_head * T + 0.6 * (n_head - 1)))  # keep the right-hand stack under ~5 inches
    numbered = c >= 0.22 and T * d_model <= 100 or c >= 0.3 and T * d_model <= 1000

    stack_h = n_head * T * c + (n_head - 1) * 0.5 * c + (n_head - 1) * 0.1
    top_space, bottom_space = 1.55, 1.05
    H = top_space + max(stack_h, T * c) + bottom_space
    fig, ax, mark = _canvas(ax, WIDTH, H)
    _title(ax, 0.15, H - 0.1, "Heads by reshaping")
    ax.text(0.15, H - 0.45, f"one sequence of the batch: T = {T} tokens, d_model = {d_model} features, "
            f"n_head = {n_head} heads of d_head = {d_head}", ha="left", va="top", fontsize=SMALL, color=MUTED)
    mid = bottom_space + max(stack_h, T * c) / 2  # the rows' common centre line

    def grid(x0, y_top, rows, cols, number, head_of):
        """Cells ``rows x cols`` from the top-left corner ``(x0, y_top)``; ``number(r, j)`` the
        entry, ``head_of(j)`` its head; a gap after each head's piece when ``split``."""
        for r in range(rows):
            for j in range(cols):
                x = x0 + j * c
                ax.add_patch(Rectangle((x, y_top - (r + 1) * c), c, c, facecolor=HEAD_FILLS[head_of(j)],
                                       edgecolor="white", linewidth=1.2, zorder=2))
                if numbered:
                    ax.text(x + c / 2, y_top - (r + 0.5) * c, str(number(r, j)), ha="center", va="center",
                            fontsize=SMALL, color=INK, zorder=3)

    def caption(x, y, shape, sizes):
        ax.text(x, y, shape, ha="center", va="bottom", fontsize=FONT, color=INK, family=MONO)
        ax.text(x, y - 0.04, sizes, ha="center", va="top", fontsize=SMALL, color=MUTED)

    def head_labels(x0, y, width_of_piece, step):
        for h in range(n_head):  # "head 0" where it fits over its piece, else "0"
            ax.text(x0 + h * step + width_of_piece / 2, y, f"head {h}" if width_of_piece >= 0.55 else str(h),
                    ha="center", va="bottom", fontsize=SMALL, color=_edge_for(h), fontweight="bold")

    # 1. x, (T, d_model): the columns coloured by head.
    x1 = margin
    w1 = d_model * c
    top1 = mid + T * c / 2
    grid(x1, top1, T, d_model, lambda r, j: r * d_model + j, lambda j: j // d_head)
    head_labels(x1, top1 + 0.05, d_head * c, d_head * c)
    caption(x1 + w1 / 2, top1 + 0.7, "(B, T, d_model)", f"one sequence: ({T}, {d_model})")

    # 2. view(B, T, n_head, d_head): the same numbers, each row cut into n_head pieces.
    x2 = x1 + w1 + 0.15 + arrow_w + 0.15
    w2 = d_model * c + (n_head - 1) * gap
    for h in range(n_head):
        grid(x2 + h * (d_head * c + gap), top1, T, d_head, lambda r, j, h=h: r * d_model + h * d_head + j,
             lambda j, h=h: h)
    head_labels(x2, top1 + 0.05, d_head * c, d_head * c + gap)
    caption(x2 + w2 / 2, top1 + 0.7, "(B, T, n_head, d_head)", f"one sequence: ({T}, {n_head}, {d_head})")
    _op_arrow(ax, x1 + w1 + 0.15, x2 - 0.15, mid, "view", "or reshape:\nno number moves")

    # 3. transpose(1, 2): n_head matrices (T, d_head), stacked.
    x3 = x2 + w2 + 0.15 + arrow_w + 0.15
    w3 = d_head * c
    head_step = T * c + 0.5 * c + 0.1
    top3 = mid + stack_h / 2
    for h in range(n_head):
        y_top = top3 - h * head_step
        grid(x3, y_top, T, d_head, lambda r, j, h=h: r * d_model + h * d_head + j, lambda j, h=h: h)
        ax.text(x3 + w3 + 0.08, y_top - T * c / 2, f"head {h}", ha="left", va="center", fontsize=SMALL,
                color=_edge_for(h), fontweight="bold")
    caption(min(x3 + w3 / 2 + 0.1, WIDTH - 0.9), max(top3 + 0.45, top1 + 0.7),  # kept inside the figure
            "(B, n_head, T, d_head)", f"one sequence: ({n_head}, {T}, {d_head})")
    _op_arrow(ax, x2 + w2 + 0.15, x3 - 0.15, mid, "transpose(1, 2)", "swaps the axes\nT and n_head")

    # The merge: back from the heads to (T, d_model).
    low = min(mid - stack_h / 2, mid - T * c / 2) - 0.3
    _arrow(ax, (x3 + w3 / 2, mid - stack_h / 2), (x3 + w3 / 2, low), (x1 + w1 / 2, low), (x1 + w1 / 2, mid - T * c / 2),
           color=MUTED, dashed=True)
    ax.text((x1 + x3 + w3) / 2, low - 0.08,
            "merge (the inverse): transpose(1, 2), then reshape(B, T, d_model)\n"
            "reshape, not view: after the transpose the numbers are out of memory order",
            ha="center", va="top", fontsize=SMALL, color=MUTED, linespacing=1.3)
    _fit(ax, mark)
    return fig


def _edge_for(h: int) -> str:
    """A dark text colour matching head ``h``'s cell colour."""
    return [BLUE[1], ORANGE[1], GREEN[1], PURPLE[1], "#b03a3a", "#1f7f7a", "#8a6d00", MUTED][h]


def _op_arrow(ax, x0, x1, y, op, note):
    """A horizontal arrow from ``x0`` to ``x1`` at height ``y``, the operation's name above it and a
    note below."""
    _arrow(ax, (x0, y), (x1, y), lw=1.6)
    ax.text((x0 + x1) / 2, y + 0.1, op, ha="center", va="bottom", fontsize=SMALL, color=INK, family=MONO,
            fontweight="bold")
    ax.text((x0 + x1) / 2, y - 0.1, note, ha="center", va="top", fontsize=SMALL, color=MUTED, linespacing=1.2)


# ------------------------------------------------------------------------ chapter 5: the block
def transformer_block(ax=None, *, cross_attention: bool = False, norm_first: bool = True):
    """A Transformer block, bottom to top, as boxes and arrows with its shapes.

    The input ``x`` ``(B, T, d_model)`` goes through LayerNorm and multi-head self-attention (masked
    in a decoder), whose result is added to ``x`` (the residual arrow goes around the sublayer into
    the ``+``); then, with ``cross_attention``, LayerNorm and cross-attention, whose queries come from
    below and whose keys and values come from the side, from the encoder's memory ``(B, S,
    d_model)``, and another ``+``; then LayerNorm, the feed-forward network ``d_model -> d_ff ->
    d_model`` and a last ``+``, giving the output ``(B, T, d_model)``. With ``norm_first=False``
    (post-norm, the original Transformer's order) each LayerNorm sits after its ``+`` instead of
    before its sublayer.

    Args:
        ax: a Matplotlib ``Axes`` to draw into (8 inches wide, 6 to 8 tall); a new figure if ``None``.
        cross_attention: draw a decoder block's cross-attention sublayer.
        norm_first: pre-norm (True) or post-norm (False).

    Returns:
        The Matplotlib ``Figure``.
    """
    cx, bw = 3.55, 2.9  # the main column's centre and box width
    x_res = cx - bw / 2 - 0.5  # the residual paths' vertical lines
    ln_h, sub_h, r = 0.34, 0.58, 0.15
    inner, between = 0.22, 0.4  # gaps: inside a sublayer group, and between groups (the residual branches)

    if cross_attention:
        self_label, self_note = "masked multi-head self-attention", "causal: a token sees itself and the past"
    else:
        self_label, self_note = "multi-head self-attention", "masked (causal) in a decoder or a GPT"
    groups = [("self", self_label, self_note, BLUE)]
    if cross_attention:
        groups.append(("cross", "multi-head cross-attention", "queries from below", ORANGE))
    groups.append(("ff", "feed-forward", "d_model → d_ff → d_model, per token", GREEN))

    # Lay the elements out from the bottom: (kind, group index, centre y).
    y = 0.3  # the input label
    elements = []
    y_in = y
    y += 0.2 + between
    for g in range(len(groups)):
        order = ("ln", "sub", "add") if norm_first else ("sub", "add", "ln")
        for i, kind in enumerate(order):
            h = {"ln": ln_h, "sub": sub_h, "add": 2 * r}[kind]
            elements.append((kind, g, y + h / 2, h))
            y += h + (inner if i < 2 else between)
    y_out = y + 0.2
    H = y_out + 0.6
    fig, ax, mark = _canvas(ax, WIDTH, H)
    name = "decoder block with cross-attention" if cross_attention else "Transformer block"
    _title(ax, 0.15, H - 0.1, f"A {'pre' if norm_first else 'post'}-norm {name}")

    ax.text(cx, y_in, "input x", ha="center", va="center", fontsize=FONT, color=INK, fontweight="bold")
    ax.text(cx + 0.55, y_in, "(B, T, d_model)", ha="left", va="center", fontsize=SMALL, color=MUTED)
    ax.text(cx, y_out, "output", ha="center", va="center", fontsize=FONT, color=INK, fontweight="bold")
    ax.text(cx + 0.55, y_out, "(B, T, d_model)", ha="left", va="center", fontsize=SMALL, color=MUTED)

    # The frame of one block of the stack.
    from matplotlib.patches import FancyBboxPatch

    f_bottom = elements[0][2] - elements[0][3] / 2 - between * 0.75
    f_top = elements[-1][2] + elements[-1][3] / 2 + between * 0.75
    f_left, f_right = x_res - 0.35, cx + bw / 2 + 0.3
    ax.add_patch(FancyBboxPatch((f_left, f_bottom), f_right - f_left, f_top - f_bottom,
                                boxstyle="round,pad=0,rounding_size=0.15", facecolor="#fafafa",
                                edgecolor="#999999", linewidth=1.0, linestyle=(0, (4, 3)), zorder=0))
    ax.text(f_right + 0.12, f_top - 0.05, f"one of n_layer blocks\n{'pre' if norm_first else 'post'}-norm:\n"
            + ("x + f(LayerNorm(x))" if norm_first else "LayerNorm(x + f(x))"),
            ha="left", va="top", fontsize=SMALL, color=MUTED, linespacing=1.3)

    # The stream: arrows between consecutive elements, from the input to the output.
    def bottom(e):
        return e[2] - e[3] / 2

    def top(e):
        return e[2] + e[3] / 2

    _arrow(ax, (cx, y_in + 0.15), (cx, bottom(elements[0])))
    for a, b in zip(elements, elements[1:]):
        _arrow(ax, (cx, top(a)), (cx, bottom(b)))
    _arrow(ax, (cx, top(elements[-1])), (cx, y_out - 0.15))

    previous_top = y_in + 0.15
    for g, (key, label, note, colors) in enumerate(groups):
        mine = [e for e in elements if e[1] == g]
        first = mine[0]
        for kind, _, yc, h in mine:
            if kind == "ln":
                _box(ax, cx, yc, bw * 0.62, h, "LayerNorm", GREY)
            elif kind == "sub":
                _box(ax, cx, yc, bw, h, label, colors, note=note)
                sub_y = yc
            else:
                _add(ax, cx, yc, r)
                add_y = yc
        # The residual path: from the stream below the group, around it, into the +.
        branch = (previous_top + bottom(first)) / 2
        _dot(ax, cx, branch)
        _arrow(ax, (cx, branch), (x_res, branch), (x_res, add_y), (cx - r, add_y))
        if g == 0:
            ax.text(x_res - 0.1, (branch + add_y) / 2, "residual", rotation=90, ha="right", va="center",
                    fontsize=SMALL, color=MUTED)
        previous_top = top(mine[-1])
        if key == "cross":
            mem_x, mem_w = 6.75, 1.95
            _box(ax, mem_x, sub_y, mem_w, 0.62, "memory", WHITE, bold=True, note="(B, S, d_model)")
            ax.text(mem_x, sub_y + 0.31 + 0.06, "the encoder's output", ha="center", va="bottom",
                    fontsize=SMALL, color=MUTED)
            _arrow(ax, (mem_x - mem_w / 2, sub_y), (cx + bw / 2, sub_y), color=ORANGE[1], lw=1.6)
            ax.text((mem_x - mem_w / 2 + f_right) / 2, sub_y - 0.06, "keys,\nvalues", ha="center", va="top",
                    fontsize=SMALL, color=ORANGE[1])
    _fit(ax, mark)
    return fig


# -------------------------------------------------------------------------- chapter 12: RAG
def rag_pipeline(ax=None):
    """Retrieval-augmented generation in two lanes, with an example of the prompt.

    Offline (once, and again when the documents change): documents -> chunk -> embed -> a vector
    index, and the chunks also into a BM25 index. Online (for every question): question -> embed
    -> retrieve the top k from both indexes (the question's words go to BM25) and fuse the two
    rankings -> a prompt with the chunks as numbered sources -> the generator, a language model ->
    an answer that cites its sources by number.

    Args:
        ax: a Matplotlib ``Axes`` to draw into (about 8 x 5 inches); a new figure if ``None``.

    Returns:
        The Matplotlib ``Figure``.
    """
    from matplotlib.patches import FancyBboxPatch

    H = 5.1
    fig, ax, mark = _canvas(ax, WIDTH, H)
    _title(ax, 0.15, H - 0.1, "Retrieval-augmented generation")
    step, bw = 1.24, 1.06
    p = [1.0 + i * step for i in range(6)]
    y_off, y_idx, y_on = 3.85, 2.9, 1.2
    bh = 0.8

    # The two lanes, each named on its left edge, with when it runs.
    for (x0, y0, x1, y1), colors, name, when, (wx, wy, wha, wva) in (
        ((0.12, 2.38, 4.12, 4.55), GREEN, "offline", "once, and again when the documents change",
         (0.12, 4.6, "left", "bottom")),
        ((0.12, 0.1, 7.88, 2.2), BLUE, "online", "for every question", (7.8, 2.12, "right", "top")),
    ):
        ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor="#fbfdfb" if colors is GREEN else "#fafcfe", edgecolor=colors[1],
                                    linewidth=1.0, linestyle=(0, (4, 3)), zorder=0))
        ax.text(x0 + 0.1, (y0 + y1) / 2, name, rotation=90, ha="left", va="center",
                fontsize=FONT, fontweight="bold", color=colors[1])
        ax.text(wx, wy, f"{name}: {when}", ha=wha, va=wva, fontsize=SMALL, color=colors[1])

    # Offline: documents -> chunk -> embed -> vector index; chunk -> BM25 index.
    _box(ax, p[0], y_off, bw, 0.62, "documents", WHITE)
    _box(ax, p[1], y_off, bw, 0.62, "chunk", GREEN, note="passages")
    _box(ax, p[2], y_off, bw, 0.62, "embed", GREEN, note="each chunk")
    _box(ax, p[1], y_idx, bw, 0.62, "BM25 index", WHITE, note="words", lw=1.8)
    _box(ax, p[2], y_idx, bw, 0.62, "vector index", WHITE, note="embeddings", lw=1.8)
    _arrow(ax, (p[0] + bw / 2, y_off), (p[1] - bw / 2, y_off))
    _arrow(ax, (p[1] + bw / 2, y_off), (p[2] - bw / 2, y_off))
    _arrow(ax, (p[1], y_off - 0.31), (p[1], y_idx + 0.31))
    _arrow(ax, (p[2], y_off - 0.31), (p[2], y_idx + 0.31))

    # Online: question -> embed -> retrieve -> prompt -> generator -> answer.
    online = [
        ("question", None, WHITE),
        ("embed", "the question", BLUE),
        ("retrieve top-k", "vector + BM25\nfused (RRF)", BLUE),
        ("prompt", "numbered\nsources", BLUE),
        ("generator", "a language\nmodel", BLUE),
        ("answer", "with citations:\n“Morsk [1]”", WHITE),
    ]
    for i, (text, note, colors) in enumerate(online):
        _box(ax, p[i], y_on, bw, bh, text, colors, note=note, lw=1.8 if i in (0, 5) else 1.3)
        if i:
            _arrow(ax, (p[i - 1] + bw / 2, y_on), (p[i] - bw / 2, y_on))
    top_on, bottom_on = y_on + bh / 2, y_on - bh / 2
    # The indexes feed the retrieval; the question's words go to BM25.
    turn = (y_idx - 0.31 + top_on) / 2
    _arrow(ax, (p[1], y_idx - 0.31), (p[1], turn), (p[2] - 0.25, turn), (p[2] - 0.25, top_on))
    _arrow(ax, (p[2] + 0.2, y_idx - 0.31), (p[2] + 0.2, top_on))
    under = 0.32
    _arrow(ax, (p[0], bottom_on), (p[0], under), (p[2], under), (p[2], bottom_on))
    ax.text((p[0] + p[2]) / 2, under + 0.06, "its words, for BM25", ha="center", va="bottom", fontsize=SMALL,
            color=MUTED)

    # An example of the prompt, tied to the prompt box.
    x0, x1, y0, y1 = 4.35, 7.88, 2.95, 4.55
    ax.add_patch(FancyBboxPatch((x0, y0), x1 - x0, y1 - y0, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor="white", edgecolor=BLUE[1], linewidth=1.0, zorder=2))
    ax.text(x0 + 0.12, y1 + 0.05, "the prompt, for example", ha="left", va="bottom", fontsize=SMALL,
            color=BLUE[1])
    prompt = ("Answer the question using only the\n"
              "numbered sources; cite them like [1].\n\n"
              "Sources:\n"
              "[1] The capital of Veltria is Morsk.\n"
              "[2] The river of Veltria is the Sarn.\n\n"
              "Question: What is the capital of Veltria?\n"
              "Answer:")
    ax.text(x0 + 0.12, y1 - 0.1, prompt, ha="left", va="top", fontsize=SMALL, family=MONO, color=INK,
            linespacing=1.3, zorder=3)
    _arrow(ax, (p[3], y0), (p[3], top_on), color=BLUE[1], dashed=True, head=False)
    _fit(ax, mark)
    return fig
