"""Drawn scenes with captions (chapter 8): one to three coloured shapes on a 3x3 grid, and a sentence for each.

A scene is a few **objects**, each a colour, a shape and a place (a cell of a 3x3 grid); :func:`draw` paints
it, ``(3, 24, 24)`` in ``[0, 1]`` on black, with each shape jittered a little in size and position inside its
cell. Two or three objects always share a row or a column, and :func:`caption` reads them top to bottom or left
to right::

    a red circle
    a red circle above a blue square
    a green triangle left of a yellow circle left of a blue square

A scene's **combination** (:func:`combination`) is its caption without the articles, as a tuple: colour, shape,
relation, colour, shape... :func:`split_combinations` sets a seeded fraction of the two- and three-object
combinations aside, and :func:`scenes` draws training scenes only from the others and held-out scenes only from
those: a model judged on held-out scenes has never seen those colours, shapes and relations *together*, only
each of them in other scenes.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["COLOURS", "SHAPES", "RELATIONS", "SIZE", "GRID", "Object", "draw", "caption", "combination",
           "random_objects", "split_combinations", "scenes", "Scenes", "CaptionVocab", "VOCAB"]

#: colour name -> RGB in [0, 1]
COLOURS = {"red": (0.95, 0.15, 0.1), "green": (0.1, 0.8, 0.2), "blue": (0.15, 0.35, 1.0), "yellow": (1.0, 0.85, 0.1)}
SHAPES = ("circle", "square", "triangle")
#: how the first-named object sits against the next: above it (same column) or left of it (same row)
RELATIONS = ("above", "left of")
SIZE = 24  #: pixels per side
GRID = 3  #: cells per side; each cell is SIZE // GRID = 8 pixels


@dataclass(frozen=True)
class Object:
    """One shape in a scene: its colour, its shape and its grid cell (``row``, ``col`` in ``0..GRID-1``)."""

    colour: str
    shape: str
    row: int
    col: int


def _mask(shape: str, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] + 0.5  # pixel centres
    if shape == "circle":
        return (y - cy) ** 2 + (x - cx) ** 2 <= r**2
    if shape == "square":
        s = 0.82 * r
        return (np.abs(y - cy) <= s) & (np.abs(x - cx) <= s)
    if shape == "triangle":  # pointing up: its width grows from the apex to the base
        top, bottom = cy - r, cy + 0.8 * r
        half = (y - top) / (bottom - top) * r
        return (y >= top) & (y <= bottom) & (np.abs(x - cx) <= half)
    raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")


def draw(objects, rng: random.Random | None = None) -> Tensor:
    """Paint a scene: ``(3, SIZE, SIZE)`` float32 in ``[0, 1]``, black background.

    Each object fills most of its 8x8 cell; with ``rng`` its radius (2.8 to 3.6 pixels) and centre (up to
    0.8 pixels off the cell's centre) are jittered, so that no two drawings are quite the same."""
    img = np.zeros((3, SIZE, SIZE), dtype=np.float32)
    cell = SIZE / GRID
    for ob in objects:
        if ob.colour not in COLOURS:
            raise ValueError(f"unknown colour {ob.colour!r}: choose one of {', '.join(COLOURS)}")
        if not (0 <= ob.row < GRID and 0 <= ob.col < GRID):
            raise ValueError(f"an object's cell must be in the {GRID}x{GRID} grid, got row {ob.row}, col {ob.col}")
        r, dy, dx = (3.2, 0.0, 0.0) if rng is None else (rng.uniform(2.8, 3.6), rng.uniform(-0.8, 0.8),
                                                        rng.uniform(-0.8, 0.8))
        m = _mask(ob.shape, (ob.row + 0.5) * cell + dy, (ob.col + 0.5) * cell + dx, r)
        img[:, m] = np.asarray(COLOURS[ob.colour], dtype=np.float32)[:, None]
    return torch.from_numpy(img)


def _ordered(objects) -> list[Object]:
    return sorted(objects, key=lambda o: (o.row, o.col))  # top to bottom, left to right


def _relation(objects) -> str | None:
    obs = _ordered(objects)
    if len(obs) < 2:
        return None
    if len({o.col for o in obs}) == 1:
        return "above"
    if len({o.row for o in obs}) == 1:
        return "left of"
    raise ValueError("the objects of a scene must share a row or a column")


def combination(objects) -> tuple[str, ...]:
    """The scene's combination: ``(colour, shape[, relation, colour, shape]...)`` in reading order."""
    obs, rel = _ordered(objects), _relation(objects)
    out: list[str] = []
    for i, o in enumerate(obs):
        if i:
            out.append(rel)
        out += [o.colour, o.shape]
    return tuple(out)


def caption(objects) -> str:
    """The sentence for a scene, e.g. ``"a red circle above a blue square"``."""
    words, parts = combination(objects), []
    for i in range(0, len(words), 3):
        parts.append(f"a {words[i]} {words[i + 1]}")
    rel = _relation(objects)
    return f" {rel} ".join(parts)


def _layouts(n: int) -> list[tuple[tuple[int, int], ...]]:
    """The cells ``n`` objects may occupy: one cell, or ``n`` cells of one row or one column."""
    if n == 1:
        return [((r, c),) for r in range(GRID) for c in range(GRID)]
    out = []
    for line in range(GRID):
        for cells in itertools.combinations(range(GRID), n):
            out.append(tuple((line, c) for c in cells))  # a row
            out.append(tuple((r, line) for r in cells))  # a column
    return out


def _all_combinations(n: int) -> list[tuple[str, ...]]:
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    if n == 1:
        return [k for k in kinds]
    return [tuple(w for i, k in enumerate(ks) for w in ((rel,) if i else ()) + k)
            for rel in RELATIONS for ks in itertools.permutations(kinds, n)]


@lru_cache(maxsize=None)
def split_combinations(held_out: float = 0.2, seed: int = 0) -> tuple[frozenset, frozenset]:
    """``(train, held_out)``: the combinations of two and three objects, split at random (seeded).

    Every single object (colour and shape) is in training. Every colour, shape and relation appears in
    training; the held-out combinations differ from every training one in how they are put together."""
    rng = random.Random(seed)
    train, test = set(_all_combinations(1)), set()
    for n in (2, 3):
        combos = _all_combinations(n)
        rng.shuffle(combos)
        k = round(held_out * len(combos))
        test.update(combos[:k])
        train.update(combos[k:])
    return frozenset(train), frozenset(test)


def random_objects(rng: random.Random, n: int, combo: tuple[str, ...] | None = None) -> tuple[Object, ...]:
    """``n`` objects in a random layout; with ``combo``, the ones that combination names, in its order."""
    if combo is None:
        kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], n)
        layout = rng.choice(_layouts(n))
    else:
        kinds = [(combo[i], combo[i + 1]) for i in range(0, len(combo), 3)]
        rel = combo[2] if len(combo) > 2 else None
        layout = rng.choice([lay for lay in _layouts(n) if n == 1 or (rel == "above") == (lay[0][1] == lay[-1][1])])
    return tuple(Object(c, s, r, col) for (c, s), (r, col) in zip(kinds, sorted(layout)))


