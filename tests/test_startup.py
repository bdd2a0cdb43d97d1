"""`orch --help` and `orch --version` start light: no database, model or web library is imported,
and every command is still listed with its help (start-up time itself is measured in bench/)."""

from __future__ import annotations
import __future__

import gc
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer
from typer.main import get_command

from orchestration import __version__
from orchestration.cli.common import read_and_exit
from orchestration.cli.root import app

HEAVY = ("sqlalchemy", "pydantic", "fastapi")
IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$")


def _orch(*argv: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run(
        [sys.executable, *flags, "-m", "orchestration", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _imported_modules(stderr: str) -> set[str]:
    return {m.group(1) for line in stderr.splitlines() if (m := IMPORT_LINE.match(line))}


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_no_heavy_library(argv: list[str]) -> None:
    done = _orch(*argv, importtime=True)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = _imported_modules(done.stderr)
    assert "orchestration.cli.root" in modules  # the trace is read: the CLI itself shows in it
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"`orch {' '.join(argv)}` imported {heavy[:10]}"


def test_version_prints_the_version() -> None:
    done = _orch("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"orch {__version__}"


def test_a_command_still_imports_what_it_uses() -> None:
    """Lazy imports must not break a command: `rules eval` needs the rule evaluator."""
    done = _orch("rules", "eval", "1 + 2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "3"


def _first_help_line(command: object) -> str:
    text = getattr(command, "help", None) or ""
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _groups() -> list[tuple[list[str], object]]:
    """The root and every command group, with the words that show its help."""
    root = get_command(app)
    found: list[tuple[list[str], object]] = [([], root)]
    for name, command in getattr(root, "commands", {}).items():
        if hasattr(command, "commands"):
            found.append(([name], command))
    return found


@pytest.mark.parametrize(
    "path, group", _groups(), ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_every_command_is_listed_in_help_with_its_help_text(path: list[str], group: object) -> None:
    done = _orch(*path, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    listed = done.stdout
    commands = getattr(group, "commands", {})
    assert commands, f"orch {' '.join(path)} has no commands"
    for name, command in commands.items():
        if getattr(command, "hidden", False):
            continue
        assert re.search(rf"│ {re.escape(name)} ", listed), (
            f"`{name}` missing from orch {path} --help"
        )
        first = _first_help_line(command)
        # Rich wraps long lines in its table: compare the words of the first part of the line.
        words = " ".join(first.split()[:6])
        assert words in " ".join(listed.split()), f"help of `{name}` missing: {words!r}"


def test_a_read_command_leaves_the_garbage_collector_as_it_found_it() -> None:
    """`read_and_exit` (around `orch status`) turns the collector off while the command runs,
    and back on after it, also when the command fails."""
    try:
        with pytest.raises(RuntimeError), read_and_exit():
            assert not gc.isenabled()
            raise RuntimeError("the command failed")
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what it allocated is left to the process's exit
    finally:
        gc.unfreeze()


def test_the_cli_command_modules_keep_their_annotations_evaluated() -> None:
    """Typer reads every command's signature at each start: string annotations (`from
    __future__ import annotations`) would be compiled and evaluated twice each time
    (orchestration/cli/__init__.py; bench/startup.py measures the start)."""
    modules = {info.callback.__module__ for info in _command_infos(app)}
    cli_modules = sorted(m for m in modules if m.startswith("orchestration.cli."))
    assert "orchestration.cli.root" in cli_modules
    postponed = [
        m
        for m in cli_modules
        if getattr(sys.modules[m], "annotations", None) is __future__.annotations
    ]
    assert postponed == []


def _command_infos(typer_app: typer.Typer) -> list[Any]:
    found = list(typer_app.registered_commands)
    for group in typer_app.registered_groups:
        found += _command_infos(group.typer_instance)
    return found
