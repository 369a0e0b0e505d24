r"""Ask the course: retrieval-augmented generation over this book's own sections (chapter 12).

The pipeline, one function each:

1. **index** (:class:`CourseIndex`): every section of the book (:func:`attnedu.coursebook.collection`, the frozen text)
   is a chunk in a store (:func:`attnedu.store.open_store`), one document per page, with an
   embedding from an encoder such as :class:`attnedu.pretrained.MiniLM`;
2. **retrieve** (:meth:`CourseIndex.search`): hybrid search, keyword (FTS5's BM25) and vector
   (cosine) fused by reciprocal rank, as in chapter 11;
3. **assemble** (:func:`attnedu.rag.prompt.build_messages`): the retrieved sections, numbered
   ``[1]``, ``[2]`` ..., each cut to its first ``passage_words`` words, then the question;
4. **generate** (:meth:`CourseIndex.ask`): a chat model, such as
   :class:`attnedu.pretrained.SmolLM`, answers;
5. **cite** (:class:`Answer`): the ``[n]`` in the answer are mapped back to the sections they
   number, with their labels, titles and links into the book (:meth:`Answer.markdown`).

For speed, a section's embedding is computed from its title and its first ``embed_words``
words (MiniLM would read at most 256 tokens anyway); keyword search reads all of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from attnedu._validate import positive_int

from attnedu.store import open_store

from .grounding import cited_sources
from .prompt import build_messages, truncate_words

__all__ = ["CourseIndex", "Answer", "section_link", "passage_text", "generate_answer"]

#: The page the links of :meth:`Answer.markdown` are relative to: this chapter.
THIS_PAGE = "notebooks/12-rag/12-rag"


def section_link(page: str, label: str | None = None, from_page: str = THIS_PAGE) -> str:
    """The relative address of a section in the built book, seen from ``from_page``:
    ``section_link("notebooks/06-gpt/06-gpt", "ch06-sampling")`` ->
    ``"../06-gpt/06-gpt.html#ch06-sampling"``; without ``label``, the page itself."""
    for value, name in ((page, "page"), (from_page, "from_page")):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a page path such as 'notebooks/06-gpt/06-gpt', got {value!r}")
    target = os.path.relpath(page + ".html", os.path.dirname(from_page) or ".").replace(os.sep, "/")
    return f"{target}#{label}" if label else target


def passage_text(section, words: int) -> str:
    """What the prompt shows of a section: ``"<title>: <first words of its text>"``."""
    return f"{section.title}: {truncate_words(section.text, words)}" if section.text.strip() else section.title


def generate_answer(lm, messages: list, *, max_new_tokens: int = 48, prefix: str = "") -> str:
    """The chat model's reply to ``messages``; with ``prefix``, the reply is made to begin with it.

    Without a prefix this is ``lm.chat(messages, max_new_tokens=...)``. With one, the prompt is
    the chat template with the assistant's turn opened *and already started* with ``prefix``
    (e.g. ``"According to source ["``), the model continues it, and the reply is ``prefix`` plus
    the continuation. A small model that ignores an instruction to cite can be made to choose a
    source number this way: which number it writes is still its own choice.
    """
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, got {type(prefix).__name__}")
    if not prefix:
        return lm.chat(messages, max_new_tokens=max_new_tokens)
    if not (hasattr(lm, "apply_chat_template") and hasattr(lm, "complete")):
        raise ValueError("a prefix needs an lm with apply_chat_template and complete (e.g. SmolLM.load())")
    prompt = lm.apply_chat_template(messages, add_generation_prompt=True) + prefix
    return (prefix + lm.complete(prompt, max_new_tokens=max_new_tokens)).strip()


@dataclass
class Answer:
    """A generated answer with its sources.

    Attributes:
        question, text: the question and the model's reply.
        sources: the sections the prompt numbered, ``[1]`` first.
        cited: the numbers the reply cites (:func:`attnedu.rag.grounding.cited_sources`).
        page_titles: ``{page: title}``, for the links.
        messages: the chat messages the model was given.
    """

    question: str
    text: str
    sources: list
    cited: list
    page_titles: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)

    @property
    def citations(self) -> list:
        """The sections the reply cites (numbers that name no source are left out)."""
        return [self.sources[n - 1] for n in self.cited if 1 <= n <= len(self.sources)]

    @property
    def invalid_citations(self) -> list:
        """Cited numbers that name no source (the model invented them)."""
        return [n for n in self.cited if not 1 <= n <= len(self.sources)]

    def markdown(self, from_page: str = THIS_PAGE) -> str:
        """The question, the answer, and its numbered sources as links into the book, the cited
        ones in bold."""
        lines = [f"**Q:** {self.question}", "", f"**A:** {self.text}", "", "Sources:"]
        for i, s in enumerate(self.sources, start=1):
            anchor = None if s.id == _page_label(s) else s.id
            where = self.page_titles.get(s.page, s.page)
            link = f"[{s.title}]({section_link(s.page, anchor, from_page)})"
            mark = "**cited**" if i in self.cited else "not cited"
            lines.append(f"- [{i}] {link} in *{where}* (`{s.id}`), {mark}")
        if self.invalid_citations:
            lines.append(f"- cited but not among the sources: {self.invalid_citations}")
        return "\n".join(lines)


def _page_label(section) -> str:
    """The label of a page's title section (``ch06``, ``how-to-use``)."""
    stem = section.page.rsplit("/", 1)[-1]
    return f"ch{stem[:2]}" if stem[:2].isdigit() and stem[2:3] == "-" else stem


