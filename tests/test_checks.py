"""attnedu.checks: one record per exercise, one loop; a wrong answer gets one clear sentence,
garbage never crashes a check, and the learner's side and the grader's side of a check can
run in two processes."""

import multiprocessing

import numpy as np
import pytest

from attnedu import functional as F
from attnedu.checks import Case, CheckFailed, Exercise, exercises_of, judge, run_cases
from attnedu.checks import ch01_weighted_sums as ch01
from attnedu.checks.engine import check as run_check


def check_softmax(fn):
    ch01.check("softmax", fn)


def exercise(name="f", params=("x",), reference=None, cases=(), **kwargs) -> Exercise:
    """A one-off exercise for testing the loop."""
    return Exercise(name, list(params), reference or (lambda *a, **k: None), lambda: list(cases), **kwargs)


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
    check_softmax(good_softmax)
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
        (modifies_input, "changed its argument `x` in place"),
        (None, "should be a function, but it is None"),
        ([1, 2, 3], "should be a function, but it is a list"),
        (np.float32(1.0), "should be a function, but it is a float32"),
        ("softmax", "should be a function, but it is a str"),
    ],
)
def test_a_wrong_softmax_gets_one_explaining_sentence(fn, message):
    with pytest.raises(CheckFailed) as info:
        check_softmax(fn)
    text = str(info.value)
    assert message in text
    assert "\n" not in text  # one sentence, one line
    assert isinstance(info.value, AssertionError)  # so nbgrader gives the cell zero


def test_overflow_is_named_as_such():
    with pytest.raises(CheckFailed, match="np.exp overflows above about 709.*subtract the maximum"):
        check_softmax(naive_softmax)


def test_a_function_that_raises_keeps_the_learners_own_traceback():
    with pytest.raises(CheckFailed) as info:
        check_softmax(raises_index_error)
    tb = info.value.learner_traceback
    assert "raises_index_error" in tb and "return x[100]" in tb
    assert "engine.py" not in tb  # only the learner's frames
    rendered = "\n".join(info.value._render_traceback_())
    assert "Where your function raised" in rendered and "IndexError" in rendered


def test_the_ipython_rendering_is_the_message_not_a_traceback_through_attnedu():
    with pytest.raises(CheckFailed) as info:
        check_softmax(forgot_return)
    rendered = info.value._render_traceback_()
    assert rendered[0].endswith(str(info.value))
    assert not any("attnedu/checks" in line for line in rendered)


@pytest.mark.parametrize("fn", [loops_forever, swallows_everything_and_loops])
def test_a_function_that_never_returns_is_stopped_by_the_time_limit(fn):
    ex = exercise("softmax", reference=F.softmax, cases=[Case((np.ones(3),)), Case((np.ones(4),))], time_limit=0.5)
    with pytest.raises(CheckFailed, match="ran for more than 0.5 s.*loop that never ends"):
        run_check(ex, fn)
    assert len(run_cases(ex, fn, ex.all_cases())) == 1, "after the time limit, the other cases are not run"


def test_a_function_that_modifies_its_input_is_told_so_once_its_values_are_right():
    with pytest.raises(CheckFailed, match=r"changed its argument `x` in place on x = an array of shape \(3,\): "
                                          r"work on a copy"):
        check_softmax(modifies_input)


def test_a_case_hint_is_added_to_the_message():
    ex = exercise(cases=[Case((np.ones(2),), expected=np.array([0.5, 0.5]), hint="look at the axis.")])
    with pytest.raises(CheckFailed, match=r"off by up to 0.5.*Hint: look at the axis\."):
        run_check(ex, lambda x: np.array([1.0, 0.0]))


def test_a_wrong_value_names_the_index_and_both_numbers():
    ex = exercise(cases=[Case((np.zeros((2, 2)),), expected=np.zeros((2, 2)))])
    with pytest.raises(CheckFailed, match=r"at index \(1, 0\): got 3, expected 0"):
        run_check(ex, lambda x: np.array([[0.0, 0.0], [3.0, 0.0]]))


