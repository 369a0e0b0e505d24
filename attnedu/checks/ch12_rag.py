"""Chapter 12's exercises, *Retrieval-augmented generation*, as records (see :mod:`attnedu.checks`)."""

import re
from collections import Counter

import numpy as np

from .. import rag
from . import Case, Exercise, ExerciseSet

def _chunks_with(text, size, overlap=0, *, stride="size - overlap", stop=True, whole_only=False):
    words = text.split()
    step = {"size": size, "size + overlap": size + overlap, "overlap": overlap or size}.get(stride, size - overlap)
    starts = [s for s in range(0, len(words), step) if not stop or s < step or s - step + size < len(words)]
    return [" ".join(words[s:s + size]) for s in starts if not whole_only or s + size <= len(words)]
def _sources_with(passages, *, start=1, form="[{}] {}", collapse=True, strip=False, sep="\n", trailing=""):
    ps = [" ".join(p.split()) if collapse else p.strip() if strip else p for p in passages]
    return sep.join(form.format(i, p) for i, p in enumerate(ps, start)) + (trailing if ps else "")
def _cited_with(answer, *, pattern=r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", unique=True, sort=False):
    found = [int(n) for match in re.finditer(pattern, answer) for n in match.group(1).split(",")]
    return (sorted if sort else list)(dict.fromkeys(found) if unique else found)
def _f1_with(prediction, gold, *, normalise=True, counts=True, score="f1"):
    p, g = ((rag.normalize_answer(t) if normalise else t).split() for t in (prediction, gold))
    p, g = (p, g) if counts else (list(set(p)), list(set(g)))
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    return {"precision": common / len(p), "recall": common / len(g)}.get(score, 2 * common / (len(p) + len(g)))

_TEN, _TWO = "a b c d e f g h i j", ["The capital of Veltria is Morsk.", "Morsk lies on the river Sarn."]
_CHUNKS = [Case(args, about=about, hint=hint) for args, about, hint in [
    ((_TEN, 4, 1), "the ten words 'a b c d e f g h i j', size = 4, overlap = 1", "by hand: the stride is 4 - 1 = 3, so "
     "chunks start at words 0, 3 and 6: 'a b c d', 'd e f g', 'g h i j'; the last one reaches the end, so it is the "
     "last."),
    ((_TEN, 4), "the same ten words, size = 4, no overlap", "without overlap the chunks are 'a b c d', 'e f g h' and "
     "'i j': the last one is shorter."),
    (("one two three", 5, 2), "three words, size = 5, overlap = 2", "a text shorter than size is one chunk."),
    (("", 5, 1), "an empty text", "no words, no chunks: []."),
    ((_TEN, 5, 2), "ten words, size = 5, overlap = 2", "chunks start at 0, 3 and 6; the chunk at 6 ('g h i j') reaches "
     "the end, so none starts at 9."),
    (("  first line\nsecond\tline   and\n\na third  ", 3, 1), "a text with newlines, tabs and runs of spaces, size = "
     "3, overlap = 1", "split the text with text.split() (any white space) and join each chunk's words with ' '."),
    ((" ".join(f"w{i}" for i in range(23)), 8, 3), "23 words, size = 8, overlap = 3", None)]]
_SOURCES = [Case(args, about=about, hint=hint) for args, about, hint in [
    ((_TWO,), f"two passages {_TWO}", "by hand: '[1] The capital of Veltria is Morsk.\\n[2] Morsk lies on the river "
     "Sarn.'"),
    ((["Only one."],), "one passage", "one line: '[1] Only one.'"),
    (([],), "no passages", "no sources: the empty string ''."),
    ((["  Attention weighs the values\nby how well their keys match.  ", "Two\n\nparagraphs   here."],), "passages "
     "with newlines and runs of spaces", "each source must be one line: strip the passage and collapse its white space "
     "with ' '.join(passage.split())."),
    (([f"Passage number {i}." for i in range(1, 13)],), "twelve passages", "the numbers go on past 9: [10], [11], "
     "[12].")]]
_CITED = [Case((answer,), about=f"answer = {answer!r}", hint=hint) for answer, hint in [
    ("The capital of Veltria is Morsk [1].", "by hand: one citation, [1], gives [1]."),
    ("Morsk [2], on the Sarn [1].", "keep the order in which the answer cites the sources: [2, 1]."),
    ("See source [12].", "numbers may have several digits: [12]."),
    ("Both say so [1, 3].", "one pair of brackets may hold several numbers separated by commas: [1, 3]."),
    ("It is Morsk [1][2], as [1] says.", "a source cited twice is listed once, at its first appearance: [1, 2]."),
    ("No sources were cited here.", "an answer without citations gives []."),
    ("Footnote [a], range [1-2], year 2024, and [note].", "only brackets that hold numbers (and commas) are citations; "
     "2024 outside brackets is not one.")]]
_F1 = [Case((p, g), about=f"prediction = {p!r}, gold = {g!r}", hint=hint) for p, g, hint in [
    ("Morsk", "Morsk", "the same answer: F1 = 1."),
    ("Morsk is capital", "Morsk", "by hand: 1 token in common, P = 1/3, R = 1, F1 = 2PR / (P + R) = 0.5."),
    ("The capital is Morsk.", "Morsk", "by hand: normalised, the prediction is 'capital is morsk' (3 tokens) and the "
     "reference 'morsk'; 1 token in common, so P = 1/3, R = 1 and F1 = 2PR / (P + R) = 0.5."),
    ("It is not Morsk!", "morsk", "normalise both texts: case and punctuation do not count."),
    ("Morsk, Morsk", "Morsk", "count tokens with multiplicity (collections.Counter): 'morsk morsk' has 1 token in "
     "common with 'morsk', so P = 1/2 and F1 = 2/3."),
    ("Dravel", "Morsk", "no token in common: F1 = 0."),
    ("", "Morsk", "an empty prediction scores 0 (and must not divide by zero)."),
    ("The", "a", "both texts are empty after normalisation (articles are removed): F1 = 1 by convention."),
    ("the river Sarn near Morsk", "Morsk on the Sarn", "2 common tokens out of 4 and 4: P = R = F1 = 0.5.")]]
_T = [" ".join(f"t{i}" + ("\n" if i % 7 == 3 else "") for i in range(n)) for n in (0, 1, 2, 5, 9, 10, 11, 37, 100)]
_PIECES = ["attention", "  keys\n", "values\t", "the\n\nquery", "  ", "softmax,", "[1]", "é"]
_BITS = "[1]|[2]|[10]|[3, 4]|[ 5 ]|[1,2,3]|[a]|[1-2]|[]|(7)|2024|word|Morsk.|[note]|[0]|[99][98]|[4,]|]|[".split("|")
_WORDS = "Morsk morsk the A an river Sarn, Sarn not capital is ! Morsk. Dravel of".split()
EXERCISES = ExerciseSet(
    Exercise("chunk_words", ["text", "size", "overlap"], rag.chunk_words, lambda: _CHUNKS,
             lambda: [Case((t, n, o)) for t in _T for n in (1, 2, 3, 5, 10, 64) for o in sorted({0, n // 2, n - 1})]
             + [Case(("alpha beta gamma", 2))],  # overlap left at its default
             compare="list", options={"item": "chunk", "kind": str}, wrong=_chunks_with, mistakes=[
        ({"stride": "size"}, "the chunks do not overlap: the next chunk starts size - overlap words after the last "
         "one, not size."),
        ({"stop": False}, "it keeps making chunks after one has reached the end of the text: those are tails of the "
         "last chunk (stop once start + size >= the number of words)."),
        ({"stride": "size + overlap"}, "the stride is size + overlap, which leaves gaps: consecutive chunks share "
         "overlap words, so the stride is size - overlap."),
        ({"stride": "overlap"}, "the stride is the overlap: the next chunk starts size - overlap words later."),
        ({"whole_only": True}, "the last, shorter chunk is dropped: the end of the text must be in some chunk, even if "
         "it has fewer than size words.")]),
    Exercise("format_sources", ["passages"], rag.format_sources, lambda: _SOURCES,
             lambda: [Case(([" ".join(r.choice(_PIECES, size=int(r.integers(1, 8)))) + " end." for _ in range(n)],))
                      for r in [np.random.default_rng(1202)] for n in (0, 1, 2, 3, 9, 10, 11, 25)]
             + [Case((("a tuple", "of passages"),))], compare="text", wrong=_sources_with, mistakes=[
        ({"start": 0}, "the numbering starts at 0: the first source is [1], as people count; use enumerate(passages, "
         "start=1)."),
        ({"collapse": False}, "the white space inside a passage is kept: collapse it to single spaces with "
         "' '.join(p.split()), so that every source is one line."),
        ({"collapse": False, "strip": True}, "a passage's inner newlines are kept: ' '.join(p.split()) removes them "
         "and collapses runs of spaces."),
        ({"trailing": "\n"}, "there is a newline after the last source: join the lines with '\\n'.join(...)."),
        ({"form": "[{}]{}"}, "there is no space between the number and the passage: '[1] text'."),
        ({"form": "{}. {}"}, "the numbers are written '1.'; write them in square brackets, '[1]', the way the answer "
         "will cite them."),
        ({"sep": "\n\n"}, "the sources are separated by blank lines: one source per line, joined by a single '\\n'.")]),
    Exercise("cited_sources", ["answer"], rag.cited_sources, lambda: _CITED,
             lambda: [Case((" ".join(r.choice(_BITS, size=int(r.integers(0, 9)))),))
                      for r in [np.random.default_rng(1203)] for _ in range(30)] + [Case(("",), expected=[])],
             compare="list", options={"item": "number", "kind": int}, wrong=_cited_with, mistakes=[
        ({"pattern": r"\[(\d+)\]"}, "a list of numbers in one pair of brackets, [1, 3], is missed: split what is "
         "inside the brackets at the commas."),
        ({"pattern": r"\[(\d)\]"}, "only one-digit numbers are read: use \\d+ for the number, so that [12] is 12."),
        ({"unique": False}, "a source cited twice is listed twice: keep each number once, at its first appearance."),
        ({"sort": True}, "the numbers are sorted: keep them in the order the answer first cites them."),
        ({"pattern": r"(\d+)"}, "every number in the answer is taken, even outside brackets: only numbers inside [...] "
         "are citations.")]),
    Exercise("token_f1", ["prediction", "gold"], rag.token_f1, lambda: _F1,
             lambda: [Case(tuple(" ".join(r.choice(_WORDS, size=int(r.integers(0, k)))) for k in (7, 5)))
                      for r in [np.random.default_rng(1204)] for _ in range(40)], wrong=_f1_with, mistakes=[
        ({"normalise": False}, "the texts are not normalised: call normalize_answer first (case, punctuation and "
         "articles do not count)."),
        ({"counts": False}, "the tokens are counted as sets: a token that occurs twice counts twice; use "
         "collections.Counter and intersect with &."),
        ({"score": "precision"}, "it returns the precision, common / len(prediction tokens); F1 = 2PR / (P + R)."),
        ({"score": "recall"}, "it returns the recall, common / len(gold tokens); F1 = 2PR / (P + R)."),
        (lambda p, g: float(rag.normalize_answer(p) == rag.normalize_answer(g)), "it returns exact match (0 or 1); F1 "
         "gives partial credit for the tokens the two texts share.")]),
)
check = EXERCISES.check
