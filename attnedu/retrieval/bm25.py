r"""BM25 keyword search, from scratch in NumPy, equal to SQLite FTS5's ``bm25()``.

Chapter 11 builds it in three steps:

1. :func:`tokenize` splits text into terms exactly as FTS5's default tokenizer
   ``unicode61`` does: lower case, Latin diacritics removed (``é -> e``), every
   character that is not a letter or a digit separates terms.
2. An inverted index maps each term to its *postings*: the documents that
   contain it (an int array) and how often (a count array).
3. :class:`BM25` scores a query by adding, term by term, each document's BM25
   weight (:func:`bm25_weight`), one vectorised NumPy update per query term.

The score of document :math:`D` for a query with terms :math:`q_1 \dots q_m`
(a term that appears twice in the query counts twice, as in FTS5):

.. math::

    \mathrm{BM25}(D, Q) = \sum_{i=1}^{m} \mathrm{IDF}(q_i)\,
        \frac{f(q_i, D)\,(k_1 + 1)}{f(q_i, D) + k_1 \left(1 - b + b\,\frac{|D|}{\mathrm{avgdl}}\right)}

    \mathrm{IDF}(q) = \ln \frac{N - n(q) + 0.5}{n(q) + 0.5}
        \quad\text{(replaced by } 10^{-6} \text{ when it is } \le 0\text{)}

with :math:`f(q, D)` the count of ``q`` in ``D``, :math:`|D|` the number of tokens
of ``D``, avgdl the mean of :math:`|D|` over the :math:`N` documents (empty ones
included), and :math:`n(q)` the number of documents containing ``q``. This is
``fts5Bm25Function`` in SQLite's ``ext/fts5/fts5_aux.c``, term for term, so the
scores equal ``-bm25(table)`` of an FTS5 table to rounding (see :mod:`.fts5`).
The floor :math:`10^{-6}` keeps a term found in more than half the documents
from counting *against* a document, while still matching it.
"""

from __future__ import annotations

import math
import numbers
import unicodedata
from collections.abc import Sequence

import numpy as np

from .._validate import as_float_array, positive_int

__all__ = ["tokenize", "BM25", "bm25_weight"]

# ----------------------------------------------------------------------- tokenizer
# The combining marks that FTS5's unicode61 drops inside a token
# (sqlite3Fts5UnicodeIsdiacritic in fts5_unicode2.c: bitmasks over U+0300..U+0331).
_DIACRITICS = frozenset(
    c for c in range(0x300, 0x332)
    if (0x08029FDF >> (c - 0x300) & 1 if c < 0x320 else 0x000361F8 >> (c - 0x320) & 1)
)
# FTS5's character tables come from Unicode 6.1. These code points have since become
# letters (Lo) in Python's newer Unicode data, but FTS5 still treats them as separators.
_FTS5_SEPARATORS = frozenset([*range(0x19B0, 0x19C1), 0x19C8, 0x19C9, 0x1CF2, 0x1CF3, 0xFFFE, 0xFFFF])


def _fold_char(ch: str) -> str:
    """What unicode61 makes of one character: ``" "`` (a separator), ``""`` (a
    combining diacritic, dropped), or the character folded to lower case without
    its diacritic."""
    cp = ord(ch)
    if cp in _DIACRITICS:
        return ""  # inside a token it is dropped; between tokens dropping it changes nothing
    category = unicodedata.category(ch)
    # token characters: letters (L*), digits and numbers (N*), private use (Co),
    # and unassigned code points (Cn), which FTS5 also keeps in tokens
    if not (category[0] in "LN" or category in ("Co", "Cn")) or cp in _FTS5_SEPARATORS:
        return " "
    if cp == 0x130:  # LATIN CAPITAL LETTER I WITH DOT ABOVE: FTS5 folds it to plain i
        return "i"
    low = ch.casefold()  # case folding: like lower(), and also e.g. 'ſ' -> 's', 'ς' -> 'σ'
    if len(low) != 1:  # full folding can give 2 characters ('ß' -> 'ss'): FTS5 keeps one
        low = ch.lower() if len(ch.lower()) == 1 else ch
    base = unicodedata.normalize("NFD", low)  # 'é' -> 'e' + U+0301
    if len(base) == 2 and base[0].isascii() and base[0].isalpha() and ord(base[1]) in _DIACRITICS:
        return base[0]  # a Latin letter with one diacritic (remove_diacritics=1 keeps two)
    return low


class _FoldTable(dict):
    """``str.translate`` table that fills itself: code point -> :func:`_fold_char`."""

    def __missing__(self, cp: int) -> str:
        self[cp] = value = _fold_char(chr(cp))
        return value


