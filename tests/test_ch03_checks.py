"""Chapter 3 checks: the reference code passes, typical mistakes are named in one sentence,
garbage never crashes a check, and the library's position functions do what the chapter says."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from attnedu import functional as F
from attnedu.checks import CheckFailed
from attnedu.checks import ch03_self_attention as ch03


def fails_with(check, fn, pattern):
    """Run a check that must fail; return its one-line message after matching ``pattern``."""
    with pytest.raises(CheckFailed, match=pattern) as info:
        check(fn)
    text = str(info.value)
    assert "\n" not in text, "a check explains a mistake in one line"
    return info.value


# ------------------------------------------------------------------ the references pass
def test_the_reference_code_passes_every_check_of_the_chapter(capsys):
    ch03.check_self_attention(ch03.self_attention_reference)
    ch03.check_self_attention_module(ch03.SelfAttentionReference)
    ch03.check_sinusoidal_positions(F.sinusoidal_positions)
    ch03.check_apply_rope(lambda x, positions: F.apply_rope(x, positions))
    assert capsys.readouterr().out.count("passes all") == 4


def test_the_module_reference_equals_the_numpy_reference_and_torch_sdpa():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6))
    W_q, W_k, W_v = rng.normal(size=(6, 4)), rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    out, weights = ch03.module_runner(ch03.SelfAttentionReference)(x, W_q, W_k, W_v)
    ref_out, ref_weights = ch03.self_attention_reference(x, W_q, W_k, W_v)
    np.testing.assert_allclose(out.detach().numpy(), ref_out, rtol=1e-10)
    np.testing.assert_allclose(weights.detach().numpy(), ref_weights, rtol=1e-10)
    xt = torch.from_numpy(x)
    q, k, v = (xt @ torch.from_numpy(W) for W in (W_q, W_k, W_v))
    fast = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(fast.numpy(), ref_out, rtol=1e-10)


def test_self_attention_without_positions_is_permutation_equivariant():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(9, 5))
    W_q, W_k, W_v = (rng.normal(size=(5, 4)) for _ in range(3))
    perm = rng.permutation(9)
    out, weights = ch03.self_attention_reference(x, W_q, W_k, W_v)
    out_p, weights_p = ch03.self_attention_reference(x[perm], W_q, W_k, W_v)
    np.testing.assert_allclose(out_p, out[perm])
    np.testing.assert_allclose(weights_p, weights[perm][:, perm])


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
        (keys_times_queries, r"Likely cause: scores\[i, j\] is the query of token i.*not k @ q\.T"),
        (softmax_over_queries, r"Likely cause: the softmax normalises each query's scores over the keys: the last"),
        (transposed_weights, r"Likely cause: the projections are .*the weight matrices as given \(not transposed\)"),
        (projection_on_the_wrong_side, r"raised ValueError.* Hint: .*so the queries are x @ W_q \(x on the left\)"),
        (plain_transpose_breaks_batches, r"shape \(2, 5, 4\).* Hint: .*np\.swapaxes\(k, -1, -2\); k\.T would reverse"),
        (unstable_softmax, r"with NaN at .*stable softmax"),
        (lambda x, W_q, W_k, W_v: ch03.self_attention_reference(x, W_q, W_k, W_v)[0],
         r"returned 1 value\(s\); expected a tuple of 2"),
    ],
)
def test_a_wrong_self_attention_is_named(fn, message):
    fails_with(ch03.check_self_attention, fn, message)


def test_an_unrecognised_mistake_keeps_the_hand_computed_hint():
    def halves_everything(x, W_q, W_k, W_v):
        out, w = ch03.self_attention_reference(x, W_q, W_k, W_v)
        return out / 2, w

    fails_with(ch03.check_self_attention, halves_everything, r"off by up to.*Hint: by hand, q = x @ W_q")


# ------------------------------------------------------------------ SelfAttention module mistakes
class NoScale(ch03.SelfAttentionReference):
    def forward(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        w = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return w @ v, w


class PlainTranspose(ch03.SelfAttentionReference):
    def forward(self, x):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        w = torch.softmax(q @ k.permute(*range(k.ndim - 1, -1, -1)) / math.sqrt(q.shape[-1]), dim=-1)
        return w @ v, w


class ThroughNumPy(ch03.SelfAttentionReference):
    def forward(self, x):
        q, k, v = (layer(x).detach().numpy() for layer in (self.W_q, self.W_k, self.W_v))
        w = F.softmax(q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]))
        return torch.from_numpy(w @ v), torch.from_numpy(w)


class Stub(ch03.SelfAttentionReference):
    def forward(self, x):
        raise NotImplementedError()


class Broken(ch03.SelfAttentionReference):
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
        (ch03.self_attention_reference, r"should be a class derived from torch\.nn\.Module, but it is a function"),
    ],
)
def test_a_wrong_self_attention_module_is_named(cls, message):
    fails_with(ch03.check_self_attention_module, cls, message)


def test_a_module_that_raises_shows_only_the_learners_frames():
    failure = fails_with(ch03.check_self_attention_module, Broken, r"raised IndexError")
    tb = failure.learner_traceback
    assert "return x[100]" in tb
    assert "ch03_self_attention.py" not in tb and "core.py" not in tb


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
        (lambda T, d: table(T, d, start=1), r"Likely cause: positions start at 0"),
        (lambda T, d: table(T, d, sines_first=False, interleave=False), r"Likely cause: .*all the cosines first, then"),
        (lambda T, d: table(T, d).T, r"\(transposed\?\)"),
        (lambda T, d: np.zeros((T, d)), r"Hint: by hand, with d = 2 row p is \[sin\(p\), cos\(p\)\]"),
    ],
)
def test_a_wrong_sinusoidal_table_is_named(fn, message):
    fails_with(ch03.check_sinusoidal_positions, fn, message)


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


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x, p: rope(x, p, half_split=True), r"Likely cause: .*half-split layout of GPT-NeoX"),
        (lambda x, p: rope(x, p, sign=-1.0), r"Likely cause: you rotated the wrong way"),
        (lambda x, p: rope(x, np.arange(len(x))), r"Likely cause: .*you used t itself instead of the positions given"),
        (lambda x, p: rope(x, p, power=1.0), r"Likely cause: .*drop the 2 in the exponent"),
        (lambda x, p: x, r"Hint: by hand, with d = 2 the row at position p turns by p radians"),
    ],
)
def test_a_wrong_rope_is_named(fn, message):
    fails_with(ch03.check_apply_rope, fn, message)


def test_a_rope_that_rotates_in_place_still_passes(capsys):
    def in_place(x, positions):
        x[:] = F.apply_rope(x, positions)
        return x

    ch03.check_apply_rope(in_place)  # every case gets its own copy of x
    assert "passes all" in capsys.readouterr().out


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
    [ch03.check_self_attention, ch03.check_sinusoidal_positions, ch03.check_apply_rope],
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


class ReturnsGarbage(ch03.SelfAttentionReference):
    def forward(self, x):
        return "abc"


@pytest.mark.parametrize("garbage", [WrongSignature, NoLayers, ReturnsGarbage, Stub, int, "SelfAttention", 3])
def test_the_module_check_never_crashes_on_garbage(garbage):
    with pytest.raises(CheckFailed):
        ch03.check_self_attention_module(garbage)
