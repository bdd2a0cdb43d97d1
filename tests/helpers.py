"""Shared test helpers: run the real `orch` CLI in a subprocess and write plan files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestration.yamlfile import dump_plan

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
