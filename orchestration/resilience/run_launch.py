"""Starting a run of a plan as a detached `orch run` process: for schedules, triggers, the API."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.core.errors import PlanError
from orchestration.resilience.runs import check_run_id, run_id_for

logger = logging.getLogger(__name__)

LAUNCH_DIR_NAME = "launches"  # beside a SQLite store: the plans and logs of launched runs

# The children started by this process, by pid, until they exit: a reaper thread waits for each
# (no zombies in a long-lived `orch serve`, no ResourceWarning for a dropped Popen) and a daemon
# can signal and wait for those still running.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_CHILDREN_LOCK = threading.Lock()


@dataclass(frozen=True)
class LaunchedRun:
    """A run started in the background: its id and the process working on it."""

    run_id: str
    pid: int


def default_launch_dir(db_url: str) -> Path:
    """Where launched runs' plan files and logs go: beside a SQLite file, else a temp dir."""
    from orchestration.store.db import sqlite_file

    database = sqlite_file(db_url)
    if database is not None:
        return database.resolve().parent / LAUNCH_DIR_NAME
    return Path(tempfile.gettempdir()) / f"orchestration-{LAUNCH_DIR_NAME}-{os.getuid()}"


def run_command(
    plan: Path, db_url: str, run_id: str, params: Mapping[str, Any] | None = None
) -> list[str]:
    """The argv of `orch run` for a launched run (this interpreter, so the same install)."""
    argv = [sys.executable, "-m", "orchestration", "run", str(plan), "--db", db_url]
    argv += ["--run-id", run_id, "--quiet"]
    if params is not None:
        argv += ["--params", json.dumps(dict(params), sort_keys=True)]
    return argv


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
    id is chosen here when not given (from the plan's name), so the caller can record it before
    the run exists. Raises PlanError for a missing plan file, OSError when no process starts.
    """
    plan = Path(plan).resolve()
    if not plan.is_file():
        raise PlanError(f"plan file '{plan}' does not exist", file=str(plan))
    chosen = check_run_id(run_id) if run_id else run_id_for(_plan_name(plan), datetime.now(UTC))
    argv = run_command(plan, db_url, chosen, params or None)
    pid = _spawn(argv, log_path, cwd=None)  # the caller's: a relative SQLite URL stays right
    logger.info("launched run %s (pid %d)", chosen, pid)
    return LaunchedRun(chosen, pid)


def launch_resume(run_id: str, *, db_url: str, log_path: Path | None = None) -> LaunchedRun:
    """Continue a stopped or interrupted run as a detached `orch resume` process."""
    argv = [sys.executable, "-m", "orchestration", "resume", run_id, "--db", db_url, "--quiet"]
    return LaunchedRun(run_id, _spawn(argv, log_path, cwd=None))


def running_children() -> list[int]:
    """The pids of children started here that have not exited."""
    with _CHILDREN_LOCK:
        return sorted(pid for pid, process in _CHILDREN.items() if process.poll() is None)


def signal_children(signum: int) -> None:
    """Send `signum` to every running child (each drains like `orch run` does on SIGTERM)."""
    for pid in running_children():
        with contextlib.suppress(ProcessLookupError):  # exited since
            os.kill(pid, signum)


def _plan_name(plan: Path) -> str:
    """The plan's `name`, for a made run id; the run itself validates the whole plan."""
    from orchestration.core.yamlfile import load_yaml_file

    data, _ = load_yaml_file(plan, error=PlanError)
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else plan.stem


def _spawn(argv: list[str], log_path: Path | None, cwd: Path | None) -> int:
    env = dict(os.environ)
    env.pop("ORCH_DB", None)  # --db names the store; a stale variable must not compete
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            process = _popen(argv, log, env, cwd)
    else:
        process = _popen(argv, subprocess.DEVNULL, env, cwd)
    with _CHILDREN_LOCK:
        _CHILDREN[process.pid] = process
    threading.Thread(target=_reap, args=(process,), name=f"reap {process.pid}", daemon=True).start()
    return process.pid


def _reap(process: subprocess.Popen[bytes]) -> None:
    process.wait()
    with _CHILDREN_LOCK:
        _CHILDREN.pop(process.pid, None)


def _popen(
    argv: list[str], output: Any, env: dict[str, str], cwd: Path | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # argv list: a parameter stays one literal argument
        argv,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # a Ctrl-C or SIGTERM to the caller's group spares the run
    )
