r"""Deduplication: the same text twice (exactly, or nearly) counts once.

Two kinds of duplicate, two tools:

* **exact** duplicates differ only in case, accents written two ways, spacing and
  punctuation. :func:`normalise_text` removes those differences and :func:`content_key`
  hashes the result (SHA-256), so duplicates share a key: a database finds them with
  ``GROUP BY`` (:func:`duplicate_groups`) or refuses them with a ``UNIQUE`` index, and
  :func:`exact_duplicate_groups` does the same for a list of texts.
* **near** duplicates say the same thing in other words. Their embeddings (chapter 10)
  are close: :func:`near_duplicate_pairs` lists the pairs whose cosine similarity
  :math:`\cos(a, b) = a \cdot b / (\lVert a \rVert \lVert b \rVert)` reaches a threshold.

:func:`deduplicate` applies both and keeps the first text of every group.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np

from .._validate import as_float_array

__all__ = ["normalise_text", "content_key", "exact_duplicate_groups", "near_duplicate_pairs",
           "near_duplicate_index_pairs", "deduplicate", "duplicate_groups"]

_NOT_WORD = re.compile(r"[\W_]+")  # runs of characters that are not letters or digits
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_text(text, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    return text


def normalise_text(text: str) -> str:
    """The text as duplicates share it: Unicode NFKC (``"ﬁ"`` -> ``"fi"``, full-width
    digits -> ASCII), ``casefold`` (``"Straße"`` -> ``"strasse"``), every run of characters
    that are not letters or digits -> one space, no space at the ends.

    >>> normalise_text("  What IS   attention?! ")
    'what is attention'
    """
    text = unicodedata.normalize("NFKC", _check_text(text)).casefold()
    return _NOT_WORD.sub(" ", text).strip()


def content_key(text: str) -> str:
    """SHA-256 of the normalised text, 64 hex digits: equal for exact duplicates."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def exact_duplicate_groups(texts) -> list[list[int]]:
    """The positions of the texts that are exact duplicates of each other: ``[[i, j, ...], ...]``,
    texts with equal :func:`content_key` (the same up to case, spacing, punctuation and Unicode
    compatibility forms), each group ascending, only groups of two or more, ordered by their
    first position.

    >>> exact_duplicate_groups(["What is attention?", "Why sqrt(d_k)?", "what is  ATTENTION"])
    [[0, 2]]
    """
    if isinstance(texts, (str, bytes)):
        raise ValueError("texts must be a list of strings, not one string")
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(content_key(_check_text(t, f"texts[{i}]")), []).append(i)
    return [g for g in groups.values() if len(g) > 1]  # dicts keep insertion order: by first position


def near_duplicate_pairs(vectors, threshold: float = 0.9) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, cosine)`` with ``i < j`` whose rows have cosine similarity >= ``threshold``,
    most similar first (ties by ``i``, then ``j``).

    Args:
        vectors: ``(n, d)`` embeddings (need not be unit length; none may be zero).
        threshold: in ``[-1, 1]``.

    The ``(n, n)`` similarity matrix is computed at once: fine for thousands of rows; for
    millions, search each row's neighbours with an index instead (chapter 10).
    """
    x = as_float_array(vectors, "vectors", min_ndim=2, max_ndim=2).astype(np.float64)  # (n, d)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not -1 <= threshold <= 1:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (n, 1)
    if (norms == 0).any() or not np.isfinite(x).all():
        raise ValueError("vectors has zero rows or NaN/inf: cosine similarity is undefined for them")
    unit = x / norms  # (n, d)
    sim = unit @ unit.T  # (n, n)
    i, j = np.triu_indices(len(x), k=1)  # every pair once, i < j
    keep = sim[i, j] >= threshold - 1e-9  # a tolerance for rounding: cos(a, a) may be 0.9999999
    pairs = [(int(a), int(b), float(s)) for a, b, s in zip(i[keep], j[keep], sim[i, j][keep])]
    return sorted(pairs, key=lambda p: (-round(p[2], 9), p[0], p[1]))


def near_duplicate_index_pairs(vectors, threshold: float) -> list[tuple[int, int]]:
    r"""The pairs of :func:`near_duplicate_pairs` without their similarity, in index order:
    ``[(i, j), ...]``, sorted, with ``i < j`` and
    :math:`\cos(v_i, v_j) = v_i \cdot v_j / (\lVert v_i \rVert \lVert v_j \rVert) \ge` ``threshold``
    (within 1e-9 for rounding).

    Args:
        vectors: ``(n, d)`` embeddings, none zero; threshold: in ``[-1, 1]``.
    """
    return sorted((i, j) for i, j, _ in near_duplicate_pairs(vectors, threshold))


def deduplicate(texts, vectors=None, threshold: float = 0.9) -> list[int]:
    """The indices of the texts to keep, in order: the first of every exact-duplicate group
    (equal :func:`content_key`), then, if ``vectors`` ``(n, d)`` are given, the first of
    every group of near duplicates (a text is dropped when its cosine with an earlier
    kept text reaches ``threshold``)."""
    texts = [_check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]
    seen, kept = set(), []
    for i, t in enumerate(texts):
        key = content_key(t)
        if key not in seen:
            seen.add(key)
            kept.append(i)
    if vectors is None:
        return kept
    x = as_float_array(vectors, "vectors", min_ndim=2, max_ndim=2)
    if len(x) != len(texts):
        raise ValueError(f"vectors has {len(x)} rows but there are {len(texts)} texts: pass one vector per text")
    near = near_duplicate_pairs(x[kept], threshold)  # positions within `kept`
    similar = {}
    for a, b, _ in near:
        similar.setdefault(b, set()).add(a)
    out = []
    for pos, i in enumerate(kept):
        if not similar.get(pos, set()) & set(out):
            out.append(pos)
    return [kept[pos] for pos in out]


def duplicate_groups(store, table: str, column: str, id_column: str = "id") -> list[list[int]]:
    """Rows of ``table`` that share a value of ``column`` (e.g. a content key), found by SQL's
    ``GROUP BY ... HAVING count(*) > 1`` on either backend: ``[[id, id, ...], ...]``, each
    group's ids ascending, groups by their first id."""
    for name, value in (("table", table), ("column", column), ("id_column", id_column)):
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise ValueError(f"{name} must be a plain SQL name (letters, digits, _), got {value!r}")
    rows = store.query(
        f"SELECT {column}, {id_column} FROM {table} WHERE {column} IN "  # names checked above
        f"(SELECT {column} FROM {table} GROUP BY {column} HAVING count(*) > 1) ORDER BY {column}, {id_column}")
    groups: dict = {}
    for key, row_id in rows:
        groups.setdefault(key, []).append(row_id)
    return sorted(groups.values(), key=lambda g: g[0])
