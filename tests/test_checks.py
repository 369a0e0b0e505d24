"""attnedu.checks: a wrong answer gets one clear sentence, garbage never crashes a check."""

import numpy as np
import pytest

from attnedu import functional as F
from attnedu.checks import Case, CheckFailed, check_function
from attnedu.checks.core import check_each
from attnedu.checks import ch01_weighted_sums as ch01

# ------------------------------------------------------------------ learner functions
def good_softmax(x, axis=-1):
    return F.softmax(x, axis=axis)


def naive_softmax(x, axis=-1):
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)


def global_sum_softmax(x, axis=-1):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def forgot_return(x, axis=-1):
    np.exp(x)


def stub(x, axis=-1):
    raise NotImplementedError()


def raises_index_error(x, axis=-1):
    return x[100]


def loops_forever(x, axis=-1):
    while True:
        pass


def swallows_everything_and_loops(x, axis=-1):
    while True:
        try:
            pass
        except Exception:
            pass


def returns_ragged_list(x, axis=-1):
    return [[1.0, 2.0], [3.0]]


def returns_strings(x, axis=-1):
    return np.array(["a", "b", "c"])


def returns_booleans(x, axis=-1):
    return np.ones(np.shape(x), dtype=bool)


def returns_a_function(x, axis=-1):
    return good_softmax


def wrong_axis_ignored(x, axis=-1):
    return F.softmax(x)  # ignores axis


def modifies_input(x, axis=-1):
    x -= np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ softmax check
def test_a_correct_softmax_passes_and_says_so(capsys):
    ch01.check_softmax(good_softmax)
    assert "passes all 5 checks" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, message",
    [
        (naive_softmax, "with NaN at"),
        (global_sum_softmax, "does not sum to 1 along axis -1"),
        (forgot_return, "returned None: did you forget to `return`"),
        (stub, "is not written yet: replace `raise NotImplementedError()`"),
        (raises_index_error, "raised IndexError"),
        (returns_ragged_list, "NumPy cannot turn into an array of numbers"),
        (returns_strings, "dtype <U1"),
        (returns_booleans, "returned booleans"),
        (returns_a_function, "returned a function"),
        (wrong_axis_ignored, "does not sum to 1 along axis 0"),
        (None, "should be a function, but it is None"),
        ([1, 2, 3], "should be a function, but it is a list"),
        (np.float32(1.0), "should be a function, but it is a float32"),
        ("softmax", "should be a function, but it is a str"),
    ],
)
def test_a_wrong_softmax_gets_one_explaining_sentence(fn, message):
    with pytest.raises(CheckFailed) as info:
        ch01.check_softmax(fn)
    text = str(info.value)
    assert message in text
    assert "\n" not in text  # one sentence, one line
    assert isinstance(info.value, AssertionError)  # so nbgrader gives the cell zero


def test_overflow_is_named_as_such():
    with pytest.raises(CheckFailed, match="np.exp overflows above about 709.*subtract the maximum"):
        ch01.check_softmax(naive_softmax)


def test_a_function_that_raises_keeps_the_learners_own_traceback():
    with pytest.raises(CheckFailed) as info:
        ch01.check_softmax(raises_index_error)
    tb = info.value.learner_traceback
    assert "raises_index_error" in tb and "return x[100]" in tb
    assert "core.py" not in tb  # only the learner's frames
    rendered = "\n".join(info.value._render_traceback_())
    assert "Where your function raised" in rendered and "IndexError" in rendered


def test_the_ipython_rendering_is_the_message_not_a_traceback_through_attnedu():
    with pytest.raises(CheckFailed) as info:
        ch01.check_softmax(forgot_return)
    rendered = info.value._render_traceback_()
    assert rendered[0].endswith(str(info.value))
    assert not any("attnedu/checks" in line for line in rendered)


@pytest.mark.parametrize("fn", [loops_forever, swallows_everything_and_loops])
def test_a_function_that_never_returns_is_stopped_by_the_time_limit(fn):
    cases = [Case((np.ones(3),), F.softmax(np.ones(3)))]
    with pytest.raises(CheckFailed, match="ran for more than 0.5 s.*loop that never ends"):
        check_function(fn, "softmax", cases, params=["x"], time_limit=0.5)


def test_a_function_that_modifies_its_input_cannot_spoil_later_cases(capsys):
    # every case gets a copy of its arguments; the function is still correct
    ch01.check_softmax(modifies_input)
    assert "passes" in capsys.readouterr().out


