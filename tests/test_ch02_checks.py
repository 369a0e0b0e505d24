"""Chapter 2's checks: the library passes them, and each typical mistake gets the sentence meant for it."""

import json
import re
from functools import partial
from pathlib import Path

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


# ------------------------------------------------------------------ the mask of a padded batch
def the_mask(lengths, T, causal=False, *, queries=False, future=False, diagonal=True, extra=0):
    """A hand-written mask with one mistake switched on at a time (not the checks' own variant)."""
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    real = np.arange(T)[None, :] < np.minimum(lengths[:, None] + extra, T)  # (B, T)
    mask = real[:, None, :] & (real[:, :, None] if queries else True)
    if causal or future:
        mask = mask & ((j >= i) if future else (j <= i) if diagonal else (j < i))
    return np.broadcast_to(mask, (len(lengths), T, T)).copy()


def test_the_library_passes_the_attention_mask_check(capsys):
    partial(ch02.check, "attention_mask")(F.attention_mask)
    assert "passes all 4 checks" in capsys.readouterr().out


def test_the_attention_mask_is_the_two_library_masks_combined():
    lengths = np.array([4, 0, 2])
    assert np.array_equal(F.attention_mask(lengths, 4, True), F.causal_mask(4) & F.padding_mask(lengths, 4))
    assert F.attention_mask(lengths, 4).shape == (3, 4, 4)
    assert np.array_equal(F.attention_mask(lengths, 4), np.broadcast_to(F.padding_mask(lengths, 4), (3, 4, 4)))


def test_a_torch_boolean_mask_is_accepted(capsys):
    as_torch = lambda lengths, T, causal=False: torch.from_numpy(the_mask(lengths, T, causal))  # noqa: E731
    partial(ch02.check, "attention_mask")(as_torch)
    assert "passes all" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda lengths, T, causal=False: ~the_mask(lengths, T, causal),
         "Likely cause: it is exactly the opposite of the expected mask, "
         "the convention of torch.nn.MultiheadAttention (True = blocked)"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, causal=False, future=causal),
         "Likely cause: the causal part is transposed: row i is query i"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, causal, diagonal=False),
         "Likely cause: the diagonal is False: a token may attend to itself"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, causal, extra=1),
         "Likely cause: one key too many is True"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, causal, queries=True),
         "Likely cause: the rows of the padding queries are hidden too: a padding mask hides keys (columns), not "
         "queries"),
        (lambda lengths, T, causal=False: the_mask(lengths, T), "Likely cause: causal=True is ignored"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, True),
         "Likely cause: the causal part is applied even when causal=False"),
        (lambda lengths, T, causal=False: the_mask(np.full_like(lengths, T), T, causal),
         "Likely cause: the padding is ignored: key j of sequence b is padding when j >= lengths[b]"),
        (lambda lengths, T, causal=False: (np.arange(T)[None, :] < lengths[:, None])[:, None, :] & (
            np.tri(T, dtype=bool) if causal else True),
         "returned a result of shape (1, 1, 3); expected shape (1, 3, 3). Hint: without the causal part every query"),
        (lambda lengths, T, causal=False: the_mask(lengths, T, causal).astype(float),
         "dtype float64 as a result; expected booleans"),
        (lambda lengths, T, causal=False: None, "did you forget to `return`"),
        ("attention_mask", "should be a function, but it is a str"),
    ],
)
def test_a_wrong_attention_mask_gets_the_sentence_meant_for_it(fn, message):
    assert message in failure(partial(ch02.check, "attention_mask"), fn)


def test_a_raising_mask_function_shows_only_the_learners_own_frames():
    def broken(lengths, T, causal=False):
        return np.ones((T, T), dtype=bool)[100]

    with pytest.raises(CheckFailed) as info:
        partial(ch02.check, "attention_mask")(broken)
    # the check adds the case's hint after the error
    assert "raised IndexError" in str(info.value)
    assert str(info.value).endswith("(on lengths = np.array([2]), T = 3, causal=True). Hint: by hand: [[[True, "
                                    "False, False], [True, True, False], [True, True, False]]], of shape (B, T, T) = "
                                    "(1, 3, 3): key 2 is padding, and the third query, padding itself, still sees the "
                                    "two real keys.")
    tb = info.value.learner_traceback
    assert "return np.ones((T, T), dtype=bool)[100]" in tb
    assert "ch02_scaled_dot_product.py" not in tb and "core.py" not in tb


# ------------------------------------------------------------------ predict: the spread of q . k
def test_the_spread_prediction_is_decided_by_the_experiment():
    assert ch02.EXERCISES["predict_spread"].reference() == "b"


