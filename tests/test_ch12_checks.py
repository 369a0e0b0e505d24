"""Chapter 12's checks: the references pass, typical mistakes get the sentence meant for them,
garbage never crashes a check, and the references are the library's (attnedu.rag). The prediction
about chunking is decided by a small version of the chapter's experiment; the debug exercise's given
code (the notebook's metadata) fails naming its bug, and the notebook's fix passes."""

from __future__ import annotations

import importlib
import re
from collections import Counter
from functools import partial

import pytest

from conftest import REPO, assert_one_sentence, garbage, load_notebook, returns_none  # learners' typical garbage
from attnedu import coursebook, rag
from attnedu.checks import CheckFailed
from attnedu.checks import ch12_rag as ch12


# ------------------------------------------------------------------ the references pass
def test_the_library_passes_every_chapter_12_check_visible_and_hidden(capsys):
    for name, ex in ch12.EXERCISES.items():
        ch12.check(name, ex.reference)
        ch12.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 4 and "Your prediction, 'b', is recorded" in out
    for name, n in [("chunk_words", 7), ("cited_sources", 7), ("cited_passages", 5), ("token_f1", 9)]:
        assert f"`{name}` passes all {n} checks" in out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def chunk_words(text, size, overlap=0):
        words = text.split()
        chunks = []
        for start in range(0, len(words), size - overlap):
            chunks.append(" ".join(words[start:start + size]))
            if start + size >= len(words):
                break
        return chunks

    def cited_sources(answer):
        cited = []
        for match in re.finditer(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", answer):
            for number in match.group(1).split(","):
                if int(number) not in cited:
                    cited.append(int(number))
        return cited

    def token_f1(prediction, gold):
        pred, ref = rag.normalize_answer(prediction).split(), rag.normalize_answer(gold).split()
        if not pred or not ref:
            return float(pred == ref)
        common = sum((Counter(pred) & Counter(ref)).values())
        if common == 0:
            return 0.0
        p, r = common / len(pred), common / len(ref)
        return 2 * p * r / (p + r)

    partial(ch12.check, "chunk_words")(chunk_words)
    partial(ch12.check, "cited_sources")(cited_sources)
    partial(ch12.check, "token_f1")(token_f1)
    assert capsys.readouterr().out.count("passes all") == 3


def test_the_references_are_the_librarys():
    for name in ("chunk_words", "cited_sources", "cited_passages", "token_f1"):
        assert ch12.EXERCISES[name].reference is getattr(rag, name)
        module, _, attr = ch12.EXERCISES[name].library[0].rpartition(".")
        assert getattr(importlib.import_module(module), attr) is getattr(rag, name)  # what a solution must not import


@pytest.mark.parametrize("name", ["chunk_words", "cited_sources", "cited_passages", "token_f1"])
def test_every_typical_mistake_gets_its_own_sentence(name):
    ex = ch12.EXERCISES[name]
    for setting, sentence in ex.mistakes:
        fn = partial(ex.wrong, **setting) if isinstance(setting, dict) else setting
        with pytest.raises(CheckFailed) as info:
            ch12.check(name, fn)
        assert str(info.value).endswith("Likely cause: " + sentence), (setting, str(info.value))


# ------------------------------------------------------------------ chunking mistakes
def chunks_without_overlap(text, size, overlap=0):
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def chunks_with_tails(text, size, overlap=0):
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size - overlap)]


def chunks_with_gaps(text, size, overlap=0):
    words = text.split()
    out = []
    for i in range(0, len(words), size + overlap):
        out.append(" ".join(words[i:i + size]))
        if i + size >= len(words):
            break
    return out


def chunks_without_the_short_tail(text, size, overlap=0):
    return [c for c in rag.chunk_words(text, size, overlap) if len(c.split()) == size]


def chunks_as_word_lists(text, size, overlap=0):
    return [c.split() for c in rag.chunk_words(text, size, overlap)]


def chunks_split_at_spaces(text, size, overlap=0):
    words = text.split(" ")
    return rag.chunk_words(" ".join(w for w in words), size, overlap) if "\n" not in text else [text]


@pytest.mark.parametrize(
    "fn, message",
    [
        (chunks_without_overlap, r"returned chunk 1 as 'e f g h'; expected 'd e f g'\. Likely cause: the chunks do not overlap"),
        (chunks_with_tails, r"returned 4 chunks, more than the 3 expected.*Likely cause: it keeps making chunks"),
        (chunks_with_gaps, r"Likely cause: the stride is size \+ overlap"),
        (chunks_without_the_short_tail, r"fewer than the 3 expected.*Likely cause: the last, shorter chunk is dropped"),
        (chunks_as_word_lists, r"returned \['a', 'b', 'c', 'd'\] as chunk 0, a list; expected a str: join"),
        (chunks_split_at_spaces, r"newlines, tabs.*Hint: split the text with text\.split\(\)"),
    ],
)
def test_chunk_words_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        partial(ch12.check, "chunk_words")(fn)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ citation mistakes
def _cited(pattern, unique=True, sort=False):
    def fn(answer):
        out = []
        for m in re.finditer(pattern, answer):
            for n in m.group(1).split(","):
                if not unique or int(n) not in out:
                    out.append(int(n))
        return sorted(out) if sort else out
    return fn