def test_a_case_hint_is_added_to_the_message():
    case = Case((np.ones(2),), np.array([0.5, 0.5]), hint="look at the axis.")
    with pytest.raises(CheckFailed, match=r"off by up to 0.5.*Hint: look at the axis\."):
        check_function(lambda x: np.array([1.0, 0.0]), "f", [case], params=["x"])


def test_a_wrong_value_names_the_index_and_both_numbers():
    case = Case((np.zeros((2, 2)),), np.zeros((2, 2)))
    with pytest.raises(CheckFailed, match=r"at index \(1, 0\): got 3, expected 0"):
        check_function(lambda x: np.array([[0.0, 0.0], [3.0, 0.0]]), "f", [case], params=["x"])


def test_a_transposed_result_is_called_out():
    case = Case((None,), np.zeros((2, 3)))
    with pytest.raises(CheckFailed, match=r"shape \(3, 2\); expected shape \(2, 3\) \(transposed\?\)"):
        check_function(lambda x: np.zeros((3, 2)), "f", [case])


# ------------------------------------------------------------------ tuple-returning checks
def test_the_library_functions_pass_their_own_chapter_checks(capsys):
    ch01.check_attention_pool(lambda q, k, v, w: F.attention_pool(q, k, v, w))
    ch01.check_leave_one_out_mse(F.leave_one_out_mse)
    ch01.check_soft_lookup(ch01.soft_lookup_reference)
    assert capsys.readouterr().out.count("passes all") == 3


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda q, k, v, w: F.attention_pool(q, k, v, w)[0], "returned 1 value\\(s\\); expected a tuple of 2"),
        (lambda q, k, v, w: (F.attention_pool(q, k, v, w)[0], F.attention_pool(q, k, v, w)[1].T), "transposed"),
        (lambda q, k, v, w: (None, None), "returned None as `output`"),
        (lambda q, k, v, w: None, "returned None: did you forget to `return output, weights`"),
    ],
)
def test_attention_pool_check_explains_structural_mistakes(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch01.check_attention_pool(fn)


def test_an_unstable_attention_pool_is_told_to_use_a_stable_softmax():
    def unstable(q, k, v, w):
        kern = np.exp(-((q[:, None] - k[None, :]) ** 2) / (2 * w**2))
        with np.errstate(invalid="ignore"):
            weights = kern / kern.sum(axis=1, keepdims=True)
        return weights @ v, weights

    with pytest.raises(CheckFailed, match="NaN.*stable softmax"):
        ch01.check_attention_pool(unstable)


def test_leave_one_out_that_forgets_the_mask_is_caught():
    def no_mask(x, y, width):
        scores = -((x[:, None] - x[None, :]) ** 2) / (2 * width**2)
        return float(np.mean((y - F.softmax(scores) @ y) ** 2))

    with pytest.raises(CheckFailed, match="leave_one_out_mse.*off by"):
        ch01.check_leave_one_out_mse(no_mask)


def test_soft_lookup_that_ignores_temperature_is_caught():
    with pytest.raises(CheckFailed, match="temperature"):
        ch01.check_soft_lookup(lambda q, k, v, temperature=1.0: ch01.soft_lookup_reference(q, k, v))


def test_a_case_hint_about_numbers_is_left_out_when_the_result_is_not_even_an_array():
    case = Case((np.ones(2),), np.array([0.5, 0.5]), hint="look at the axis.")
    with pytest.raises(CheckFailed) as info:
        check_function(lambda x: None, "f", [case], params=["x"])
    assert "Hint" not in str(info.value)


def test_a_torch_tensor_that_requires_grad_is_compared_like_an_array(capsys):
    import torch

    def torch_softmax(x, axis=-1):
        t = torch.tensor(x, requires_grad=True)
        return torch.softmax(t, dim=axis)

    ch01.check_softmax(torch_softmax)
    assert "passes" in capsys.readouterr().out


# ------------------------------------------------------------------ named mistakes, masks
def test_a_known_mistake_is_named_instead_of_the_generic_hint():
    x = np.array([1.0, 2.0, 3.0])
    mistakes = [(lambda x: np.exp(x) / 2, "you halved instead of normalising."),
                (lambda x: np.exp(x) / np.exp(x).sum(), "should not be named: it is the right answer.")]
    case = Case((x,), F.softmax(x), hint="generic hint.")
    with pytest.raises(CheckFailed, match=r"off by .* Likely cause: you halved instead of normalising\.$"):
        check_function(lambda x: np.exp(x) / 2, "f", [case], params=["x"], mistakes=mistakes)
    with pytest.raises(CheckFailed, match="Hint: generic hint"):
        check_function(lambda x: np.exp(x) / 3, "f", [case], params=["x"], mistakes=mistakes)


def test_a_mistake_can_be_given_per_case_as_its_wrong_result():
    case = Case((np.ones(2),), np.array([0.5, 0.5]), mistakes=[(np.array([1.0, 1.0]), "you forgot to divide.")])
    with pytest.raises(CheckFailed, match="Likely cause: you forgot to divide"):
        check_function(lambda x: x, "f", [case], params=["x"])


def test_boolean_results_are_compared_and_numbers_are_refused_for_a_mask():
    case = Case((3,), np.tril(np.ones((3, 3), dtype=bool)))
    check_function(lambda T: np.tril(np.ones((T, T), dtype=bool)), "causal_mask", [case], boolean=True, quiet=True)
    with pytest.raises(CheckFailed, match="returned numbers of dtype float64 .* expected booleans"):
        check_function(lambda T: np.tril(np.ones((T, T))), "causal_mask", [case], boolean=True)
    with pytest.raises(CheckFailed, match=r"off by up to 1 at index \(0, 1\)"):
        check_function(lambda T: np.ones((T, T), dtype=bool), "causal_mask", [case], boolean=True)


def test_a_hint_is_added_when_the_learners_function_raises_but_not_for_the_stub():
    case = Case((np.ones((2, 3)),), np.ones(2), hint="the shapes should be (2, 3) and (3,).")
    with pytest.raises(CheckFailed, match=r"raised ValueError.*Hint: the shapes should be"):
        check_function(lambda x: x @ np.ones(4), "f", [case], params=["x"])
    with pytest.raises(CheckFailed) as info:
        check_function(stub, "f", [case], params=["x"])
    assert "Hint" not in str(info.value)


def test_frames_of_any_checks_module_are_left_out_of_the_learners_traceback():
    def learner(x):
        raise KeyError("mine")

    def runner(x):  # stands for a chapter's wrapper, e.g. one that builds a module
        return learner(x)

    runner.__code__ = runner.__code__.replace(co_filename=ch01.__file__)
    with pytest.raises(CheckFailed) as info:
        check_function(runner, "f", [Case((1,), 1.0)])
    assert "learner" in info.value.learner_traceback and "runner" not in info.value.learner_traceback


# ------------------------------------------------------------------ check_each: results that are not arrays
def _equal_words(got, case, lead):
    if got != case.expected:
        raise CheckFailed(f"{lead} returned {got!r}; expected {case.expected!r}.")


WORD_CASES = [Case(("Attention, please",), ["attention", "please"], hint="split on white space, drop commas")]


def test_check_each_passes_a_right_function_and_says_so(capsys):
    check_each(lambda text: text.lower().replace(",", "").split(), "words", WORD_CASES, _equal_words,
               params=["text"])
    assert "`words` passes all 1 checks" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda text: None, r"`words` on text = 'Attention, please' returned None: did you forget to `return`"),
    (lambda text: str.split, "returned a function: did you forget to call it"),
    (lambda text: text.split(), r"returned \['Attention,', 'please'\]; expected .* Hint: split on white space"),
    (lambda text: text.lower().split(), r"Likely cause: it keeps the commas"),
    (lambda text: 1 / 0, r"raised ZeroDivisionError: division by zero .* Hint: split on white space"),
])
def test_check_each_explains_a_wrong_result_in_one_sentence(fn, message):
    mistakes = [(lambda text: text.lower().split(), "it keeps the commas.")]
    with pytest.raises(CheckFailed, match=message) as info:
        check_each(fn, "words", WORD_CASES, _equal_words, params=["text"], mistakes=mistakes,
                   same=lambda a, b: a == b)
    assert "\n" not in str(info.value)


def test_check_each_stops_a_loop_and_adds_the_timeout_hint():
    def loops(text):
        while True:
            pass

    with pytest.raises(CheckFailed, match=r"ran for more than 0.2 s .* never ends \(or a query without a limit\)"):
        check_each(loops, "words", WORD_CASES, _equal_words, time_limit=0.2,
                   timeout_hint=" (or a query without a limit)")


@pytest.mark.parametrize("copy_args", [True, False])
def test_check_each_copies_the_arguments_unless_told_not_to(copy_args):
    original = ["a"]
    seen = []

    def remembers(xs):
        seen.append(xs)
        return list(xs)

    check_each(remembers, "same", [Case((original,), ["a"])], _equal_words, copy_args=copy_args, quiet=True)
    assert (seen[0] is original) is (not copy_args)
