"""The PostgreSQL backend: pgvector for vectors, ``tsvector`` for words, roles and
row-level security for users. For when one file on one machine is outgrown: many
writers at once, a server that other machines reach, replication.

* Keyword search: a generated ``tsvector`` column with a GIN index, ranked by
  ``ts_rank``. The text search configuration ``attnedu_words`` lower-cases words and
  removes accents (the ``unaccent`` dictionary), without stemming or stop words, as
  SQLite FTS5's ``unicode61`` tokenizer does, so both backends find much the same
  chunks; ``'english'`` would also find "heads" for "head". ``ts_rank`` counts how
  often the words occur but, unlike BM25, not how rare they are.
* Vector search: a ``vector(dim)`` column with an HNSW index (``vector_cosine_ops``):
  ``ORDER BY embedding <=> query LIMIT k`` walks the graph instead of scanning every
  row (approximate, like FAISS's HNSW in chapter 10). With a filter, pgvector keeps
  walking until ``k`` rows pass it (``hnsw.iterative_scan``). The planner chooses:
  below a few thousand chunks, or with a filter that keeps few documents, reading
  those rows and sorting them exactly is cheaper, and ``EXPLAIN`` shows that instead.
* Hybrid search: ONE SQL statement (:data:`HYBRID_SQL`) runs both searches and fuses
  their ranks, so only the final ``k`` rows leave the server.
* Users: the store connects as the superuser ``postgres``, which row-level security
  does not restrict (the administrator's view). :meth:`~Store.for_user` makes a
  database role for the user (``CREATE ROLE u_... LOGIN IN ROLE attnedu_user``) and
  logs in as it; the policies on ``sessions`` and ``messages`` show that role only
  rows whose ``user_id`` hashes to its name, whatever SQL it sends.
"""

from __future__ import annotations

import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from ..retrieval import tokenize
from .base import HIT_COLUMNS, INGEST_BATCH, Database, Store, _hit, check_dim, user_role

__all__ = ["PostgresStore", "SCHEMA", "KEYWORD_SQL", "VECTOR_SQL", "HYBRID_SQL", "USERS_ROLE"]

USERS_ROLE = "attnedu_user"  # every user's role is a member: it holds what users may do

# {dim} is replaced by the (checked) integer dimension before this runs.
SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- words as FTS5's unicode61 finds them: lower case, accents removed, no stemming, no stop words
CREATE TEXT SEARCH CONFIGURATION attnedu_words (COPY = simple);
ALTER TEXT SEARCH CONFIGURATION attnedu_words ALTER MAPPING FOR word, hword, hword_part WITH unaccent, simple;

CREATE TABLE store_info (               -- facts about the store itself, e.g. dim
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE documents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title      text NOT NULL,
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_metadata ON documents USING gin (metadata jsonb_path_ops);  -- for @> filters

CREATE TABLE chunks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id bigint NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    position    integer NOT NULL,       -- 0, 1, 2, ... within the document
    text        text NOT NULL,
    embedding   vector({dim}),          -- NULL: none
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('attnedu_words', text)) STORED,
    UNIQUE (document_id, position)
);
CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_tsv ON chunks USING gin (tsv);

