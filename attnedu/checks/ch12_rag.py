"""Chapter 12's exercises, *Retrieval-augmented generation*, as records (see :mod:`attnedu.checks`):
``predict_chunking`` is a prediction, revealed after the chunking experiment (``reveal``), and ``cited_passages``
a debug exercise, whose given code (the notebook's metadata) reads the citations from 0."""

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
def _cited_with(answer, *, pattern=r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]", unique=True, sort=False):
    found = [int(n) for match in re.finditer(pattern, answer) for n in match.group(1).split(",")]
    return (sorted if sort else list)(dict.fromkeys(found) if unique else found)
def _passages_with(answer, passages, *, base=1, low=1, high=0):  # passages[n - base] for low <= n <= len + high
    return [passages[n - base] for n in rag.cited_sources(answer) if low <= n <= len(passages) + high]
def _given_cited_passages(answer, passages):  # the notebook's given code, with its bug (the numbers read from 0)
    return _passages_with(answer, passages, base=0, low=0, high=-1)
def _f1_with(prediction, gold, *, normalise=True, counts=True, score="f1"):
    p, g = ((rag.normalize_answer(t) if normalise else t).split() for t in (prediction, gold))
    p, g = (p, g) if counts else (list(set(p)), list(set(g)))
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    return {"precision": common / len(p), "recall": common / len(g)}.get(score, 2 * common / (len(p) + len(g)))

_TEN = "a b c d e f g h i j"
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
_PREDICT_CASES = lambda: [Case(mistakes=[  # noqa: E731
    ("a", "a small chunk does match a question more sharply, but a section is ranked by its best chunk, and the "
     "section that answers already contained the question's rare words: the ranking of sections barely moves."),
    ("c", "chunks do cut some answers in two, but the question's rare words still land in some chunk of the section "
     "that answers, and that chunk brings its section up: the ranking of sections barely moves.")])]
_CITED = [Case((answer,), about=f"answer = {answer!r}", hint=hint) for answer, hint in [
    ("The capital of Veltria is Morsk [1].", "by hand: one citation, [1], gives [1]."),
    ("Morsk [2], on the Sarn [1].", "keep the order in which the answer cites the sources: [2, 1]."),
    ("See source [12].", "numbers may have several digits: [12]."),
    ("Both say so [1, 3].", "one pair of brackets may hold several numbers separated by commas: [1, 3]."),
    ("It is Morsk [1][2], as [1] says.", "a source cited twice is listed once, at its first appearance: [1, 2]."),
    ("No sources were cited here.", "an answer without citations gives []."),
    ("Footnote [a], range [1-2], year 2024, and [note].", "only brackets that hold numbers (and commas) are citations; "
     "2024 outside brackets is not one.")]]
_P3 = ["The capital of Veltria is Morsk.", "The capital of Ostrel is Dravel.", "Morsk lies on the river Sarn."]
_CITED_PASSAGES = [Case(args, about=about, hint=hint) for args, about, hint in [
    (("It is Morsk [1].", _P3), "answer 'It is Morsk [1].' and three passages", "by hand: [1] is the first passage "
     "of the prompt, passages[0], 'The capital of Veltria is Morsk.'"),
    (("Dravel [2], on the Sarn [3].", _P3), "an answer citing [2] and [3] of three passages", "[3] names the last of "
     "three passages, passages[2]; keep the order of the citations."),
    (("Morsk [0], or Morsk [4]; Dravel [2].", _P3), "an answer citing [0], [4] and [2] of three passages", "[0] and "
     "[4] name no passage of three and are skipped: the result is the second passage only."),
    (("No citation here.", _P3), "an answer without citations", "no citation, no passage: []."),
    (("Morsk [1, 2] [2].", _P3[:2]), "an answer citing [1, 2] and [2] of two passages", "each cited passage once, "
     "in the order of first citation.")]]
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
    Exercise("predict_chunking", [], rag.chunks_vs_sections, _PREDICT_CASES, _PREDICT_CASES, compare="choice",
             options={"choices": ("a", "b", "c")}, kind="predict", explain=(
        "Whole sections and 50-word chunks find the judged sections about equally well: BM25 lives on the "
        "question's rare words, those words stay in some chunk of the section that answers, and a section takes the "
        "score of its best chunk. What chunking changes is the prompt: the three best whole sections carry several "
        "times the words of the three best chunks, and the reader reads every one of them.")),
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
    Exercise("cited_passages", ["answer", "passages"], rag.cited_passages, lambda: _CITED_PASSAGES,
             lambda: [Case((" ".join(r.choice(_BITS, size=int(r.integers(0, 9)))), [f"passage {j}." for j in range(n)]))
                      for r in [np.random.default_rng(1205)] for n in (0, 1, 1, 2, 3, 3, 4, 5, 10, 12) for _ in (0, 1)],
             compare="list", options={"item": "passage", "kind": str}, wrong=_passages_with, kind="debug", mistakes=[
        (_given_cited_passages, "the citation numbers are used as 0-based positions: [1] is the first passage, "
         "passages[0], so take passages[n - 1], and keep the numbers from 1 to len(passages)."),
        ({"low": 0}, "[0] gives the last passage, because passages[0 - 1] is passages[-1]: skip the numbers below 1."),
        ({"high": -1}, "the last passage is never returned: [len(passages)] names it, so keep the numbers up to "
         "len(passages), <= rather than <.")]),
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
check, reveal = EXERCISES.check, EXERCISES.reveal
