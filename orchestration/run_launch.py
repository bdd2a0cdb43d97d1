"""Starting a run of a plan as a detached `orch run` process: for schedules, triggers, the API."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.runs import check_run_id, run_id_for

# The children started by this process, by pid: kept so they are reaped (no zombies, and no
# ResourceWarning for a Popen dropped while its child runs) and so a daemon can wait for them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    pid: int


def launch_run(
    plan: Path,
    *,
    db_url: str,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    log_path: Path | None = None,
) -> LaunchedRun:
    """Start `orch run PLAN` in a session of its own and return at once.

    The child outlives the caller (a new session: a signal to the caller's terminal or process
    group does not reach it) and writes its output to `log_path` (default: discarded). The run
    id is chosen here when not given, so the caller can record it before the run exists.
    Raises OSError when the process cannot be started.
    """
    run_id = check_run_id(run_id) if run_id else run_id_for(Path(plan).stem, datetime.now(UTC))
    argv = [sys.executable, "-m", "orchestration", "run", str(plan), "--db", db_url]
    argv += ["--run-id", run_id]
    if params:
        argv += ["--params", json.dumps(dict(params))]
    argv.append("--quiet")
    return LaunchedRun(run_id, _spawn(argv, log_path))


def launch_resume(run_id: str, *, db_url: str, log_path: Path | None = None) -> LaunchedRun:
    """Continue a stopped or interrupted run as a detached `orch resume` process."""
    argv = [sys.executable, "-m", "orchestration", "resume", run_id, "--db", db_url, "--quiet"]
    return LaunchedRun(run_id, _spawn(argv, log_path))


def _spawn(argv: list[str], log_path: Path | None) -> int:
    env = dict(os.environ)
    env.pop("ORCH_DB", None)  # --db names the store; a stale variable must not compete
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = _popen(argv, log, env)
    else:
        process = _popen(argv, subprocess.DEVNULL, env)
    _CHILDREN[process.pid] = process
    return process.pid


def running_children() -> list[int]:
    """The pids of children started here that have not exited; exited ones are reaped."""
    for pid, process in list(_CHILDREN.items()):
        if process.poll() is not None:
            del _CHILDREN[pid]
    return sorted(_CHILDREN)


def signal_children(signum: int) -> None:
    """Send `signum` to every running child (each drains like `orch run` does on SIGTERM)."""
    for pid in running_children():
        with contextlib.suppress(ProcessLookupError):  # exited since
            os.kill(pid, signum)


def _popen(argv: list[str], output: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # argv list: a parameter stays one literal argument
        argv,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