def test_the_visible_check_of_the_prediction_records_any_answer_of_the_right_form(capsys):
    for answer in "abcd":
        ch02.check("predict_spread", lambda answer=answer: answer)
        assert f"Your prediction, '{answer}', is recorded" in capsys.readouterr().out
    assert "answer with one of 'a', 'b', 'c', 'd'" in failure(partial(ch02.check, "predict_spread"), lambda: 2)

    def stub():
        raise NotImplementedError()
    assert "is not written yet" in failure(partial(ch02.check, "predict_spread"), stub)


@pytest.mark.parametrize("answer, message", [
    ("a", "Likely cause: the products do cancel on average, so q . k stays centred on 0, but the variances"),
    ("c", "Likely cause: 4 times is how the variance grows (it equals d_k); the standard deviation is its square root"),
    ("d", "Likely cause: q . k is a sum of d_k terms, not of d_k squared"),
])
def test_a_wrong_prediction_of_the_spread_is_explained_by_the_hidden_check(answer, message):
    text = failure(partial(ch02.check, "predict_spread", hidden=True), lambda: answer)
    assert "which is not what happens" in text and message in text, text
    ch02.check("predict_spread", lambda: "b", hidden=True)


def test_the_reveal_prints_the_answer_and_why(capsys):
    ch02.reveal("predict_spread", lambda: "c")
    out = capsys.readouterr().out
    assert "You predicted 'c'; the answer: 'b' (not what happens)." in out and "Var(q . k) = d_k" in out


# ------------------------------------------------------------------ measure: where the softmax saturates
def saturation(q, k, threshold, *, scale=False, overall=False, axis=-1, widths=None, last=False):
    """A hand-written measurement with one mistake switched on at a time."""
    D = q.shape[1]
    for d in widths or [2**i for i in range(D.bit_length()) if 2**i <= D]:
        cut = slice(D - d, None) if last else slice(None, d)
        s = np.einsum("nd,nmd->nm", q[:, cut], k[:, :, cut]) / (np.sqrt(d) if scale else 1)
        w = F.softmax(s, axis=axis)
        if (w.max() if overall else w.max(axis=-1).mean()) > threshold:
            return d
    return None


def test_the_library_passes_the_saturation_check_and_the_hand_written_version_agrees(capsys):
    ch02.check("saturating_dk", F.saturating_dk)
    ch02.check("saturating_dk", saturation)
    assert capsys.readouterr().out.count("passes all 4 checks") == 2
    ch02.check("saturating_dk", saturation, hidden=True)


def test_the_saturation_answers_are_far_from_their_thresholds():
    # a learner's sum in another order must not flip an answer: every mean largest weight is 1e-3 from its threshold
    ex = ch02.EXERCISES["saturating_dk"]
    for case in ex.all_cases() + ex.all_cases(hidden=True):
        q, k, threshold = case.args
        d = 1
        while d <= q.shape[1]:
            mean = F.softmax(np.einsum("nd,nmd->nm", q[:, :d], k[:, :, :d])).max(axis=-1).mean()
            assert abs(mean - threshold) > 1e-3, (case.about, d, mean)
            d *= 2


@pytest.mark.parametrize("fn, message", [
    (partial(saturation, scale=True),
     "Likely cause: the scores are divided by sqrt(d_k): that measures scaled attention"),
    (partial(saturation, overall=True), "Likely cause: it compares the largest weight of all the queries together"),
    (partial(saturation, axis=0), "Likely cause: the softmax runs over the queries (axis 0)"),
    (lambda q, k, t: saturation(q, k, t, widths=range(1, q.shape[1] + 1)),
     "Likely cause: it tries every width 1, 2, 3, ...; try only the powers of 2"),
    (partial(saturation, last=True), "Likely cause: it uses the last d_k coordinates of each vector"),
    (lambda q, k, t: saturation(q, k, t) or q.shape[1], "returned 256; expected None. Hint: no width up to D reaches"),
    (lambda q, k, t: float(saturation(q, k, t)), "returned 2.0; expected 2."),
])
def test_a_typical_saturation_mistake_is_named(fn, message):
    text = failure(partial(ch02.check, "saturating_dk"), fn)
    assert message in text, text


def test_a_stub_measurement_is_told_it_is_not_written_yet():
    def stub(q, k, threshold):
        raise NotImplementedError()

    assert "is not written yet" in failure(partial(ch02.check, "saturating_dk"), stub)


# ------------------------------------------------------------------ additive scores
def test_the_library_passes_every_chapter_2_check_visible_and_hidden(capsys):
    for name, ex in ch02.EXERCISES.items():
        ch02.check(name, ex.reference)
        ch02.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 5 and out.count("is recorded") == 1  # the prediction: its form only


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


# ------------------------------------------------------------------ debug: a leak from the future
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02-scaled-dot-product" / "02-scaled-dot-product.ipynb"


def the_cell(grade_id: str) -> dict:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    return next(c for c in cells if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id)


