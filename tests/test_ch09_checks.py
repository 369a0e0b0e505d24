"""Chapter 9's checks: the library passes them, visible and hidden; other right ways pass; typical mistakes get the
sentence meant for them; garbage never crashes a check; the measure exercise is judged on the learner's own
measurement too, in the kernel and when grading (sealed)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage
from attnedu.checks import CheckFailed
from attnedu.checks import ch09_cost_of_attention as ch09
from attnedu.checks import sealed
from attnedu.efficient.measure import crossover_length
from attnedu.efficient.tiled import online_softmax_merge, partial_attention, tiled_attention
from attnedu.efficient.window import rolling_buffer_attention


def test_the_library_passes_every_chapter_9_check_visible_and_hidden(capsys):
    for name, fn in [("online_softmax_merge", online_softmax_merge), ("tiled_attention", tiled_attention),
                     ("kv_cache_bytes", ch09.EXERCISES["kv_cache_bytes"].reference),
                     ("crossover_length", crossover_length), ("rolling_buffer_attention", rolling_buffer_attention)]:
        ch09.check(name, fn)
        ch09.check(name, fn, hidden=True)
    out = capsys.readouterr().out
    assert "`online_softmax_merge` passes all 6 checks" in out and "`tiled_attention` passes all 5" in out
    assert "`kv_cache_bytes` passes all 4 checks" in out and "`crossover_length` passes all 6" in out
    assert "`rolling_buffer_attention` passes all 5 checks" in out


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


def crossover_by_mask(Ts, attention_s, rest_s):  # right: the last T where attention was not dearer, plus one
    order = np.argsort(Ts)
    Ts, dearer = np.asarray(Ts)[order], (np.asarray(attention_s) > np.asarray(rest_s))[order]
    if not dearer[-1]:
        return None
    not_dearer = np.flatnonzero(~dearer)
    return int(Ts[not_dearer[-1] + 1 if len(not_dearer) else 0])


def rolling_with_a_deque(q, k, v, window):  # right: a list of the last `window` positions, oldest dropped
    keys, values, out = [], [], []
    for t in range(len(q)):
        keys, values = (keys + [k[t]])[-window:], (values + [v[t]])[-window:]
        s = np.array(keys) @ q[t] / np.sqrt(q.shape[1])
        w = np.exp(s - s.max())
        out.append(w @ np.array(values) / w.sum())
    return np.array(out)


@pytest.mark.parametrize("name, fn", [("online_softmax_merge", merge_by_weights),
                                      ("tiled_attention", tiled_queries_one_by_one),
                                      ("crossover_length", crossover_by_mask),
                                      ("rolling_buffer_attention", rolling_with_a_deque)])
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
    ("crossover_length", {"lasting": False}, "it returns the first T where attention takes longer"),
    ("crossover_length", {"ties": True}, "a tie counts as 'longer'"),
    ("crossover_length", {"give": "index"}, "it returns the position in the list"),
    ("crossover_length", {"swap": True}, "it finds where the rest of the block takes longer"),
    ("crossover_length", {"order": False}, "it walks the lists in the order given"),
    ("rolling_buffer_attention", {"attend_first": True}, "each query attends before its own key"),
    ("rolling_buffer_attention", {"unfilled": True}, "the query attends over all window slots"),
    ("rolling_buffer_attention", {"extra": 1}, "the buffer has window \\+ 1 slots"),
    ("rolling_buffer_attention", {"scaled": False}, "the scores are not divided by sqrt"),
])
def test_mistakes_get_their_sentence(name, settings, message):
    wrong = ch09.EXERCISES[name].wrong
    with pytest.raises(CheckFailed, match="Likely cause: " + message):
        ch09.check(name, partial(wrong, **settings))


@pytest.mark.parametrize("name", ["online_softmax_merge", "tiled_attention", "kv_cache_bytes", "crossover_length",
                                  "rolling_buffer_attention"])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|not a number|expected"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(partial(ch09.check, name), fn, message)


MEASURED = ([64, 128, 256, 512], [0.2, 0.5, 1.4, 5.0], [0.5, 1.0, 1.5, 3.0])  # a measurement the fixed cases lack


def right_on_fixed_cases_only(Ts, attention_s, rest_s):  # passes the record's cases, wrong on anything else
    for case in ch09.EXERCISES["crossover_length"].all_cases() + ch09.EXERCISES["crossover_length"].all_cases(True):
        if [list(a) for a in case.args] == [list(a) for a in (Ts, attention_s, rest_s)]:
            return crossover_length(Ts, attention_s, rest_s)
    return 64


def test_the_measure_exercise_is_judged_on_the_learners_own_measurement(capsys):
    assert crossover_length(*MEASURED) == 512
    ch09.check("crossover_length", crossover_length, own=MEASURED)
    assert "passes all 7 checks" in capsys.readouterr().out
    ch09.check("crossover_length", right_on_fixed_cases_only)  # the record's cases alone cannot tell ...
    with pytest.raises(CheckFailed, match="your own measurement"):  # ... the learner's own data can
        ch09.check("crossover_length", right_on_fixed_cases_only, hidden=True, own=MEASURED)
    with pytest.raises(TypeError, match="tuple of arguments"):
        ch09.check("crossover_length", crossover_length, own=[MEASURED])


def test_when_grading_the_own_measurement_is_recorded_and_judged_by_the_grader(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(sealed.ENV, str(tmp_path))
    ex = ch09.EXERCISES["crossover_length"]
    ch09.check("crossover_length", right_on_fixed_cases_only, hidden=True, own=MEASURED)  # records, judges nothing
    assert "recorded for grading" in capsys.readouterr().out
    passed, why = sealed.judge_recorded(ex, hidden=True, where=tmp_path)
    assert not passed and "your own measurement" in why
    ch09.check("crossover_length", crossover_length, hidden=True, own=MEASURED)
    assert sealed.judge_recorded(ex, hidden=True, where=tmp_path) == (True, "passed")
    ch09.check("crossover_length", crossover_length, hidden=True)  # no measurement: the record's cases only
    assert sealed.judge_recorded(ex, hidden=True, where=tmp_path) == (True, "passed")
