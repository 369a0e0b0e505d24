"""Chapter 2's checks: the library passes them, and each typical mistake gets the sentence meant for it."""

import re
from functools import partial

import numpy as np
import pytest
import torch

from attnedu import functional as F
from attnedu.checks import Case, CheckFailed
from attnedu.checks import ch02_scaled_dot_product as ch02


def failure(check, fn) -> str:
    """The message of the CheckFailed that `check(fn)` raises (one line, as every message is)."""
    with pytest.raises(CheckFailed) as info:
        check(fn)
    text = str(info.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ scaled dot-product attention
def scores_of(q, k, scale=None):
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    return q @ np.swapaxes(k, -1, -2) * scale  # (..., Tq, Tk)


def forgot_the_scale(q, k, v, mask=None):
    s = scores_of(q, k, scale=1.0)
    w = F.softmax(s if mask is None else np.where(mask, s, -np.inf))
    return w @ v, w


def divides_by_dk(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, mask, scale=1 / q.shape[-1])


def softmax_over_queries(q, k, v, mask=None):
    w = F.softmax(scores_of(q, k), axis=-2)
    return w @ v, w


def plain_transpose(q, k, v, mask=None):
    w = F.softmax(q @ k.T / np.sqrt(q.shape[-1]))  # k.T reverses every axis of a batch
    return w @ v, w


def inverted_mask(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, None if mask is None else ~mask)


def ignores_the_mask(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v)


def masks_after_softmax(q, k, v, mask=None):
    w = F.softmax(scores_of(q, k))
    if mask is not None:
        w = w * mask
    return w @ v, w


def hand_written_softmax(q, k, v, mask=None):
    s = scores_of(q, k)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    with np.errstate(invalid="ignore"):  # -inf - (-inf) is the point
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        w = e / e.sum(axis=-1, keepdims=True)
    return w @ v, w


def fills_with_large_negative(q, k, v, mask=None):
    s = scores_of(q, k)
    if mask is not None:
        s = np.where(mask, s, -1e9)
    w = F.softmax(s)
    return w @ v, w


def test_the_library_passes_the_attention_check(capsys):
    partial(ch02.check, "scaled_dot_product_attention")(F.scaled_dot_product_attention)
    assert "passes all 7 checks" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (forgot_the_scale, r"three-token example.*Likely cause: the scale is missing: divide the scores by sqrt\(d_k\)"),
        (divides_by_dk, r"Likely cause: the scores are divided by d_k; divide them by sqrt\(d_k\) instead"),
        (softmax_over_queries, r"Likely cause: the softmax runs over the queries \(axis -2\)"),
        (plain_transpose, r"raised ValueError: matmul.*Hint: with a batch axis, k.T reverses \*all\* the axes"),
        (inverted_mask, r"causal mask.*Likely cause: the mask's convention is inverted: True means 'may attend'"),
        (ignores_the_mask, r"causal mask.*Likely cause: the mask is ignored"),
        (masks_after_softmax, r"Likely cause: the mask is applied after the softmax, so the weights no longer sum to 1"),
        (hand_written_softmax,
         r"may attend to no key at all returned `output` with NaN.*Hint: .*zero weights and a zero output"),
        (fills_with_large_negative,
         r"Likely cause: the fully masked query gets uniform weights: fill the masked scores with -np.inf"),
    ],
)
def test_a_typical_attention_mistake_is_named(fn, message):
    text = failure(partial(ch02.check, "scaled_dot_product_attention"), fn)
    assert re.search(message, text), text
    assert ("Likely cause:" in text) != ("Hint:" in text), text  # a named mistake replaces the hint


