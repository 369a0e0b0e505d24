"""Chapter 3 checks: the library passes them, typical mistakes are named in one sentence,
garbage never crashes a check, and the library's position functions do what the chapter says."""

import math
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from attnedu import functional as F
from attnedu.checks import CheckFailed
from attnedu.checks import ch03_self_attention as ch03
from attnedu.nn import SelfAttention


def fails_with(check, fn, pattern):
    """Run a check that must fail; return its one-line message after matching ``pattern``."""
    with pytest.raises(CheckFailed, match=pattern) as info:
        check(fn)
    text = str(info.value)
    assert "\n" not in text, "a check explains a mistake in one line"
    return info.value


# ------------------------------------------------------------------ the library passes
def test_the_library_passes_every_chapter_3_check_visible_and_hidden(capsys):
    for name, ex in ch03.EXERCISES.items():
        ch03.check(name, ex.reference)
        ch03.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 4 and "`SelfAttention` passes all 5 checks" in out  # 4 cases and the gradients


def test_the_chapters_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    class Mine(nn.Module):
        def __init__(self, d_model, d_k, d_v=None):
            super().__init__()
            self.W_q, self.W_k = nn.Linear(d_model, d_k, bias=False), nn.Linear(d_model, d_k, bias=False)
            self.W_v = nn.Linear(d_model, d_k if d_v is None else d_v, bias=False)

        def forward(self, x):
            q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
            weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
            return weights @ v, weights

    partial(ch03.check, "SelfAttention")(Mine)
    partial(ch03.check, "SelfAttention", hidden=True)(Mine)
    partial(ch03.check, "apply_rope")(lambda x, positions: F.apply_rope(x, positions))
    assert capsys.readouterr().out.count("passes all") == 2


# ------------------------------------------------------------------ the library's positions
def test_library_sinusoidal_positions_matches_the_formula_entry_by_entry():
    T, d = 20, 12
    pe = F.sinusoidal_positions(T, d)
    for p in range(T):
        for i in range(d // 2):
            omega = 1.0 / 10000 ** (2 * i / d)
            assert pe[p, 2 * i] == pytest.approx(math.sin(p * omega), abs=1e-12)
            assert pe[p, 2 * i + 1] == pytest.approx(math.cos(p * omega), abs=1e-12)


def test_library_sinusoidal_dot_products_depend_only_on_the_offset():
    pe = F.sinusoidal_positions(40, 16)
    gram = pe @ pe.T
    np.testing.assert_allclose(gram[:-7, :-7], gram[7:, 7:], atol=1e-10)
    np.testing.assert_allclose(np.diag(gram), 8.0)  # d/2 on the main diagonal


@pytest.mark.parametrize("seed", range(5))
def test_library_apply_rope_scores_depend_only_on_the_offset(seed):
    rng = np.random.default_rng(seed)
    d = 2 * int(rng.integers(1, 17))
    q, k = rng.normal(size=(1, d)), rng.normal(size=(1, d))
    m, n, shift = rng.integers(0, 2000, size=3)

    def score(a, b):
        return (F.apply_rope(q, np.array([a])) @ F.apply_rope(k, np.array([b])).T).item()

    assert score(m, n) == pytest.approx(score(m + shift, n + shift), rel=1e-7, abs=1e-9)
    assert score(0, n - m) == pytest.approx(score(m, n), rel=1e-7, abs=1e-9)


def test_library_apply_rope_rotates_adjacent_pairs_and_keeps_lengths():
    x = np.array([[1.0, 0.0, 1.0, 0.0]])
    out = F.apply_rope(x, np.array([1.0]))
    np.testing.assert_allclose(out, [[math.cos(1), math.sin(1), math.cos(0.01), math.sin(0.01)]])
    rng = np.random.default_rng(2)
    y = rng.normal(size=(10, 8))
    rotated = F.apply_rope(y, rng.uniform(0, 100, size=10))
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(y, axis=1))
    np.testing.assert_allclose(F.apply_rope(y, np.zeros(10)), y)


