r"""Grounding: is an answer right, and is it supported by the source it cites? (chapter 12)

Judging answers by string matching:

* :func:`normalize_answer`: SQuAD's normalisation: lower case, punctuation removed, the articles
  *a*, *an*, *the* removed, white space collapsed (Rajpurkar et al., 2016);
* :func:`exact_match`: the normalised strings are equal (1.0) or not (0.0);
* :func:`token_f1`: the harmonic mean of precision and recall over the normalised tokens, counted
  as a multiset (a token present twice in both counts twice):

  .. math::
      P = \frac{|p \cap g|}{|p|}, \quad R = \frac{|p \cap g|}{|g|}, \quad F_1 = \frac{2PR}{P + R};

* :func:`substring_match`: the naive judgment, "the reference answer occurs in the prediction",
  and :func:`lenient_substring_match`, either one inside the other. Both misjudge: ``"not
  Morsk"`` contains ``"Morsk"``; ``"Morskavel"`` does too; and with the lenient one an empty or
  truncated prediction is "inside" every reference.

Judging citations:

* :func:`cited_sources`: the source numbers an answer cites, ``[1]``, ``[2, 3]``, ``[1][4]``;
* :func:`cited_passages`: the passages those numbers name (``[1]`` is the first passage);
* :func:`supports`: whether a passage contains a claim (its normalised tokens, contiguously);
* :func:`check_citations`: for one answer, what it cites, whether those numbers exist, and
  whether a cited passage supports the claim.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

__all__ = ["normalize_answer", "exact_match", "token_f1", "substring_match", "lenient_substring_match",
           "cited_sources", "cited_passages", "strip_citations", "supports", "Citations", "check_citations"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_CITATION = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")  # [1], [2, 3], [ 4 ]


def _check_str(value, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    return value


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, remove punctuation, remove the articles a/an/the,
    collapse white space. ``"The  Capital, Morsk!"`` -> ``"capital morsk"``."""
    text = _check_str(text, "text").lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference answer, else 0.0."""
    return float(normalize_answer(_check_str(prediction, "prediction")) == normalize_answer(_check_str(gold, "gold")))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 of the normalised prediction against the normalised reference.

    Tokens are counted as a multiset (``collections.Counter``). When either side has no token
    left after normalisation, F1 is 1.0 if both are empty and 0.0 otherwise; no common token
    gives 0.0.
    """
    pred = normalize_answer(_check_str(prediction, "prediction")).split()
    ref = normalize_answer(_check_str(gold, "gold")).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())  # tokens in both, with multiplicity
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def substring_match(prediction: str, gold: str) -> bool:
    """The naive judgment: the reference answer occurs in the prediction (case ignored)."""
    return _check_str(gold, "gold").strip().lower() in _check_str(prediction, "prediction").lower()


def lenient_substring_match(prediction: str, gold: str) -> bool:
    """Either string inside the other (case ignored): lenient with a truncated answer, and
    therefore also with an empty one, which is inside every string."""
    p, g = _check_str(prediction, "prediction").strip().lower(), _check_str(gold, "gold").strip().lower()
    return g in p or p in g


def cited_sources(answer: str) -> list[int]:
    """The source numbers an answer cites, in order of first appearance, each once.

    A citation is a pair of square brackets holding one number or several separated by commas:
    ``[1]``, ``[2, 3]``, ``[1][4]``. Brackets holding anything else (``[a]``, ``[1-2]``,
    ``[note]``) are not citations.
    """
    out: list[int] = []
    for match in _CITATION.finditer(_check_str(answer, "answer")):
        for number in match.group(1).split(","):
            n = int(number)
            if n not in out:
                out.append(n)
    return out


def cited_passages(answer: str, passages: Sequence[str]) -> list[str]:
    """The passages an answer cites, in the order it first cites them: ``[1]`` is ``passages[0]``,
    as :func:`~attnedu.rag.format_sources` numbers them. A number that names no passage (``[0]``,
    or more than ``len(passages)``) is skipped."""
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise ValueError("passages must be the list of sources the prompt numbered, [1] first")
    return [passages[n - 1] for n in cited_sources(answer) if 1 <= n <= len(passages)]


def strip_citations(answer: str) -> str:
    """The answer without its citations, white space collapsed."""
    return " ".join(_CITATION.sub(" ", _check_str(answer, "answer")).split())


def supports(passage: str, claim: str) -> bool:
    """Whether ``passage`` contains ``claim``: the normalised tokens of the claim occur, in order
    and contiguously, among the normalised tokens of the passage (so ``"Morsk"`` is not found in
    ``"Morskavel"``). An empty claim is supported by nothing."""
    words = normalize_answer(_check_str(passage, "passage")).split()
    claim_words = normalize_answer(_check_str(claim, "claim")).split()
    n = len(claim_words)
    if not n:
        return False
    return any(words[i:i + n] == claim_words for i in range(len(words) - n + 1))


@dataclass(frozen=True)
class Citations:
    """What one answer cites: ``cited`` the numbers, ``valid`` whether each names a passage (and
    at least one is cited), ``supported`` whether some cited passage supports the claim."""

    cited: list
    valid: bool
    supported: bool


def check_citations(answer: str, passages: Sequence[str], claim: str | None = None) -> Citations:
    """Check the citations of ``answer`` against the numbered ``passages`` (``[1]`` is
    ``passages[0]``). ``claim`` is what must be supported, e.g. the short answer the reply gives;
    by default the answer itself with its citations removed."""
    if isinstance(passages, str) or not isinstance(passages, Sequence):
        raise ValueError("passages must be the list of sources the prompt numbered, [1] first")
    cited = cited_sources(answer)
    claim = strip_citations(answer) if claim is None else _check_str(claim, "claim")
    valid = bool(cited) and all(1 <= n <= len(passages) for n in cited)
    supported = any(supports(passages[n - 1], claim) for n in cited if 1 <= n <= len(passages))
    return Citations(cited, valid, supported)
