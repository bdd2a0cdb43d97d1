"""A running attempt's output on the dashboard, in a real browser (Playwright, Debian's chromium).

The task prints a line, waits for a file the test creates, prints another, waits again, then
prints its last line: the run page and the task page show each line while the attempt still
runs, streamed as it is written, and the end of the attempt. The API's log endpoint is checked
against the log file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestration.core.attempt_logs import log_path, read_from
from orchestration.store import Store
from tests.helpers import orch_in_background, shell_task, write_plan
from tests.test_web_api import start_server, stop_server
from tests.test_web_browser import ENGINE_WAIT_MS, VIEWPORT, WAIT_MS, browser, expect, log_in

__all__ = ["browser"]  # the fixture, shared with the other browser tests

pytestmark = pytest.mark.slow

RUN_ID = "talking"
STEPS = (
    "import os, sys, time\n"
    "def wait(name):\n"
    "    while not os.path.exists(os.path.join(sys.argv[1], name)): time.sleep(0.05)\n"
    "print('first line, before any release', flush=True)\n"
    "wait('one')\n"
    "print('second line, after the first release', flush=True)\n"
    "wait('two')\n"
    "print('\\x1b[1mlast line\\x1b[0m, then the attempt ends', flush=True)\n"
)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + ENGINE_WAIT_MS / 1000  # the engine's start-up included
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def task_state(db: str) -> str:
    with Store.open(db) as store:
        return store.task(RUN_ID, "talk").state


def test_the_run_and_task_pages_follow_a_running_attempts_output(
    browser: Any, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    task = shell_task("talk", STEPS)
    task["action"]["run"].append(str(gates))
    plan = write_plan(tmp_path / "project", {"version": 1, "name": "talk", "tasks": [task]})
    db = f"sqlite:///{tmp_path / 'state.db'}"
    log = log_path(plan, RUN_ID, "talk", 1)
    engine = orch_in_background("run", str(plan), "--run-id", RUN_ID, "--db", db, "--quiet")
    server = start_server(db, tmp_path / "token")
    try:
        wait_until(lambda: "first line" in read_from(log, 0)[0], "the task's first line")
        page = browser.new_page(viewport=VIEWPORT)
        log_in(page, server, "carol")
        page.goto(f"{server.base}/runs/{RUN_ID}")
        run_output = page.locator("#running-output pre.attempt-log")
        expect(run_output).to_contain_text("first line", timeout=WAIT_MS)
        task_page = browser.new_page(viewport=VIEWPORT)
        log_in(task_page, server, "carol")
        task_page.goto(f"{server.base}/runs/{RUN_ID}/tasks/talk")
        task_output = task_page.locator("#task-output pre.attempt-log")
        expect(task_output).to_contain_text("first line", timeout=WAIT_MS)
        expect(task_page.locator("#task-output .log-state")).to_have_text("live", timeout=WAIT_MS)

        (gates / "one").touch()
        expect(run_output).to_contain_text("second line", timeout=WAIT_MS)
        expect(task_output).to_contain_text("second line", timeout=WAIT_MS)
        assert task_state(db) == "running"  # shown while the attempt still runs

        headers = {"Authorization": f"Bearer {server.token}"}
        piece = httpx.get(
            f"{server.base}/api/v1/runs/{RUN_ID}/tasks/talk/log", headers=headers, timeout=10
        ).json()
        text, end = read_from(log, 0)
        assert (piece["attempt"], piece["over"]) == (1, False)
        assert piece["text"] == text and piece["next_offset"] == end

        (gates / "two").touch()
        expect(run_output).to_contain_text("last line, then the attempt ends", timeout=WAIT_MS)
        expect(task_output).to_contain_text("last line, then the attempt ends", timeout=WAIT_MS)
        expect(task_page.locator("#task-output .log-state")).to_have_text(
            "attempt over", timeout=WAIT_MS
        )
        assert "\x1b" not in task_output.inner_text()  # control sequences removed
        assert task_output.inner_text().count("first line") == 1  # nothing shown twice
        _, stderr = engine.communicate(timeout=WAIT_MS / 1000)
        assert engine.returncode == 0, stderr
    finally:
        for name in ("one", "two"):
            (gates / name).touch()
        if engine.poll() is None:
            engine.kill()
            engine.communicate()
        stop_server(server)
