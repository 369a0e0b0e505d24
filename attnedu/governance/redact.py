r"""Anonymisation: pseudonymous user ids, and personal data found and redacted in text.

* :func:`pseudonym` replaces a user id by a keyed hash (HMAC-SHA256). The same user always
  gets the same pseudonym, so usage can still be counted per user, but without the key
  nobody can go back from the pseudonym to the user, nor test a guess ("is it alice?"),
  as they could with a plain, unkeyed hash.
* :func:`find_pii` finds emails, phone numbers and personal names with rules: regular
  expressions for the first two, a list of given names (:data:`GIVEN_NAMES`) and titles
  (Dr, Ms, ...) for names. :func:`redact` replaces what it finds by ``[EMAIL]``,
  ``[PHONE]`` and ``[NAME]``.
* :func:`span_scores` measures a detector against labelled spans: precision (how much of
  what it flags is personal data) and recall (how much of the personal data it flags),
  per kind. A span counts only when kind, start and end are all exactly right.

Rules miss what they were not written for (a name not on the list, "bob at example dot
com", a phone number split by words) and flag look-alikes (an ISO date is skipped, but a
part number with enough digits is not). A statistical recogniser (spaCy, Presidio) finds
more names, and still has to be measured in the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PII_KINDS", "Span", "GIVEN_NAMES", "pseudonym", "find_pii", "redact", "span_scores",
           "span_precision_recall"]

PII_KINDS = ("email", "phone", "name")
_PLACEHOLDER = {"email": "[EMAIL]", "phone": "[PHONE]", "name": "[NAME]"}


@dataclass(frozen=True, order=True)
class Span:
    """``text[start:end]`` is personal data of ``kind`` ("email", "phone" or "name")."""

    start: int
    end: int
    kind: str
    text: str = ""

    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.kind)


def pseudonym(user_id: str, key: bytes, prefix: str = "p_") -> str:
    """``prefix`` + 32 hex digits of HMAC-SHA256(key, user id): stable per user, not reversible
    without ``key`` (keep the key out of the database that stores the pseudonyms)."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError(f"user_id must be a non-empty string, got {user_id!r}")
    if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
        raise ValueError("key must be at least 16 random bytes (os.urandom(32), say), "
                         f"got {type(key).__name__} of length {len(key) if hasattr(key, '__len__') else '?'}")
    return prefix + hmac.new(bytes(key), user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


# ----------------------------------------------------------------------- detectors
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
# written out against harvesters: "ana [at] example [dot] org", "ana(at)example(dot)org"
_EMAIL_OBFUSCATED = re.compile(
    r"(?<![\w.+-])[\w.+-]+\s*[\[(]\s*at\s*[\])]\s*[A-Za-z0-9-]+(?:\s*(?:[\[(]\s*dot\s*[\])]|\.)\s*[A-Za-z0-9-]+)+",
    re.IGNORECASE)
# an optional +country code, an optional (area code), then groups of digits split by one space,
# dot or dash; a number must be written in groups, or start with + or (, to count
_PHONE = re.compile(r"(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,8}(?:[ .-]\d{1,8}){0,5}(?![\w]|[.-]\d)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

GIVEN_NAMES = frozenset("""
Aaliyah Adam Ahmed Aisha Alex Alice Amir Ana Andrea Anna Anne Ben Bill Bob Carlos Carol Charlie Chen
Chloe Daniel David Diego Elena Emily Emma Eva Fatima Grace Hannah Hiro Ivan James Jan Jane Jean John
Jorge Jose Juan Julia Karen Kate Kenji Laura Leo Lina Lucas Lucy Luis Maria Mark Marta Mary Mateo
Mei Mia Michael Mohamed Nadia Noah Olga Oliver Omar Paul Pedro Peter Priya Rahul Raj Robert Rosa Sam
Samuel Sara Sarah Sofia Sophie Tom Wei Will Yuki Zoe
""".split())
_TITLES = r"(?:Dr|Mr|Mrs|Ms|Mx|Prof|Professor)\.?"
_CAPITALISED = r"[A-Z][a-zà-ÿ'’-]+"
# the title is part of the name's span: "Dr. Priya Raman", "Ms Okafor"
_NAME_AFTER_TITLE = re.compile(rf"\b{_TITLES}\s+{_CAPITALISED}(?:\s+{_CAPITALISED})?")
# every capitalised word, and (looked ahead, not consumed) the capitalised word after it
_NAME_FROM_LIST = re.compile(
    rf"\b({_CAPITALISED})(?=((?:\s+(?:van|von|de|da|del|di|le|la)\b)?\s+{_CAPITALISED})?)")


def _names(text: str, extra_names: frozenset) -> list[Span]:
    spans = [Span(m.start(), m.end(), "name") for m in _NAME_AFTER_TITLE.finditer(text)]
    for m in _NAME_FROM_LIST.finditer(text):
        if m.group(1) in GIVEN_NAMES or m.group(1) in extra_names:
            # "Alice Smith": a capitalised word after a given name is taken for the surname
            spans.append(Span(m.start(1), m.end(1) + len(m.group(2) or ""), "name"))
    return spans


def find_pii(text: str, *, extra_names: Iterable[str] = ()) -> list[Span]:
    """The emails, phone numbers and names in ``text``, as :class:`Span` s in order.

    Where two spans overlap, an email beats a phone number beats a name, then the longer
    span wins. ``extra_names``: given names to look for besides :data:`GIVEN_NAMES`.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    extra = frozenset(extra_names)
    found = [Span(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    found += [Span(m.start(), m.end(), "email") for m in _EMAIL_OBFUSCATED.finditer(text)]
    for m in _PHONE.finditer(text):
        digits = sum(ch.isdigit() for ch in m.group())
        grouped = m.group()[0] in "+(" or any(sep in m.group() for sep in " .-")
        if grouped and 7 <= digits <= 15 and not _ISO_DATE.fullmatch(m.group()):  # a date is not a phone
            found.append(Span(m.start(), m.end(), "phone"))
    found += _names(text, extra)
    rank = {"email": 0, "phone": 1, "name": 2}
    chosen: list[Span] = []
    for s in sorted(found, key=lambda s: (rank[s.kind], -(s.end - s.start), s.start)):
        if all(s.end <= c.start or s.start >= c.end for c in chosen):
            chosen.append(s)
    return sorted(Span(s.start, s.end, s.kind, text[s.start:s.end]) for s in chosen)


def redact(text: str, spans: Iterable[Span] | None = None) -> str:
    """``text`` with every span (default: :func:`find_pii`'s) replaced by ``[EMAIL]``,
    ``[PHONE]`` or ``[NAME]``."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    spans = find_pii(text) if spans is None else sorted(spans)
    out, at = [], 0
    for s in spans:
        if s.kind not in _PLACEHOLDER or not 0 <= s.start <= s.end <= len(text) or s.start < at:
            raise ValueError(f"bad span {s}: spans must be of kind {PII_KINDS}, inside the text, and not overlap")
        out += [text[at:s.start], _PLACEHOLDER[s.kind]]
        at = s.end
    return "".join(out + [text[at:]])


# ----------------------------------------------------------------------- evaluation
def span_scores(predicted, gold, kinds: Iterable[str] = PII_KINDS) -> dict[str, dict]:
    """Precision and recall of ``predicted`` spans against ``gold`` spans, per kind and over all.

    Both are iterables of :class:`Span` or ``(start, end, kind)``; to score many texts,
    put the text's index in front, ``(i, start, end, kind)``, i.e. pass
    ``[(i, s.start, s.end, s.kind), ...]`` -- any hashable tuple whose last element is the
    kind works. A predicted span is a true positive when the same span is in ``gold``.
    precision = tp / (tp + fp), 1.0 when nothing was predicted; recall = tp / (tp + fn),
    1.0 when there was nothing to find.

    Returns ``{kind: {"tp", "fp", "fn", "precision", "recall"}, ..., "all": {...}}``.
    """
    def as_set(spans):
        out = set()
        for s in spans:
            t = (s.start, s.end, s.kind) if isinstance(s, Span) else tuple(s)
            if not t or not isinstance(t[-1], str):
                raise ValueError(f"a span must be a Span or a tuple ending with its kind, got {s!r}")
            out.add(t)
        return out

    pred, true = as_set(predicted), as_set(gold)
    result = {}
    for kind in [*kinds, "all"]:
        p = {s for s in pred if kind == "all" or s[-1] == kind}
        g = {s for s in true if kind == "all" or s[-1] == kind}
        tp = len(p & g)
        result[kind] = {"tp": tp, "fp": len(p - g), "fn": len(g - p),
                        "precision": tp / len(p) if p else 1.0, "recall": tp / len(g) if g else 1.0}
    return result


def span_precision_recall(predicted, gold) -> tuple[float, float]:
    r"""``(precision, recall)`` of ``predicted`` spans against ``gold`` spans over all kinds: the
    ``"all"`` line of :func:`span_scores`. With :math:`P` and :math:`G` the sets of spans (a
    span listed twice counts once), :math:`\text{precision} = |P \cap G| / |P|` (1.0 when
    :math:`P` is empty: nothing wrong was claimed) and :math:`\text{recall} = |P \cap G| / |G|`
    (1.0 when :math:`G` is empty: nothing was missed).

    Args:
        predicted, gold: lists of :class:`Span` or tuples ending with the kind, such as
            ``(start, end, "email")`` or ``(text_index, start, end, "email")``.
    """
    for name, spans in (("predicted", predicted), ("gold", gold)):
        if isinstance(spans, (str, bytes, Span)) or not isinstance(spans, Iterable):
            raise ValueError(f"{name} must be a list of spans, got {type(spans).__name__}")
    scores = span_scores(predicted, gold, kinds=())["all"]
    return scores["precision"], scores["recall"]