def test_a_transposed_result_is_called_out():
    ex = exercise(cases=[Case((None,), expected=np.zeros((2, 3)))])
    with pytest.raises(CheckFailed, match=r"shape \(3, 2\); expected shape \(2, 3\) \(transposed\?\)"):
        run_check(ex, lambda x: np.zeros((3, 2)))


def test_expected_values_come_from_the_reference_unless_a_case_gives_them(capsys):
    calls = []

    def reference(x):
        calls.append(x)
        return 2 * x

    ex = exercise(reference=reference, cases=[Case((1.0,)), Case((5.0,), expected=10.0)])
    run_check(ex, lambda x: 2 * x)
    assert calls == [1.0] and "passes all 2 checks" in capsys.readouterr().out


# ------------------------------------------------------------------ tuple-returning checks
def test_the_library_functions_pass_their_own_chapter_checks_visible_and_hidden(capsys):
    for name, ex in ch01.EXERCISES.items():
        ch01.check(name, ex.reference)
        ch01.check(name, ex.reference, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 4


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
        ch01.check("attention_pool", fn)


def test_an_unstable_attention_pool_is_told_to_use_a_stable_softmax():
    def unstable(q, k, v, w):
        kern = np.exp(-((q[:, None] - k[None, :]) ** 2) / (2 * w**2))
        with np.errstate(invalid="ignore"):
            weights = kern / kern.sum(axis=1, keepdims=True)
        return weights @ v, weights

    with pytest.raises(CheckFailed, match="NaN.*stable softmax"):
        ch01.check("attention_pool", unstable)


def test_leave_one_out_that_forgets_the_mask_is_caught():
    def no_mask(x, y, width):
        scores = -((x[:, None] - x[None, :]) ** 2) / (2 * width**2)
        return float(np.mean((y - F.softmax(scores) @ y) ** 2))

    with pytest.raises(CheckFailed, match="leave_one_out_mse.*off by"):
        ch01.check("leave_one_out_mse", no_mask)


def test_soft_lookup_that_ignores_temperature_is_caught():
    with pytest.raises(CheckFailed, match="temperature"):
        ch01.check("soft_lookup", lambda q, k, v, temperature=1.0: F.soft_lookup(q, k, v))


def test_a_case_hint_about_numbers_is_left_out_when_the_result_is_not_even_an_array():
    ex = exercise(cases=[Case((np.ones(2),), expected=np.array([0.5, 0.5]), hint="look at the axis.")])
    with pytest.raises(CheckFailed) as info:
        run_check(ex, lambda x: "text")
    assert "Hint" not in str(info.value)


def test_a_torch_tensor_that_requires_grad_is_compared_like_an_array(capsys):
    import torch

    def torch_softmax(x, axis=-1):
        t = torch.tensor(x, requires_grad=True)
        return torch.softmax(t, dim=axis)

    check_softmax(torch_softmax)
    assert "passes" in capsys.readouterr().out


# ------------------------------------------------------------------ named mistakes, masks
def halving_softmax(x, *, halve=False, right=False):
    """A reference with switches: each typical mistake is one setting of it."""
    return np.exp(x) / (2 if halve else np.exp(x).sum())


def test_a_known_mistake_is_named_as_a_setting_of_the_reference_instead_of_the_hint():
    x = np.array([1.0, 2.0, 3.0])
    ex = exercise(reference=F.softmax, cases=[Case((x,), hint="generic hint.")], wrong=halving_softmax,
                  mistakes=[({"halve": True}, "you halved instead of normalising."),
                            ({"right": True}, "should not be named: it is the right answer.")])
    with pytest.raises(CheckFailed, match=r"off by .* Likely cause: you halved instead of normalising\.$"):
        run_check(ex, lambda x: np.exp(x) / 2)
    with pytest.raises(CheckFailed, match="Hint: generic hint"):
        run_check(ex, lambda x: np.exp(x) / 3)


def test_a_mistake_can_be_given_per_case_as_its_wrong_result():
    ex = exercise(cases=[Case((np.ones(2),), expected=np.array([0.5, 0.5]),
                              mistakes=[(np.array([1.0, 1.0]), "you forgot to divide.")])])
    with pytest.raises(CheckFailed, match="Likely cause: you forgot to divide"):
        run_check(ex, lambda x: x)


def test_of_two_mistakes_that_agree_on_a_case_the_one_that_agrees_on_more_cases_is_named():
    cases = [Case((np.array([1.0, 2.0]),)), Case((np.array([-1.0, 4.0]),))]
    ex = exercise(reference=lambda x: x, cases=cases,
                  mistakes=[(lambda x: np.abs(x), "it takes absolute values."),
                            (lambda x: x**2 if x[0] > 0 else -x, "it squares.")])
    # on the first case both mistakes give [1, 4]; only "squares" also gives the learner's [1, 16] on the second
    with pytest.raises(CheckFailed, match="Likely cause: it squares"):
        run_check(ex, lambda x: x**2)


def test_boolean_results_are_compared_and_numbers_are_refused_for_a_mask():
    ex = exercise("causal_mask", ["T"], compare="mask", cases=[Case((3,), expected=np.tril(np.ones((3, 3), dtype=bool)))])
    run_check(ex, lambda T: np.tril(np.ones((T, T), dtype=bool)), hidden=False)
    with pytest.raises(CheckFailed, match="returned numbers of dtype float64 .* expected booleans"):
        run_check(ex, lambda T: np.tril(np.ones((T, T))))
    with pytest.raises(CheckFailed, match=r"off by up to 1 at index \(0, 1\)"):
        run_check(ex, lambda T: np.ones((T, T), dtype=bool))


def test_a_hint_is_added_when_the_learners_function_raises_but_not_for_the_stub():
    ex = exercise(cases=[Case((np.ones((2, 3)),), expected=np.ones(2), hint="the shapes should be (2, 3) and (3,).")])
    with pytest.raises(CheckFailed, match=r"raised ValueError.*Hint: the shapes should be"):
        run_check(ex, lambda x: x @ np.ones(4))
    with pytest.raises(CheckFailed) as info:
        run_check(ex, stub)
    assert "Hint" not in str(info.value)


def test_frames_of_any_checks_module_are_left_out_of_the_learners_traceback():
    def learner(x):
        raise KeyError("mine")

    def runner(fn, x):  # stands for an exercise's `run`, e.g. one that builds a module
        return fn(x)

    runner.__code__ = runner.__code__.replace(co_filename=ch01.__file__)
    ex = exercise(cases=[Case((1,), expected=1.0)], run=runner)
    with pytest.raises(CheckFailed) as info:
        run_check(ex, learner)
    assert "learner" in info.value.learner_traceback and "runner" not in info.value.learner_traceback


def test_a_case_can_require_the_learner_to_raise():
    ex = exercise("top", ["k"], cases=[Case((5,), raises=ValueError, hint="there are only 4 scores.")])
    run_check(ex, lambda k: (_ for _ in ()).throw(ValueError("too many")))
    with pytest.raises(CheckFailed, match=r"`top` on k = 5 returned \[1, 2\] instead of raising ValueError: there are"):
        run_check(ex, lambda k: [1, 2])
    with pytest.raises(CheckFailed, match=r"`top` raised KeyError on k = 5; expected ValueError: there are only"):
        run_check(ex, lambda k: {}[k])


def test_a_prediction_is_one_of_its_choices_and_a_wrong_one_gets_its_own_sentence(capsys):
    ex = exercise("predict_scale", [], compare="choice", options={"choices": ("flatter", "sharper", "same")},
                  cases=[Case((), expected="flatter", about="the weights when the scores shrink",
                              mistakes=[("sharper", "dividing the scores by a larger number shrinks their differences."),
                                        ("same", "the softmax is not unchanged when the scores are scaled.")])])
    run_check(ex, lambda: "flatter")
    assert "passes all 1 checks" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=r"returned 'sharper', which is not what happens\. Likely cause: dividing"):
        run_check(ex, lambda: "sharper")
    with pytest.raises(CheckFailed, match=r"returned 'flat'; answer with one of 'flatter', 'sharper', 'same'\.$"):
        run_check(ex, lambda: "flat")


