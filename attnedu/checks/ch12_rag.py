"""Visible checks for chapter 12, *Retrieval-augmented generation*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first small enough
to check by hand, each later one adding one new thing that can go wrong) and either prints one
line of success or raises :class:`~attnedu.checks.core.CheckFailed` explaining the first
problem found. A result that equals one of the typical wrong implementations below is named
(``Likely cause: ...``); otherwise the failing case's hint says what it tests.

The ``*_reference`` functions are the tested versions the chapter switches to after each
exercise, and the source of every expected value; they are the library's:

* :func:`chunk_words_reference`: :func:`attnedu.rag.chunk_words`;
* :func:`format_sources_reference`: :func:`attnedu.rag.format_sources`;
* :func:`cited_sources_reference`: :func:`attnedu.rag.cited_sources`;
* :func:`token_f1_reference`: :func:`attnedu.rag.token_f1`.

Three of the four return text or lists (of chunks, of numbers), not arrays, so their checks
use :func:`check_exact_function`, which compares values exactly and describes the first
difference (a chunk, a line, a number) in words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from ..rag import chunk_words, cited_sources, format_sources, normalize_answer, token_f1
from .core import with_article as _a
from .core import DEFAULT_TIME_LIMIT, Case, CheckFailed, check_each, check_function

__all__ = [
    "chunk_words_reference",
    "format_sources_reference",
    "cited_sources_reference",
    "token_f1_reference",
    "check_exact_function",
    "check_chunk_words",
    "check_format_sources",
    "check_cited_sources",
    "check_token_f1",
]

chunk_words_reference = chunk_words
format_sources_reference = format_sources
cited_sources_reference = cited_sources
token_f1_reference = token_f1


# ------------------------------------------------------------ comparing text and lists exactly
def _short(value, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _compare_text(got, expected: str, lead: str) -> None:
    if not isinstance(got, str):
        extra = " (join the lines with '\\n'.join(...))" if isinstance(got, (list, tuple)) else ""
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a string{extra}.", about_values=False)
    if got == expected:
        return
    got_lines, exp_lines = got.split("\n"), expected.split("\n")
    for i, (g, e) in enumerate(zip(got_lines, exp_lines)):
        if g != e:
            raise CheckFailed(f"{lead} returned line {i + 1} as {_short(g)}; expected {_short(e)}.")
    if len(got_lines) != len(exp_lines):
        raise CheckFailed(f"{lead} returned {len(got_lines)} line(s); expected {len(exp_lines)} "
                          f"({_short(got)} instead of {_short(expected)}).")


def _compare_list(got, expected: list, lead: str, item: str, kind: type) -> None:
    if not isinstance(got, list):
        hint = ""
        if isinstance(got, (tuple, set, dict)) or (hasattr(got, "__iter__") and not isinstance(got, str)):
            hint = " (wrap it: list(...))"
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a list of {item}s{hint}.",
                          about_values=False)
    for i, g in enumerate(got):
        if not isinstance(g, kind) or isinstance(g, bool):
            extra = ""
            if kind is str and isinstance(g, (list, tuple)):
                extra = ": join each chunk's words with ' '.join(...)"
            elif kind is int and isinstance(g, str):
                extra = ": convert it with int(...)"
            raise CheckFailed(f"{lead} returned {_short(g, 40)} as {item} {i}, {_a(type(g).__name__)}; "
                              f"expected {_a(kind.__name__)}{extra}.", about_values=False)
    if got == expected:
        return
    for i, (g, e) in enumerate(zip(got, expected)):
        if g != e:
            raise CheckFailed(f"{lead} returned {item} {i} as {_short(g)}; expected {_short(e)}.")
    more = "more" if len(got) > len(expected) else "fewer"
    raise CheckFailed(f"{lead} returned {len(got)} {item}s, {more} than the {len(expected)} expected "
                      f"({_short(got)} instead of {_short(expected)}).")


def check_exact_function(fn, name: str, cases: Sequence[Case], compare, *, params: Sequence[str] = (),
                         mistakes=(), time_limit: float | None = DEFAULT_TIME_LIMIT, quiet: bool = False) -> None:
    """:func:`~attnedu.checks.core.check_each` for functions that return text or lists:
    ``compare(got, expected, lead)`` raises a :class:`CheckFailed` describing the first
    difference; typical mistakes (``(wrong_fn, explanation)``) are named when the learner's
    result equals theirs."""
    check_each(fn, name, cases, lambda got, case, lead: compare(got, case.expected, lead),
               same=lambda a, b: a == b, params=params, mistakes=mistakes, time_limit=time_limit, quiet=quiet)


# ------------------------------------------------------------ typical mistakes: chunking
def _chunks_by_stride(stride_of, stop_at_end: bool = True):
    def wrong(text, size, overlap=0):
        words = text.split()
        stride = stride_of(size, overlap)
        out = []
        for start in range(0, len(words), max(stride, 1)):
            out.append(" ".join(words[start:start + size]))
            if stop_at_end and start + size >= len(words):
                break
        return out
    return wrong


def _chunks_as_lists(text, size, overlap=0):
    return [c.split() for c in chunk_words(text, size, overlap)]


def _chunks_drop_short_tail(text, size, overlap=0):
    return [c for c in chunk_words(text, size, overlap) if len(c.split()) == size] or []


_CHUNK_MISTAKES = [
    (_chunks_by_stride(lambda s, o: s),
     "the chunks do not overlap: the next chunk starts size - overlap words after the last one, not size."),
    (_chunks_by_stride(lambda s, o: s - o, stop_at_end=False),
     "it keeps making chunks after one has reached the end of the text: those are tails of the last chunk "
     "(stop once start + size >= the number of words)."),
    (_chunks_by_stride(lambda s, o: s + o),
     "the stride is size + overlap, which leaves gaps: consecutive chunks share overlap words, so the stride is "
     "size - overlap."),
    (_chunks_by_stride(lambda s, o: o if o else s),
     "the stride is the overlap: the next chunk starts size - overlap words later."),
    (_chunks_drop_short_tail,
     "the last, shorter chunk is dropped: the end of the text must be in some chunk, even if it has fewer than "
     "size words."),
]


# ------------------------------------------------------------ typical mistakes: sources
def _sources_with(fmt, sep="\n", collapse=True, trailing=""):
    def wrong(passages):
        lines = [fmt(i, " ".join(p.split()) if collapse else p) for i, p in enumerate(passages)]
        return sep.join(lines) + (trailing if lines else "")
    return wrong


_SOURCES_MISTAKES = [
    (_sources_with(lambda i, p: f"[{i}] {p}"),
     "the numbering starts at 0: the first source is [1], as people count; use enumerate(passages, start=1)."),
    (_sources_with(lambda i, p: f"[{i + 1}] {p}", collapse=False),
     "the white space inside a passage is kept: collapse it to single spaces with ' '.join(p.split()), so that "
     "every source is one line."),
    (_sources_with(lambda i, p: f"[{i + 1}] {p.strip()}", collapse=False),
     "a passage's inner newlines are kept: ' '.join(p.split()) removes them and collapses runs of spaces."),
    (_sources_with(lambda i, p: f"[{i + 1}] {p}", trailing="\n"),
     "there is a newline after the last source: join the lines with '\\n'.join(...)."),
    (_sources_with(lambda i, p: f"[{i + 1}]{p}"),
     "there is no space between the number and the passage: '[1] text'."),
    (_sources_with(lambda i, p: f"{i + 1}. {p}"),
     "the numbers are written '1.'; write them in square brackets, '[1]', the way the answer will cite them."),
    (_sources_with(lambda i, p: f"[{i + 1}] {p}", sep="\n\n"),
     "the sources are separated by blank lines: one source per line, joined by a single '\\n'."),
]


# ------------------------------------------------------------ typical mistakes: citations
def _cited_with(pattern: str, unique: bool = True, sort: bool = False):
    def wrong(answer):
        out = []
        for match in re.finditer(pattern, answer):
            for number in match.group(1).split(","):
                n = int(number)
                if not unique or n not in out:
                    out.append(n)
        return sorted(out) if sort else out
    return wrong


_FULL = r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]"
_CITED_MISTAKES = [
    (_cited_with(r"\[(\d+)\]"),
     "a list of numbers in one pair of brackets, [1, 3], is missed: split what is inside the brackets at the commas."),
    (_cited_with(r"\[(\d)\]"),
     "only one-digit numbers are read: use \\d+ for the number, so that [12] is 12."),
    (_cited_with(_FULL, unique=False),
     "a source cited twice is listed twice: keep each number once, at its first appearance."),
    (_cited_with(_FULL, sort=True),
     "the numbers are sorted: keep them in the order the answer first cites them."),
    (lambda answer: [int(d) for d in dict.fromkeys(re.findall(r"\d+", answer))],
     "every number in the answer is taken, even outside brackets: only numbers inside [...] are citations."),
]


# ------------------------------------------------------------ typical mistakes: token F1
def _f1_with(tokens, count=Counter, empty_value=None):
    def wrong(prediction, gold):
        p, g = tokens(prediction), tokens(gold)
        if not p or not g:
            if empty_value is None:
                return float(p == g)
            return empty_value
        common = sum((count(p) & count(g)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(g)
        return 2 * precision * recall / (precision + recall)
    return wrong


def _normalised(text):
    return normalize_answer(text).split()


def _f1_sets(prediction, gold):
    p, g = set(_normalised(prediction)), set(_normalised(gold))
    if not p or not g:
        return float(p == g)
    common = len(p & g)
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def _f1_ratio(which):
    def wrong(prediction, gold):
        p, g = _normalised(prediction), _normalised(gold)
        if not p or not g:
            return float(p == g)
        common = sum((Counter(p) & Counter(g)).values())
        return common / (len(p) if which == "precision" else len(g))
    return wrong


_F1_MISTAKES = [
    (_f1_with(lambda s: s.split()),
     "the texts are not normalised: call normalize_answer first (case, punctuation and articles do not count)."),
    (_f1_sets,
     "the tokens are counted as sets: a token that occurs twice counts twice; use collections.Counter and "
     "intersect with &."),
    (_f1_ratio("precision"), "it returns the precision, common / len(prediction tokens); F1 = 2PR / (P + R)."),
    (_f1_ratio("recall"), "it returns the recall, common / len(gold tokens); F1 = 2PR / (P + R)."),
    (lambda p, g: float(normalize_answer(p) == normalize_answer(g)),
     "it returns exact match (0 or 1); F1 gives partial credit for the tokens the two texts share."),
]


# ------------------------------------------------------------------- checks
def check_chunk_words(chunk_words) -> None:
    """Check ``chunk_words(text, size, overlap=0) -> list of strings``."""
    ref = chunk_words_reference
    ten = "a b c d e f g h i j"
    long = " ".join(f"w{i}" for i in range(23))
    cases = [
        Case((ten, 4, 1), ref(ten, 4, 1), about="the ten words 'a b c d e f g h i j', size = 4, overlap = 1",
             hint="by hand: the stride is 4 - 1 = 3, so chunks start at words 0, 3 and 6: 'a b c d', 'd e f g', "
                  "'g h i j'; the last one reaches the end, so it is the last."),
        Case((ten, 4), ref(ten, 4), about="the same ten words, size = 4, no overlap",
             hint="without overlap the chunks are 'a b c d', 'e f g h' and 'i j': the last one is shorter."),
        Case(("one two three", 5, 2), ref("one two three", 5, 2), about="three words, size = 5, overlap = 2",
             hint="a text shorter than size is one chunk."),
        Case(("", 5, 1), ref("", 5, 1), about="an empty text", hint="no words, no chunks: []."),
        Case((ten, 5, 2), ref(ten, 5, 2), about="ten words, size = 5, overlap = 2",
             hint="chunks start at 0, 3 and 6; the chunk at 6 ('g h i j') reaches the end, so none starts at 9."),
        Case(("  first line\nsecond\tline   and\n\na third  ", 3, 1),
             ref("  first line\nsecond\tline   and\n\na third  ", 3, 1),
             about="a text with newlines, tabs and runs of spaces, size = 3, overlap = 1",
             hint="split the text with text.split() (any white space) and join each chunk's words with ' '."),
        Case((long, 8, 3), ref(long, 8, 3), about="23 words, size = 8, overlap = 3"),
    ]
    check_exact_function(chunk_words, "chunk_words", cases,
                         lambda got, exp, lead: _compare_list(got, exp, lead, "chunk", str),
                         params=["text", "size", "overlap"], mistakes=_CHUNK_MISTAKES)


def check_format_sources(format_sources) -> None:
    """Check ``format_sources(passages) -> str``."""
    ref = format_sources_reference
    two = ["The capital of Veltria is Morsk.", "Morsk lies on the river Sarn."]
    messy = ["  Attention weighs the values\nby how well their keys match.  ", "Two\n\nparagraphs   here."]
    twelve = [f"Passage number {i}." for i in range(1, 13)]
    cases = [
        Case((two,), ref(two), about="two passages ['The capital of Veltria is Morsk.', 'Morsk lies on the river Sarn.']",
             hint="by hand: '[1] The capital of Veltria is Morsk.\\n[2] Morsk lies on the river Sarn.'"),
        Case((["Only one."],), ref(["Only one."]), about="one passage", hint="one line: '[1] Only one.'"),
        Case(([],), ref([]), about="no passages", hint="no sources: the empty string ''."),
        Case((messy,), ref(messy), about="passages with newlines and runs of spaces",
             hint="each source must be one line: strip the passage and collapse its white space with "
                  "' '.join(passage.split())."),
        Case((twelve,), ref(twelve), about="twelve passages", hint="the numbers go on past 9: [10], [11], [12]."),
    ]
    check_exact_function(format_sources, "format_sources", cases,
                         lambda got, exp, lead: _compare_text(got, exp, lead),
                         params=["passages"], mistakes=_SOURCES_MISTAKES)


def check_cited_sources(cited_sources) -> None:
    """Check ``cited_sources(answer) -> list of ints``."""
    ref = cited_sources_reference
    texts = [
        ("The capital of Veltria is Morsk [1].", "by hand: one citation, [1], gives [1]."),
        ("Morsk [2], on the Sarn [1].", "keep the order in which the answer cites the sources: [2, 1]."),
        ("See source [12].", "numbers may have several digits: [12]."),
        ("Both say so [1, 3].", "one pair of brackets may hold several numbers separated by commas: [1, 3]."),
        ("It is Morsk [1][2], as [1] says.", "a source cited twice is listed once, at its first appearance: [1, 2]."),
        ("No sources were cited here.", "an answer without citations gives []."),
        ("Footnote [a], range [1-2], year 2024, and [note].",
         "only brackets that hold numbers (and commas) are citations; 2024 outside brackets is not one."),
    ]
    cases = [Case((t,), ref(t), about=f"answer = {t!r}", hint=h) for t, h in texts]
    check_exact_function(cited_sources, "cited_sources", cases,
                         lambda got, exp, lead: _compare_list(got, exp, lead, "number", int),
                         params=["answer"], mistakes=_CITED_MISTAKES)


def check_token_f1(token_f1) -> None:
    """Check ``token_f1(prediction, gold) -> float``."""
    ref = token_f1_reference
    pairs = [
        ("Morsk", "Morsk", "the same answer: F1 = 1."),
        ("Morsk is capital", "Morsk", "by hand: 1 token in common, P = 1/3, R = 1, F1 = 2PR / (P + R) = 0.5."),
        ("The capital is Morsk.", "Morsk",
         "by hand: normalised, the prediction is 'capital is morsk' (3 tokens) and the reference 'morsk'; "
         "1 token in common, so P = 1/3, R = 1 and F1 = 2PR / (P + R) = 0.5."),
        ("It is not Morsk!", "morsk", "normalise both texts: case and punctuation do not count."),
        ("Morsk, Morsk", "Morsk", "count tokens with multiplicity (collections.Counter): 'morsk morsk' has "
                                  "1 token in common with 'morsk', so P = 1/2 and F1 = 2/3."),
        ("Dravel", "Morsk", "no token in common: F1 = 0."),
        ("", "Morsk", "an empty prediction scores 0 (and must not divide by zero)."),
        ("The", "a", "both texts are empty after normalisation (articles are removed): F1 = 1 by convention."),
        ("the river Sarn near Morsk", "Morsk on the Sarn", "2 common tokens out of 4 and 4: P = R = F1 = 0.5."),
    ]
    cases = [Case((p, g), ref(p, g), about=f"prediction = {p!r}, gold = {g!r}", hint=h) for p, g, h in pairs]
    check_function(token_f1, "token_f1", cases, params=["prediction", "gold"], mistakes=_F1_MISTAKES)
