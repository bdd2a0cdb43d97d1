"""The layout shows the architecture: each layer package says what it owns and may import, and
import-linter's contract in pyproject.toml fails when a lower layer imports a higher one."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestration"


def contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = config["tool"]["importlinter"]["contracts"]
    return layers


def layer_packages() -> list[str]:
    return [name.strip() for layer in contract()["layers"] for name in layer.split("|")]


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Runs import-linter on the package at `root` (the repository or a copy of it)."""
    script = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(script), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PATH": str(script.parent), "PYTHONPATH": str(root), "HOME": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_package_of_the_source_is_a_layer_of_the_contract():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(layer_packages()) - {"extension"}


def test_no_flat_module_outside_a_layer_but_the_entry_points_and_the_extension_api():
    flat = {p.stem for p in PACKAGE.glob("*.py")}
    assert flat == {"__init__", "__main__", "_source_checkout", "extension"}


@pytest.mark.parametrize("name", [n for n in layer_packages() if n != "extension"])
def test_each_layer_package_says_what_it_owns_and_may_import(name):
    docstring = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text()))
    assert docstring, f"orchestration/{name}/__init__.py has no docstring"
    assert "import" in docstring.lower(), f"orchestration.{name} does not say what it may import"


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(PACKAGE, copy / "orchestration", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    errors = copy / "orchestration" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom orchestration.engine import loop  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "orchestration.core.errors -> orchestration.engine.loop" in result.stdout