@dataclass
class Scenes:
    """Drawn scenes: ``images`` ``(n, 3, SIZE, SIZE)``, their ``captions`` and ``objects``."""

    images: Tensor
    captions: list[str]
    objects: list[tuple[Object, ...]]

    def __len__(self) -> int:
        return len(self.captions)


def scenes(n: int, *, split: str = "train", n_objects=(1, 2, 3), seed: int = 0, held_out: float = 0.2) -> Scenes:
    """``n`` scenes drawn at random (seeded), from the training combinations or the held-out ones.

    Args:
        split: ``"train"`` or ``"held_out"`` (:func:`split_combinations`); held-out scenes have two or three
            objects (single objects are all in training).
        n_objects: how many objects a scene may have, drawn uniformly from these.
    """
    if split not in ("train", "held_out"):
        raise ValueError(f"split must be 'train' or 'held_out', got {split!r}")
    counts = tuple(n_objects)
    if not counts or any(k not in (1, 2, 3) for k in counts):
        raise ValueError(f"n_objects must be some of 1, 2, 3, got {n_objects!r}")
    if split == "held_out":
        counts = tuple(k for k in counts if k > 1)
        if not counts:
            raise ValueError("held-out scenes have two or three objects: n_objects must include 2 or 3")
    train, test = split_combinations(held_out)
    pool = {k: sorted(c for c in (train if split == "train" else test) if len(c) == 3 * k - 1) for k in counts}
    rng = random.Random(seed)
    images, caps, objs = [], [], []
    for _ in range(n):
        k = rng.choice(counts)
        obs = random_objects(rng, k, rng.choice(pool[k]))
        images.append(draw(obs, rng))
        caps.append(caption(obs))
        objs.append(obs)
    return Scenes(torch.stack(images) if images else torch.zeros(0, 3, SIZE, SIZE), caps, objs)


class CaptionVocab:
    """Words <-> ids for the captions: ``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, then the words."""

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self):
        words = ["a", *COLOURS, *SHAPES, "above", "left", "of"]
        self.itos = ["<pad>", "<bos>", "<eos>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """``"a red circle"`` -> ``[<bos>, a, red, circle, <eos>]`` as ids."""
        unknown = [w for w in text.split() if w not in self.stoi]
        if unknown:
            raise ValueError(f"words not in the captions' vocabulary: {unknown}; it has {self.itos[3:]}")
        return [self.BOS, *(self.stoi[w] for w in text.split()), self.EOS]

    def decode(self, ids) -> str:
        """Ids back to words, stopping at ``<eos>`` and skipping ``<bos>`` and ``<pad>``."""
        out = []
        for i in (int(i) for i in ids):
            if i == self.EOS:
                break
            if i not in (self.PAD, self.BOS):
                out.append(self.itos[i])
        return " ".join(out)

    def batch(self, captions, length: int | None = None) -> Tensor:
        """Captions as a ``(B, L)`` tensor of ids, padded with ``<pad>`` to ``length`` (default: the longest)."""
        rows = [self.encode(c) for c in captions]
        L = length or max(len(r) for r in rows)
        if any(len(r) > L for r in rows):
            raise ValueError(f"a caption has more than length={L} tokens")
        return torch.tensor([r + [self.PAD] * (L - len(r)) for r in rows], dtype=torch.long)


VOCAB = CaptionVocab()
