"""Packaging promises: core never imports or depends on torch; one version for every package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def test_import_arpo_core_does_not_import_torch() -> None:
    code = (
        "import sys, arpo_core, arpo_core.config, arpo_core.tree, arpo_core.simulation, arpo_core.testing, "
        "arpo_core.algo.branching, arpo_core.algo.attribution, arpo_core.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'deepspeed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _closure(dist: str) -> set[str]:
    """Names of every installed distribution arpo-core needs, following requirements without extras."""
    seen: set[str] = set()
    todo = [dist]
    while todo:
        name = re.split(r"[<>=!~;\[ ]", todo.pop(), maxsplit=1)[0].strip().lower().replace("_", "-")
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        todo.extend(r for r in reqs if "extra ==" not in r and "python_version < '3.11'" not in r)
    return seen


def test_arpo_core_requirements_never_reach_torch() -> None:
    closure = _closure("arpo-core")
    assert "numpy" in closure and "pydantic" in closure  # the walk works
    assert not closure & {"torch", "transformers", "deepspeed", "accelerate", "peft"}


@pytest.mark.slow
def test_pip_resolves_arpo_core_without_torch(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
            "--report", str(report), str(REPO_ROOT / "packages" / "arpo-core"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    if proc.returncode != 0 and "Could not find a version" in proc.stderr:
        pytest.skip("no package index reachable to resolve against")
    assert proc.returncode == 0, proc.stderr
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert "arpo-core" in names and "numpy" in names
    assert "torch" not in names and not any(n.startswith("nvidia") for n in names)


def test_one_version_for_all_packages() -> None:
    paths = [REPO_ROOT / "pyproject.toml", *sorted((REPO_ROOT / "packages").glob("*/pyproject.toml"))]
    projects = [tomllib.loads(p.read_text())["project"] for p in paths]
    versions = {p["name"]: p["version"] for p in projects}
    assert len(versions) == 4 and len(set(versions.values())) == 1, versions
    pinned = [d for p in projects for d in p.get("dependencies", []) if d.startswith("arpo-")]
    assert all(d.endswith("==" + versions["arpo"]) for d in pinned), pinned


def test_torch_range_admits_the_cpu_build() -> None:
    backends = tomllib.loads((REPO_ROOT / "packages/arpo-backends/pyproject.toml").read_text())["project"]
    torch_req = next(d for d in backends["dependencies"] if d.startswith("torch"))
    from packaging.specifiers import SpecifierSet

    assert "2.13.0" in SpecifierSet(torch_req.removeprefix("torch"))