_FOLD = _FoldTable()


def tokenize(text: str) -> list[str]:
    """Split ``text`` into terms as SQLite FTS5's default ``unicode61`` tokenizer does.

    Letters and digits (Unicode categories L*, N*, and private-use Co) make up
    terms; every other character separates them. Terms are case-folded
    (``"Attention" -> "attention"``) and a Latin letter loses a single diacritic
    (``"Café" -> "cafe"``, decomposed ``"e\u0301"`` too). ``"don't"`` is two
    terms, ``"don"`` and ``"t"``; ``"q·k"`` is ``"q"``, ``"k"``.

    Equal to FTS5 for every character in Unicode 6.1, which FTS5's tables come
    from (checked character by character in the tests). FTS5 keeps a character
    assigned later inside a term, unchanged; here, with Python's newer Unicode
    data, it may be a separator (most emoji, ``"₺"``) or be case-folded.

    >>> tokenize("Über-Attention: naïve Q·Kᵀ, 2024!")
    ['uber', 'attention', 'naive', 'q', 'kᵀ', '2024']
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    return text.translate(_FOLD).split()  # every separator became " "


# --------------------------------------------------------------------------- BM25
def _check_documents(documents) -> list[str]:
    if isinstance(documents, str):
        raise ValueError("documents must be a list of strings, got one string; wrap it: [text]")
    if not isinstance(documents, Sequence) and not hasattr(documents, "__array__"):
        raise ValueError(f"documents must be a list of strings, got {type(documents).__name__}")
    docs = list(documents)
    if not docs:
        raise ValueError("documents is empty: BM25 needs at least one document")
    for i, d in enumerate(docs):
        if not isinstance(d, str):
            raise ValueError(f"documents[{i}] is a {type(d).__name__}, not a string; convert it with str() or drop it")
    return docs


class BM25:
    """A BM25 index over ``documents``, scored like SQLite FTS5's ``bm25()``.

    Example::

        bm25 = BM25(["the cat sat", "the dog sat", "a cat and a cat", "a bird", "birds sing"])
        bm25.scores("cat")                       # (5,) one score per document, 0 = no match
        scores, ids = bm25.search("cat", k=2)    # ids [2, 0]: two cats beat one

    Args:
        documents: a list of ``N >= 1`` strings; a document's id is its position.
        k1: term-frequency saturation, ``>= 0`` (FTS5: 1.2). With ``k1 = 0`` only
            the presence of a term counts; large ``k1`` makes the weight grow with
            the count almost linearly.
        b: length normalisation in ``[0, 1]`` (FTS5: 0.75). ``b = 1`` divides the
            count by the relative document length fully, ``b = 0`` ignores length.

    Attributes:
        n_docs: ``N``. ``doc_len``: ``(N,)`` tokens per document. ``avgdl``: their mean.
        vocabulary: term -> term id. ``df``: ``(V,)`` documents containing each term.
        postings: term id ``t`` -> ``(doc_ids, counts)``, with
            ``doc_ids = doc_ids_all[starts[t]:starts[t + 1]]`` (a CSR layout).
    """

    def __init__(self, documents, k1: float = 1.2, b: float = 0.75):
        docs = _check_documents(documents)
        k1, b = self._check_param(k1, "k1"), self._check_param(b, "b")
        if b > 1:
            raise ValueError(f"b must be in [0, 1], got {b}")
        self.k1, self.b = k1, b
        self.n_docs = len(docs)

        # 1. tokens -> term ids, one flat array for the whole corpus
        self.vocabulary: dict[str, int] = {}
        term_ids, doc_len = [], np.empty(self.n_docs, dtype=np.int64)
        for i, text in enumerate(docs):
            tokens = tokenize(text)
            doc_len[i] = len(tokens)
            term_ids.extend(self.vocabulary.setdefault(t, len(self.vocabulary)) for t in tokens)
        terms = np.asarray(term_ids, dtype=np.int64)  # (total tokens,)
        docs_of = np.repeat(np.arange(self.n_docs, dtype=np.int64), doc_len)  # (total tokens,)
        self.doc_len = doc_len
        self.avgdl = float(doc_len.sum()) / self.n_docs  # FTS5: total tokens / rows

        # 2. postings: count each (term, doc) pair; sorting by term groups each term's postings
        n_terms = len(self.vocabulary)
        pairs, counts = np.unique(terms * self.n_docs + docs_of, return_counts=True)
        self.doc_ids_all = pairs % self.n_docs  # (P,) the documents, term by term
        self.counts_all = counts.astype(np.float64)  # (P,) how often the term occurs there
        self.df = np.bincount(pairs // self.n_docs, minlength=n_terms)  # (V,)
        self.starts = np.concatenate([[0], np.cumsum(self.df)])  # (V + 1,)

    @staticmethod
    def _check_param(value, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        return float(value)

    def __repr__(self) -> str:
        return f"BM25(n_docs={self.n_docs}, vocabulary={len(self.vocabulary)} terms, k1={self.k1}, b={self.b})"

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """``(doc_ids, counts)`` of a (tokenized) term; empty arrays for an unknown term."""
        t = self.vocabulary.get(term)
        if t is None:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        lo, hi = self.starts[t], self.starts[t + 1]
        return self.doc_ids_all[lo:hi], self.counts_all[lo:hi]

    def idf(self, term: str) -> float:
        r"""FTS5's IDF: :math:`\ln\frac{N - n + 0.5}{n + 0.5}`, or :math:`10^{-6}` if that is ``<= 0``."""
        return _idf(len(self.postings(term)[0]), self.n_docs)

    def scores(self, query: str) -> np.ndarray:
        """``(N,)`` BM25 scores of every document for ``query``.

        A document that contains none of the query terms scores exactly 0 (every
        matching document scores > 0). A query with no terms (``""``, ``"?!"``)
        scores every document 0.
        """
        if not isinstance(query, str):
            raise ValueError(f"query must be a string, got {type(query).__name__}")
        scores = np.zeros(self.n_docs)
        for term in tokenize(query):  # in query order, repeats included, like FTS5
            docs, f = self.postings(term)
            if docs.size:
                scores[docs] += bm25_weight(f, docs.size, self.doc_len[docs], self.avgdl, self.n_docs, self.k1, self.b)
        return scores

    def search(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents that contain at least one query term.

        Returns:
            ``(scores, ids)``: float64 and int64 arrays of length ``min(k, number of
            matching documents)``, best first; equal scores in order of id. A query
            with no terms, or none that occur in the corpus, gives two empty arrays.
        """
        positive_int(k, "k")
        scores = self.scores(query)
        ids = np.flatnonzero(scores > 0)  # the matching documents
        s = scores[ids]
        if ids.size > k:  # keep every score >= the k-th largest (ties included), then sort those
            kth = np.partition(s, ids.size - k)[ids.size - k]
            ids, s = ids[s >= kth], s[s >= kth]
        order = np.lexsort((ids, -s))[:k]  # by score descending, then id ascending
        return s[order], ids[order]


def _idf(n: int, n_docs: int) -> float:
    idf = math.log((n_docs - n + 0.5) / (n + 0.5))
    return idf if idf > 0 else 1e-6  # FTS5: a very common term still counts, a little


def bm25_weight(f, n, doc_len, avgdl, n_docs, k1: float = 1.2, b: float = 0.75):
    r"""The BM25 weight of one term in one document (or in many, elementwise): the term's
    share of :meth:`BM25.scores`, which adds it up over the query's terms.

    .. math::
        w = \mathrm{IDF}(n)\,\frac{f\,(k_1 + 1)}{f + k_1\left(1 - b + b\,\frac{|D|}{\mathrm{avgdl}}\right)},
        \qquad \mathrm{IDF}(n) = \ln\frac{N - n + 0.5}{n + 0.5}
        \ \text{(replaced by } 10^{-6} \text{ when it is} \le 0)

    Args:
        f: how often the term occurs in the document (a number, or an array, one count per document).
        n: in how many of the ``n_docs`` documents the term occurs (an integer).
        doc_len: the document's length in tokens, ``|D|`` (a number or an array broadcasting against ``f``).
        avgdl: the mean document length over the collection, ``> 0``.
        n_docs: ``N``, the number of documents.
        k1, b: term-frequency saturation and length normalisation (FTS5: 1.2, 0.75).

    Returns:
        A float, or an array of the broadcast shape of ``f`` and ``doc_len``; 0 where ``f = 0``.
    """
    n_docs = positive_int(n_docs, "n_docs")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= n_docs:
        raise ValueError(f"n must be an integer in [0, n_docs = {n_docs}], got {n!r}")
    avgdl, k1, b = (BM25._check_param(v, name) for v, name in ((avgdl, "avgdl"), (k1, "k1"), (b, "b")))
    if avgdl == 0 or b > 1:
        raise ValueError(f"avgdl must be > 0 and b in [0, 1], got avgdl = {avgdl}, b = {b}")
    f, doc_len = as_float_array(f, "f"), as_float_array(doc_len, "doc_len")
    w = _idf(n, n_docs) * ((f * (k1 + 1)) / (f + k1 * (1 - b + b * doc_len / avgdl)))  # FTS5's parentheses
    return float(w) if w.ndim == 0 else w