@pytest.mark.parametrize(
    "fn, message",
    [
        (_cited(r"\[(\d)\]"), r"\[12\].*Likely cause: only one-digit numbers are read"),
        (_cited(r"\[(\d+)\]"), r"\[1, 3\].*Likely cause: a list of numbers in one pair of brackets"),
        (_cited(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", unique=False), r"Likely cause: a source cited twice is listed twice"),
        (_cited(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", sort=True), r"Likely cause: the numbers are sorted"),
        (lambda a: [int(d) for d in dict.fromkeys(re.findall(r"\d+", a))],
         r"Likely cause: every number in the answer is taken"),
        (lambda a: re.findall(r"\[(\d+)\]", a), r"returned '1' as number 0, a str; expected an int: convert it"),
        (lambda a: set(rag.cited_sources(a)), r"returned a set; expected a list of numbers \(wrap it"),
    ],
)
def test_cited_sources_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        partial(ch12.check, "cited_sources")(fn)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ token F1 mistakes
def _f1(tokens, counter=Counter):
    def fn(prediction, gold):
        p, g = tokens(prediction), tokens(gold)
        if not p or not g:
            return float(p == g)
        common = sum((counter(p) & counter(g)).values())
        if not common:
            return 0.0
        pr, rc = common / len(p), common / len(g)
        return 2 * pr * rc / (pr + rc)
    return fn


def f1_sets(prediction, gold):
    p, g = set(rag.normalize_answer(prediction).split()), set(rag.normalize_answer(gold).split())
    if not p or not g:
        return float(p == g)
    c = len(p & g)
    return 2 * c / (len(p) + len(g)) if c else 0.0


def f1_divides_by_zero(prediction, gold):
    p, g = rag.normalize_answer(prediction).split(), rag.normalize_answer(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    pr, rc = common / len(p), common / len(g)
    return 2 * pr * rc / (pr + rc)


@pytest.mark.parametrize(
    "fn, message",
    [
        (_f1(lambda s: s.split()), r"got 0, expected 0\.5\. Likely cause: the texts are not normalised"),
        (f1_sets, r"'Morsk, Morsk'.*Likely cause: the tokens are counted as sets"),
        (lambda p, g: rag.token_f1(p, g) if not rag.normalize_answer(p) or not rag.normalize_answer(g) else
         sum((Counter(rag.normalize_answer(p).split()) & Counter(rag.normalize_answer(g).split())).values())
         / len(rag.normalize_answer(p).split()), r"Likely cause: it returns the precision"),
        (lambda p, g: float(rag.normalize_answer(p) == rag.normalize_answer(g)), r"Likely cause: it returns exact match"),
        (f1_divides_by_zero, r"raised ZeroDivisionError.*Hint: no token in common|raised ZeroDivisionError"),
    ],
)
def test_token_f1_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        partial(ch12.check, "token_f1")(fn)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "check, text_message",
    [
        (partial(ch12.check, "chunk_words"), r"returned a str; expected a list of chunks"),
        (partial(ch12.check, "predict_chunking"), r"returned '42': answer with one of 'a', 'b', 'c'"),
        (partial(ch12.check, "cited_passages"), r"returned a str; expected a list of passages"),
        (partial(ch12.check, "cited_sources"), r"returned a str; expected a list of numbers"),
        (partial(ch12.check, "token_f1"), "not an array of numbers"),
    ],
)
@pytest.mark.parametrize("fn, message", garbage())
def test_garbage_gets_a_sentence_not_a_crash(check, text_message, fn, message):
    assert_one_sentence(check, fn, message or text_message)


@pytest.mark.parametrize("name", ["chunk_words", "cited_sources", "cited_passages"])
def test_returning_a_function_is_named(name):
    with pytest.raises(CheckFailed, match="returned a function"):
        ch12.check(name, lambda *args, **kwargs: returns_none)


# ------------------------------------------------------------------ the notebook's new exercises, from its cells
NOTEBOOK = REPO / "notebooks" / "12-rag" / "12-rag.ipynb"


def solution_cell(grade_id: str) -> dict:
    [cell] = [c for c in load_notebook(NOTEBOOK)["cells"]
              if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return cell


def run_cell(source: str, name: str):
    scope: dict = {}
    exec(compile(source, f"<{name}>", "exec"), scope)
    return scope[name]


def stub(*args, **kwargs):
    raise NotImplementedError()


# ------------------------------------------------------------------ exercise 2: a prediction
def test_the_prediction_is_decided_by_a_small_version_of_the_chapters_experiment():
    sections = [s for s in coursebook.collection() if s.text.strip()]
    qrels = coursebook.qrels()
    pages = {s.page for s in sections if any(s.id in judged for judged in qrels.values())}
    sections = [s for s in sections if s.page in pages]
    whole, cut = (rag.evaluate_chunking(rag.chunk_sections(sections, strategy, size=50), coursebook.questions(), qrels)
                  for strategy in ("section", "words"))
    assert abs(cut["ndcg@5"] - whole["ndcg@5"]) < 0.1 and rag.chunks_vs_sections() == "b"
    assert whole["top-3 words"] > 3 * cut["top-3 words"], "what chunking does change: the prompt"


def test_the_notebooks_prediction_is_recorded_then_graded(capsys):
    predict = run_cell("".join(solution_cell("predict-chunking")["source"]), "predict_chunking")
    ch12.check("predict_chunking", predict)
    assert "Your prediction, 'b', is recorded" in capsys.readouterr().out
    ch12.check("predict_chunking", predict, hidden=True)


@pytest.mark.parametrize("answer, message", [
    ("a", r"returned 'a', which is not what happens\. Likely cause: a small chunk does match a question more sharply"),
    ("c", r"returned 'c', which is not what happens\. Likely cause: chunks do cut some answers in two"),
])
def test_a_wrong_prediction_is_recorded_then_graded_wrong_with_its_reason(answer, message, capsys):
    ch12.check("predict_chunking", lambda: answer)
    assert "is recorded" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match=message):
        ch12.check("predict_chunking", lambda: answer, hidden=True)


def test_the_stub_prediction_is_not_written_yet_and_the_reveal_never_raises(capsys):
    with pytest.raises(CheckFailed, match="is not written yet"):
        ch12.check("predict_chunking", stub)
    ch12.reveal("predict_chunking", stub)
    ch12.reveal("predict_chunking", lambda: "b")
    out = capsys.readouterr().out
    assert "The answer: 'b' (you have not answered yet)" in out and "You predicted 'b'; the answer: 'b' (right)" in out


# ------------------------------------------------------------------ exercise 4: debug
def _with_region(source: str, region: str) -> str:
    """The solution cell with its BEGIN/END SOLUTION region replaced by ``region`` (what the release does)."""
    lines = source.splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if "### BEGIN SOLUTION" in ln)
    end = next(i for i, ln in enumerate(lines) if "### END SOLUTION" in ln)
    return "".join(lines[:start]) + region.rstrip("\n") + "\n" + "".join(lines[end + 1:])


def test_the_given_code_fails_naming_its_bug_and_the_notebooks_fix_passes(capsys):
    cell = solution_cell("cited-passages")
    meta, source = cell["metadata"]["attnedu"], "".join(cell["source"])
    assert meta["kind"] == "debug" == ch12.EXERCISES["cited_passages"].kind
    buggy = run_cell(_with_region(source, meta["given"]), "cited_passages")
    given_sentence = ch12.EXERCISES["cited_passages"].mistakes[0][1]
    with pytest.raises(CheckFailed) as info:
        ch12.check("cited_passages", buggy)
    assert str(info.value).endswith("Likely cause: " + given_sentence)
    assert "returned passage 0 as 'The capital of Ostrel is Dravel.'" in str(info.value)  # the symptom: [1] -> second
    fixed = run_cell(source, "cited_passages")
    ch12.check("cited_passages", fixed)
    ch12.check("cited_passages", fixed, hidden=True)
    assert "`cited_passages` passes all 5 checks" in capsys.readouterr().out
    with pytest.raises(CheckFailed, match="is not written yet"):
        ch12.check("cited_passages", run_cell(_with_region(source, "    raise NotImplementedError()"), "cited_passages"))


def _passages(index, keep):
    def fn(answer, passages):
        return [passages[index(n)] for n in rag.cited_sources(answer) if keep(n, len(passages))]
    return fn


@pytest.mark.parametrize("fn, message", [
    (_passages(lambda n: n, lambda n, size: n < size), r"Likely cause: the citation numbers are used as 0-based"),
    (_passages(lambda n: n - 1, lambda n, size: n <= size), r"\[0\].*Likely cause: \[0\] gives the last passage"),
    (_passages(lambda n: n - 1, lambda n, size: 1 <= n < size), r"Likely cause: the last passage is never returned"),
    (_passages(lambda n: n, lambda n, size: 1 <= n < size), r"Likely cause: the citation numbers are used as 0-based"),
    (_passages(lambda n: n - 1, lambda n, size: True), r"raised IndexError.*\[4\].*Hint: \[0\] and \[4\] name no"),
    (lambda a, ps: rag.cited_sources(a), r"returned 1 as passage 0, an int; expected a str"),
])
def test_cited_passages_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        ch12.check("cited_passages", fn)
    assert "\n" not in str(info.value)
