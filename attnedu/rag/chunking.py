r"""Chunking: cutting documents into the passages that retrieval returns (chapter 12).

A retriever returns whole chunks, and a language model reads only what fits its prompt, so the
size of a chunk sets a trade-off: a small chunk is precise (its words are all about one thing)
but may cut an answer in two; a large one keeps the answer whole but dilutes it with other text,
and an encoder that reads at most 256 tokens (MiniLM) sees only its beginning. Three ways to cut:

* :func:`chunk_words`: fixed size, ``size`` words per chunk, consecutive chunks sharing
  ``overlap`` words, so that a sentence cut at one boundary is whole in the next chunk;
* :func:`chunk_sentences`: whole sentences (:func:`split_sentences`) packed up to ``max_words``;
* by section: the book's own sections (:func:`attnedu.coursebook.collection`, the frozen text), one chunk each.

:func:`chunk_sections` applies any of the three to a list of sections and keeps, for every
chunk, the label of the section it came from, so that a retrieved chunk can be judged with
chapter 11's relevance judgments and cited by its section; :func:`evaluate_chunking` measures
what BM25 finds in the chunks, and :func:`chunks_vs_sections` decides the chapter's prediction.

With ``n`` words, size ``s`` and overlap ``o`` (stride ``s - o``), :func:`chunk_words` makes
:math:`\max(1, \lceil (n - o) / (s - o) \rceil)` chunks; chunk ``i`` starts at word
:math:`i (s - o)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from attnedu._validate import non_negative_int, positive_int

__all__ = ["Chunk", "chunk_words", "split_sentences", "chunk_sentences", "chunk_sections", "STRATEGIES",
           "evaluate_chunking", "chunks_vs_sections"]

#: The strategies :func:`chunk_sections` knows.
STRATEGIES = ("section", "words", "sentences")


def _check_text(text, name: str = "text") -> str:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    return text


def chunk_words(text: str, size: int, overlap: int = 0) -> list[str]:
    """Cut ``text`` into chunks of ``size`` words; consecutive chunks share ``overlap`` words.

    Words are what ``str.split()`` returns; a chunk is its words joined by single spaces. Chunk
    ``i`` holds words ``[i * (size - overlap), i * (size - overlap) + size)``; the last chunk is
    the first that reaches the end of the text (it may be shorter than ``size``), so no chunk
    lies entirely inside the one before it. A text without words gives ``[]``.

    Args:
        text: the document.
        size: words per chunk, ``>= 1``.
        overlap: words shared by consecutive chunks, ``0 <= overlap < size``.

    Returns:
        A list of ``max(1, ceil((n - overlap) / (size - overlap)))`` strings for ``n >= 1`` words.
    """
    _check_text(text)
    positive_int(size, "size")
    non_negative_int(overlap, "overlap")
    if overlap >= size:
        raise ValueError(f"overlap must be smaller than size (else the chunks never move on), "
                         f"got size={size}, overlap={overlap}")
    words = text.split()
    step = size - overlap  # the stride: where the next chunk starts
    chunks = []
    for start in range(0, len(words), step):
        chunks.append(" ".join(words[start:start + size]))
        if start + size >= len(words):  # this chunk reached the end
            break
    return chunks


# A sentence ends at . ! or ? (maybe followed by a closing quote or bracket), then white space,
# then something that starts a sentence. "e.g. the" and "3.14" are not cut.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[*`$]?[A-Z0-9])")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "cf.", "vs.", "al.", "Fig.", "Eq.")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences: after ``.``, ``!`` or ``?`` followed by white space and a
    capital letter or a digit; not after a few abbreviations (``e.g.``, ``i.e.``, ``et al.``).
    Blank lines (paragraph breaks) always end a sentence. White space inside a sentence is
    collapsed to single spaces."""
    _check_text(text)
    out = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        pieces, current = [], ""
        last = 0
        for match in _SENTENCE_END.finditer(paragraph):
            candidate = paragraph[last:match.start()]
            current = f"{current} {candidate}".strip() if current else candidate
            if current.endswith(_ABBREVIATIONS):
                continue  # "e.g. The" does not end a sentence
            pieces.append(current)
            current = ""
            last = match.end()
            continue
        rest = paragraph[last:]
        current = f"{current} {rest}".strip() if current else rest
        if current:
            pieces.append(current)
        out += pieces
    return out


def chunk_sentences(text: str, max_words: int, overlap: int = 0) -> list[str]:
    """Pack whole sentences into chunks of at most ``max_words`` words.

    Sentences (:func:`split_sentences`) are added to a chunk while it stays within
    ``max_words``; a sentence longer than ``max_words`` becomes a chunk of its own (a sentence
    is never cut). With ``overlap = m``, each new chunk starts with the last ``m`` sentences of
    the one before (fewer if they would fill it), so context carries across the boundary.

    Returns:
        A list of strings, each one or more whole sentences joined by spaces.
    """
    _check_text(text)
    positive_int(max_words, "max_words")
    non_negative_int(overlap, "overlap")
    sentences = split_sentences(text)
    length = [len(s.split()) for s in sentences]
    chunks: list[str] = []
    i = 0
    while i < len(sentences):
        j, words = i, 0
        while j < len(sentences) and (j == i or words + length[j] <= max_words):
            words += length[j]
            j += 1
        chunks.append(" ".join(sentences[i:j]))
        if j >= len(sentences):
            break
        back = min(overlap, j - i - 1)  # always move on by at least one sentence
        while back > 0 and sum(length[j - back:j]) + length[j] > max_words:
            back -= 1  # an overlap that would leave no room for a new sentence is shortened
        i = j - back
    return chunks


