"""The SQLite backend: one file (or memory), nothing to start.

* Keyword search: an FTS5 table over the chunks' text, ranked by ``bm25()`` (the
  ranking chapter 11 rebuilds as :class:`~attnedu.retrieval.BM25`).
* Vector search: embeddings are float32 BLOBs in the ``chunks`` table. Python's
  ``sqlite3`` may be built without extension loading (so it is here), so the store
  does not count on sqlite-vec and searches in NumPy: every embedding is read once into a matrix (kept until the table changes)
  and searched exactly with :func:`~attnedu.retrieval.exact_search`.
* Hybrid search: both rankings fused with :func:`~attnedu.retrieval.rrf` in Python.
* Transactions: ``BEGIN IMMEDIATE ... COMMIT``; a file store uses write-ahead
  logging (``journal_mode=WAL``), so readers never wait for the writer and a process
  killed mid-transaction leaves only uncommitted pages that the next opener ignores.
* Users: SQLite has no users or permissions. The library's :class:`UserStore` puts
  ``WHERE user_id = ?`` in every query; anyone who opens the file sees everything.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager

import numpy as np

from ..retrieval import exact_search, fts5_match_query, rrf
from .base import HIT_COLUMNS, INGEST_BATCH, Database, Store, _hit, check_dim

__all__ = ["SQLiteStore", "SCHEMA"]

SCHEMA = """
BEGIN IMMEDIATE;

CREATE TABLE IF NOT EXISTS store_info (   -- facts about the store itself, e.g. dim
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS documents (
    id         INTEGER PRIMARY KEY,
    title      TEXT NOT NULL,
    metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),   -- a JSON object
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))  -- UTC, ISO 8601
);

CREATE TABLE IF NOT EXISTS chunks (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,        -- 0, 1, 2, ... within the document
    text        TEXT NOT NULL,
    embedding   BLOB,                    -- dim float32 numbers, little-endian; NULL: none
    UNIQUE (document_id, position)
);

-- The full-text index: an "external content" FTS5 table that indexes chunks.text
-- (without a second copy of it). Triggers keep it in step, in the same transaction.
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5 (text, content = 'chunks', content_rowid = 'id');
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;

CREATE TABLE IF NOT EXISTS sessions (
    id         INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL,
    title      TEXT NOT NULL DEFAULT '',
    metadata   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (id, user_id)                 -- the target of messages' (session_id, user_id)
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);

