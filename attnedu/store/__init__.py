"""A real store for chapters 12 to 14: documents, search and conversations in a database.

One interface, two backends, chosen by a connection URL::

    store = open_store("sqlite:///course.db", dim=384)         # one file; nothing to start
    store = open_store("sqlite://", dim=384)                   # in memory (tests)
    with PostgresServer() as server:                           # PostgreSQL 18 + pgvector
        store = open_store(server.url(), dim=384)              # postgresql://...

What it holds (the schema: ``SCHEMA`` in ``sqlite.py`` and ``postgres.py``)::

    documents  1──n  chunks            text + embedding; keyword, vector, hybrid search
    sessions   1──n  messages          a conversation; a response links to its prompt
    exchanges  (a view)                prompt-response pairs: user id, time, model
                                       version, quality score, feedback

==================  ===========================================================================
method              what it does
==================  ===========================================================================
``add_document``    a document, its chunks and their embeddings, in ONE transaction
``keyword_search``  FTS5 ``bm25()`` (SQLite) / ``tsvector`` + ``ts_rank`` (PostgreSQL)
``vector_search``   cosine: NumPy over float32 BLOBs (SQLite) / pgvector's HNSW (PostgreSQL)
``hybrid_search``   both, fused by reciprocal rank (k = 60); one SQL statement on PostgreSQL
``for_user``        one user's sessions, messages, exchanges: a :class:`UserStore`
``sessions``,       every user's, for the administrator (monitoring, evaluation)
``exchanges``
``execute``         your own SQL, with the driver's parameters (``?`` / ``%s``)
``query``           your own SQL, with ``?`` parameters on both backends
==================  ===========================================================================

Searches take ``where={"key": value}`` filters on the documents' metadata.

Who sees what: a :class:`UserStore` reads and writes only its user's sessions. SQLite
has no users, so that rests on the library's queries alone (each says ``WHERE user_id
= ?``; whoever opens the file reads everything). PostgreSQL enforces it itself: the
user's store logs in as the user's own database role, and row-level security hides
other users' rows from that role whatever SQL it sends.

Every value reaches the database as a query parameter, never pasted into SQL.

Chapters 13 and 14 write into ``workdir("ch13")``, a temporary folder removed by their last
cell (``remove_workdir``) or when the kernel exits; what a killed run leaves behind (its
folder, a server's folder) is removed by ``sweep_stale``, which the next chapter or server to
start runs. Where everything lives, and the per-machine cache of the PostgreSQL installation:
:mod:`attnedu.store.cleanup`.

Beside the store, for chapter 14: ``cluster`` (a PostgreSQL standby, a sharded table on
real servers), ``quorum`` (Dynamo-style N, W, R replication, simulated) and ``sharding``
(which shard holds a key: modulo against a hash ring, and what moves when a shard is added);
and ``milvus`` (``MilvusLite``: a dedicated vector database, Milvus Lite, in a local folder,
compared with pgvector and FAISS).
"""

from __future__ import annotations

import os

from .base import MESSAGE_ROLES, Document, Exchange, Hit, Message, Session, Store, UserStore, user_role
from .cleanup import remove_workdir, sweep_stale, workdir
from .server import PostgresServer, start_postgres

__all__ = ["open_store", "Store", "UserStore", "Hit", "Document", "Session", "Message", "Exchange",
           "PostgresServer", "start_postgres", "user_role", "MESSAGE_ROLES", "workdir", "remove_workdir",
           "sweep_stale"]


def open_store(url: str | os.PathLike = "sqlite://", *, dim: int | None = None) -> Store:
    """Open (or create) a store.

    Args:
        url: where it lives:

            * ``"sqlite:///relative/path.db"``, ``"sqlite:////absolute/path.db"`` (as in
              SQLAlchemy: the path follows the third slash), or a ``pathlib.Path``;
            * ``"sqlite://"`` or ``":memory:"``: a new in-memory store, gone when closed;
            * ``"postgresql://user@host/database"`` (``postgres://`` too), any URL that
              libpq understands, e.g. ``PostgresServer.url()``.

        dim: the embedding dimension. Needed to create a store; checked when opening
            one (a ``ValueError`` if it differs).

    Returns:
        a :class:`Store`; close it with ``close()`` or a ``with`` block.
    """
    if isinstance(url, os.PathLike):
        from .sqlite import SQLiteStore

        return SQLiteStore(os.fspath(url), dim)
    if not isinstance(url, str):
        raise ValueError(f"url must be a string such as 'sqlite:///store.db', got {type(url).__name__}")
    if url in ("sqlite://", ":memory:", "sqlite:///:memory:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(":memory:", dim)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url[len("sqlite:///"):], dim)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore  # imports psycopg and pgvector only now

        return PostgresStore(url, dim)
    raise ValueError(f"unknown store URL {url!r}: use 'sqlite:///path/to.db', 'sqlite://' (in memory) "
                     "or 'postgresql://...'")