@dataclass(frozen=True)
class Chunk:
    """One passage cut from a section of the book.

    ``section`` is the label of the section it came from (the id that chapter 11's relevance
    judgments use), ``page`` and ``title`` the section's, ``position`` its place among the
    chunks of that section (from 0), ``text`` the chunk itself.
    """

    section: str
    page: str
    title: str
    position: int
    text: str

    @property
    def id(self) -> str:
        """A unique id: ``"<section>#<position>"``."""
        return f"{self.section}#{self.position}"

    def __str__(self) -> str:
        return f"{self.title}\n\n{self.text}"


def chunk_sections(sections: Sequence, strategy: str = "section", *, size: int = 100,
                   overlap: int = 0) -> list[Chunk]:
    """Cut sections of the book (:class:`attnedu.coursebook.Section`, or anything with ``id``,
    ``page``, ``title`` and ``text``) into :class:`Chunk` s, in order.

    Args:
        sections: the sections.
        strategy: ``"section"`` (one chunk per section, ``size`` and ``overlap`` ignored),
            ``"words"`` (:func:`chunk_words` with ``size`` and ``overlap`` in words) or
            ``"sentences"`` (:func:`chunk_sentences` with ``max_words=size`` and ``overlap`` in
            sentences).

    Returns:
        The chunks of every section; a section without text gives none.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
    out = []
    for s in sections:
        if not all(hasattr(s, a) for a in ("id", "page", "title", "text")):
            raise ValueError(f"each section needs id, page, title and text (a coursebook.Section), "
                             f"got {type(s).__name__}")
        if strategy == "section":
            pieces = [" ".join(s.text.split())] if s.text.strip() else []
        elif strategy == "words":
            pieces = chunk_words(s.text, size, overlap)
        else:
            pieces = chunk_sentences(s.text, size, overlap)
        out += [Chunk(s.id, s.page, s.title, i, p) for i, p in enumerate(pieces)]
    return out


def evaluate_chunking(chunks: Sequence[Chunk], questions: Sequence[dict], qrels: dict, *, with_title: bool = True,
                      k: int = 5, depth: int = 50) -> dict:
    """What BM25 finds when it searches chunks instead of sections (chapter 12): each question's
    sections ranked by their best chunk among the ``depth`` best, measured against chapter 11's
    judgments with :func:`attnedu.retrieval.evaluate` at ``k``.

    Args:
        chunks: from :func:`chunk_sections`. questions: ``[{"id", "question", ...}]`` and
            qrels: ``{question id: {section label: grade}}`` (:mod:`attnedu.coursebook`'s).
        with_title: index each chunk with its section's title in front (``str(chunk)``) or its
            text alone.

    Returns:
        ``{"recall@k", "mrr", "ndcg@k"}``: the means over the questions, and ``"top-3 words"``:
        the mean number of words in the three best chunks, what a prompt with three sources carries.
    """
    from attnedu.retrieval import BM25, evaluate  # chapter 11's

    if not chunks:
        raise ValueError("chunks is empty: nothing to search")
    bm25 = BM25([str(c) if with_title else c.text for c in chunks])
    run, words = {}, []
    for q in questions:
        scores, ids = bm25.search(q["question"], k=depth)
        ranking: dict = {}
        for score, i in zip(scores, ids):
            ranking.setdefault(chunks[i].section, float(score))  # a section takes its best chunk's score
        run[q["id"]] = ranking
        words.append(sum(len(chunks[i].text.split()) for i in ids[:3]))
    return {**evaluate(qrels, run, k), "top-3 words": float(sum(words) / len(words))}


def chunks_vs_sections(size: int = 50) -> str:
    """Chapter 12's prediction about chunking, decided by a small version of its experiment: BM25
    over the sections of the pages the course's questions are about, whole or cut into ``size``-word
    chunks (each with its section's title in front), measured by nDCG@5. ``"a"`` when the chunks
    raise it by 0.1 or more, ``"c"`` when they lower it by 0.1 or more, ``"b"`` otherwise (on this
    course: ``"b"``, they move it by about a hundredth)."""
    from attnedu import coursebook

    questions, qrels = coursebook.questions(), coursebook.qrels()
    pages = {s.page for s in coursebook.collection() if any(s.id in judged for judged in qrels.values())}
    sections = [s for s in coursebook.collection() if s.page in pages and s.text.strip()]
    whole, cut = (evaluate_chunking(chunk_sections(sections, strategy, size=size), questions, qrels)["ndcg@5"]
                  for strategy in ("section", "words"))
    return "a" if cut - whole >= 0.1 else "c" if whole - cut >= 0.1 else "b"