CREATE TABLE sessions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    text NOT NULL,
    title      text NOT NULL DEFAULT '',
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, user_id)                -- the target of messages' (session_id, user_id)
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE messages (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    bigint NOT NULL,
    user_id       text NOT NULL,        -- the session's user, repeated: checked by the key below
    role          text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    reply_to      bigint,               -- the prompt this message answers
    model_version text,
    quality_score double precision,
    feedback      text,
    metadata      jsonb NOT NULL DEFAULT '{}',
    UNIQUE (id, session_id),
    -- a message belongs to a session OF ITS USER, and replies within its session
    FOREIGN KEY (session_id, user_id) REFERENCES sessions (id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (reply_to, session_id) REFERENCES messages (id, session_id) ON DELETE CASCADE
);
CREATE INDEX messages_session ON messages (session_id, user_id);
CREATE INDEX messages_reply ON messages (reply_to, session_id);

-- prompt-response pairs. security_invoker: the view reads messages with the rights of
-- whoever queries it; by default a view runs as its owner, who bypasses row-level security
CREATE VIEW exchanges WITH (security_invoker = true) AS
SELECT r.id, r.session_id, r.user_id, p.content AS prompt, r.content AS response,
       r.model_version, r.created_at, r.quality_score, r.feedback
FROM messages AS r JOIN messages AS p ON p.id = r.reply_to
WHERE r.role = 'assistant';

-- ---------------------------------------------------------------- access control
-- A user's role is named u_ + 32 hex digits of SHA-256(user id) (attnedu.store.user_role):
-- a valid name whatever the id contains.
CREATE FUNCTION attnedu_user_role(user_id text) RETURNS text LANGUAGE sql IMMUTABLE
    RETURN 'u_' || left(encode(sha256(convert_to(user_id, 'UTF8')), 'hex'), 32);

-- What every user may do (their roles are members of attnedu_user): read the documents,
-- and read and write sessions and messages, which the policies below narrow to their own.
GRANT SELECT ON store_info, documents, chunks TO attnedu_user;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, messages TO attnedu_user;
GRANT SELECT ON exchanges TO attnedu_user;

-- Row-level security: a user's role sees, changes and adds only rows with its own user_id.
-- (USING filters what it reads, updates and deletes; with no WITH CHECK, the same test
-- applies to rows it writes.) Superusers and the tables' owner are not restricted.
ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_sessions ON sessions USING (attnedu_user_role(user_id) = current_user);
CREATE POLICY own_messages ON messages USING (attnedu_user_role(user_id) = current_user);
"""

# The searches rank chunks in subqueries that read the chunks table alone: that is what lets
# the planner answer "ORDER BY embedding <=> query LIMIT n" by walking the HNSW index (joined
# with documents, it would sort every row). {filters} is "" or a condition on the chunk's
# document (see _where_sql); the final SELECT joins the few winners with their documents.
KEYWORD_SQL = """
SELECT {hit_columns}, matching.score
FROM (SELECT c.id, ts_rank(c.tsv, q.query) AS score
      FROM chunks AS c, to_tsquery('attnedu_words', %(tsquery)s) AS q (query)
      WHERE c.tsv @@ q.query{filters}
      ORDER BY score DESC, c.id LIMIT %(k)s) AS matching
JOIN chunks AS c ON c.id = matching.id JOIN documents AS d ON d.id = c.document_id
ORDER BY matching.score DESC, c.id
"""

VECTOR_SQL = """
SELECT {hit_columns}, 1 - nearest.distance          -- cosine = 1 - cosine distance
FROM (SELECT c.id, c.embedding <=> %(embedding)s AS distance
      FROM chunks AS c
      WHERE c.embedding IS NOT NULL{filters}
      ORDER BY distance LIMIT %(k)s) AS nearest
JOIN chunks AS c ON c.id = nearest.id JOIN documents AS d ON d.id = c.document_id
ORDER BY nearest.distance, c.id
"""

# Hybrid search in ONE statement. Each search keeps its `candidates` best chunks and
# numbers them 1, 2, 3, ...; a chunk's fused score is the sum of 1 / (rrf_k + rank) over
# the searches that found it.
HYBRID_SQL = """
WITH semantic AS (                      -- nearest by cosine distance: HNSW index scan
    SELECT id, row_number() OVER (ORDER BY distance) AS rank
    FROM (SELECT c.id, c.embedding <=> %(embedding)s AS distance
          FROM chunks AS c
          WHERE c.embedding IS NOT NULL{filters}
          ORDER BY distance LIMIT %(candidates)s) AS nearest
),
keyword AS (                            -- chunks with any query word: GIN index on tsv
    SELECT id, row_number() OVER (ORDER BY score DESC, id) AS rank
    FROM (SELECT c.id, ts_rank(c.tsv, q.query) AS score
          FROM chunks AS c, to_tsquery('attnedu_words', %(tsquery)s) AS q (query)
          WHERE c.tsv @@ q.query{filters}
          ORDER BY score DESC, c.id LIMIT %(candidates)s) AS matching
),
fused AS (
    SELECT id, sum(1.0 / (%(rrf_k)s + rank)) AS score
    FROM (SELECT * FROM semantic UNION ALL SELECT * FROM keyword) AS ranks
    GROUP BY id
)
SELECT {hit_columns}, f.score
FROM fused AS f JOIN chunks AS c ON c.id = f.id JOIN documents AS d ON d.id = c.document_id
ORDER BY f.score DESC, c.id
LIMIT %(k)s
"""


class PostgresDatabase(Database):
    integrity_error = psycopg.IntegrityError

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def rows(self, sql: str, params=()) -> list[tuple]:
        return self.raw(sql.replace("?", "%s"), params)

    def raw(self, sql: str, params=()) -> list[tuple]:
        cur = self.conn.execute(sql, params or None)  # no params: '%' in the SQL is just '%'
        return cur.fetchall() if cur.description else []

    def transaction(self):
        return self.conn.transaction()  # nested: a savepoint

    def json(self, value: dict) -> Jsonb:
        return Jsonb(value)

    def close(self) -> None:
        self.conn.close()


def _where_sql(where: dict) -> tuple[str, dict]:
    """The metadata filters as a condition on a chunk ``c``, and its (named) parameters.

    ``d.metadata @> '{"lang": "en"}'`` ("contains") holds when the document's metadata
    has that key with that value; ``@> ANY(array)`` when it has any of them (the GIN
    index on ``documents.metadata`` answers it). ``ARRAY(SELECT ...)`` runs once per
    query, giving the matching documents' ids; the chunk scan then keeps the chunks of
    those documents, and can still walk the HNSW index (pgvector's iterative scan
    walks on until enough chunks pass).
    """
    if not where:
        return "", {}
    conditions, params = [], {}
    for i, (key, values) in enumerate(where.items()):
        conditions.append(f"d.metadata @> ANY(%(where{i})s)")  # where0, where1, ...: our names, not the key
        params[f"where{i}"] = [Jsonb({key: v}) for v in values]
    return (" AND c.document_id = ANY(ARRAY(SELECT d.id FROM documents AS d WHERE "
            + " AND ".join(conditions) + "))"), params


def _tsquery(query: str) -> str:
    """``'word1' | 'word2'``: any of the query's words, each quoted as a lexeme (words are
    letters and digits only, so a quote cannot occur), found as FTS5 finds them."""
    return " | ".join(f"'{t}'" for t in tokenize(query))


class PostgresStore(Store):
    """A store in a PostgreSQL database with pgvector, e.g. from :class:`~attnedu.store.PostgresServer`."""

    backend = "postgresql"

    def __init__(self, url: str, dim: int | None = None):
        conn = psycopg.connect(url, autocommit=True)  # each statement commits unless in a transaction()
        try:
            dim = self._create_schema(conn, dim)
            register_vector(conn)  # NumPy arrays <-> vector
            conn.execute("SET hnsw.ef_search = 100")  # candidates kept while walking the graph (default 40)
            conn.execute("SET hnsw.iterative_scan = strict_order")  # with a filter: walk on until LIMIT rows pass
        except BaseException:
            conn.close()
            raise
        super().__init__(PostgresDatabase(conn), dim)
        self.url = url

    @staticmethod
    def _create_schema(conn: psycopg.Connection, dim) -> int:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(7207)")  # one creator at a time
            stored = None
            if conn.execute("SELECT to_regclass('store_info')").fetchone()[0] is not None:
                stored = int(conn.execute("SELECT value FROM store_info WHERE key = 'dim'").fetchone()[0])
            dim = check_dim(dim, stored)
            if stored is None:
                # roles belong to the whole server, not to one database: create it once
                if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [USERS_ROLE]).fetchall():
                    conn.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(pgsql.Identifier(USERS_ROLE)))
                conn.execute(SCHEMA.replace("{dim}", str(int(dim))))  # dim: a checked int
                conn.execute("INSERT INTO store_info (key, value) VALUES ('dim', %s)", [str(dim)])
        return dim

    def __repr__(self) -> str:
        info = self._db.conn.info
        return f"PostgresStore(database={info.dbname!r}, user={info.user!r}, dim={self.dim})"

    # ------------------------------------------------------------- documents
    def _add_document(self, title, chunks, embeddings, metadata) -> int:
        with self._db.transaction():
            doc_id = self._db.rows("INSERT INTO documents (title, metadata) VALUES (?, ?) RETURNING id",
                                   [title, Jsonb(metadata)])[0][0]
            with self._db.conn.cursor() as cur:
                for start in range(0, len(chunks), INGEST_BATCH):
                    stop = min(start + INGEST_BATCH, len(chunks))
                    cur.executemany(  # psycopg sends the batch in one round trip (pipeline mode)
                        "INSERT INTO chunks (document_id, position, text, embedding) VALUES (%s, %s, %s, %s)",
                        [(doc_id, i, chunks[i], None if embeddings is None else embeddings[i])
                         for i in range(start, stop)])
                    self._ingest_progress(stop, len(chunks))
        return doc_id

    # ---------------------------------------------------------------- search
    def _keyword_search(self, query, k, where):
        tsquery = _tsquery(query)
        if not tsquery:
            return []
        filters, params = _where_sql(where)
        rows = self._db.raw(KEYWORD_SQL.format(filters=filters, hit_columns=HIT_COLUMNS),
                            {"tsquery": tsquery, "k": k, **params})
        return [_hit(r, r[6]) for r in rows]

    def _vector_search(self, vector, k, where):
        filters, params = _where_sql(where)
        rows = self._db.raw(VECTOR_SQL.format(filters=filters, hit_columns=HIT_COLUMNS),
                            {"embedding": vector, "k": k, **params})
        return [_hit(r, r[6]) for r in rows]

    def _hybrid_search(self, query, vector, k, where, candidates, rrf_k):
        filters, params = _where_sql(where)
        rows = self._db.raw(
            HYBRID_SQL.format(filters=filters, hit_columns=HIT_COLUMNS),
            {"embedding": vector, "tsquery": _tsquery(query),  # no words: '', which matches nothing
             "candidates": candidates, "rrf_k": rrf_k, "k": k, **params})
        return [_hit(r, r[6]) for r in rows]

    # ---------------------------------------------------------------- users
    def _user_database(self, user_id):
        role = user_role(user_id)
        try:  # the user's role, made on first use: it may log in, and do what attnedu_user may
            if not self._db.raw("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]):
                self._db.raw(pgsql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    pgsql.Identifier(role), pgsql.Identifier(USERS_ROLE)))
        except psycopg.errors.DuplicateObject:
            pass  # another connection made it just now
        return PostgresDatabase(psycopg.connect(self.url, user=role, autocommit=True)), True
