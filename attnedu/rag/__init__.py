"""Retrieval-augmented generation (chapter 12): retrieve passages, put them in the prompt with
numbers, generate, and check the answer against the sources it cites.

============== ==========================================================================
module         what is in it
============== ==========================================================================
``chunking``   :func:`chunk_words` (fixed size, overlap), :func:`split_sentences`,
               :func:`chunk_sentences`, :func:`chunk_sections` (:class:`Chunk` keeps its
               section's label), :func:`evaluate_chunking` (what BM25 finds in them)
``prompt``     :func:`format_sources` (``[1] ...``), :func:`build_prompt`,
               :func:`build_messages` (chat), :func:`truncate_words`
``reader``     the invented world (:class:`FactWorld`, :func:`invented_names`), the tiny
               reader that copies an answer from its context (:class:`FactReader`,
               :func:`train_reader`, chapter 6's loop with :func:`reader_loss`,
               :func:`pad_facts`, :func:`reader_accuracy`)
``grounding``  :func:`normalize_answer`, :func:`exact_match`, :func:`token_f1`,
               :func:`substring_match` (and why it misjudges), :func:`cited_sources`,
               :func:`cited_passages`, :func:`supports`, :func:`check_citations`
``ask``        "ask the course": :class:`CourseIndex` (the book's sections in a store,
               hybrid search, :meth:`CourseIndex.ask`) and :class:`Answer` (citations
               mapped to sections, :meth:`Answer.markdown`)
============== ==========================================================================

``reader`` and ``ask`` import torch and the store only when first used, so importing the
package stays cheap.
"""

from .chunking import (STRATEGIES, Chunk, chunk_sections, chunk_sentences, chunk_words, chunks_vs_sections,
                       evaluate_chunking, split_sentences)
from .grounding import (
    Citations,
    check_citations,
    cited_passages,
    cited_sources,
    exact_match,
    lenient_substring_match,
    normalize_answer,
    strip_citations,
    substring_match,
    supports,
    token_f1,
)
from .prompt import INSTRUCTION, NO_CONTEXT_INSTRUCTION, build_messages, build_prompt, format_sources, truncate_words

_LAZY = {
    "reader": ["ATTRIBUTES", "invented_names", "FactWorld", "FactReader", "reader_loss", "train_reader",
               "pad_facts", "reader_accuracy"],
    "ask": ["CourseIndex", "Answer", "section_link", "passage_text", "generate_answer"],
}

__all__ = [
    "STRATEGIES", "Chunk", "chunk_words", "split_sentences", "chunk_sentences", "chunk_sections",
    "evaluate_chunking", "chunks_vs_sections",
    "INSTRUCTION", "NO_CONTEXT_INSTRUCTION", "format_sources", "build_prompt", "build_messages", "truncate_words",
    "normalize_answer", "exact_match", "token_f1", "substring_match", "lenient_substring_match",
    "cited_sources", "cited_passages", "strip_citations", "supports", "Citations", "check_citations",
    *_LAZY["reader"], *_LAZY["ask"],
]


def __getattr__(name):
    for module, names in _LAZY.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'attnedu.rag' has no attribute {name!r}")
