"""attnedu.store.cluster: a streaming-replication standby, and a table sharded over servers.

Each kind of cluster starts once for this module (a few seconds), and every test uses it.
"""

from __future__ import annotations

import pytest

psycopg = pytest.importorskip("psycopg")

from attnedu.store import PostgresServer  # noqa: E402
from attnedu.store.cluster import MAX_SHARDS, Replica, ShardedCluster  # noqa: E402
from conftest import postgres_unavailable  # noqa: E402

INJECTION = "x'); DROP TABLE messages; --"


@pytest.fixture(scope="module")
def postgres_available():
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)


# ===================================================================== replication
@pytest.fixture(scope="module")
def primary(postgres_available):
    with PostgresServer() as server:  # default settings: enough for a standby
        yield server


@pytest.fixture(scope="module")
def standby(primary):
    with Replica(primary) as replica:
        yield replica


def primary_rows(primary, query, params=()):
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def test_a_write_on_the_primary_is_visible_on_the_standby_once_caught_up(primary, standby):
    primary_rows(primary, "CREATE TABLE notes (id int PRIMARY KEY, body text)")
    for i, body in enumerate(["hello", "it's", INJECTION]):
        primary_rows(primary, "INSERT INTO notes VALUES (%s, %s)", (i, body))
    waited = standby.wait_caught_up(timeout=10)
    assert 0 <= waited < 10
    assert standby.rows("SELECT id, body FROM notes ORDER BY id") == [(0, "hello"), (1, "it's"), (2, INJECTION)]
    assert standby.rows("SELECT body FROM notes WHERE id = %s", (1,)) == [("it's",)]
    status = standby.status()
    assert status["state"] == "streaming" and status["sync_state"] == "async"
    assert isinstance(standby.lag_bytes(), int) and standby.lag_bytes() >= 0


def test_the_standby_is_in_recovery_and_the_primary_is_not(primary, standby):
    assert standby.is_read_only() is True
    assert primary_rows(primary, "SELECT pg_is_in_recovery()") == [(False,)]
    assert standby.url() != primary.url() and standby.server.folder != primary.folder


def test_a_write_on_the_standby_fails_as_read_only(primary, standby):
    primary_rows(primary, "CREATE TABLE IF NOT EXISTS counters (n int)")
    primary_rows(primary, "INSERT INTO counters VALUES (%s)", (1,))
    standby.wait_caught_up()
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction"):
        standby.rows("INSERT INTO counters VALUES (%s)", (2,))
    assert standby.write_error("DELETE FROM counters") == "cannot execute DELETE in a read-only transaction"
    assert "read-only" in standby.write_error()  # CREATE TABLE, the default
    standby.wait_caught_up()
    assert standby.rows("SELECT n FROM counters") == primary_rows(primary, "SELECT n FROM counters") == [(1,)]


def test_a_replica_needs_a_running_primary_server(postgres_available):
    with pytest.raises(ValueError, match="PostgresServer"):
        Replica("postgresql://postgres@/postgres")
    with pytest.raises(ValueError, match="not running"):
        Replica(PostgresServer()).start()


def test_an_error_in_the_with_block_stops_the_standby_but_not_the_primary(primary):
    with pytest.raises(KeyError):
        with Replica(primary) as extra:
            server = extra.server
            folder, proc = server.folder, server._proc
            assert extra.is_read_only()
            raise KeyError("boom")
    assert proc.poll() is not None and not folder.exists() and not extra.running
    assert primary.running and primary_rows(primary, "SELECT 1") == [(1,)]


# ======================================================================== sharding
USERS = [f"user{i}" for i in range(40)]
ROWS = [(user, f"message {m} from {user}") for user in USERS for m in range(3)]


@pytest.fixture(scope="module")
def cluster(postgres_available):
    with ShardedCluster(n_shards=2) as c:
        assert c.insert(ROWS) == len(ROWS)
        yield c


def total(cluster) -> int:
    return cluster.rows("SELECT count(*) FROM messages")[0][0]


def test_rows_are_split_across_the_shards(cluster):
    per_shard = cluster.rows_per_shard()
    assert len(per_shard) == 2 and all(n > 0 for n in per_shard)
    assert sum(per_shard) == total(cluster) >= len(ROWS)


def test_every_row_is_on_the_shard_that_shard_of_names(cluster):
    seen = set()
    for shard in range(cluster.n_shards):
        keys = [k for (k,) in cluster.shard_rows(shard, "SELECT DISTINCT user_id FROM messages")]
        assert all(cluster.shard_of(k) == shard for k in keys)
        seen.update(keys)
    assert set(USERS) <= seen
    # the coordinator agrees: each row comes from the foreign table of its shard
    for partition, key in cluster.rows("SELECT DISTINCT tableoid::regclass::text, user_id FROM messages"):
        assert partition == cluster.partitions[cluster.shard_of(key)]
    # and a user's rows are all on one shard, with unique message ids across shards
    ids = [i for shard in range(2) for (i,) in cluster.shard_rows(shard, "SELECT message_id FROM messages")]
    assert len(ids) == len(set(ids)) == total(cluster)