# ------------------------------------------------------------------ results that are not arrays
WORDS = dict(name="words", params=["text"], compare="list", options={"item": "word", "kind": str},
             cases=[Case(("Attention, please",), expected=["attention", "please"], hint="split on white space, drop commas")])


def test_a_list_check_passes_a_right_function_and_says_so(capsys):
    run_check(exercise(**WORDS), lambda text: text.lower().replace(",", "").split())
    assert "`words` passes all 1 checks" in capsys.readouterr().out


@pytest.mark.parametrize("fn, message", [
    (lambda text: None, r"`words` on text = 'Attention, please' returned None: did you forget to `return`"),
    (lambda text: str.split, "returned a function: did you forget to call it"),
    (lambda text: text.split(), r"returned word 0 as 'Attention,'; expected 'attention'. Hint: split on white space"),
    (lambda text: text.lower().split(), r"Likely cause: it keeps the commas"),
    (lambda text: 1 / 0, r"raised ZeroDivisionError: division by zero .* Hint: split on white space"),
    (lambda text: tuple(text.split()), r"returned a tuple; expected a list of words \(wrap it: list\(...\)\)"),
])
def test_a_list_check_explains_a_wrong_result_in_one_sentence(fn, message):
    ex = exercise(**WORDS, mistakes=[(lambda text: text.lower().split(), "it keeps the commas.")])
    with pytest.raises(CheckFailed, match=message) as info:
        run_check(ex, fn)
    assert "\n" not in str(info.value)


