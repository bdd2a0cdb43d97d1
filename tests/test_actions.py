"""Actions run as real subprocesses: argv only, env, ORCH_RESULT, timeouts that kill the group."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestration.core.models import TaskSpec
from orchestration.engine.actions import ActionRequest, fill_placeholders, run_action

PY = sys.executable


def request(
    tmp_path: Path, action: dict, *, attempt: int = 1, timeout: float = 30, **kw
) -> ActionRequest:
    spec = TaskSpec(id="t1", action=action)
    return ActionRequest("run-1", spec, attempt, tmp_path, timeout, **kw)


def test_shell_action_gets_env_and_writes_result(tmp_path: Path) -> None:
    script = (
        "import json, os; print('hello'); "
        "json.dump({'confidence': 0.7, 'attempt': os.environ['ORCH_ATTEMPT'], "
        "'task': os.environ['ORCH_TASK_ID'], 'run': os.environ['ORCH_RUN_ID'], "
        "'extra': os.environ['EXTRA']}, open(os.environ['ORCH_RESULT'], 'w'))"
    )
    outcome = run_action(
        request(
            tmp_path, {"kind": "shell", "run": [PY, "-c", script], "env": {"EXTRA": "x"}}, attempt=2
        )
    )
    assert outcome.exit_code == 0 and outcome.error_kind == "none"
    assert "hello" in outcome.output_tail
    assert outcome.result == {
        "confidence": 0.7,
        "attempt": "2",
        "task": "t1",
        "run": "run-1",
        "extra": "x",
    }


def test_shell_metacharacters_stay_one_literal_argument(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"; touch {marker} && echo $(id)"
    outcome = run_action(
        request(
            tmp_path,
            {"kind": "shell", "run": [PY, "-c", "import sys; print(sys.argv[1])", hostile]},
        )
    )
    assert outcome.output_tail.strip() == hostile
    assert not marker.exists()


def test_nonzero_exit_is_transient_and_missing_program_permanent(tmp_path: Path) -> None:
    failed = run_action(
        request(tmp_path, {"kind": "shell", "run": [PY, "-c", "raise SystemExit(3)"]})
    )
    assert (failed.exit_code, failed.error_kind) == (3, "transient")
    missing = run_action(request(tmp_path, {"kind": "shell", "run": ["no-such-program-xyz"]}))
    assert missing.exit_code is None and missing.error_kind == "permanent"
    assert "could not start" in missing.output_tail


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # The action starts a grandchild that would outlive a plain kill of the direct child.
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    started = time.monotonic()
    outcome = run_action(
        # 10 s: time for the action to start its grandchild and note it, even on a busy machine.
        request(tmp_path, {"kind": "shell", "run": [PY, "-c", script]}, timeout=10)
    )
    assert time.monotonic() - started < 50  # not the 60 s the action sleeps
    assert outcome.timed_out and outcome.error_kind == "timeout"
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the grandchild survived the timeout")


def test_invalid_result_file_is_ignored_with_a_note(tmp_path: Path) -> None:
    script = "import os; open(os.environ['ORCH_RESULT'], 'w').write('[1, 2')"
    outcome = run_action(request(tmp_path, {"kind": "shell", "run": [PY, "-c", script]}))
    assert outcome.result == {} and "ORCH_RESULT ignored" in outcome.output_tail


def test_agent_template_fills_placeholders(tmp_path: Path) -> None:
    action = {
        "kind": "agent",
        "prompt": "Fix it. Feedback: {feedback}",
        "command": [
            PY,
            "-c",
            "import sys; print('|'.join(sys.argv[1:]))",
            "{prompt}",
            "{task_id}",
            "{answer}",
        ],
    }
    outcome = run_action(
        request(tmp_path, action, feedback="test_x failed {weird}", answer="use v2")
    )
    assert outcome.output_tail.strip() == "Fix it. Feedback: test_x failed {weird}|t1|use v2"


def test_fill_placeholders_leaves_other_braces() -> None:
    assert (
        fill_placeholders("{a} {task_id} {0.__class__}", {"task_id": "x"}) == "{a} x {0.__class__}"
    )


@pytest.mark.parametrize("inline", [False, True])
def test_python_action_result_and_errors(tmp_path: Path, inline: bool) -> None:
    ok = run_action(
        request(
            tmp_path,
            {"kind": "python", "call": "json:loads", "args": {"s": '{"a": 1}'}},
            inline=inline,
        )
    )
    assert ok.exit_code == 0 and ok.result == {"a": 1}
    raised = run_action(
        request(
            tmp_path, {"kind": "python", "call": "json:loads", "args": {"s": "{"}}, inline=inline
        )
    )
    assert raised.exit_code == 1 and "JSONDecodeError" in raised.output_tail
    assert raised.error_kind == "transient"
    missing = run_action(request(tmp_path, {"kind": "python", "call": "json:nope"}, inline=inline))
    assert missing.error_kind == "permanent" and "cannot load json:nope" in missing.output_tail
    assert json  # the module the actions call


@pytest.mark.parametrize("inline", [False, True])
def test_sys_exit_in_a_python_action_is_that_attempt_failing(tmp_path: Path, inline: bool) -> None:
    outcome = run_action(
        request(tmp_path, {"kind": "python", "call": "_thread:exit"}, inline=inline)
    )  # raises SystemExit
    assert outcome.exit_code == 1 and "SystemExit" in outcome.output_tail


def test_a_python_action_that_outlives_its_timeout_is_abandoned_as_a_timeout(
    tmp_path: Path,
) -> None:
    sleeps = {"kind": "python", "call": "tests.property_actions:sleep", "args": {"seconds": 30}}
    started = time.monotonic()
    outcome = run_action(request(tmp_path, sleeps, timeout=0.3))
    assert time.monotonic() - started < 20  # not the 30 s the action sleeps
    assert outcome.timed_out and outcome.error_kind == "timeout"
    assert "abandoned after 0.3s timeout" in outcome.output_tail


def test_the_engines_stop_ends_the_wait_for_a_python_action(tmp_path: Path) -> None:
    sleeps = {"kind": "python", "call": "tests.property_actions:sleep", "args": {"seconds": 30}}
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    outcome = run_action(request(tmp_path, sleeps), stop)
    assert time.monotonic() - started < 20  # not the 30 s the action sleeps
    assert outcome.interrupted and not outcome.timed_out


def test_an_inline_python_action_runs_in_the_callers_thread_without_a_timeout(
    tmp_path: Path,
) -> None:
    # The price of inline speed (concurrency.inline_python): no thread, so no timeout either.
    sleeps = {"kind": "python", "call": "tests.property_actions:sleep", "args": {"seconds": 0.5}}
    outcome = run_action(request(tmp_path, sleeps, timeout=0.1, inline=True))
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert outcome.duration_seconds >= 0.5


def test_background_children_do_not_outlive_the_attempt(tmp_path: Path) -> None:
    pid_file = tmp_path / "bg.pid"
    script = f"sleep 30 & echo $! > {pid_file}; echo started"
    outcome = run_action(request(tmp_path, {"kind": "shell", "run": ["sh", "-c", script]}))
    assert outcome.exit_code == 0 and "started" in outcome.output_tail
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail("the background child survived its attempt")


def test_an_action_stopped_by_the_engine_is_interrupted_whatever_its_exit_code(
    tmp_path: Path,
) -> None:
    import threading

    stop = threading.Event()
    marker = tmp_path / "started"
    script = f"trap 'exit 0' TERM; touch {marker}; sleep 20 & wait"

    def stop_when_started() -> None:
        while not marker.exists():
            time.sleep(0.02)
        stop.set()

    threading.Thread(target=stop_when_started, daemon=True).start()
    outcome = run_action(request(tmp_path, {"kind": "shell", "run": ["sh", "-c", script]}), stop)
    assert outcome.interrupted and not outcome.timed_out
