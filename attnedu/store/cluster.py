"""Replication and sharding, shown on real PostgreSQL servers on this machine.

One database server eventually runs out of something: of CPU for reads, of disk or
write throughput, or of luck (the machine dies). Two ways to use several servers:

**Replication: every server holds ALL the data.** The *primary* takes every write;
each *standby* (replica) receives the primary's write-ahead log (WAL, the journal of
every change, which the primary writes anyway for crash recovery) and replays it, so it
holds a copy a few milliseconds behind. Standbys answer read queries ("hot standby")
and refuse writes. What it buys: **read scaling** (spread the reads over copies) and
**availability** (if the primary dies, a standby with all the data can take over). What
it does not buy: more write throughput or more storage, since every server stores and
applies every write::

                 writes + reads                     reads only
    client ───────────────────────► PRIMARY        STANDBY ◄──────── client
                                    (read-write)   (read-only, in recovery)
                                       │  WAL stream  ▲
                                       └──────────────┘
                                    pg_current_wal_lsn()   pg_last_wal_replay_lsn()
                                    "written up to here"   "replayed up to here"
                                           lag in bytes = the difference

Replication here is asynchronous: a commit on the primary returns before the standby
has it, so a read on the standby just after a write may not see it yet
(:meth:`Replica.wait_caught_up` waits until it does; ``lag_bytes`` says how far behind).

**Sharding (partitioning across servers): each server holds PART of the data.** Rows
are assigned to a shard by their *shard key*, here the user id, through a hash:
``hash(user_id) mod n`` picks one of ``n`` shards. A *coordinator* holds no rows; it
knows which shard holds which hash values, sends each row to its shard, and answers
queries by asking the shards. What it buys: **write and storage scaling** (each shard
takes about 1/n of the writes and of the data). What it costs: a query that names the
key goes to one shard (cheap), one that does not goes to every shard (scatter-gather);
a transaction over several shards is no longer simply atomic::

                            COORDINATOR   (messages: PARTITION BY HASH (user_id))
    client ───────────────►   postgres_fdw: each partition is a FOREIGN table
                             │                          │
             hash(user_id) % 2 = 0        hash(user_id) % 2 = 1
                             ▼                          ▼
                        SHARD 0                    SHARD 1
                        messages (its rows)        messages (its rows)

Real systems combine both: each shard is a primary with its own standbys.

How the demonstration is built, from PostgreSQL's own parts:

* :class:`Replica` copies a running :class:`~attnedu.store.PostgresServer` with
  ``pg_basebackup -R`` (a consistent copy of the data directory, plus the settings that
  make it a standby that connects back to the primary) and starts that copy as a second
  server. It works with a default ``PostgresServer()``: the defaults already have
  ``wal_level = replica`` and ``max_wal_senders = 10``, and the server's ``initdb
  --auth=trust`` lets local replication connections in. No ``primary_settings()`` is
  needed.
* :class:`ShardedCluster` starts ``n_shards + 1`` servers. On the coordinator, the
  table is ``PARTITION BY HASH (key)``, and each partition is a foreign table
  (``postgres_fdw``) living on one shard: PostgreSQL's own partition routing sends each
  inserted row to its shard, and its partition pruning keeps a query with
  ``key = value`` away from the other shards (see :meth:`ShardedCluster.explain`).

What it does NOT do (and what real systems add):

* no failover: if the primary stops, nothing promotes the standby (real setups run a
  failure detector and a promotion tool, e.g. Patroni or repmgr for PostgreSQL, and
  move clients over); no synchronous replication (a commit waiting for a standby, so a
  crash loses nothing); no replication slot (a standby that falls far behind needs a new
  base backup);
* no rebalancing: the number of shards is fixed when the cluster starts; adding a shard
  would move about half the rows, and real systems (Citus for PostgreSQL, Vitess for
  MySQL, the built-in sharding of MongoDB or CockroachDB) split the key space into many
  small pieces that they can move while serving;
* no distributed transactions: the coordinator commits on each shard in turn, not with
  two-phase commit; no cross-shard unique keys beyond the coordinator's sequence; the
  coordinator is a single point of failure;
* one machine: every "server" is a process here, talking over Unix sockets, so the
  timings say nothing about networks; in production each runs on its own machine.

Every value reaches a server as a query parameter, or as a literal quoted by psycopg
(``psycopg.sql.Literal``); table and column names are checked, then quoted as
identifiers. Servers are stopped when a ``with`` block ends, on errors too.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql as pgsql

from .server import PostgresServer

__all__ = ["Replica", "ShardedCluster", "MESSAGE_COLUMNS", "MAX_SHARDS"]

MAX_SHARDS = 16  # each shard is a server process (and about 40 MB of files) on this machine

# The sharded table's columns besides the key (key text NOT NULL comes first).
MESSAGE_COLUMNS = ("message_id", "role", "content", "created_at")
_ROLES = ("system", "user", "assistant")

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")  # + "_shard_15" stays within PostgreSQL's 63 bytes
# settings that belong to one server, not copied from a primary to its standby
_LOCAL_SETTINGS = {"listen_addresses", "unix_socket_directories", "unix_socket_permissions", "port",
                   "primary_conninfo", "primary_slot_name", "hot_standby", "cluster_name"}
_standby_numbers = itertools.count(1)


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what}={name!r} is not a plain SQL name: use lower-case letters, digits and "
                         f"underscores, starting with a letter or '_', at most 40 characters, e.g. 'messages'")
    return name


def _query(conn: psycopg.Connection, query, params=()) -> list[tuple]:
    cur = conn.execute(query, params or None)  # no params: a '%' in the SQL is just '%'
    return cur.fetchall() if cur.description else []


def _connect(server: PostgresServer) -> psycopg.Connection:
    return psycopg.connect(server.url(), autocommit=True)


# ===================================================================== replication
class _StandbyServer(PostgresServer):
    """A :class:`PostgresServer` whose data directory is ``pg_basebackup -R`` of a primary's."""

    def __init__(self, primary: PostgresServer, name: str, settings: dict):
        inherited = {k: v for k, v in primary.settings.items() if k not in _LOCAL_SETTINGS}
        # cluster_name: the name the standby gives the primary (pg_stat_replication.application_name)
        super().__init__(run_as=primary.run_as, settings={**inherited, "cluster_name": name, **settings})
        self.primary = primary

    def _make_data_directory(self, data: Path, env: dict, drop_root: dict) -> None:
        # run as the server's OS user: it must own the copy, and reach the primary's socket
        port = str(self.primary.settings.get("port", 5432))
        args = [str(self.bin / "pg_basebackup"), "--pgdata", str(data),
                "--host", str(self.primary.folder), "--port", port, "--username", "postgres", "--no-password",
                "--write-recovery-conf",  # -R: standby.signal + primary_conninfo: start as a standby
                "--wal-method", "stream",  # the WAL written during the copy comes along
                "--checkpoint", "fast",  # start now, not after the next scheduled checkpoint
                "--no-sync", "--no-manifest"]  # a throwaway copy
        try:
            result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120, **drop_root)
        except subprocess.TimeoutExpired:
            raise RuntimeError("pg_basebackup did not finish within 120 s") from None
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed:\n{result.stderr[-2000:]}")