def test_a_query_by_key_on_the_coordinator_matches_the_shard_itself(cluster):
    query = "SELECT message_id, role, content FROM messages WHERE user_id = %s ORDER BY message_id"
    for user in ["user0", "user7", "user39"]:
        through_coordinator = cluster.rows(query, (user,))
        assert len(through_coordinator) == 3
        assert through_coordinator == cluster.shard_rows(cluster.shard_of(user), query, (user,))
        other = 1 - cluster.shard_of(user)
        assert cluster.shard_rows(other, query, (user,)) == []


def test_explain_of_a_key_query_scans_one_shard_and_of_other_queries_all(cluster):
    for user in ["user0", "user1", INJECTION]:
        plan = cluster.explain("SELECT content FROM messages WHERE user_id = %s", (user,))
        mentioned = [p for p in cluster.partitions if p in plan]
        assert mentioned == [cluster.partitions[cluster.shard_of(user)]], plan
        assert "Foreign Scan" in plan and "Append" not in plan
    plan = cluster.explain("SELECT count(*) FROM messages WHERE content LIKE %s", ("%hello%",))
    assert all(p in plan for p in cluster.partitions) and "Append" in plan, plan


def test_inserted_dicts_keep_their_role_and_time(cluster):
    from datetime import datetime, timezone

    when = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    assert cluster.insert([{"user_id": "dora", "content": "answer", "role": "assistant", "created_at": when}]) == 1
    assert cluster.insert([]) == 0
    assert cluster.rows("SELECT role, content, created_at FROM messages WHERE user_id = %s", ("dora",)) == [
        ("assistant", "answer", when)]


def test_bad_names_and_arguments_are_rejected_before_anything_starts():
    for kwargs in [{"table": "messages; DROP TABLE x"}, {"table": "Messages"}, {"table": ""},
                   {"key": 'user_id"'}, {"key": "1user"}, {"key": "content"}, {"key": "message_id"},
                   {"table": "t" * 41}, {"n_shards": 0}, {"n_shards": MAX_SHARDS + 1}, {"n_shards": True},
                   {"n_shards": "2"}, {"n_shards": 2.0}]:
        with pytest.raises(ValueError, match="use|name"):
            ShardedCluster(**kwargs)


def test_bad_rows_and_keys_are_rejected(cluster):
    before = total(cluster)
    for rows in [[("only one",)], [(42, "number key")], [("", "empty key")], [("u", None)],
                 [{"user_id": "u"}], [{"user_id": "u", "content": "x", "extra": 1}],
                 [{"user_id": "u", "content": "x", "role": "admin"}],
                 [{"user_id": "u", "content": "x", "created_at": "yesterday"}], ["u, x"]]:
        with pytest.raises(ValueError, match="row 0"):
            cluster.insert(rows)
    with pytest.raises(ValueError, match="str"):
        cluster.shard_of(42)
    with pytest.raises(ValueError, match="shard"):
        cluster.shard_rows(2, "SELECT 1")
    assert total(cluster) == before


def test_sql_injection_through_insert_values_and_keys_leaves_the_tables_intact(cluster):
    before = cluster.rows_per_shard()
    content = "'); DELETE FROM messages; DROP TABLE messages; --"
    assert cluster.insert([(INJECTION, content), {"user_id": "eve", "content": INJECTION}]) == 2
    after = cluster.rows_per_shard()
    assert sum(after) == sum(before) + 2
    assert cluster.rows("SELECT content FROM messages WHERE user_id = %s", (INJECTION,)) == [(content,)]
    assert cluster.rows("SELECT user_id FROM messages WHERE content = %s", (INJECTION,)) == [("eve",)]
    shard = cluster.shard_of(INJECTION)
    assert cluster.shard_rows(shard, "SELECT content FROM messages WHERE user_id = %s", (INJECTION,)) == [(content,)]
    assert cluster.explain("SELECT * FROM messages WHERE user_id = %s", (INJECTION,)).count("Foreign Scan") == 1
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # explain() only reads
        cluster.explain("SELECT 1; DROP TABLE messages")
    for shard in range(cluster.n_shards):  # the table is still there, with its rows
        assert cluster.shard_rows(shard, "SELECT to_regclass('messages') IS NOT NULL") == [(True,)]
    assert total(cluster) == sum(after)


def test_an_error_in_the_with_block_stops_every_server(postgres_available):
    with pytest.raises(KeyError):
        with ShardedCluster(n_shards=1, table="chat", key="account") as small:
            servers = [small.coordinator, *small.shards]
            procs, folders = [s._proc for s in servers], [s.folder for s in servers]
            assert small.insert([("a1", "hi")]) == 1 and small.rows_per_shard() == [1]
            assert small.rows("SELECT account, content FROM chat") == [("a1", "hi")]
            raise KeyError("boom")
    assert all(p.poll() is not None for p in procs) and not any(f.exists() for f in folders)
    assert not small.running
