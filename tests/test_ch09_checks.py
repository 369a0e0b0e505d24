"""Chapter 9's checks (written ahead of the chapter's notebook): the library passes them, visible and hidden;
other right ways pass; typical mistakes get the sentence meant for them; garbage never crashes a check."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage
from attnedu.checks import CheckFailed
from attnedu.checks import ch09_cost_of_attention as ch09
from attnedu.efficient.tiled import online_softmax_merge, partial_attention, tiled_attention


def test_the_library_passes_every_chapter_9_check_visible_and_hidden(capsys):
    for name, fn in [("online_softmax_merge", online_softmax_merge), ("tiled_attention", tiled_attention),
                     ("kv_cache_bytes", ch09.EXERCISES["kv_cache_bytes"].reference)]:
        ch09.check(name, fn)
        ch09.check(name, fn, hidden=True)
    out = capsys.readouterr().out
    assert "`online_softmax_merge` passes all 6 checks" in out and "`tiled_attention` passes all 5" in out
    assert "`kv_cache_bytes` passes all 4 checks" in out


def merge_by_weights(m1, l1, o1, m2, l2, o2):  # right, written another way: the weights of each block first
    m = np.maximum(m1, m2)
    finite = np.isfinite(m)
    w1 = np.where(finite, np.exp(np.where(finite, m1 - np.where(finite, m, 0), -np.inf)), 0.0)
    w2 = np.where(finite, np.exp(np.where(finite, m2 - np.where(finite, m, 0), -np.inf)), 0.0)
    return m, w1 * l1 + w2 * l2, w1[:, None] * o1 + w2[:, None] * o2


def tiled_queries_one_by_one(q, k, v, tile=32, causal=False):  # right: one query at a time, key tiles merged
    out = []
    for i, qi in enumerate(np.asarray(q)):
        m, l, o = np.array([-np.inf]), np.zeros(1), np.zeros((1, np.shape(v)[1]))
        for j in range(0, len(k), tile):
            if causal and j > i:
                break
            mask = (np.arange(j, min(j + tile, len(k))) <= i)[None, :] if causal else None
            m, l, o = online_softmax_merge(m, l, o, *partial_attention(qi[None], k[j:j + tile], v[j:j + tile], mask))
        out.append(o[0] / l[0])
    return np.array(out)


@pytest.mark.parametrize("name, fn", [("online_softmax_merge", merge_by_weights),
                                      ("tiled_attention", tiled_queries_one_by_one)])
def test_other_right_ways_pass(name, fn, capsys):
    ch09.check(name, fn)
    ch09.check(name, fn, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 1


@pytest.mark.parametrize("name, settings, message", [
    ("online_softmax_merge", {"rescale_o": False}, "o1 and o2 are added as they are"),
    ("online_softmax_merge", {"rescale_l": False}, "l1 and l2 are added as they are"),
    ("online_softmax_merge", {"use": "min"}, "m is the smaller maximum"),
    ("online_softmax_merge", {"guard": False}, "a fully masked block"),
    ("tiled_attention", {"normalise": "never"}, "o is returned without dividing by l"),
    ("tiled_attention", {"normalise": "each"}, "each key tile is normalised on its own"),
    ("tiled_attention", {"skip": "diagonal"}, "causal: the key tile on the diagonal is skipped"),
    ("kv_cache_bytes", {"pair": False}, "only the keys are counted"),
    ("kv_cache_bytes", {"per_layer": True}, "one layer's cache"),
])
def test_mistakes_get_their_sentence(name, settings, message):
    wrong = ch09.EXERCISES[name].wrong
    with pytest.raises(CheckFailed, match="Likely cause: " + message):
        ch09.check(name, partial(wrong, **settings))


@pytest.mark.parametrize("name", ["online_softmax_merge", "tiled_attention", "kv_cache_bytes"])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|not a number|expected"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(partial(ch09.check, name), fn, message)
