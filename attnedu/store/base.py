"""The interface of :mod:`attnedu.store`, shared by both backends.

Here: the records a store returns (:class:`Hit`, :class:`Document`, :class:`Session`,
:class:`Message`, :class:`Exchange`), the checks every input passes before it reaches
SQL, the abstract :class:`Store`, and :class:`UserStore`, one user's view of the
conversations. Conversations are the same SQL on both backends, so they live here;
documents and search differ (FTS5 + NumPy against tsvector + pgvector) and live in
``sqlite.py`` and ``postgres.py``.

Every value reaches the database as a query parameter, never as SQL text. Our SQL is
written with ``?`` placeholders; the PostgreSQL driver wants ``%s``, so its adapter
swaps them (our own SQL contains no other ``?``). Where SQL is assembled from pieces
(an optional condition), the pieces are column names written in this file.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import numbers
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .._validate import as_float_array, positive_int

__all__ = ["Store", "UserStore", "Hit", "Document", "Session", "Message", "Exchange", "user_role",
           "MESSAGE_ROLES"]

MESSAGE_ROLES = ("system", "user", "assistant")
INGEST_BATCH = 256  # chunks per INSERT batch; all batches of a document share one transaction


# ----------------------------------------------------------------------- records
@dataclass(frozen=True)
class Hit:
    """One search result: a chunk, the document it belongs to, and a score (higher is better:
    BM25 or ``ts_rank`` for keyword search, cosine for vector search, RRF for hybrid)."""

    chunk_id: int
    document_id: int
    title: str
    position: int  # the chunk's place in its document, from 0
    text: str
    score: float
    metadata: dict  # the document's metadata


@dataclass(frozen=True)
class Document:
    id: int
    title: str
    metadata: dict
    created_at: datetime
    chunks: list  # the chunks' texts, in order


@dataclass(frozen=True)
class Session:
    id: int
    user_id: str
    title: str
    metadata: dict
    created_at: datetime


@dataclass(frozen=True)
class Message:
    """One message of a session. A response links to its prompt by ``reply_to``."""

    id: int
    session_id: int
    user_id: str
    role: str  # "system", "user" or "assistant"
    content: str
    created_at: datetime
    reply_to: int | None
    model_version: str | None
    quality_score: float | None
    feedback: str | None
    metadata: dict


@dataclass(frozen=True)
class Exchange:
    """A prompt-response pair: a row of the ``exchanges`` view (an assistant message
    joined with the message it replies to). ``id`` is the response's message id."""

    id: int
    session_id: int
    user_id: str
    prompt: str
    response: str
    model_version: str | None
    created_at: datetime
    quality_score: float | None
    feedback: str | None


def _json(value):
    return json.loads(value) if isinstance(value, str) else value  # SQLite: text; psycopg: already a dict


def _time(value) -> datetime:
    # SQLite stores '2026-01-02T03:04:05.678Z'; psycopg returns a datetime already
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value


HIT_COLUMNS = "c.id, c.document_id, d.title, c.position, c.text, d.metadata"  # from chunks c JOIN documents d
SESSION_COLUMNS = "id, user_id, title, metadata, created_at"
MESSAGE_COLUMNS = ("id, session_id, user_id, role, content, created_at, reply_to, model_version, "
                   "quality_score, feedback, metadata")
EXCHANGE_COLUMNS = "id, session_id, user_id, prompt, response, model_version, created_at, quality_score, feedback"


def _hit(row, score: float) -> Hit:
    return Hit(row[0], row[1], row[2], row[3], row[4], float(score), _json(row[5]))


def _session(row) -> Session:
    return Session(row[0], row[1], row[2], _json(row[3]), _time(row[4]))


def _message(row) -> Message:
    return Message(*row[:5], _time(row[5]), *row[6:10], _json(row[10]))


def _exchange(row) -> Exchange:
    return Exchange(*row[:6], _time(row[6]), *row[7:])