@pytest.mark.parametrize(
    "fn, message",
    [
        (None, "should be a function, but it is None"),
        (lambda q, k, v, mask=None: F.scaled_dot_product_attention(q, k, v)[0], "expected a tuple of 2"),
        (lambda q, k, v, mask=None: None, "did you forget to `return output, weights`"),
        (lambda q, k, v, mask=None: ("a", "b"), "not an array of numbers"),
        (lambda q, k, v, mask=None: q[100], "raised IndexError"),
    ],
)
def test_garbage_never_crashes_the_attention_check(fn, message):
    assert message in failure(partial(ch02.check, "scaled_dot_product_attention"), fn)


def test_an_error_that_is_not_about_shapes_gets_the_case_hint_after_it():
    # the check adds a case's hint to any exception the learner's function raises
    def raises(q, k, v, mask=None):
        raise KeyError("oops")

    text = failure(partial(ch02.check, "scaled_dot_product_attention"), raises)
    assert re.search(r"raised KeyError: 'oops' \(on the three-token example of the chapter\)\. "
                     r"Hint: by hand, q @ k\.T = ", text), text
    assert "Likely cause" not in text


def test_a_stub_is_told_it_is_not_written_yet_without_a_hint():
    def stub(q, k, v, mask=None):
        raise NotImplementedError()

    text = failure(partial(ch02.check, "scaled_dot_product_attention"), stub)
    assert "is not written yet" in text and "Hint" not in text


def test_an_implementation_in_float32_passes(capsys):
    def in_float32(q, k, v, mask=None):
        f32 = [np.asarray(a, dtype=np.float32) for a in (q, k, v)]
        return F.scaled_dot_product_attention(*f32, mask)

    partial(ch02.check, "scaled_dot_product_attention")(in_float32)
    assert "passes all" in capsys.readouterr().out


# ------------------------------------------------------------------ causal mask
def test_the_library_passes_the_causal_mask_check(capsys):
    partial(ch02.check, "causal_mask")(F.causal_mask)
    assert "passes all 3 checks" in capsys.readouterr().out


def test_a_torch_boolean_mask_is_accepted(capsys):
    partial(ch02.check, "causal_mask")(lambda T: torch.tril(torch.ones(T, T, dtype=torch.bool)))
    assert "passes all" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda T: np.triu(np.ones((T, T), dtype=bool), 1),
         "Likely cause: it is exactly the opposite of the expected mask, "
         "the convention of torch.nn.MultiheadAttention (True = blocked)"),
        (lambda T: np.triu(np.ones((T, T), dtype=bool)), "Likely cause: it is transposed: row i is query i"),
        (lambda T: np.tril(np.ones((T, T), dtype=bool), -1),
         "Likely cause: the diagonal is False: a token may attend to itself"),
        (lambda T: np.tril(np.ones((T, T))), "returned numbers of dtype float64 as a result; expected booleans"),
        (lambda T: np.tri(T, dtype=int), "returned numbers of dtype int64 as a result; expected booleans"),
        (lambda T: np.ones((T, T + 1), dtype=bool), "expected shape (3, 3). Hint: by hand"),
        (lambda T: None, "did you forget to `return`"),
        (lambda T: [[True], [True, False]], "NumPy cannot turn into an array"),
        ("causal_mask", "should be a function, but it is a str"),
    ],
)
def test_a_wrong_causal_mask_gets_the_sentence_meant_for_it(fn, message):
    assert message in failure(partial(ch02.check, "causal_mask"), fn)


def test_a_raising_mask_function_shows_only_the_learners_own_frames():
    def broken(T):
        return np.ones((T, T), dtype=bool)[100]

    with pytest.raises(CheckFailed) as info:
        partial(ch02.check, "causal_mask")(broken)
    # the check adds the case's hint after the error
    assert "raised IndexError" in str(info.value)
    assert str(info.value).endswith("(on T = 3). Hint: by hand: [[True, False, False], [True, True, False], "
                                    "[True, True, True]].")
    tb = info.value.learner_traceback
    assert "return np.ones((T, T), dtype=bool)[100]" in tb
    assert "ch02_scaled_dot_product.py" not in tb and "core.py" not in tb


