"""Shared test helpers: run the real `orch` CLI in a subprocess and write plan files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from orchestration.core.errors import TaskStateError
from orchestration.core.lifecycle import TaskHandle, TaskState, fire
from orchestration.core.models import DeadLetterRecord
from orchestration.core.yamlfile import dump_plan
from orchestration.resilience.dead_letters import capture_dead_letter
from orchestration.store import Store

PY = sys.executable


def orch(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestration ARGS` the way a user runs `orch`."""
    inherited = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    full_env = {**inherited, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [PY, "-m", "orchestration", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def orch_in_background(*args: str) -> subprocess.Popen[str]:
    """Start `orch ARGS` and return at once (for killing it, or talking to it while it runs)."""
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    return subprocess.Popen(
        [PY, "-m", "orchestration", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def orch_json(*args: str, **kwargs: Any) -> Any:
    completed = orch(*args, "--json", **kwargs)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def write_plan(directory: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(dump_plan(plan))
    return path


def shell_task(task_id: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "action": {"kind": "shell", "run": [PY, "-c", code]}, **extra}


GATE_WAIT_LIMIT_S = 300  # a held task gives up after this long, so a failed test leaves no process


def held_code(gate: Path, started: Path | None = None) -> str:
    """Python source for a task that marks `started` and then waits until the test creates `gate`.

    Tests hold a run open with it instead of a sleep: the run stays "still working" for exactly as
    long as the test needs, however busy the machine is.
    """
    mark = f"pathlib.Path({str(started)!r}).touch()\n" if started else ""
    return (
        "import pathlib, time\n"
        f"{mark}"
        f"deadline = time.monotonic() + {GATE_WAIT_LIMIT_S}\n"
        f"while not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
    )


def wait_for_file(path: Path, timeout: float = 120) -> None:
    """Wait until `path` exists (a task's start marker); fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.01)


class StderrWatch:
    """Reads a background process's stderr as it comes, so a test can wait for a message."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        self.process = process
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: Any) -> None:
        with stream:
            for line in stream:
                with self._changed:
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._lines.append("")  # end of stream
            self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Block until `text` appeared on stderr; fail if the process ended or time ran out."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: text in "".join(self._lines) or (self._lines and self._lines[-1] == ""),
                timeout=timeout,
            )
            seen = "".join(self._lines)
        assert ok and text in seen, f"{text!r} never appeared on stderr:\n{seen}"

    def finish(self, timeout: float = 120) -> str:
        """Wait for the process to end and return everything it wrote on stderr."""
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return "".join(self._lines)


def is_legal_path(moves: list[tuple[str, str, str]]) -> bool:
    """Whether a stored history (source, dest, trigger) is a legal walk from `pending`."""
    task = TaskHandle("history", TaskState.PENDING.value)
    for source, dest, trigger in moves:
        if task.state != source:
            return False
        try:
            fire(task, trigger)
        except TaskStateError:
            return False
        if task.state != dest:
            return False
    return True


def capture_missing(store: Store, run_id: str) -> list[DeadLetterRecord]:
    """Capture every failed task of the run whose failure is not in the queue yet."""
    captured = []
    for task in store.tasks(run_id):
        if task.state == "failed":
            letter = capture_dead_letter(store, run_id, task.task_id)
            if letter is not None:
                captured.append(letter)
    return captured
