"""Which attention heads do something we can name? (chapter 7)

Clark et al. (2019), "What does BERT look at?", found that many heads of a trained BERT follow
simple positional patterns: attend to the previous token, to the next one, to ``[CLS]``, to
``[SEP]`` (a "no-op": a place to put attention when the head has nothing to do). Here each
head gets one score per behaviour, the average attention mass it puts where the behaviour
says, over every query position and every sentence:

============  ====================================================
behaviour     the mass token ``i`` puts on ...
============  ====================================================
``previous``  token ``i - 1`` (for ``i >= 1``)
``next``      token ``i + 1`` (for ``i <= T - 2``)
``self``      itself, token ``i``
``cls``       ``[CLS]``, the first token
``sep``       ``[SEP]``, the last token
============  ====================================================

A score of 1 means the head always does exactly that; a uniform head scores about ``1 / T``.
The functions take attention maps of single, unpadded sentences, as returned by
:meth:`attnedu.pretrained.minilm.MiniLM.attentions`: ``(L, H, T, T)``, ``[CLS]`` first and
``[SEP]`` last.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from .._validate import positive_int

__all__ = ["BEHAVIOURS", "head_scores", "score_heads", "best_heads", "find_heads"]

BEHAVIOURS = ("previous", "next", "self", "cls", "sep")


def head_scores(weights) -> dict[str, np.ndarray]:
    """One sentence's attention ``weights (L, H, T, T)`` -> ``{behaviour: scores (L, H)}``.

    ``weights[l, h, i, j]`` is the attention of query ``i`` on key ``j``; rows sum to 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must be (L, H, T, T), got shape {w.shape}")
    if w.shape[-1] < 3:
        raise ValueError(f"need at least 3 tokens ([CLS], a word, [SEP]), got T={w.shape[-1]}")
    # np.diagonal(offset=k) picks w[..., i, i + k]: k = -1 is the previous key, k = +1 the next.
    diag = lambda k: np.diagonal(w, offset=k, axis1=-2, axis2=-1)  # noqa: E731  (L, H, T - |k|)
    return {
        "previous": diag(-1).mean(axis=-1),  # (L, H)
        "next": diag(1).mean(axis=-1),
        "self": diag(0).mean(axis=-1),
        "cls": w[..., :, 0].mean(axis=-1),  # column 0: everyone's attention on [CLS]
        "sep": w[..., :, -1].mean(axis=-1),  # the last column: on [SEP]
    }


def score_heads(maps: Iterable) -> dict[str, np.ndarray]:
    """The average of :func:`head_scores` over several sentences' maps (each ``(L, H, T_s, T_s)``)."""
    per_sentence = [head_scores(w) for w in maps]
    if not per_sentence:
        raise ValueError("maps is empty: give the attention weights of at least one sentence")
    shapes = {s["self"].shape for s in per_sentence}
    if len(shapes) != 1:
        raise ValueError(f"the maps come from models of different sizes (L, H): {sorted(shapes)}")
    return {b: np.mean([s[b] for s in per_sentence], axis=0) for b in BEHAVIOURS}  # (L, H) each


def best_heads(scores: dict[str, np.ndarray], k: int = 3) -> dict[str, list[tuple[int, int, float]]]:
    """The ``k`` highest-scoring heads of each behaviour, as ``(layer, head, score)``, best first."""
    k = positive_int(k, "k")
    best = {}
    for behaviour, s in scores.items():
        s = np.asarray(s)
        if s.ndim != 2:
            raise ValueError(f"scores[{behaviour!r}] must be (L, H), got shape {s.shape}")
        flat = np.argsort(s, axis=None)[::-1][:k]  # indices into the flattened (L * H) scores
        best[behaviour] = [(int(l), int(h), float(s[l, h])) for l, h in zip(*np.unravel_index(flat, s.shape))]
    return best


def find_heads(model, sentences: Iterable[str], k: int = 3) -> tuple[dict[str, np.ndarray], dict]:
    """Score every head of ``model`` (anything with ``.attentions(text)``, e.g. ``MiniLM``) on
    ``sentences``; return ``(scores, best)``: ``{behaviour: (L, H)}`` and :func:`best_heads`."""
    scores = score_heads(model.attentions(s)[1] for s in sentences)
    return scores, best_heads(scores, k)
