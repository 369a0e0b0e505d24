"""SQLite FTS5: the reference that :class:`~attnedu.retrieval.BM25` is checked against.

Python's ``sqlite3`` module ships SQLite with the FTS5 full-text extension. An
FTS5 table is an inverted index; ``bm25(table)`` scores each match, *negated*
(more negative = better, so that ``ORDER BY bm25(table)`` puts the best first).
Two things to know when comparing it with our BM25:

* a plain multi-word ``MATCH 'attention heads'`` means AND (documents with both
  words). BM25 adds up the terms a document has, which is OR, so
  :func:`fts5_search` sends ``"attention" OR "heads"``;
* each term is quoted, so words such as ``OR``, ``NEAR`` or ``-`` in a query are
  searched for rather than read as operators.
"""

from __future__ import annotations

import re
import sqlite3

import numpy as np

from .._validate import positive_int

from .bm25 import _check_documents, tokenize

__all__ = ["fts5_index", "fts5_search", "fts5_match_query"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _table_name(table: str) -> str:
    if not isinstance(table, str) or not _NAME.fullmatch(table):
        raise ValueError(f"table must be a plain SQL name (letters, digits, _), got {table!r}")
    return table


def fts5_index(documents, conn: sqlite3.Connection | None = None, table: str = "documents") -> sqlite3.Connection:
    """Put ``documents`` into an FTS5 table (default tokenizer ``unicode61``), one row each,
    with ``rowid`` = the document's position.

    Args:
        documents: a list of strings.
        conn: a connection to add the table to (default: a new in-memory database).
        table: the table's name.

    Returns:
        The connection, ready for :func:`fts5_search`.
    """
    docs = _check_documents(documents)
    table = _table_name(table)
    conn = sqlite3.connect(":memory:") if conn is None else conn
    try:
        conn.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(body)")
    except sqlite3.OperationalError as exc:
        if "fts5" in str(exc):
            raise RuntimeError(f"this Python's SQLite ({sqlite3.sqlite_version}) was built without FTS5") from None
        raise ValueError(f"could not create FTS5 table {table!r}: {exc}") from None
    conn.executemany(f"INSERT INTO {table}(rowid, body) VALUES (?, ?)", enumerate(docs))
    conn.commit()
    return conn


def fts5_match_query(query: str) -> str:
    """The FTS5 ``MATCH`` expression for BM25's OR-scoring of ``query``:
    its terms (as :func:`tokenize` finds them), quoted, joined by ``OR``.

    >>> fts5_match_query("Attention, heads!")
    '"attention" OR "heads"'
    """
    return " OR ".join(f'"{t}"' for t in tokenize(query))  # a token never contains '"'


def fts5_search(index, query: str, k: int = 10, table: str = "documents") -> tuple[np.ndarray, np.ndarray]:
    """Search an FTS5 table, ranked by ``bm25()``: the reference for ``BM25(docs).search``.

    Args:
        index: a connection from :func:`fts5_index`, or a list of documents (then
            an in-memory table is built for this one call).
        query: any text; its terms are OR-ed (see :func:`fts5_match_query`).
        k: at most this many results.
        table: the table's name.

    Returns:
        ``(scores, ids)`` like :meth:`BM25.search`: ``scores = -bm25(table)``
        (positive, larger is better), ids = row ids = document positions, best
        first, equal scores by id. A query without terms gives two empty arrays.
    """
    if not isinstance(query, str):
        raise ValueError(f"query must be a string, got {type(query).__name__}")
    positive_int(k, "k")
    table = _table_name(table)
    conn = index if isinstance(index, sqlite3.Connection) else fts5_index(index, table=table)
    match = fts5_match_query(query)
    if not match:
        return np.empty(0, np.float64), np.empty(0, np.int64)
    rows = conn.execute(
        f"SELECT -bm25({table}), rowid FROM {table} WHERE {table} MATCH ? ORDER BY bm25({table}), rowid LIMIT ?",
        (match, int(k)),
    ).fetchall()
    scores = np.array([r[0] for r in rows], dtype=np.float64)
    ids = np.array([r[1] for r in rows], dtype=np.int64)
    return scores, ids