CREATE TABLE IF NOT EXISTS messages (
    id            INTEGER PRIMARY KEY,
    session_id    INTEGER NOT NULL,
    user_id       TEXT NOT NULL,         -- the session's user, repeated: checked by the key below
    role          TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content       TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    reply_to      INTEGER,               -- the prompt this message answers
    model_version TEXT,
    quality_score REAL,
    feedback      TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata)),
    UNIQUE (id, session_id),
    -- a message belongs to a session OF ITS USER, and replies within its session
    FOREIGN KEY (session_id, user_id) REFERENCES sessions (id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (reply_to, session_id) REFERENCES messages (id, session_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS messages_session ON messages (session_id, user_id);
CREATE INDEX IF NOT EXISTS messages_reply ON messages (reply_to, session_id);

-- prompt-response pairs: each assistant message with the message it replies to
CREATE VIEW IF NOT EXISTS exchanges AS
SELECT r.id, r.session_id, r.user_id, p.content AS prompt, r.content AS response,
       r.model_version, r.created_at, r.quality_score, r.feedback
FROM messages AS r JOIN messages AS p ON p.id = r.reply_to
WHERE r.role = 'assistant';

COMMIT;
"""


class SQLiteDatabase(Database):
    integrity_error = sqlite3.IntegrityError

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._in_transaction = False

    def rows(self, sql: str, params=()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    raw = rows  # SQLite's placeholders are ours

    @contextmanager
    def transaction(self):
        if self._in_transaction:  # nested: part of the outer transaction
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
        self._in_transaction = True
        try:
            yield
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self._in_transaction = False

    def json(self, value: dict) -> str:
        return json.dumps(value)

    def close(self) -> None:
        self.conn.close()


def _where_sql(where: dict) -> tuple[str, list]:
    """``AND`` conditions on the document's metadata (``d.metadata``) and their parameters.

    ``json_each`` turns a JSON object into rows (key, value, type, atom): the document
    matches if its ``key`` holds one of the wanted values. ``atom`` is NULL for lists and
    objects; the type test keeps ``true`` apart from ``1`` (SQLite stores both as 1).
    """
    sql, params = "", []
    for key, values in where.items():
        sql += (" AND EXISTS (SELECT 1 FROM json_each(d.metadata) AS m, json_each(?) AS v"
                " WHERE m.key = ? AND m.atom = v.atom"
                " AND (m.type IN ('true', 'false')) = (v.type IN ('true', 'false')))")
        params += [json.dumps(values), key]
    return sql, params


class SQLiteStore(Store):
    """A store in one SQLite file, or in memory (``path=":memory:"``)."""

    backend = "sqlite"

    def __init__(self, path: str, dim: int | None = None):
        conn = sqlite3.connect(path, isolation_level=None)  # autocommit: we BEGIN and COMMIT ourselves
        try:
            conn.execute("PRAGMA foreign_keys = ON")  # off by default in SQLite, per connection
            conn.execute("PRAGMA busy_timeout = 5000")  # wait up to 5 s for another writer
            if path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints
            new = not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'store_info'").fetchall()
            dim = check_dim(dim, None if new else self._stored_dim(conn))
            conn.executescript(SCHEMA)
            conn.execute("INSERT OR IGNORE INTO store_info (key, value) VALUES ('dim', ?)", [str(dim)])
            dim = check_dim(dim, self._stored_dim(conn))  # another process may have created it first
        except BaseException:
            conn.close()
            raise
        super().__init__(SQLiteDatabase(conn), dim)
        self.path = path
        self._matrix_key = None  # when the cached embedding matrix was read
        self._matrix = (np.empty(0, np.int64), np.empty((0, dim), np.float32))

    @staticmethod
    def _stored_dim(conn) -> int | None:
        rows = conn.execute("SELECT value FROM store_info WHERE key = 'dim'").fetchall()
        return int(rows[0][0]) if rows else None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}, dim={self.dim})"

    # ------------------------------------------------------------- documents
    def _add_document(self, title, chunks, embeddings, metadata) -> int:
        with self._db.transaction():
            doc_id = self._db.rows("INSERT INTO documents (title, metadata) VALUES (?, ?) RETURNING id",
                                   [title, json.dumps(metadata)])[0][0]
            for start in range(0, len(chunks), INGEST_BATCH):
                stop = min(start + INGEST_BATCH, len(chunks))
                self._db.conn.executemany(
                    "INSERT INTO chunks (document_id, position, text, embedding) VALUES (?, ?, ?, ?)",
                    [(doc_id, i, chunks[i], None if embeddings is None else embeddings[i].tobytes())
                     for i in range(start, stop)])
                self._ingest_progress(stop, len(chunks))
        return doc_id

    # ---------------------------------------------------------------- search
    def _keyword_search(self, query, k, where):
        match = fts5_match_query(query)  # '"word1" OR "word2"': each word quoted, so no FTS5 syntax
        if not match:
            return []
        filters, params = _where_sql(where)
        rows = self._db.rows(
            f"SELECT {HIT_COLUMNS}, -bm25(chunks_fts) FROM chunks_fts"
            " JOIN chunks AS c ON c.id = chunks_fts.rowid JOIN documents AS d ON d.id = c.document_id"
            f" WHERE chunks_fts MATCH ?{filters} ORDER BY bm25(chunks_fts), c.id LIMIT ?",
            [match, *params, k])
        return [_hit(r, r[6]) for r in rows]

    def _embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n,), unit vectors (n, dim))`` of every chunk with an embedding.

        Read again only after the table changed: ``PRAGMA data_version`` changes when
        another connection commits, ``total_changes`` when this one writes.
        """
        key = (self._db.rows("PRAGMA data_version")[0][0], self._db.conn.total_changes)
        if key != self._matrix_key:
            rows = self._db.rows("SELECT id, embedding FROM chunks WHERE embedding IS NOT NULL ORDER BY id")
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            x = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), self.dim)
            x = x / np.linalg.norm(x, axis=1, keepdims=True) if len(rows) else x  # cosine = dot of unit vectors
            self._matrix, self._matrix_key = (ids, x.astype(np.float32)), key
        return self._matrix

    def _vector_search(self, vector, k, where):
        ids, x = self._embeddings()
        if where:  # filter before the search: only the chunks of matching documents
            # the documents first, each one's metadata tested once (not once per chunk), then their chunks
            filters, params = _where_sql(where)
            allowed = self._db.rows("SELECT c.id FROM chunks AS c WHERE c.embedding IS NOT NULL AND c.document_id IN"
                                    f" (SELECT d.id FROM documents AS d WHERE 1{filters})", params)
            keep = np.isin(ids, np.array([r[0] for r in allowed], dtype=np.int64))
            ids, x = ids[keep], x[keep]
        if len(ids) == 0:
            return []
        q = vector / np.linalg.norm(vector)
        scores, positions = exact_search(q[None, :], x, min(k, len(ids)))  # (1, k) each
        return self._fetch(ids[positions[0]].tolist(), scores[0].tolist())

    def _hybrid_search(self, query, vector, k, where, candidates, rrf_k):
        semantic = [h.chunk_id for h in self._vector_search(vector, candidates, where)]
        keyword = [h.chunk_id for h in self._keyword_search(query, candidates, where)]
        fused = rrf([semantic, keyword], k=rrf_k)  # {chunk id: sum of 1 / (rrf_k + rank)}
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]  # ties: lower id first
        return self._fetch([c for c, _ in best], [s for _, s in best])

    def _fetch(self, chunk_ids: list, scores: list) -> list:
        """Hits for ``chunk_ids`` with ``scores``, in that order."""
        rows = self._db.rows(f"SELECT {HIT_COLUMNS} FROM chunks AS c JOIN documents AS d ON d.id = c.document_id"
                             " WHERE c.id IN (SELECT value FROM json_each(?))", [json.dumps(chunk_ids)])
        by_id = {r[0]: r for r in rows}
        return [_hit(by_id[c], s) for c, s in zip(chunk_ids, scores) if c in by_id]

    # ---------------------------------------------------------------- users
    def _user_database(self, user_id):
        return self._db, False  # the same connection: the query layer does the separating
