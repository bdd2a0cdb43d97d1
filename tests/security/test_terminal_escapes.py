"""Escape sequences in a plan's or an agent's text never reach the reviewer's terminal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestration.core.terminal_text import strip_control
from tests.helpers import orch, shell_task, write_plan

CLEAR_SCREEN = "\x1b[2J\x1b[H"
WINDOW_TITLE = "\x1b]0;owned\x07"
CLIPBOARD_WRITE = "\x1b]52;c;ZWNobyBvd25lZA==\x1b\\"  # OSC 52: puts `echo owned` on the clipboard
C1_CSI = "\x9b31m"  # the 8-bit form of ESC [
TITLE = f"Deploy {CLEAR_SCREEN}the{WINDOW_TITLE} service{C1_CSI} now"
AGENT_OUTPUT = f"visible{CLIPBOARD_WRITE} output{CLEAR_SCREEN}\x07\x08 done\r\nnext line"
# Anything a terminal acts on: C0 controls but newline and tab, DEL, and the C1 range.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_no_control_bytes_reach_the_terminal_from_titles_and_agent_output(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    code = f"import sys; sys.stdout.write({AGENT_OUTPUT!r}); sys.exit(1)"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "escapes",
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [shell_task("deploy", code, title=TITLE)],
        },
    )
    ran = orch("run", str(plan), "--run-id", "esc-1", *db)
    assert ran.returncode == 3, ran.stderr  # paused at the failure's breakpoint
    outputs = {"run": ran.stdout + ran.stderr}
    for name, args in {
        "breakpoints show": ("breakpoints", "show", "1"),
        "breakpoints list": ("breakpoints", "list", "--run", "esc-1"),
        "task history": ("task", "history", "esc-1", "deploy"),
        "status": ("status", "esc-1"),
        "report": ("report", "esc-1"),
    }.items():
        shown = orch(*args, *db)
        assert shown.returncode == 0, (name, shown.stderr)
        outputs[name] = shown.stdout + shown.stderr

    for name, text in outputs.items():
        assert not CONTROL.findall(text), (name, CONTROL.findall(text))
    # The printable text survives (rich may wrap long lines, so compare without white space).
    show = re.sub(r"[\s│]+", "", outputs["breakpoints show"])
    assert "Deploythe" in show and "servicenow" in show  # the title, codes gone
    assert "visibleoutput" in show and "done" in show and "nextline" in show
    assert "ZWNobyBvd25lZA" not in show  # the clipboard payload went with its sequence


def test_the_stored_text_keeps_what_the_agent_wrote(tmp_path: Path) -> None:
    """Cleaning happens on the way to the terminal only: --json still has the exact bytes."""
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    plan = write_plan(
        tmp_path,
        {"version": 1, "name": "raw", "tasks": [shell_task("t", "pass", title=TITLE)]},
    )
    assert orch("run", str(plan), "--run-id", "raw-1", *db, "--quiet").returncode == 0
    status = orch("status", "raw-1", *db, "--json")
    assert "\\u001b]0;owned\\u0007" in status.stdout  # JSON escapes it: safe, and exact


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (CLEAR_SCREEN + "a", "a"),
        ("a" + WINDOW_TITLE + "b", "ab"),
        ("a" + CLIPBOARD_WRITE + "b", "ab"),
        ("a\x9d0;t\x9cb", "ab"),  # 8-bit OSC and ST
        ("a\x1bPq#0;2\x1b\\b", "ab"),  # DCS (sixel)
        ("a\x1bcb", "ab"),  # full reset
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("over\rwrite", "over\nwrite"),
        ("unterminated \x1b]0;title", "unterminated "),
    ],
)
def test_strip_control_removes_whole_sequences(raw: str, clean: str) -> None:
    assert strip_control(raw) == clean