# ------------------------------------------------------------------ self_attention mistakes
def project(x, W_q, W_k, W_v):
    return x @ W_q, x @ W_k, x @ W_v


def no_scale(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    w = F.softmax(q @ np.swapaxes(k, -1, -2))
    return w @ v, w


def scaled_by_d_model(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    w = F.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(x.shape[-1]))
    return w @ v, w


def keys_times_queries(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    w = F.softmax(k @ np.swapaxes(q, -1, -2) / np.sqrt(k.shape[-1]))
    return w @ v, w


def softmax_over_queries(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    w = F.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(k.shape[-1]), axis=-2)
    return w @ v, w


def transposed_weights(x, W_q, W_k, W_v):
    q, k, v = x @ W_q.T, x @ W_k.T, x @ W_v.T
    w = F.softmax(q @ k.T / np.sqrt(k.shape[-1]))
    return w @ v, w


def projection_on_the_wrong_side(x, W_q, W_k, W_v):
    q, k, v = W_q @ x, W_k @ x, W_v @ x
    w = F.softmax(q @ k.T / np.sqrt(k.shape[-1]))
    return w @ v, w


def plain_transpose_breaks_batches(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    w = F.softmax(q @ k.T / np.sqrt(k.shape[-1]))
    return w @ v, w


def scaled_by(size, power=0.5):
    def wrong(x, W_q, W_k, W_v):
        q, k, v = project(x, W_q, W_k, W_v)
        w = F.softmax(q @ np.swapaxes(k, -1, -2) / {"d_k": k.shape[-1], "d_v": v.shape[-1]}[size] ** power)
        return w @ v, w

    return wrong


def unprojected_queries_and_keys(x, W_q, W_k, W_v):
    w = F.softmax(x @ np.swapaxes(x, -1, -2) / np.sqrt(x.shape[-1]))
    return w @ (x @ W_v), w


def unstable_softmax(x, W_q, W_k, W_v):
    q, k, v = project(x, W_q, W_k, W_v)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(q @ np.swapaxes(k, -1, -2) / np.sqrt(k.shape[-1]))
        w = e / e.sum(axis=-1, keepdims=True)
    return w @ v, w


@pytest.mark.parametrize(
    "fn, message",
    [
        (no_scale, r"Likely cause: the scores were not scaled: divide q @ k\.T by sqrt\(d_k\)"),
        (scaled_by_d_model, r"Likely cause: divide by sqrt\(d_k\).*not by sqrt\(d_model\)"),
        (scaled_by("d_v"), r"Likely cause: divide by sqrt\(d_k\).*not by sqrt\(d_v\), the size of a value"),
        (scaled_by("d_k", power=1), r"Likely cause: divide the scores by the square root of d_k, not by d_k itself"),
        (unprojected_queries_and_keys, r"Likely cause: the queries and keys must be projected too"),
        (keys_times_queries, r"Likely cause: scores\[i, j\] is the query of token i.*not k @ q\.T"),
        (softmax_over_queries, r"Likely cause: the softmax normalises each query's scores over the keys: the last"),
        (transposed_weights, r"Likely cause: the projections are .*the weight matrices as given \(not transposed\)"),
        (projection_on_the_wrong_side, r"raised ValueError.* Hint: .*so the queries are x @ W_q \(x on the left\)"),
        (plain_transpose_breaks_batches, r"shape \(2, 5, 4\).* Hint: .*np\.swapaxes\(k, -1, -2\); k\.T would reverse"),
        (unstable_softmax, r"with NaN at .*stable softmax"),
        (lambda x, W_q, W_k, W_v: F.self_attention(x, W_q, W_k, W_v)[0],
         r"returned 1 value\(s\); expected a tuple of 2"),
    ],
)
def test_a_wrong_self_attention_is_named(fn, message):
    fails_with(partial(ch03.check, "self_attention"), fn, message)


def test_an_unrecognised_mistake_keeps_the_hand_computed_hint():
    def halves_everything(x, W_q, W_k, W_v):
        out, w = F.self_attention(x, W_q, W_k, W_v)
        return out / 2, w

    fails_with(partial(ch03.check, "self_attention"), halves_everything, r"off by up to.*Hint: by hand, q = x @ W_q")


# ------------------------------------------------------------------ SelfAttention module mistakes
class NoScale(SelfAttention):
    def forward(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        w = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return w @ v, w


class PlainTranspose(SelfAttention):
    def forward(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        w = torch.softmax(q @ k.permute(*range(k.ndim - 1, -1, -1)) / math.sqrt(q.shape[-1]), dim=-1)
        return w @ v, w


class ThroughNumPy(SelfAttention):
    def forward(self, x):
        q, k, v = (layer(x).detach().numpy() for layer in (self.W_q, self.W_k, self.W_v))
        w = F.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))
        return torch.from_numpy(w @ v), torch.from_numpy(w)


class Stub(SelfAttention):
    def forward(self, x):
        raise NotImplementedError()


class Broken(SelfAttention):
    def forward(self, x):
        return x[100]


@pytest.mark.parametrize(
    "cls, message",
    [
        (NoScale, r"Likely cause: the scores were not scaled: divide q @ k\.T by sqrt\(d_k\)"),
        (PlainTranspose, r"raised RuntimeError.* Hint: .*k\.transpose\(-2, -1\); k\.T would reverse all three axes"),
        (ThroughNumPy, r"right numbers, but gradients do not flow back to W_q, W_k and W_v"),
        (Stub, r"`SelfAttention` is not written yet"),
        (None, r"should be a class derived from torch\.nn\.Module, but it is None"),
        (F.self_attention, r"should be a class derived from torch\.nn\.Module, but it is a function"),
    ],
)
def test_a_wrong_self_attention_module_is_named(cls, message):
    fails_with(partial(ch03.check, "SelfAttention"), cls, message)


def test_a_module_that_raises_shows_only_the_learners_frames():
    failure = fails_with(partial(ch03.check, "SelfAttention"), Broken, r"raised IndexError")
    tb = failure.learner_traceback
    assert "return x[100]" in tb
    assert "ch03_self_attention.py" not in tb and "engine.py" not in tb


# ------------------------------------------------------------------ sinusoidal mistakes
def table(T, d, sines_first=True, interleave=True, power=2.0, start=0):
    p = np.arange(start, start + T)[:, None]
    ang = p * 10000.0 ** (-power * np.arange(d // 2) / d)
    a, b = (np.sin(ang), np.cos(ang)) if sines_first else (np.cos(ang), np.sin(ang))
    if not interleave:
        return np.concatenate([a, b], axis=1)
    pe = np.empty((T, d))
    pe[:, 0::2], pe[:, 1::2] = a, b
    return pe


def own_frequency_per_column(T, d):
    ang = np.arange(T)[:, None] / 10000.0 ** (np.arange(d) / d)
    return np.where(np.arange(d) % 2 == 0, np.sin(ang), np.cos(ang))


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda T, d: table(T, d, sines_first=False), r"Likely cause: the even columns hold sines .*other way round"),
        (lambda T, d: table(T, d, interleave=False), r"Likely cause: .*all the sines first and then all the cosines"),
        (lambda T, d: table(T, d, power=1.0), r"Likely cause: .*drop the 2 in the exponent"),
        (lambda T, d: table(T, d, power=4.0), r"Likely cause: .*column index 2i where the formula has i"),
        (own_frequency_per_column, r"Likely cause: .*cosine columns use a frequency of their own"),
        (lambda T, d: table(T, d, power=-2.0), r"Likely cause: .*divide the position by 10000 \*\* \(2i / d\) rather"),
        (lambda T, d: table(T, d, start=1), r"Likely cause: positions start at 0"),
        (lambda T, d: table(T, d, sines_first=False, interleave=False), r"Likely cause: .*all the cosines first, then"),
        (lambda T, d: table(T, d).T, r"\(transposed\?\)"),
        (lambda T, d: np.zeros((T, d)), r"Hint: by hand, with d = 2 row p is \[sin\(p\), cos\(p\)\]"),
    ],
)
def test_a_wrong_sinusoidal_table_is_named(fn, message):
    fails_with(partial(ch03.check, "sinusoidal_positions"), fn, message)


# ------------------------------------------------------------------ RoPE mistakes
def rope(x, positions, half_split=False, sign=1.0, power=2.0):
    d = x.shape[1]
    ang = sign * np.asarray(positions, dtype=float)[:, None] * 10000.0 ** (-power * np.arange(d // 2) / d)
    if half_split:  # rotate_half, as in GPT-NeoX and Hugging Face's Llama
        a, b = x[:, : d // 2], x[:, d // 2:]
        return np.concatenate([a * np.cos(ang) - b * np.sin(ang), a * np.sin(ang) + b * np.cos(ang)], axis=1)
    out = np.empty_like(x)
    a, b = x[:, 0::2], x[:, 1::2]
    out[:, 0::2] = a * np.cos(ang) - b * np.sin(ang)
    out[:, 1::2] = a * np.sin(ang) + b * np.cos(ang)
    return out


def own_angle_per_feature(x, positions):
    ang = np.asarray(positions, dtype=float)[:, None] / 10000.0 ** (np.arange(x.shape[1]) / x.shape[1])  # (T, d)
    out, a, b = np.empty_like(x), x[:, 0::2], x[:, 1::2]
    out[:, 0::2] = a * np.cos(ang[:, 0::2]) - b * np.sin(ang[:, 0::2])
    out[:, 1::2] = a * np.sin(ang[:, 1::2]) + b * np.cos(ang[:, 1::2])
    return out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x, p: rope(x, p, half_split=True), r"Likely cause: .*half-split layout of GPT-NeoX"),
        (lambda x, p: rope(x, p, sign=-1.0), r"Likely cause: you rotated the wrong way"),
        (lambda x, p: rope(x, np.arange(len(x))), r"Likely cause: .*you used t itself instead of the positions given"),
        (lambda x, p: rope(x, p, power=1.0), r"Likely cause: .*drop the 2 in the exponent"),
        (lambda x, p: rope(x, p, power=4.0), r"Likely cause: .*put the feature index 2i where the formula has i"),
        (lambda x, p: rope(x, p, power=-2.0), r"Likely cause: .*so use a negative exponent"),
        (own_angle_per_feature, r"Likely cause: both features of a pair are rotated by the same angle"),
        (lambda x, p: x, r"Hint: by hand, with d = 2 the row at position p turns by p radians"),
    ],
)
def test_a_wrong_rope_is_named(fn, message):
    fails_with(partial(ch03.check, "apply_rope"), fn, message)


def test_a_rope_that_rotates_in_place_is_told_so():
    # the hidden test always required x to stay as it was; the visible check now says so too
    def in_place(x, positions):
        x[:] = F.apply_rope(x, positions)
        return x

    fails_with(partial(ch03.check, "apply_rope"), in_place, r"changed its argument `x` in place on x = an array of "
                                                             r"shape \(3, 2\).*work on a copy")


# ------------------------------------------------------------------ garbage never crashes a check
def raises(*args):
    raise RuntimeError("broken on purpose")


GARBAGE = [
    None,
    3,
    "self_attention",
    raises,
    lambda *a: None,
    lambda *a: "abc",
    lambda *a: [[1.0], [2.0, 3.0]],
    lambda *a: (None, None),
    lambda *a: (np.ones(2), "x", 3),
    lambda *a: np.full((3, 3), np.nan),
    lambda *a: a,
]


@pytest.mark.parametrize("garbage", GARBAGE)
@pytest.mark.parametrize(
    "check",
    [partial(ch03.check, name) for name in ("self_attention", "sinusoidal_positions", "apply_rope")],
    ids=["self_attention", "sinusoidal_positions", "apply_rope"],
)
def test_a_visible_check_never_crashes_on_garbage(check, garbage):
    with pytest.raises(CheckFailed):
        check(garbage)


class WrongSignature(nn.Module):
    def __init__(self):
        super().__init__()


class NoLayers(nn.Module):
    def __init__(self, d_model, d_k, d_v=None):
        super().__init__()

    def forward(self, x):
        return x, x


class ReturnsGarbage(SelfAttention):
    def forward(self, x):
        return "abc"


@pytest.mark.parametrize("garbage", [WrongSignature, NoLayers, ReturnsGarbage, Stub, int, "SelfAttention", 3])
def test_the_module_check_never_crashes_on_garbage(garbage):
    with pytest.raises(CheckFailed):
        partial(ch03.check, "SelfAttention")(garbage)


class DefaultDvIsDModel(SelfAttention):
    def __init__(self, d_model, d_k, d_v=None):
        super().__init__(d_model, d_k, d_model if d_v is None else d_v)


@pytest.mark.parametrize(
    "cls, message",
    [
        (DefaultDvIsDModel, r"returned \[\(2, 4, 5\), \(2, 4, 4\)\]; expected \[\(2, 4, 3\), \(2, 4, 4\)\]"),
        (ThroughNumPy, r"right numbers, but gradients do not flow back to W_q, W_k and W_v"),
    ],
)
def test_the_hidden_module_check_tries_the_default_d_v_and_the_gradients_in_float32(cls, message):
    fails_with(partial(ch03.check, "SelfAttention", hidden=True), cls, message)


# ------------------------------------------------------------------ the prediction about word order
def test_the_word_order_experiment_says_b_each_word_keeps_its_output_in_another_row():
    assert ch03._word_order() == "b"
    x, *W = np.random.default_rng(5).normal(size=(4, 6, 6))  # a bigger version of the experiment
    perm = np.array([5, 2, 0, 4, 1, 3])
    assert np.allclose(F.self_attention(x[perm], *W)[0], F.self_attention(x, *W)[0][perm])


def test_a_word_order_prediction_is_recorded_by_the_visible_check_and_graded_by_the_hidden_one(capsys):
    for answer in "abcd":  # any answer of the right form is recorded; the experiment has not run yet
        ch03.check("predict_word_order", lambda answer=answer: answer)
    assert capsys.readouterr().out.count("is recorded") == 4
    ch03.check("predict_word_order", lambda: "b", hidden=True)


@pytest.mark.parametrize("answer, message", [
    ("a", r"returned 'a', which is not what happens\. Likely cause: a token's output depends only on its own query"),
    ("c", r"Likely cause: \"dog\" keeps its output too: nothing in the computation depends on where a token stands"),
    ("d", r"Likely cause: the rows are not left as they were: .*equivariant, not invariant"),
])
def test_a_wrong_word_order_prediction_is_named_when_graded(answer, message):
    fails_with(partial(ch03.check, "predict_word_order", hidden=True), lambda: answer, message)


def unanswered():
    raise NotImplementedError()


@pytest.mark.parametrize("fn, message", [
    (lambda: "e", r"answer with one of 'a', 'b', 'c', 'd', not 'e'"),
    (lambda: "B", r"answer with exactly one of"),
    (lambda: 2, r"answer with one of"),
    (unanswered, r"is not written yet"),
    (None, r"should be a function, but it is None"),
])
def test_the_word_order_visible_check_answers_a_prediction_of_the_wrong_form(fn, message):
    fails_with(partial(ch03.check, "predict_word_order"), fn, message)


def test_revealing_the_word_order_prints_the_answer_and_why(capsys):
    ch03.reveal("predict_word_order", lambda: "a")
    out = capsys.readouterr().out
    assert "You predicted 'a'; the answer: 'b' (not what happens)" in out and "permutation equivariant" in out
