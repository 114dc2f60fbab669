"""The conda environment names the package's dependencies, and the code passes ruff and mypy."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# A local install of this project: ".", "-e .", "--editable .", "-e .[test]", "-e ./[notebook,test]".
LOCAL_INSTALL = re.compile(r"^(?:(?:-e|--editable)\s+)?\./?(?:\[(?P<extras>[^\]]*)\])?$")
CONDA_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _pyproject() -> dict[str, Any]:
    with (REPO / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]  # type: ignore[no-any-return]


def _environment() -> dict[str, Any]:
    path = REPO / "environment.yml"
    assert path.exists(), "environment.yml is missing at the repository root"
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict), "environment.yml must be a mapping"
    return loaded


def _requirements(specs: list[str]) -> dict[str, str]:
    """Requirement strings as {normalized name: specifier and marker}."""
    parsed = [Requirement(spec) for spec in specs]
    return {canonicalize_name(r.name): f"{r.specifier}{f'; {r.marker}' if r.marker else ''}" for r in parsed}


def test_environment_yml_names_the_dependencies_of_pyproject() -> None:
    project = _pyproject()
    runtime = _requirements(project["dependencies"])
    extras = {
        extra: _requirements([spec for spec in specs if canonicalize_name(Requirement(spec).name) != project["name"]])
        for extra, specs in project["optional-dependencies"].items()
    }
    environment = _environment()
    assert isinstance(environment.get("name"), str) and environment["name"]
    assert isinstance(environment.get("channels"), list) and environment["channels"]
    dependencies = environment.get("dependencies")
    assert isinstance(dependencies, list) and dependencies
    conda = [entry for entry in dependencies if isinstance(entry, str)]
    pip_sections = [entry["pip"] for entry in dependencies if isinstance(entry, dict) and set(entry) == {"pip"}]
    assert len(conda) + len(pip_sections) == len(dependencies), "a dependency is neither a string nor a pip: list"
    assert len(pip_sections) <= 1, "more than one pip: list"
    pip: list[str] = pip_sections[0] if pip_sections else []
    assert all(isinstance(entry, str) for entry in pip)

    conda_names = set()
    for spec in conda:
        found = CONDA_NAME.match(spec)
        assert found, f"cannot read a package name from {spec!r}"
        conda_names.add(canonicalize_name(found.group(1)))
    assert "python" in conda_names, "environment.yml must name python"
    if pip:
        assert "pip" in conda_names, "a pip: list needs pip among the conda dependencies"
    assert not conda_names - {"python", "pip"}, "dependencies other than python and pip belong in the pip: list"

    local = [found for entry in pip if (found := LOCAL_INSTALL.match(entry.strip()))]
    for found in local:
        named_extras = {extra.strip() for extra in (found.group("extras") or "").split(",") if extra.strip()}
        assert named_extras <= set(extras), f"environment.yml asks for extras {named_extras - set(extras)}"
    listed = _requirements([entry for entry in pip if not LOCAL_INSTALL.match(entry.strip())])
    if not listed:
        assert local, "environment.yml neither installs the project nor lists its dependencies"
        return
    # The dependencies are listed: exactly as pyproject.toml has them, whole extras only.
    missing = {name: spec for name, spec in runtime.items() if listed.get(name) != spec}
    assert not missing, f"environment.yml does not list, as pyproject.toml does: {missing}"
    rest = {name: spec for name, spec in listed.items() if name not in runtime}
    for extra, specs in extras.items():
        if set(rest) & set(specs):
            differing = {name: spec for name, spec in specs.items() if listed.get(name) != spec}
            assert not differing, (
                f"environment.yml lists part of the {extra!r} extra; it lacks or differs on {differing}"
            )
    unknown = {name for name in rest if not any(name in specs for specs in extras.values())}
    assert not unknown, f"environment.yml lists {sorted(unknown)}, which pyproject.toml does not depend on"


def test_ruff_check_passes() -> None:
    ran = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_mypy_passes() -> None:
    ran = subprocess.run([str(BIN / "mypy")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
