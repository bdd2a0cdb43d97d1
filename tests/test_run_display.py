"""The console of `orch run`: what runs (task, attempt, elapsed, last line of output), live on a
terminal and as plain lines otherwise; long set-up steps announce themselves."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console

from orchestration.cli.display import RunDisplay, elapsed
from orchestration.core.attempt_logs import AttemptLog, log_path
from orchestration.core.models import TaskRecord, TaskSpec
from tests.helpers import orch, shell_task, write_plan

WAIT_S = 60.0


def running_task(task_id: str, attempt: int) -> TaskRecord:
    spec = TaskSpec.model_validate({"id": task_id, "action": {"kind": "shell", "run": ["true"]}})
    return TaskRecord("r1", task_id, "running", spec, attempts=attempt)


def test_the_live_view_shows_each_running_attempt_and_its_last_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    with AttemptLog(log_path(plan, "r1", "build", 2)) as log:
        log.write("compiling\n\x1b[32mlinking the binary\x1b[0m\n")
    screen = Console(file=io.StringIO(), force_terminal=True, width=100)
    display = RunDisplay(3, screen, live=True)
    display.follow_logs(str(plan), "r1")
    with display:
        display.task_started(running_task("build", 2))
        shown = Console(record=True, width=100, file=io.StringIO())
        shown.print(display)
        text = shown.export_text()
        assert "build" in text and "attempt 2" in text and "0s" in text
        assert "linking the binary" in text and "compiling" not in text
        display.task_changed(running_task("build", 2), "completed", "done")
        shown = Console(record=True, width=100, file=io.StringIO())
        shown.print(display)
        assert "linking" not in shown.export_text()  # no longer running: no longer listed


def test_plain_lines_report_running_attempts_now_and_then(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.yaml"
    words = "word " * 60
    with AttemptLog(log_path(plan, "r1", "agent", 1)) as log:
        log.write(f"thinking about {words}end\n")
    display = RunDisplay(1, Console(file=io.StringIO()), live=False, status_every=0.05)
    display.follow_logs(str(plan), "r1")
    printed = ""
    with display:
        display.task_started(running_task("agent", 1))
        deadline = time.monotonic() + WAIT_S
        while "running for" not in printed and time.monotonic() < deadline:
            time.sleep(0.05)
            printed += capsys.readouterr().err
    line = next(line for line in printed.splitlines() if "running for" in line)
    assert "agent attempt 1 running for" in line and "thinking about word" in line
    assert line.endswith("word …")  # shortened at a word, never cut inside one


def test_elapsed_reads_as_a_clock() -> None:
    assert [elapsed(s) for s in (0.4, 59.9, 125, 3720)] == ["0s", "59s", "2m05s", "1h02m"]


def test_orch_run_announces_the_test_baseline_and_its_result(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_one.py").write_text(
        "def test_passes():\n    assert True\n\ndef test_fails():\n    assert False\n"
    )
    plan = write_plan(
        project,
        {
            "version": 1,
            "name": "baseline",
            "defaults": {"validators": ["pytest"]},
            "tasks": [shell_task("a", "print('hi')")],
        },
    )
    ran = orch("run", str(plan), "--db", f"sqlite:///{tmp_path / 's.db'}")
    before = ran.stderr.index("measuring the test baseline (pytest)")
    after = ran.stderr.index("baseline measured in")
    assert before < after
    assert "pytest: 2 tests, 1 failing" in ran.stderr