def test_a_loop_is_stopped_and_the_timeout_hint_added():
    def loops(text):
        while True:
            pass

    ex = exercise(**WORDS, time_limit=0.2, timeout_hint=" (or a query without a limit)")
    with pytest.raises(CheckFailed, match=r"ran for more than 0.2 s .* never ends \(or a query without a limit\)"):
        run_check(ex, loops)


@pytest.mark.parametrize("copy_args", [True, False])
def test_the_arguments_are_copied_unless_the_exercise_says_not_to(copy_args):
    original = ["a"]
    seen = []

    def remembers(xs):
        seen.append(xs)
        return list(xs)

    ex = exercise("same", ["xs"], compare="list", cases=[Case((original,), expected=["a"])], copy_args=copy_args)
    run_check(ex, remembers, hidden=False)
    assert (seen[0] is original) is (not copy_args)


# ------------------------------------------------------------------ two processes
def _learner_side(chapter: str, name: str, hidden: bool, fn_name: str):
    """What a grader's learner process does: make the cases, run the learner's function."""
    ex = exercises_of(chapter)[name]
    return run_cases(ex, globals()[fn_name], ex.all_cases(hidden))


@pytest.mark.parametrize("fn_name, verdict", [("good_softmax", None), ("global_sum_softmax", "does not sum to 1"),
                                              ("stub", "not written yet"), ("raises_index_error", "raised IndexError")])
def test_the_learners_code_can_run_in_one_process_and_the_judging_in_another(fn_name, verdict):
    ex = ch01.EXERCISES["softmax"]
    with multiprocessing.get_context("fork").Pool(1) as pool:
        outcomes = pool.apply(_learner_side, ("01-weighted-sums", "softmax", True, fn_name))
    cases = ex.all_cases(hidden=True)
    if verdict is None:
        judge(ex, cases[:len(outcomes)], outcomes)
        return
    with pytest.raises(CheckFailed, match=verdict) as across:
        judge(ex, cases[:len(outcomes)], outcomes)
    with pytest.raises(CheckFailed) as here:
        ch01.check("softmax", globals()[fn_name], hidden=True)
    assert str(across.value) == str(here.value), "the verdict does not depend on where the learner's code ran"
