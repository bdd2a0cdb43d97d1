"""Starting a run in its own process, detached from the caller (the API, a schedule, an event)."""

from __future__ import annotations

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

from orchestration.errors import PlanError
from orchestration.runs import check_run_id, run_id_for

logger = logging.getLogger(__name__)

LAUNCH_DIR_NAME = "launches"  # beside a SQLite store: the plans and logs of launched runs


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


def _plan_name(plan: Path) -> str:
    """The plan's `name`, for a made run id; the run itself validates the whole plan."""
    from orchestration.yamlfile import load_yaml_file

    data, _ = load_yaml_file(plan, error=PlanError)
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else plan.stem


def launch_run(
    plan: Path,
    *,
    db_url: str,
    run_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    log_path: Path | None = None,
) -> LaunchedRun:
    """Start `orch run PLAN` in a new session (it outlives the caller); output to `log_path`.

    The run id is chosen here (checked like `--run-id`, or made from the plan's name) so the
    caller can follow the run at once. A run that fails to start says why in its log.
    """
    plan = Path(plan).resolve()
    if not plan.is_file():
        raise PlanError(f"plan file '{plan}' does not exist", file=str(plan))
    chosen = check_run_id(run_id) if run_id else run_id_for(_plan_name(plan), datetime.now(UTC))
    argv = run_command(plan, db_url, chosen, params)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output: Any = log_path.open("ab")
    else:
        output = subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            argv,
            cwd=plan.parent,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C or SIGTERM to the caller's group spares the run
        )
    finally:
        if log_path is not None:
            output.close()
    # Reap the process when it ends, so a long-lived caller (orch serve) keeps no zombies.
    threading.Thread(target=process.wait, name=f"reap {chosen}", daemon=True).start()
    logger.info("launched run %s (pid %d): %s", chosen, process.pid, " ".join(argv))
    return LaunchedRun(run_id=chosen, pid=process.pid)