def as_released(cell: dict) -> str:
    """The solution cell as the student version shows it: the given lines instead of the solution."""
    source = "".join(cell["source"])
    start = source.rindex("\n", 0, source.index("### BEGIN SOLUTION")) + 1
    after = source.find("\n", source.index("### END SOLUTION"))
    end = after + 1 if after >= 0 else len(source)
    return source[:start] + cell["metadata"]["attnedu"]["given"] + source[end:]


def defined(source: str):
    scope = {"np": np}
    exec(compile(source, "<the cell>", "exec"), scope)
    return scope["masked_self_attention"]


def test_the_fixed_leak_passes_and_the_given_code_fails_naming_its_bug(capsys):
    cell = the_cell("masked-self-attention")
    assert cell["metadata"]["attnedu"]["kind"] == "debug"
    ch02.check("masked_self_attention", defined("".join(cell["source"])))
    ch02.check("masked_self_attention", defined("".join(cell["source"])), hidden=True)
    assert "passes all 3 checks" in capsys.readouterr().out
    given = defined(as_released(cell))
    for hidden in (False, True):
        text = failure(partial(ch02.check, "masked_self_attention", hidden=hidden), given)
        assert "Likely cause: the softmax normalises each column, over the queries (axis 0)" in text, text


def test_the_given_code_leaks_the_future_and_the_fix_does_not():
    x = np.random.default_rng(0).normal(size=(5, 4))
    changed = x.copy()
    changed[-1] += 1.0
    cell = the_cell("masked-self-attention")
    for source, leaks in (("".join(cell["source"]), False), (as_released(cell), True)):
        fn = defined(source)
        (out, weights), (out_changed, _) = fn(x), fn(changed)
        assert np.triu(weights, 1).max() == 0  # the mask is right either way
        assert np.abs(out_changed[:-1] - out[:-1]).max() > 1e-6 if leaks else np.allclose(out_changed[:-1], out[:-1])


def leak_variant(x, *, scale=True, mask="before"):
    T, d = x.shape
    s = x @ x.T / (np.sqrt(d) if scale else 1.0)
    allowed = np.tril(np.ones((T, T), dtype=bool))
    w = F.softmax(np.where(allowed, s, -np.inf) if mask == "before" else s)
    w = w * allowed if mask == "after" else w
    return w @ x, w


@pytest.mark.parametrize("fn, message", [
    (partial(leak_variant, mask="none"), "Likely cause: the mask is not applied"),
    (partial(leak_variant, scale=False), "Likely cause: the scale is missing: divide the scores by sqrt(d)"),
    (partial(leak_variant, mask="after"), "Likely cause: the mask is applied after the softmax"),
    (lambda x: leak_variant(x)[0], "expected a tuple of 2"),
])
def test_a_wrong_fix_of_the_leak_is_named(fn, message):
    assert message in failure(partial(ch02.check, "masked_self_attention"), fn)


# ------------------------------------------------------------------ the statements' examples, by hand
def test_the_statements_by_hand_examples_are_what_the_library_computes():
    eye = np.eye(2)
    q, k, w = np.array([[0.5, 0.0]]), np.array([[0.5, 0.0], [0.0, -0.5]]), np.array([1.0, 2.0])
    scores = F.additive_scores(q, k, eye, eye, w)
    np.testing.assert_allclose(scores, [[0.762, -0.462]], atol=5e-4)
    q, k = np.array([[1.0, 1.0]]), np.array([[[1.0, 1.0], [0.0, 0.0]]])
    assert [F.saturating_dk(q, k, t) for t in (0.8, 0.7, 0.9)] == [2, 1, None]
    assert F.softmax(np.array([1.0, 0.0])).max() == pytest.approx(0.731, abs=5e-4)
    assert F.softmax(np.array([2.0, 0.0])).max() == pytest.approx(0.881, abs=5e-4)
    assert F.attention_mask(np.array([2]), 3, causal=True).tolist() == [[[True, False, False], [True, True, False],
                                                                          [True, True, False]]]
    out, weights = ch02._masked_self_attention(np.array([[1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(weights, [[1.0, 0.0], [0.330, 0.670]], atol=5e-4)
    np.testing.assert_allclose(out[0], [1.0, 0.0])


@pytest.mark.parametrize("call, message", [
    (lambda: F.attention_mask(np.array([2.0]), 3), "lengths must be a 1-D array of integers"),
    (lambda: F.attention_mask(np.array([4]), 3), r"every length must lie in \[0, T=3\]"),
    (lambda: F.attention_mask(np.array([2]), 3, causal="yes"), "causal must be True or False"),
    (lambda: F.saturating_dk(np.ones((2, 4)), np.ones((3, 5, 4)), 0.5),
     r"need q \(n, D\) and k \(n, m, D\); got q \(2, 4\)"),
    (lambda: F.saturating_dk(np.ones((2, 4)), np.ones((2, 5, 4)), 1.5), "threshold must be in"),
])
def test_the_exercise_references_name_what_is_wrong_with_their_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