class Replica:
    """A streaming-replication standby of a running :class:`~attnedu.store.PostgresServer`.

    Example::

        with PostgresServer() as primary, Replica(primary) as standby:  # about 1 s more
            with psycopg.connect(primary.url(), autocommit=True) as conn:
                conn.execute("CREATE TABLE notes (id int, body text)")
                conn.execute("INSERT INTO notes VALUES (%s, %s)", (1, "hello"))
            standby.wait_caught_up()           # until it has replayed all the primary wrote
            standby.rows("SELECT * FROM notes")         # [(1, 'hello')]
            standby.is_read_only()                      # True
            standby.write_error("DELETE FROM notes")    # 'cannot execute DELETE in a read-only transaction'
        # both stopped, their folders deleted

    The primary needs no special settings: a default ``PostgresServer()`` works. The
    standby runs with the primary's ``settings`` (a standby needs at least the primary's
    ``max_connections`` and similar), plus ``settings`` here. It is its own server, with
    its own socket folder (:meth:`url`), running as the primary's OS user. Leave it (or
    :meth:`stop` it) before stopping the primary; a standby whose primary has stopped
    keeps serving reads and retries the connection.

    Args:
        primary: a running :class:`~attnedu.store.PostgresServer` (started, or inside
            its ``with`` block).
        settings: extra settings for the standby, ``postgres -c name=value``.

    Attributes:
        primary: that server.
        server: the standby's own :class:`~attnedu.store.PostgresServer` (its
            ``folder``, its ``log``).
        name: the standby's name, as the primary lists it in ``pg_stat_replication``.
    """

    def __init__(self, primary: PostgresServer, *, settings: dict | None = None):
        if not isinstance(primary, PostgresServer):
            raise ValueError(f"primary must be a PostgresServer, got {type(primary).__name__}: "
                             "with PostgresServer() as primary, Replica(primary) as standby: ...")
        self.primary = primary
        self.name = f"attnedu_standby_{os.getpid()}_{next(_standby_numbers)}"  # unique among standbys
        self.server = _StandbyServer(primary, self.name, dict(settings or {}))
        self._conn: psycopg.Connection | None = None  # to the standby
        self._primary_conn: psycopg.Connection | None = None  # ours, for the primary's WAL position

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Replica":
        """Copy the primary (``pg_basebackup``) and start the copy as a hot standby."""
        if not self.primary.running:
            raise ValueError("the primary is not running: start it first, e.g. "
                             "with PostgresServer() as primary, Replica(primary) as standby: ...")
        self.server.start()
        try:
            self._conn = _connect(self.server)
            self._primary_conn = _connect(self.primary)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close our connections, stop the standby and delete its folder (safe to call twice).
        The primary keeps running."""
        for conn in (self._conn, self._primary_conn):
            if conn is not None:
                conn.close()
        self._conn = self._primary_conn = None
        self.server.stop()

    def __enter__(self) -> "Replica":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.server.running and self._conn is not None

    def __repr__(self) -> str:
        return f"Replica({self.server!r}, of {self.primary!r})"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """The standby's connection URL (read-only), as :meth:`PostgresServer.url`."""
        return self.server.url(database, user)

    # ------------------------------------------------------------------ queries
    def _standby(self) -> psycopg.Connection:
        if self._conn is None:
            raise RuntimeError("the standby is not running: use it inside `with Replica(primary) as standby:`")
        return self._conn

    def rows(self, sql: str, params: Sequence | Mapping = ()) -> list[tuple]:
        """Run ``sql`` (``%s`` placeholders, values in ``params``) on the standby, in the
        database ``postgres``; its rows as a list of tuples (``[]`` for a statement
        without rows). A write raises ``psycopg.errors.ReadOnlySqlTransaction``."""
        return _query(self._standby(), sql, params)

    def write_error(self, sql: str = "CREATE TABLE attnedu_probe (x int)",
                    params: Sequence | Mapping = ()) -> str | None:
        """Try a write on the standby: PostgreSQL's error message, e.g. ``"cannot execute
        INSERT in a read-only transaction"`` (SQLSTATE 25006), or ``None`` if it
        succeeded (it never should on a standby). Other errors (a table that does not
        exist, ...) are raised as usual."""
        try:
            _query(self._standby(), sql, params)
        except psycopg.errors.ReadOnlySqlTransaction as exc:
            return exc.diag.message_primary or str(exc)
        return None

    def is_read_only(self) -> bool:
        """``pg_is_in_recovery()``: True while the server is a standby replaying WAL."""
        return bool(self.rows("SELECT pg_is_in_recovery()")[0][0])

    def primary_lsn(self) -> str:
        """``pg_current_wal_lsn()`` on the primary: how far it has written its WAL, e.g. ``'0/3000148'``."""
        if self._primary_conn is None:
            raise RuntimeError("the standby is not running: use it inside `with Replica(primary) as standby:`")
        return _query(self._primary_conn, "SELECT pg_current_wal_lsn()::text")[0][0]

    def replay_lsn(self) -> str:
        """``pg_last_wal_replay_lsn()`` on the standby: how far it has replayed that WAL."""
        return self.rows("SELECT pg_last_wal_replay_lsn()::text")[0][0]

    def lag_bytes(self) -> int:
        """How many bytes of the primary's WAL the standby has not replayed yet (0: caught up)."""
        target = self.primary_lsn()
        return int(self.rows("SELECT greatest(pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()), 0)",
                             (target,))[0][0])

    def wait_caught_up(self, timeout: float = 10.0) -> float:
        """Wait until the standby has replayed everything the primary had written when
        this was called (``pg_last_wal_replay_lsn() >= pg_current_wal_lsn()``): after it,
        every transaction committed on the primary before the call is visible here.

        Returns:
            the seconds waited (usually a few milliseconds).

        Raises:
            TimeoutError: not caught up within ``timeout`` seconds (see the standby's
                ``server.log`` and ``lag_bytes()``).
        """
        start = time.monotonic()
        target = self.primary_lsn()
        while True:
            if self.rows("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (target,))[0][0]:
                return time.monotonic() - start
            if time.monotonic() - start > timeout:
                raise TimeoutError(f"the standby replayed up to {self.replay_lsn()}, not {target}, within "
                                   f"{timeout} s; its log ends:\n{self.server.log[-1500:]}")
            time.sleep(0.005)

    def status(self) -> dict:
        """The primary's view of this standby (``pg_stat_replication``): ``{"state":
        'streaming', "sent_lsn": ..., "replay_lsn": ..., "sync_state": 'async'}``, plus
        ``"lag_bytes"``; ``state`` is None if the standby is not connected."""
        if self._primary_conn is None:
            raise RuntimeError("the standby is not running: use it inside `with Replica(primary) as standby:`")
        found = _query(self._primary_conn, "SELECT state, sent_lsn::text, replay_lsn::text, sync_state "
                       "FROM pg_stat_replication WHERE application_name = %s", (self.name,))
        state, sent, replayed, sync = found[0] if found else (None, None, None, None)
        return {"state": state, "sent_lsn": sent, "replay_lsn": replayed, "sync_state": sync,
                "lag_bytes": self.lag_bytes()}


# ======================================================================== sharding
class _ClusterServer(PostgresServer):
    """A :class:`PostgresServer` of a cluster: the first one started runs ``initdb`` and keeps
    a copy of the new, never started data directory; the others start from copies of it
    (copying 40 MB is a few times faster than ``initdb``)."""

    def __init__(self, template: dict, **kwargs):
        super().__init__(**kwargs)
        self._template = template  # shared by the cluster's servers: {"path": Path} once made

    def _make_data_directory(self, data: Path, env: dict, drop_root: dict) -> None:
        template = self._template.get("path")
        if template is None:
            super()._make_data_directory(data, env, drop_root)  # initdb
            template = data.parent / "template"
            _copy_as(data, template, drop_root)
            self._template["path"] = template
        else:
            _copy_as(template, data, drop_root)


def _copy_as(source: Path, target: Path, drop_root: dict) -> None:
    """Copy a folder (modes kept: a data directory must be 0700), owned by the server's user."""
    shutil.copytree(source, target, symlinks=True)
    if drop_root:  # we are root: hand the copy to the server's user
        os.chown(target, drop_root["user"], drop_root["group"])
        for folder, names, files in os.walk(target):
            for name in names + files:
                os.chown(os.path.join(folder, name), drop_root["user"], drop_root["group"],
                         follow_symlinks=False)


class ShardedCluster:
    """A table hash-partitioned over ``n_shards`` PostgreSQL servers, behind a coordinator.

    Example::

        with ShardedCluster(n_shards=2) as cluster:                # 3 servers: 2 to 3 s
            cluster.insert([("alice", "hi"), ("bob", "hello"), {"user_id": "alice", "content": "bye"}])
            cluster.rows_per_shard()                                # [1, 2]: counted on the shards
            cluster.shard_of("alice")                               # 1: where alice's rows live
            cluster.rows("SELECT content FROM messages WHERE user_id = %s", ("alice",))
            print(cluster.explain("SELECT * FROM messages WHERE user_id = %s", ("alice",)))
            # Foreign Scan on public.messages_shard_1 messages      (one shard: partition pruning)
            #   Remote SQL: SELECT user_id, ... FROM public.messages WHERE ((user_id = 'alice'))

    The shards each hold a table ``table`` (primary key ``(key, message_id)``)::

        <key>       text NOT NULL           the shard key, e.g. a user id
        message_id  bigint NOT NULL         unique: from a sequence on the coordinator
        role        text NOT NULL           'system', 'user' (default) or 'assistant'
        content     text NOT NULL
        created_at  timestamptz NOT NULL    default: now() on the coordinator

    The coordinator has the same table, ``PARTITION BY HASH (<key>)``, whose partitions
    ``<table>_shard_0``, ``<table>_shard_1``, ... are foreign tables (``postgres_fdw``)
    on the shard servers ``shard_0``, ``shard_1``, ...: remainder ``i`` of the hash lives
    on shard ``i``. Query it like any table through :meth:`rows` or :meth:`url`.

    Args:
        n_shards: how many shard servers, 1 to :data:`MAX_SHARDS`.
        table: the table's name (lower-case letters, digits, ``_``).
        key: the shard key column's name (text), not one of :data:`MESSAGE_COLUMNS`.
        run_as, settings: for each server, as in :class:`~attnedu.store.PostgresServer`.
    """

    def __init__(self, n_shards: int = 2, table: str = "messages", key: str = "user_id", *,
                 run_as: str = "nobody", settings: dict | None = None):
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= MAX_SHARDS:
            raise ValueError(f"n_shards={n_shards!r}: use an integer from 1 to {MAX_SHARDS} (each shard is a "
                             "server on this machine), e.g. ShardedCluster(n_shards=2)")
        self.table = _check_name("table", table)
        self.key = _check_name("key", key)
        if key in MESSAGE_COLUMNS:
            raise ValueError(f"key={key!r} is already a column of the table {MESSAGE_COLUMNS}: "
                             "name the shard key otherwise, e.g. key='user_id'")
        self.n_shards = n_shards
        self._template: dict = {}  # the coordinator's fresh data directory, copied for the shards
        self.coordinator = _ClusterServer(self._template, run_as=run_as, settings=settings)
        self.shards = [_ClusterServer(self._template, run_as=run_as, settings=settings) for _ in range(n_shards)]
        self._conn: psycopg.Connection | None = None
        self._shard_conns: list[psycopg.Connection] = []

    @property
    def partitions(self) -> list[str]:
        """The coordinator's foreign tables, one per shard: ``['messages_shard_0', ...]``."""
        return [f"{self.table}_shard_{i}" for i in range(self.n_shards)]

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ShardedCluster":
        """Start the servers and create the table on the shards and on the coordinator."""
        if self._conn is not None:
            raise RuntimeError("this cluster is already started")
        try:
            for server in (self.coordinator, *self.shards):
                server.start()
            shutil.rmtree(self._template.pop("path"), ignore_errors=True)
            self._shard_conns = [_connect(s) for s in self.shards]
            for conn in self._shard_conns:
                conn.execute(self._shard_table_sql())
            self._conn = _connect(self.coordinator)
            self._create_coordinator_schema(self._conn)
        except BaseException:
            self.stop()
            raise
        return self

    def _shard_table_sql(self) -> pgsql.Composed:
        return pgsql.SQL("""
            CREATE TABLE {table} (
                {key}      text NOT NULL,
                message_id bigint NOT NULL,
                role       text NOT NULL DEFAULT 'user' CHECK (role IN ('system', 'user', 'assistant')),
                content    text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY ({key}, message_id)
            )""").format(table=pgsql.Identifier(self.table), key=pgsql.Identifier(self.key))

    def _create_coordinator_schema(self, conn: psycopg.Connection) -> None:
        table, key = pgsql.Identifier(self.table), pgsql.Identifier(self.key)
        sequence = pgsql.Identifier(f"{self.table}_message_id_seq")
        with conn.transaction():
            conn.execute("CREATE EXTENSION postgres_fdw")
            conn.execute(pgsql.SQL("CREATE SEQUENCE {}").format(sequence))
            conn.execute(pgsql.SQL("""
                CREATE TABLE {table} (
                    {key}      text NOT NULL,
                    message_id bigint NOT NULL DEFAULT nextval({sequence}),
                    role       text NOT NULL DEFAULT 'user',
                    content    text NOT NULL,
                    created_at timestamptz NOT NULL DEFAULT now()
                ) PARTITION BY HASH ({key})""").format(
                table=table, key=key, sequence=pgsql.Literal(f"{self.table}_message_id_seq")))
            for i, shard in enumerate(self.shards):
                server = pgsql.Identifier(f"shard_{i}")
                # the shard's socket folder as host; async_capable: an Append over several
                # shards sends the query to all of them at once, then collects the rows
                conn.execute(pgsql.SQL(
                    "CREATE SERVER {server} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host {host}, port {port}, "
                    "dbname 'postgres', async_capable 'true', parallel_commit 'true', batch_size '100')").format(
                    server=server, host=pgsql.Literal(str(shard.folder)),
                    port=pgsql.Literal(str(shard.settings.get("port", 5432)))))
                # as the superuser on both sides: trust auth needs no password for it
                # (a mapping for an ordinary role would need password_required 'false')
                conn.execute(pgsql.SQL("CREATE USER MAPPING FOR postgres SERVER {server} OPTIONS (user 'postgres')")
                             .format(server=server))
                conn.execute(pgsql.SQL(
                    "CREATE FOREIGN TABLE {partition} PARTITION OF {table} "
                    "FOR VALUES WITH (MODULUS {n}, REMAINDER {i}) "
                    "SERVER {server} OPTIONS (schema_name 'public', table_name {remote})").format(
                    partition=pgsql.Identifier(self.partitions[i]), table=table, n=pgsql.Literal(self.n_shards),
                    i=pgsql.Literal(i), server=server, remote=pgsql.Literal(self.table)))

    def stop(self) -> None:
        """Close our connections, stop every server and delete their folders (safe to call twice)."""
        for conn in (self._conn, *self._shard_conns):
            if conn is not None:
                conn.close()
        self._conn, self._shard_conns = None, []
        for server in (self.coordinator, *self.shards):
            server.stop()

    def __enter__(self) -> "ShardedCluster":
        return self if self._conn is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._conn is not None and all(s.running for s in (self.coordinator, *self.shards))

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"ShardedCluster(n_shards={self.n_shards}, table={self.table!r}, key={self.key!r}, {state})")

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """The coordinator's connection URL: query the whole table through it."""
        return self.coordinator.url(database, user)

    def shard_url(self, shard: int, database: str = "postgres", user: str = "postgres") -> str:
        """Shard ``shard``'s own URL (bypassing the coordinator)."""
        return self.shards[self._check_shard(shard)].url(database, user)

    # ------------------------------------------------------------------ data
    def _coordinator(self) -> psycopg.Connection:
        if self._conn is None:
            raise RuntimeError("the cluster is not running: use it inside `with ShardedCluster() as cluster:`")
        return self._conn

    def _check_shard(self, shard) -> int:
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < self.n_shards:
            raise ValueError(f"shard={shard!r}: use 0 to {self.n_shards - 1}")
        return shard

    def _row(self, row, n: int) -> tuple:
        """One row for insert(): (key, role, content, created_at)."""
        if isinstance(row, Mapping):
            unknown = set(row) - {self.key, "role", "content", "created_at"}
            if unknown:
                raise ValueError(f"row {n}: unknown column(s) {sorted(unknown)}; a row has {self.key!r} and "
                                 "'content', and may have 'role' and 'created_at' (message_id is assigned)")
            if self.key not in row or "content" not in row:
                raise ValueError(f"row {n}: needs {self.key!r} and 'content', e.g. "
                                 f"{{{self.key!r}: 'alice', 'content': 'hi'}}")
            values = (row[self.key], row.get("role", "user"), row["content"], row.get("created_at"))
        elif isinstance(row, (tuple, list)) and len(row) == 2:
            values = (row[0], "user", row[1], None)
        else:
            raise ValueError(f"row {n}: use a pair ({self.key}, content) or a dict with {self.key!r} and "
                             f"'content', got {row!r}")
        key, role, content, created_at = values
        if not isinstance(key, str) or not key:
            raise ValueError(f"row {n}: the shard key {self.key!r} must be a non-empty str, got {key!r} "
                             "(use str(...) for numbers)")
        if not isinstance(content, str):
            raise ValueError(f"row {n}: content must be a str, got {type(content).__name__}")
        if role not in _ROLES:
            raise ValueError(f"row {n}: role must be one of {_ROLES}, got {role!r}")
        if created_at is not None and not isinstance(created_at, datetime):
            raise ValueError(f"row {n}: created_at must be a datetime (or left out for now()), got {created_at!r}")
        return values

    def insert(self, rows: Iterable[tuple[str, str] | Mapping]) -> int:
        """Insert messages through the coordinator, which routes each row to its shard.

        Args:
            rows: pairs ``(key, content)``, or dicts with the key and ``"content"`` and
                optionally ``"role"`` (default ``'user'``) and ``"created_at"`` (a
                ``datetime``; default: now). ``message_id`` comes from the coordinator's
                sequence.

        Returns:
            the number of rows inserted.

        One ``INSERT ... SELECT FROM unnest(...)`` with the columns as array parameters,
        in one transaction on the coordinator (committed on each shard in turn).
        """
        checked = [self._row(row, n) for n, row in enumerate(rows)]
        if not checked:
            return 0
        keys, roles, contents, times = (list(column) for column in zip(*checked))
        query = pgsql.SQL("""
            INSERT INTO {table} ({key}, role, content, created_at)
            SELECT k, r, c, coalesce(t, now())
            FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[]) AS v (k, r, c, t)""").format(
            table=pgsql.Identifier(self.table), key=pgsql.Identifier(self.key))
        with self._coordinator().transaction():
            cur = self._coordinator().execute(query, (keys, roles, contents, times))
        return cur.rowcount

    def rows(self, sql: str, params: Sequence | Mapping = ()) -> list[tuple]:
        """Run ``sql`` (``%s`` placeholders, values in ``params``) on the coordinator; its
        rows as a list of tuples (``[]`` for a statement without rows)."""
        return _query(self._coordinator(), sql, params)

    def shard_rows(self, shard: int, sql: str, params: Sequence | Mapping = ()) -> list[tuple]:
        """Run ``sql`` on shard ``shard`` directly, bypassing the coordinator: it sees only
        that shard's rows."""
        self._coordinator()
        return _query(self._shard_conns[self._check_shard(shard)], sql, params)

    def rows_per_shard(self) -> list[int]:
        """How many rows each shard holds, counted on each shard server itself:
        ``[rows on shard 0, rows on shard 1, ...]``."""
        count = pgsql.SQL("SELECT count(*) FROM {}").format(pgsql.Identifier(self.table))
        self._coordinator()
        return [int(_query(conn, count)[0][0]) for conn in self._shard_conns]

    def shard_of(self, key_value: str) -> int:
        """The shard that holds (or would hold) rows with this key, 0 to ``n_shards - 1``.

        Asked of the coordinator: ``satisfies_hash_partition`` is the test PostgreSQL
        itself applies to route a row to a hash partition (``hash(key) % n_shards``, with
        PostgreSQL's own hash function), so this agrees with where ``insert`` puts it.
        """
        if not isinstance(key_value, str):
            raise ValueError(f"the shard key is text: pass a str, got {type(key_value).__name__} (use str(...))")
        found = self.rows("SELECT r FROM generate_series(0, %s - 1) AS r "
                          "WHERE satisfies_hash_partition(%s::regclass, %s, r, %s::text)",
                          (self.n_shards, self.table, self.n_shards, key_value))
        return int(found[0][0])

    def explain(self, sql: str, params: Sequence | Mapping = ()) -> str:
        """The coordinator's plan for ``sql``: ``EXPLAIN (VERBOSE, COSTS OFF)``, as text.

        ``params`` are bound on the client (quoted by psycopg, as ``psycopg.sql.Literal``
        would: EXPLAIN, a utility statement, takes no server-side parameters), so the
        planner sees the values: with ``key = 'alice'`` it prunes the partitions at plan
        time, and the plan shows one ``Foreign Scan`` on one shard's table; without the
        key, an ``Append`` over an (``Async``) ``Foreign Scan`` per shard. (A prepared
        statement run many times may switch to a generic plan, made without the value:
        it prunes only when it runs, and its plan lists "Subplans Removed".) VERBOSE
        shows the SQL sent to each shard (``Remote SQL``).

        Returns:
            the plan, one line per row of EXPLAIN's output.
        """
        conn = self._coordinator()
        bound = psycopg.ClientCursor(conn).mogrify(sql, params or None)
        with conn.transaction():  # read-only: whatever follows a ';' in sql cannot write
            conn.execute("SET TRANSACTION READ ONLY")
            plan = _query(conn, "EXPLAIN (VERBOSE, COSTS OFF) " + bound)
        return "\n".join(row[0] for row in plan)
