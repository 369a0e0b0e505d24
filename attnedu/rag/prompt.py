r"""Prompt assembly: the retrieved passages, numbered, in front of the question (chapter 12).

A retrieval-augmented prompt has three parts: an instruction (answer from the sources, cite
them, say when they do not hold the answer), the sources, each behind its number, and the
question::

    Sources:
    [1] The capital of Veltria is Morsk.
    [2] The river of Veltria is the Sarn.

    Question: What is the capital of Veltria?

The numbers are what make an answer checkable: the model is asked to write ``[1]`` after a
claim, and :func:`attnedu.rag.grounding.cited_sources` reads them back, so that each claim can
be compared with the passage it cites.

* :func:`format_sources`: ``[i] passage`` lines, numbered from 1, white space collapsed;
* :func:`build_prompt`: instruction, sources and question as one string (for any model);
* :func:`build_messages`: the same as chat messages (a system and a user message), for
  :meth:`attnedu.pretrained.SmolLM.chat`, which applies the model's chat template;
* :func:`truncate_words`: a passage cut to its first ``n`` words, to bound the prompt: the
  model reads the whole prompt before it writes a token (the *prefill*), and that costs time
  in proportion to its length.
"""

from __future__ import annotations

from typing import Sequence

from attnedu._validate import positive_int

__all__ = ["INSTRUCTION", "NO_CONTEXT_INSTRUCTION", "format_sources", "build_prompt", "build_messages",
           "truncate_words"]

#: The instruction of a retrieval-augmented prompt.
INSTRUCTION = ("Answer the question using only the numbered sources. Cite the source you used with its "
               "number in brackets, like [1]. If the sources do not contain the answer, say you do not know.")

#: The instruction when there are no sources (generation without retrieval).
NO_CONTEXT_INSTRUCTION = "Answer the question briefly."


def _check_passages(passages) -> list[str]:
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise ValueError("passages must be a list of strings, one per source; wrap a single passage: [text]")
    for i, p in enumerate(passages):
        if not isinstance(p, str):
            raise ValueError(f"passages[{i}] must be a string, got {type(p).__name__} "
                             "(pass the passages' text, e.g. [hit.text for hit in hits])")
    return list(passages)


def _check_question(question) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    return " ".join(question.split())


def format_sources(passages: Sequence[str]) -> str:
    """The passages as numbered lines: ``"[1] first\\n[2] second"``.

    Each passage is stripped and its white space (newlines included) collapsed to single
    spaces, so that every source is exactly one line beginning with its number. Numbering
    starts at 1, as people count and as models have seen citations written. No passages: ``""``.

    Args:
        passages: ``n`` strings.

    Returns:
        ``n`` lines joined by ``"\\n"``, no trailing newline.
    """
    passages = _check_passages(passages)
    return "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, start=1))


def build_prompt(question: str, passages: Sequence[str], instruction: str | None = None) -> str:
    """One prompt string: the instruction, a blank line, ``Sources:`` and the numbered passages,
    a blank line, then ``Question: ...`` and ``Answer:``. Without passages the sources part is
    left out and the instruction is :data:`NO_CONTEXT_INSTRUCTION` (unless given)."""
    question, passages = _check_question(question), _check_passages(passages)
    if instruction is None:
        instruction = INSTRUCTION if passages else NO_CONTEXT_INSTRUCTION
    parts = [instruction.strip()]
    if passages:
        parts.append("Sources:\n" + format_sources(passages))
    parts.append(f"Question: {question}\nAnswer:")
    return "\n\n".join(parts)


def build_messages(question: str, passages: Sequence[str], instruction: str | None = None) -> list[dict]:
    """Chat messages for an instruction-tuned model: ``[{"role": "system", "content":
    instruction}, {"role": "user", "content": sources and question}]``. Without passages the
    user message is the question alone, and the instruction :data:`NO_CONTEXT_INSTRUCTION`."""
    question, passages = _check_question(question), _check_passages(passages)
    if instruction is None:
        instruction = INSTRUCTION if passages else NO_CONTEXT_INSTRUCTION
    user = f"Sources:\n{format_sources(passages)}\n\nQuestion: {question}" if passages else question
    return [{"role": "system", "content": instruction.strip()}, {"role": "user", "content": user}]


def truncate_words(text: str, n: int) -> str:
    """The first ``n`` words of ``text`` (white space collapsed), with ``" ..."`` when cut."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    n = positive_int(n, "n")
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")