class CourseIndex:
    """The book's sections in a store, searchable by keyword, vector and both.

    Args:
        sections: :class:`attnedu.coursebook.Section` s (anything with ``id``, ``page``,
            ``title``, ``text``), e.g. ``coursebook.collection()``.
        encoder: has ``encode(list of n texts) -> (n, dim)`` unit vectors (MiniLM).
        embed_words: each section is embedded from its title and first ``embed_words`` words.
        url: the store (default: a new in-memory SQLite store).
    """

    def __init__(self, sections: Sequence, encoder, *, embed_words: int = 64, url: str = "sqlite://"):
        sections = list(sections)
        if not sections:
            raise ValueError("sections is empty: pass coursebook.collection() (or some of them)")
        for s in sections:
            if not all(hasattr(s, a) for a in ("id", "page", "title", "text")):
                raise ValueError(f"each section needs id, page, title and text, got {type(s).__name__}")
        if not hasattr(encoder, "encode"):
            raise ValueError(f"encoder must have an encode(texts) method (e.g. MiniLM.load()), "
                             f"got {type(encoder).__name__}")
        positive_int(embed_words, "embed_words")
        self.encoder, self.sections = encoder, sections
        vectors = np.asarray(encoder.encode([f"{s.title}\n\n{truncate_words(s.text, embed_words)}"
                                             for s in sections]), dtype=np.float32)  # (n, dim)
        if vectors.ndim != 2 or vectors.shape[0] != len(sections):
            raise ValueError(f"encoder.encode returned shape {vectors.shape}; expected ({len(sections)}, dim)")
        self.store = open_store(url, dim=vectors.shape[1])
        self.page_titles: dict[str, str] = {}
        self._section_of: dict[tuple[int, int], object] = {}
        pages: dict[str, list[int]] = {}
        for i, s in enumerate(sections):
            pages.setdefault(s.page, []).append(i)
        for page, rows in pages.items():
            title = next((sections[i].title for i in rows if sections[i].id == _page_label(sections[i])),
                         sections[rows[0]].title)
            self.page_titles[page] = title
            doc = self.store.add_document(title, [f"{sections[i].title}\n\n{sections[i].text}" for i in rows],
                                          vectors[rows], metadata={"page": page})
            for position, i in enumerate(rows):
                self._section_of[doc, position] = sections[i]

    def __len__(self) -> int:
        return len(self.sections)

    def search(self, question: str, k: int = 3, *, where: dict | None = None) -> list:
        """The ``k`` best sections for ``question`` by hybrid search, best first, as
        ``(section, score)`` pairs (the score is the RRF sum)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"question must be a non-empty string, got {question!r}")
        embedding = np.asarray(self.encoder.encode([question]), dtype=np.float32)[0]  # (dim,)
        hits = self.store.hybrid_search(question, embedding, k, where=where)
        return [(self._section_of[h.document_id, h.position], h.score) for h in hits]

    def ask(self, question: str, lm, *, k: int = 3, passage_words: int = 80, max_new_tokens: int = 48,
            prefix: str = "", where: dict | None = None) -> Answer:
        """Retrieve ``k`` sections, number them in a prompt, let ``lm`` answer, read its citations.

        ``lm`` has ``chat(messages, max_new_tokens=...) -> str`` (:class:`attnedu.pretrained.SmolLM`);
        ``prefix`` starts the reply (:func:`generate_answer`).
        """
        if not hasattr(lm, "chat"):
            raise ValueError(f"lm must have a chat(messages, max_new_tokens=...) method (e.g. SmolLM.load()), "
                             f"got {type(lm).__name__}")
        positive_int(passage_words, "passage_words")
        sources = [s for s, _ in self.search(question, k, where=where)]
        messages = build_messages(question, [passage_text(s, passage_words) for s in sources])
        text = generate_answer(lm, messages, max_new_tokens=max_new_tokens, prefix=prefix)
        return Answer(question, text, sources, cited_sources(text), dict(self.page_titles), messages)

    def close(self) -> None:
        self.store.close()
