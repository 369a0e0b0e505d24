"""Draw the book's icon, book/images/favicon.png: a 4 x 4 causal attention pattern (row i spreads
its weight evenly over positions 0..i), the course's picture of attention at 32 x 32 pixels.
Without an icon, every browser asks the server for /favicon.ico and logs a 404. Regenerate with::

    .venv/bin/python book/images/make_favicon.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

weights = np.tril(np.ones((4, 4)))
weights /= weights.sum(axis=1, keepdims=True)  # (4, 4): each row sums to 1
fig = plt.figure(figsize=(0.32, 0.32), dpi=100)
ax = fig.add_axes([0, 0, 1, 1])
ax.imshow(weights, cmap="viridis")
ax.axis("off")
fig.savefig(Path(__file__).with_name("favicon.png"), dpi=100, transparent=True)
