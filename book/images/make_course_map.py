"""Draw the course map shown on the landing page: book/images/course-map.png.

The map shows the fourteen chapters in three columns, one per part, with arrows
along the path a reader takes. The output is deterministic, so regenerating it
without changes gives the same picture. To regenerate it, from the top of the
repository run::

    .venv/bin/python book/images/make_course_map.py

and commit the new ``course-map.png`` next to this script.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; also keeps the output independent of the backend

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).with_name("course-map.png")

# (part title, fill colour, edge colour, [(number, chapter title), ...])
PARTS = [
    (
        "Part I\nAttention from first principles",
        "#dbe9f6",
        "#2c6fad",
        [
            (1, "Weighted sums"),
            (2, "Scaled dot-product attention"),
            (3, "Self-attention"),
            (4, "Multi-head attention"),
        ],
    ),
    (
        "Part II\nTransformers",
        "#fde7d2",
        "#c0641c",
        [
            (5, "The Transformer"),
            (6, "A GPT from scratch"),
            (7, "Real models, your attention"),
            (8, "Attention beyond text"),
            (9, "The cost of attention"),
        ],
    ),
    (
        "Part III\nRetrieval, RAG and data",
        "#dcf0dd",
        "#2f7d3a",
        [
            (10, "Embeddings and vector search"),
            (11, "Hybrid search"),
            (12, "Retrieval-augmented generation"),
            (13, "Data for generative AI"),
            (14, "The database in safety and at scale"),
        ],
    ),
]

# Layout in data units: the axes span x in [0, 30] and y in [0, 21].
COL_X = [0.6, 10.6, 20.6]  # left edge of each column's boxes
BOX_W, BOX_H = 8.8, 2.3
FIG_W, FIG_H = 8.2, 6.4  # inches; at 110 dpi the map is 902 px wide
TOP = 16.2  # top edge of the first box in every column
STEP = 3.2  # vertical distance between the tops of consecutive boxes


def box_geometry(col: int, row: int) -> tuple[float, float]:
    """Lower-left corner of the box for chapter ``row`` of part ``col``."""
    return COL_X[col], TOP - BOX_H - row * STEP


def draw(path: Path = OUT) -> Path:
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "attnedu"})
    fig = plt.figure(figsize=(FIG_W, FIG_H), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))  # the axes fill the figure
    ax.set_xlim(0, 30)
    ax.set_ylim(0, 21)
    ax.axis("off")

    ax.text(15, 20.3, "The path through attnedu", ha="center", va="center",
            fontsize=14, fontweight="bold", color="#222222")

    for col, (title, fill, edge, chapters) in enumerate(PARTS):
        cx = COL_X[col] + BOX_W / 2
        ax.text(cx, 17.9, title, ha="center", va="center", fontsize=10.5,
                fontweight="bold", color=edge, linespacing=1.3)
        for row, (number, name) in enumerate(chapters):
            x, y = box_geometry(col, row)
            ax.add_patch(FancyBboxPatch(
                (x, y), BOX_W, BOX_H, boxstyle="round,pad=0,rounding_size=0.45",
                facecolor=fill, edgecolor=edge, linewidth=1.4))
            ax.text(x + 0.55, y + BOX_H / 2, str(number), ha="left", va="center",
                    fontsize=13, fontweight="bold", color=edge)
            ax.text(x + 1.9, y + BOX_H / 2, _wrap(name), ha="left", va="center",
                    fontsize=9.5, color="#222222", linespacing=1.2)
            if row > 0:  # arrow from the previous chapter of the same part
                _arrow(ax, (cx, y + BOX_H + STEP - BOX_H), (cx, y + BOX_H), edge)

    # Arrows from the last chapter of one part to the first chapter of the next,
    # routed through the gap between the columns.
    for col in range(len(PARTS) - 1):
        last = len(PARTS[col][3]) - 1
        x0, y0 = box_geometry(col, last)
        x1, y1 = box_geometry(col + 1, 0)
        start = (x0 + BOX_W, y0 + BOX_H / 2)
        end = (x1, y1 + BOX_H / 2)
        gap_x = (x0 + BOX_W + x1) / 2
        ax.plot([start[0], gap_x, gap_x], [start[1], start[1], end[1]],
                color="#555555", linewidth=1.4, solid_joinstyle="round")
        _arrow(ax, (gap_x, end[1]), end, "#555555")

    fig.savefig(path, dpi=110, facecolor="white", metadata={"Software": None})
    plt.close(fig)
    return path


def _wrap(name: str, width: int = 22) -> str:
    """Split a title that is too long for its box into two lines of similar length."""
    words = name.split()
    if len(name) <= width or len(words) < 2:
        return name
    splits = [(" ".join(words[:i]), " ".join(words[i:])) for i in range(1, len(words))]
    first, second = min(splits, key=lambda pair: max(len(pair[0]), len(pair[1])))
    return f"{first}\n{second}"


def _arrow(ax, start, end, color):
    ax.add_patch(FancyArrowPatch(
        start, end, arrowstyle="-|>", mutation_scale=13, color=color,
        linewidth=1.4, shrinkA=0, shrinkB=1))


if __name__ == "__main__":
    print(f"wrote {draw()}")
