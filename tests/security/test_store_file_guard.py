"""A SQLite store deleted or replaced under a running engine stops the run with a clear error.

It used to go unnoticed: SQLite kept writing into the unlinked file, the run printed `completed`
and exited 0 with its whole history gone. The run is held open by a task that waits for a gate
file; the test deletes (or replaces) the database, then opens the gate.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.helpers import PY, orch_in_background, write_plan

WAIT_S = 180.0  # a bound for a busy machine, not a timing
POLL_S = 0.02
WAIT_FOR_GATE = (
    "import os, sys, time\n"
    "open(sys.argv[1], 'w').close()\n"
    "while not os.path.exists(sys.argv[2]):\n"
    "    time.sleep(0.02)\n"
)


def held_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    started, gate = tmp_path / "started", tmp_path / "gate"
    tasks = [
        {"id": "held", "action": {"kind": "shell", "run": [PY, "-c", WAIT_FOR_GATE, str(started), str(gate)]}},
        {"id": "after", "depends_on": ["held"], "action": {"kind": "shell", "run": [PY, "-c", "pass"]}},
    ]  # fmt: skip
    plan = write_plan(tmp_path / "plan", {"version": 1, "name": "held", "tasks": tasks})
    return plan, started, gate


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"gave up waiting for {path}"
        time.sleep(POLL_S)


def remove_database(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def replace_database(db: Path) -> None:
    copy = db.with_name("copy.db")
    shutil.copyfile(db, copy)
    copy.replace(db)  # same name, another file (another inode)


@pytest.mark.parametrize(
    ("tamper", "said"), [(remove_database, "deleted"), (replace_database, "replaced")]
)
def test_a_store_file_that_vanishes_mid_run_stops_the_run(
    tmp_path: Path, tamper: object, said: str
) -> None:
    plan, started, gate = held_run(tmp_path)
    db = tmp_path / "state.db"
    process = orch_in_background("run", str(plan), "--db", f"sqlite:///{db}", "--quiet")
    try:
        wait_for(started)
        tamper(db)  # type: ignore[operator]
        gate.touch()
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode not in (0, 70), stderr
    assert str(db) in stderr.replace("\n", "") and said in stderr, stderr
    assert "completed" not in stderr.lower(), stderr