# ------------------------------------------------------------------ padding mask
def test_the_library_passes_the_padding_mask_check(capsys):
    partial(ch02.check, "padding_mask")(F.padding_mask)
    assert "passes all 3 checks" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda lengths, T: ~F.padding_mask(lengths, T), "Likely cause: it is exactly the opposite of the expected mask"),
        (lambda lengths, T: (np.arange(T) <= lengths[:, None])[:, None, :], "Likely cause: one token too many is True"),
        (lambda lengths, T: np.arange(T) < lengths[:, None],
         "returned a result of shape (1, 3); expected shape (1, 1, 3). Hint"),
        (lambda lengths, T: (np.arange(T) < lengths[:, None])[:, :, None], "expected shape (1, 1, 3)"),
        (lambda lengths, T: F.padding_mask(lengths, T).astype(int), "dtype int64 as a result; expected booleans"),
    ],
)
def test_a_wrong_padding_mask_gets_the_sentence_meant_for_it(fn, message):
    assert message in failure(partial(ch02.check, "padding_mask"), fn)


# ------------------------------------------------------------------ additive scores
def test_the_library_passes_every_chapter_2_check_visible_and_hidden(capsys):
    for name, ex in ch02.EXERCISES.items():
        ch02.check(name, ex.reference)
        ch02.check(name, ex.reference, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 4


def test_the_additive_reference_is_the_formula_pair_by_pair():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(3, 4)), rng.normal(size=(5, 2))
    W_q, W_k, w = rng.normal(size=(6, 4)), rng.normal(size=(6, 2)), rng.normal(size=6)
    loops = np.array([[w @ np.tanh(W_q @ qi + W_k @ kj) for kj in k] for qi in q])
    np.testing.assert_allclose(F.additive_scores(q, k, W_q, W_k, w), loops, rtol=1e-12)


@pytest.mark.parametrize(
    "shapes",
    [
        [(3, 4), (5, 2), (6, 2), (6, 2), (6,)],  # W_q does not fit q
        [(3, 4), (5, 2), (6, 4), (6, 2), (7,)],  # w does not fit h
        [(4,), (5, 2), (6, 4), (6, 2), (6,)],  # q is not 2-D
    ],
)
def test_the_additive_reference_names_shapes_that_do_not_fit(shapes):
    arrays = [np.ones(s) for s in shapes]
    with pytest.raises(ValueError, match=r"q \(.*W_q \("):
        F.additive_scores(*arrays)


def no_tanh(q, k, W_q, W_k, w):
    return (q @ W_q.T @ w)[:, None] + (k @ W_k.T @ w)[None, :]


def untransposed(q, k, W_q, W_k, w):
    return np.tanh((q @ W_q)[:, None, :] + (k @ W_k)[None, :, :]) @ w


def ignores_w(q, k, W_q, W_k, w):
    return np.tanh((q @ W_q.T)[:, None, :] + (k @ W_k.T)[None, :, :]).sum(axis=-1)


def no_broadcast(q, k, W_q, W_k, w):
    return np.tanh(q @ W_q.T + k @ W_k.T) @ w  # (Tq, h) + (Tk, h): only works when Tq == Tk


@pytest.mark.parametrize(
    "fn, message",
    [
        (no_tanh, "tiny example.*Likely cause: the tanh is missing"),
        (untransposed, "Likely cause: W_q and W_k are used untransposed"),
        (ignores_w, r"tiny example.*Hint: by hand, W_q q \+ W_k k is \[1, 0\]"),
        (no_broadcast, r"tiny example.*shape \(2,\); expected shape \(1, 2\)\. Hint.*\(Tq, Tk\) = \(1, 2\)"),
    ],
)
def test_a_typical_additive_mistake_is_named(fn, message):
    text = failure(partial(ch02.check, "additive_scores"), fn)
    assert re.search(message, text), text
