"""Closed boundaries, read from the source (ast): plugins import only the public extension API;
the web app imports neither the CLI nor a plugin, and reads the store through `Store`."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration import extension

ROOT = Path(__file__).resolve().parent.parent
# The bundled plugins and the worked example's package (its tests may use internals).
PLUGIN_FILES = sorted(
    [
        *(ROOT / "plugins").glob("*.py"),
        *(ROOT / "examples" / "plugin-example" / "orch_plugin_example").glob("*.py"),
    ]
)
WEB_FILES = sorted((ROOT / "orchestration" / "web").rglob("*.py"))
# What a plugin may import from the engine: the marker and the extension API.
PLUGIN_ALLOWED_MODULES = ("orchestration.extension",)
PLUGIN_ALLOWED_FROM_PACKAGE = {"hookimpl", "__version__"}


def imports(path: Path) -> Iterator[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names imported from it) for every import of the file, nested ones too.

    Relative imports are resolved against the file's package (`orchestration.web...`).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield node.lineno, module, tuple(alias.name for alias in node.names)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def plugin_violation(module: str, names: tuple[str, ...]) -> str | None:
    """Why a plugin may not import this, or None."""
    if module == "orchestration":
        extra = sorted(set(names) - PLUGIN_ALLOWED_FROM_PACKAGE)
        return f"imports {', '.join(extra)} from orchestration" if extra else None
    if module == "plugins" or _within(module, "plugins"):
        return None  # a bundled module beside it (as a third-party plugin imports its own)
    if _within(module, "orchestration") and module not in PLUGIN_ALLOWED_MODULES:
        return f"imports {module}: only orchestration.extension is public to plugins"
    return None


def web_violation(module: str, names: tuple[str, ...]) -> str | None:
    """Why the web app may not import this, or None."""
    if _within(module, "orchestration.plugins") or _within(module, "plugins"):
        return f"imports the plugin {module}: share the code below both instead"
    if re.fullmatch(r"orchestration\.cli(_\w+)?(\..*)?", module):
        return f"imports the CLI ({module})"
    if module == "orchestration" and any(n.startswith("cli") for n in names):
        return f"imports the CLI ({', '.join(names)})"
    if _within(module, "sqlalchemy"):
        return f"imports {module}: the web reads through Store"
    if _within(module, "orchestration.store") and module != "orchestration.store":
        return f"imports {module}: the web uses orchestration.store's public names only"
    if module == "orchestration.store" and any(n.startswith("_") for n in names):
        return f"imports private store names {names}"
    return None


def violations(files: list[Path], rule: object) -> list[str]:
    found = []
    for path in files:
        for line, module, names in imports(path):
            why = rule(module, names)  # type: ignore[operator]
            if why is not None:
                found.append(f"{path.relative_to(ROOT)}:{line}: {why}")
    return found


def test_the_files_are_found() -> None:
    assert ROOT / "plugins" / "webhook.py" in PLUGIN_FILES
    assert (
        ROOT / "examples" / "plugin-example" / "orch_plugin_example" / "plugin.py" in PLUGIN_FILES
    )
    assert ROOT / "orchestration" / "web" / "__main__.py" in WEB_FILES


def test_plugins_import_only_the_extension_api() -> None:
    assert violations(PLUGIN_FILES, plugin_violation) == []


def test_the_web_app_imports_no_cli_no_plugin_and_reads_through_store() -> None:
    assert violations(WEB_FILES, web_violation) == []


def test_the_web_app_reads_no_private_store_attribute() -> None:
    """`store._reader` and the like: the Store's query methods are the way in."""
    found = []
    for path in WEB_FILES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id == "store"
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: store.{node.attr}")
    assert found == []


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            "from orchestration.engine.actions import run_process",
            "imports orchestration.engine.actions",
        ),
        ("import orchestration.pluginhost.hooks", "imports orchestration.pluginhost.hooks"),
        ("from orchestration import hookimpl, loop", "imports loop from orchestration"),
        ("from orchestration.extension import run_process", None),
        ("from orchestration import hookimpl", None),
        ("import json", None),
    ],
)
def test_a_forbidden_plugin_import_is_named_with_its_file_and_line(
    tmp_path: Path, source: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "plugins" / "bad.py"
    plugin.parent.mkdir()
    plugin.write_text(f'"""A plugin."""\n\n{source}\n')
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = violations([plugin], plugin_violation)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith("plugins/bad.py:3: ")
        assert expected in found[0]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from orchestration.cli.serve import register", "imports the CLI"),
        ("from orchestration import cli_common", "imports the CLI"),
        ("from orchestration.plugins.webhook import config_from_env", "imports the plugin"),
        ("from sqlalchemy import select", "the web reads through Store"),
        ("from orchestration.store.store import EVENTS", "public names only"),
        ("from ..cli import app", "imports the CLI"),
        ("from orchestration.store import Store", None),
    ],
)
def test_a_forbidden_web_import_is_named_with_its_file_and_line(
    tmp_path: Path, source: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "orchestration" / "web" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(f'"""A web module."""\n\n{source}\n')
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    found = violations([module], web_violation)
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1
        assert found[0].startswith("orchestration/web/bad.py:3: ")
        assert expected in found[0]


def test_every_public_extension_name_resolves_and_is_documented() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    missing = []
    for name in extension.__all__:
        getattr(extension, name)  # a lazy re-export that no longer exists fails here
        if f"`{name}" not in docs:
            missing.append(name)
    assert missing == [], f"not documented in docs/plugins.md: {missing}"