# ------------------------------------------------------------------------ checks
def check_text(value, name: str) -> str:
    """A string that both databases can store: valid UTF-8, no NUL character."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character (\\x00), which PostgreSQL cannot store; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid Unicode text ({exc.reason} at position {exc.start})") from None
    return value


def check_optional_text(value, name: str) -> str | None:
    return None if value is None else check_text(value, name)


def check_metadata(metadata, name: str = "metadata") -> dict:
    """A JSON object, returned as it will read back (tuples become lists)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{name} must be a dict, got {type(metadata).__name__}")
    for key in metadata:
        check_text(key, f"{name} key {key!r}")
    try:
        text = json.dumps(dict(metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold only JSON values (str, int, float, bool, None, lists, dicts): "
                         f"{exc}") from None
    if "\\u0000" in text:
        raise ValueError(f"{name} contains a NUL character (\\x00), which PostgreSQL cannot store; remove it")
    return json.loads(text)


def check_where(where) -> dict:
    """Metadata filters ``{key: value}`` or ``{key: [value, ...]}`` (any of them), values
    str, int, float or bool -> ``{key: [values]}``."""
    if where is None:
        return {}
    if not isinstance(where, Mapping):
        raise ValueError(f"where must be a dict {{key: value}}, got {type(where).__name__}")
    out = {}
    for key, value in where.items():
        check_text(key, f"where key {key!r}")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            raise ValueError(f"where[{key!r}] is an empty list, which would match nothing")
        for v in values:
            if isinstance(v, str):
                check_text(v, f"where[{key!r}]")
            elif not (isinstance(v, np.bool_) or isinstance(v, numbers.Real) and math.isfinite(v)):  # bool is a Real
                raise ValueError(f"where[{key!r}] = {v!r}: a filter value must be a string, a finite number "
                                 "or a boolean (or a list of them)")
        out[key] = [_plain(v) for v in values]
    return out


def _plain(v):
    """NumPy scalars to Python's, so that they can be sent as JSON."""
    if isinstance(v, (str, bool)):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    return int(v) if isinstance(v, numbers.Integral) else float(v)


def check_id(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer id, got {value!r}")
    return int(value)


def _check_vectors(x: np.ndarray, name: str) -> np.ndarray:
    x = x.astype("<f4")  # float32, little-endian: the layout of SQLite's BLOBs and pgvector's floats
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise ValueError(f"{name} has NaN or inf (as float32) in row(s) {bad[:10].tolist()}")
    zero = np.flatnonzero(~x.any(axis=1))
    if zero.size:
        raise ValueError(f"{name} row(s) {zero[:10].tolist()} are zero vectors: cosine similarity is undefined")
    return np.ascontiguousarray(x)


def check_embeddings(embeddings, n: int, dim: int) -> np.ndarray | None:
    """``(n, dim)`` finite, non-zero vectors as float32, or None."""
    if embeddings is None:
        return None
    x = as_float_array(embeddings, "embeddings", min_ndim=2, max_ndim=2)
    if x.shape != (n, dim):
        raise ValueError(f"embeddings has shape {x.shape}, but there are {n} chunks and the store holds "
                         f"{dim}-dimensional vectors: pass shape ({n}, {dim})")
    return _check_vectors(x, "embeddings")


def check_vector(embedding, dim: int) -> np.ndarray:
    """One ``(dim,)`` query vector as float32."""
    x = as_float_array(embedding, "embedding", min_ndim=1, max_ndim=1)
    if x.shape != (dim,):
        raise ValueError(f"embedding has shape {x.shape}, but the store holds {dim}-dimensional vectors: "
                         "embed the query with the model that embedded the chunks")
    return _check_vectors(x[None, :], "embedding")[0]


def check_dim(requested, stored: int | None) -> int:
    """The store's embedding dimension: ``stored`` for an existing store, ``requested`` for a new one."""
    if requested is not None:
        requested = positive_int(requested, "dim")
    if stored is None and requested is None:
        raise ValueError("a new store needs the embedding dimension: open_store(url, dim=384), say")
    if stored is not None and requested is not None and requested != stored:
        raise ValueError(f"this store holds {stored}-dimensional embeddings, but dim={requested} was asked for")
    return stored if stored is not None else requested


def user_role(user_id: str) -> str:
    """The PostgreSQL role of a user: ``u_`` + 32 hex digits of SHA-256(user id).

    A valid role name whatever the user id contains (quotes, spaces, 500 characters),
    and the same as SQL's ``attnedu_user_role(user_id)``, which the row-level security
    policies call."""
    return "u_" + hashlib.sha256(check_text(user_id, "user_id").encode("utf-8")).hexdigest()[:32]


# ------------------------------------------------------------------------- store
class Database(abc.ABC):
    """One connection, as the shared code needs it (each backend has one adapter)."""

    integrity_error: type[Exception]

    @abc.abstractmethod
    def rows(self, sql: str, params=()) -> list[tuple]:
        """Run our own SQL, written with ``?`` placeholders; the rows it returns."""

    @abc.abstractmethod
    def raw(self, sql: str, params=()) -> list[tuple]:
        """Run any SQL in the driver's own placeholder style."""

    @abc.abstractmethod
    def transaction(self):
        """A context manager: everything inside commits together, or not at all."""

    @abc.abstractmethod
    def json(self, value: dict):
        """A dict as a query parameter for a JSON column."""

    @abc.abstractmethod
    def close(self) -> None: ...


def _select_exchanges(db: Database, user_id, model_version, min_quality) -> list[Exchange]:
    """Rows of the ``exchanges`` view; a condition whose value is None is left out."""
    conditions, params = [], []
    for column, op, value in (("user_id", "=", user_id), ("model_version", "=", model_version),
                              ("quality_score", ">=", min_quality)):
        if value is not None:
            conditions.append(f"{column} {op} ?")  # our column names; the value is a parameter
            params.append(value)
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return [_exchange(r) for r in db.rows(f"SELECT {EXCHANGE_COLUMNS} FROM exchanges{where} ORDER BY id", params)]


def _check_quality(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"quality_score must be a finite number, got {value!r}")
    return float(value)


class Store(abc.ABC):
    """Documents with chunks and embeddings, keyword / vector / hybrid search, and the
    conversations of users (through :meth:`for_user`). Open one with
    :func:`~attnedu.store.open_store`.

    The store itself is the administrator's view: it sees every user's sessions (for
    monitoring: :meth:`sessions`, :meth:`exchanges`); a user sees only their own,
    through :meth:`for_user`.
    """

    backend: str = ""  # "sqlite" or "postgresql"

    def __init__(self, db: Database, dim: int):
        self._db = db
        self.dim = dim
        self._user_stores = weakref.WeakSet()  # closed with the store

    # ------------------------------------------------------------- documents
    def add_document(self, title: str, chunks: Sequence[str], embeddings=None, *, metadata=None) -> int:
        """Store a document with its chunks (and their embeddings) in ONE transaction.

        Either the document and all of its chunks are stored, or (an error, a killed
        process, a power cut) none of them: no reader ever sees half a document.

        Args:
            title: the document's title.
            chunks: its text, already chunked: a list of at least one string.
            embeddings: ``(len(chunks), dim)`` vectors, or None (then the chunks are
                found by keyword search only).
            metadata: a JSON object, e.g. ``{"lang": "en", "synthetic": False}``;
                searches filter on it with ``where=``.

        Returns:
            the new document's id.
        """
        title = check_text(title, "title")
        if isinstance(chunks, str) or not isinstance(chunks, Sequence):
            raise ValueError("chunks must be a list of strings (one per chunk); wrap a single text: [text]")
        chunks = [check_text(c, f"chunks[{i}]") for i, c in enumerate(chunks)]
        if not chunks:
            raise ValueError("chunks is empty: a document needs at least one chunk")
        embeddings = check_embeddings(embeddings, len(chunks), self.dim)
        return self._add_document(title, chunks, embeddings, check_metadata(metadata))

    def get_document(self, document_id: int) -> Document | None:
        """The document with its chunks, or None if there is none with this id."""
        document_id = check_id(document_id, "document_id")
        rows = self._db.rows("SELECT id, title, metadata, created_at FROM documents WHERE id = ?", [document_id])
        if not rows:
            return None
        chunks = self._db.rows("SELECT text FROM chunks WHERE document_id = ? ORDER BY position", [document_id])
        r = rows[0]
        return Document(r[0], r[1], _json(r[2]), _time(r[3]), [c[0] for c in chunks])

    def delete_document(self, document_id: int) -> bool:
        """Delete a document and its chunks; False if there was none."""
        document_id = check_id(document_id, "document_id")
        return bool(self._db.rows("DELETE FROM documents WHERE id = ? RETURNING id", [document_id]))

    def stats(self) -> dict:
        """How many documents, chunks, sessions and messages the store holds."""
        return {table: self._db.rows(f"SELECT count(*) FROM {table}")[0][0]  # our own table names
                for table in ("documents", "chunks", "sessions", "messages")}

    # ---------------------------------------------------------------- search
    def keyword_search(self, query: str, k: int = 10, *, where=None) -> list[Hit]:
        """The ``k`` chunks that best match any word of ``query``, best first.

        Case and accents are folded, words are not stemmed (``"heads"`` does not find
        ``"head"``), on both backends. SQLite FTS5 ranks by BM25; PostgreSQL by
        ``ts_rank``, which counts the words but, unlike BM25, not how rare they are.

        ``where`` filters on the document's metadata, in every search:
        ``{"lang": "en"}``; ``{"year": [2024, 2025]}`` (any of them); with several
        keys, all must match. ``True`` and ``1`` differ; ``2024`` and ``2024.0`` do not.
        """
        return self._keyword_search(check_text(query, "query"), positive_int(k, "k"), check_where(where))

    def vector_search(self, embedding, k: int = 10, *, where=None) -> list[Hit]:
        """The ``k`` chunks whose embeddings have the largest cosine with ``embedding`` ``(dim,)``."""
        return self._vector_search(check_vector(embedding, self.dim), positive_int(k, "k"), check_where(where))

    def hybrid_search(self, query: str, embedding, k: int = 10, *, where=None, candidates: int = 50,
                      rrf_k: float = 60) -> list[Hit]:
        r"""Keyword and vector search fused by reciprocal rank:
        :math:`\mathrm{score}(c) = \sum_r 1 / (\mathrm{rrf\_k} + \mathrm{rank}_r(c))`.

        Each search returns its ``candidates`` best chunks (filtered by ``where``);
        a chunk in both lists adds both terms. The ``k`` best fused chunks come back.
        """
        if isinstance(rrf_k, bool) or not isinstance(rrf_k, numbers.Real) or not math.isfinite(rrf_k) or rrf_k < 0:
            raise ValueError(f"rrf_k must be a finite number >= 0, got {rrf_k!r}")
        return self._hybrid_search(check_text(query, "query"), check_vector(embedding, self.dim),
                                   positive_int(k, "k"), check_where(where),
                                   positive_int(candidates, "candidates"), float(rrf_k))

    # --------------------------------------------------------- conversations
    def for_user(self, user_id: str) -> UserStore:
        """One user's view: their sessions and messages, and nobody else's.

        SQLite: every query of the :class:`UserStore` carries ``WHERE user_id = ?``;
        the database itself does not know users (anyone with the file reads it all).
        PostgreSQL: the same, and the database enforces it too: the user store logs in
        as the user's own role, and row-level security shows that role only rows
        with its user id, whatever SQL it sends.
        """
        user_id = check_text(user_id, "user_id")
        if not user_id:
            raise ValueError("user_id is empty")
        db, owned = self._user_database(user_id)
        user_store = UserStore(user_id, db, owned)
        self._user_stores.add(user_store)
        return user_store

    def sessions(self, *, user_id: str | None = None) -> list[Session]:
        """Every session (or one user's), oldest first: the administrator's view."""
        if user_id is None:
            rows = self._db.rows(f"SELECT {SESSION_COLUMNS} FROM sessions ORDER BY id")
        else:
            rows = self._db.rows(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? ORDER BY id",
                                 [check_text(user_id, "user_id")])
        return [_session(r) for r in rows]

    def exchanges(self, *, user_id: str | None = None, model_version: str | None = None,
                  min_quality: float | None = None) -> list[Exchange]:
        """Prompt-response pairs of every user (or one), filtered: the administrator's view."""
        return _select_exchanges(self._db, user_id=check_optional_text(user_id, "user_id"),
                                 model_version=check_optional_text(model_version, "model_version"),
                                 min_quality=_check_quality(min_quality))

    # ------------------------------------------------------------------ SQL
    def execute(self, sql: str, params=()) -> list[tuple]:
        """Run your own SQL; the rows it returns (``[]`` for none).

        Pass values as ``params``, never by pasting them into ``sql``. Placeholders
        are the driver's: ``?`` for SQLite, ``%s`` for PostgreSQL.
        """
        return self._db.raw(check_text(sql, "sql"), params)

    def query(self, sql: str, params=()) -> list[tuple]:
        """Your own SQL written once for both backends, with ``?`` placeholders; the rows.

        On PostgreSQL every ``?`` becomes ``%s`` (and a ``%``, as in ``LIKE 'a%'``, becomes
        the driver's ``%%``) before the SQL is sent, so the text must hold no other ``?``
        (not in a string literal, not JSONB's ``?`` operator): use :meth:`execute` with the
        driver's own placeholders for those.
        """
        sql = check_text(sql, "sql")
        if self.backend == "postgresql" and params:
            sql = sql.replace("%", "%%")  # psycopg reads % as the start of a placeholder
        return self._db.rows(sql, params)

    def transaction(self):
        """``with store.transaction():`` everything inside commits together, or not at all."""
        return self._db.transaction()

    @property
    def connection(self):
        """The underlying ``sqlite3.Connection`` or ``psycopg.Connection``."""
        return self._db.conn

    def close(self) -> None:
        for user_store in list(self._user_stores):
            user_store.close()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"

    # ------------------------------------------------------ backend's part
    def _ingest_progress(self, written: int, total: int) -> None:
        """Called inside the ingest transaction after each batch of chunks. Does nothing;
        the crash test replaces it to stop a process halfway through a document."""

    @abc.abstractmethod
    def _add_document(self, title: str, chunks: list, embeddings, metadata: dict) -> int: ...

    @abc.abstractmethod
    def _keyword_search(self, query: str, k: int, where: dict) -> list[Hit]: ...

    @abc.abstractmethod
    def _vector_search(self, vector: np.ndarray, k: int, where: dict) -> list[Hit]: ...

    @abc.abstractmethod
    def _hybrid_search(self, query, vector, k, where, candidates, rrf_k) -> list[Hit]: ...

    @abc.abstractmethod
    def _user_database(self, user_id: str) -> tuple[Database, bool]:
        """The connection a user's store uses, and whether it is its own (to close)."""


class UserStore:
    """One user's sessions and messages. Get one with :meth:`Store.for_user`.

    Every query names ``self.user_id``; there is no way to pass another user's id.
    A session or message id of another user behaves as if it did not exist.
    """

    def __init__(self, user_id: str, db: Database, owns_db: bool):
        self.user_id = user_id
        self._db = db
        self._owns_db = owns_db

    def start_session(self, title: str = "", *, metadata=None) -> int:
        """A new conversation; returns its id."""
        rows = self._db.rows("INSERT INTO sessions (user_id, title, metadata) VALUES (?, ?, ?) RETURNING id",
                             [self.user_id, check_text(title, "title"), self._db.json(check_metadata(metadata))])
        return rows[0][0]

    def add_message(self, session_id: int, role: str, content: str, *, reply_to: int | None = None,
                    model_version: str | None = None, metadata=None) -> int:
        """Append a message to one of this user's sessions; returns its id.

        ``role``: "system", "user" or "assistant". ``reply_to``: the id of the message
        this one answers (in the same session): that makes a prompt-response pair.
        """
        if role not in MESSAGE_ROLES:
            raise ValueError(f"role must be one of {MESSAGE_ROLES}, got {role!r}")
        params = [check_id(session_id, "session_id"), self.user_id, role, check_text(content, "content"),
                  None if reply_to is None else check_id(reply_to, "reply_to"),
                  check_optional_text(model_version, "model_version"), self._db.json(check_metadata(metadata))]
        try:
            # the foreign keys (session_id, user_id) -> sessions and (reply_to, session_id) -> messages
            # refuse another user's session and a reply to a message of another session
            return self._db.rows("INSERT INTO messages (session_id, user_id, role, content, reply_to, model_version, "
                                 "metadata) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id", params)[0][0]
        except self._db.integrity_error:
            raise ValueError(f"session {session_id} is not a session of this user"
                             + ("" if reply_to is None else f", or message {reply_to} is not in it")) from None

    def log_exchange(self, session_id: int, prompt: str, response: str, *, model_version: str | None = None,
                     metadata=None) -> int:
        """A prompt and its response, as two linked messages written in one transaction;
        returns the response's id (the :class:`Exchange`'s id). ``metadata`` goes on the response."""
        with self._db.transaction():
            prompt_id = self.add_message(session_id, "user", prompt)
            return self.add_message(session_id, "assistant", response, reply_to=prompt_id,
                                    model_version=model_version, metadata=metadata)

    def rate(self, message_id: int, *, quality_score: float | None = None, feedback: str | None = None) -> None:
        """Set a message's quality score and/or feedback (None leaves a field as it is)."""
        rows = self._db.rows(
            "UPDATE messages SET quality_score = COALESCE(?, quality_score), feedback = COALESCE(?, feedback) "
            "WHERE id = ? AND user_id = ? RETURNING id",
            [_check_quality(quality_score), check_optional_text(feedback, "feedback"),
             check_id(message_id, "message_id"), self.user_id])
        if not rows:
            raise KeyError(f"this user has no message {message_id}")

    def sessions(self) -> list[Session]:
        """This user's sessions, oldest first."""
        rows = self._db.rows(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE user_id = ? ORDER BY id", [self.user_id])
        return [_session(r) for r in rows]

    def messages(self, session_id: int) -> list[Message]:
        """The messages of one of this user's sessions, in order ([] for anyone else's)."""
        rows = self._db.rows(f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE session_id = ? AND user_id = ? "
                             "ORDER BY id", [check_id(session_id, "session_id"), self.user_id])
        return [_message(r) for r in rows]

    def exchanges(self, *, model_version: str | None = None, min_quality: float | None = None) -> list[Exchange]:
        """This user's prompt-response pairs, oldest first, optionally filtered."""
        return _select_exchanges(self._db, user_id=self.user_id,
                                 model_version=check_optional_text(model_version, "model_version"),
                                 min_quality=_check_quality(min_quality))

    def delete_session(self, session_id: int) -> bool:
        """Delete one of this user's sessions with its messages; False if there was none."""
        return bool(self._db.rows("DELETE FROM sessions WHERE id = ? AND user_id = ? RETURNING id",
                                  [check_id(session_id, "session_id"), self.user_id]))

    def close(self) -> None:
        if self._owns_db:
            self._db.close()

    def __enter__(self) -> UserStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"UserStore(user_id={self.user_id!r})"
