"""End to end: the real `orch` command on real plans, read back through `orch status --json`."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from orchestration.store import Store
from tests.helpers import (
    GATE_WAIT_LIMIT_S,
    PY,
    is_legal_path,
    orch,
    orch_in_background,
    orch_json,
    shell_task,
    write_plan,
)


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def random_dag(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    tasks = []
    for i in range(count):
        deps = sorted({f"t{j}" for j in rng.sample(range(i), k=min(i, rng.randint(0, 3)))})
        tasks.append(
            {
                "id": f"t{i}",
                "action": {"kind": "shell", "run": ["true"]},
                "depends_on": deps,
                "priority": rng.randint(1, 10),
            }
        )
    rng.shuffle(tasks)  # plan order must not matter
    return tasks


@pytest.mark.slow
def test_200_random_shell_tasks_run_in_dependency_order(tmp_path: Path) -> None:
    tasks = random_dag(200, seed=7)
    plan = write_plan(
        tmp_path, {"version": 1, "name": "dag", "concurrency": {"max_workers": 4}, "tasks": tasks}
    )
    done = orch("run", str(plan), "--run-id", "dag-1", *db_args(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr
    status = orch_json("status", "dag-1", "--page-size", "200", *db_args(tmp_path))
    assert status["run"]["state"] == "completed"
    assert len(status["tasks"]) == 200
    assert {t["state"] for t in status["tasks"]} == {"completed"}

    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        history = store.transitions("dag-1")
    finally:
        store.close()
    by_task: dict[str, list] = {}
    for move in history:
        by_task.setdefault(move.task_id, []).append(move)
    assert len(by_task) == 200
    for moves in by_task.values():
        assert is_legal_path([(m.source, m.dest, m.trigger) for m in moves])
    finished_at = {t: next(m.id for m in ms if m.dest == "completed") for t, ms in by_task.items()}
    for task in tasks:
        start_id = next(m.id for m in by_task[task["id"]] if m.trigger == "start")
        for dep in task["depends_on"]:
            assert finished_at[dep] < start_id, f"{task['id']} started before {dep} finished"


def test_retry_carries_validator_feedback_to_the_next_attempt(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    agent = tmp_path / "agent.py"
    agent.write_text(
        "import os, sys\n"
        "attempt = os.environ['ORCH_ATTEMPT']\n"
        "open(f'feedback-{attempt}.txt', 'w').write(sys.argv[1])\n"
        "open('answer.py', 'w').write('VALUE = 41\\n' if attempt == '1' else 'VALUE = 42\\n')\n"
    )
    check = tmp_path / "check.py"
    check.write_text(
        "import sys; sys.path.insert(0, '.'); import answer\n"
        "if answer.VALUE != 42: sys.exit(f'expected VALUE == 42, got {answer.VALUE}')\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "fix",
            "workdir": "work",
            "defaults": {"retry": {"max_attempts": 3, "base_seconds": 0.1, "jitter": False}},
            "tasks": [
                {
                    "id": "fix-value",
                    "action": {
                        "kind": "agent",
                        "prompt": "make VALUE 42",
                        "command": [PY, str(agent), "{feedback}"],
                    },
                    "validators": [
                        "python_syntax",
                        {"name": "command", "run": [PY, str(check)], "stage": "testing"},
                    ],
                }
            ],
        },
    )
    done = orch("run", str(plan), "--run-id", "fix-1", *db_args(tmp_path), "--quiet")
    assert done.returncode == 0, done.stderr
    assert (work / "feedback-1.txt").read_text() == ""
    assert "expected VALUE == 42, got 41" in (work / "feedback-2.txt").read_text()
    task = orch_json("status", "fix-1", *db_args(tmp_path))["tasks"][0]
    assert (task["state"], task["attempts"]) == ("completed", 2)
    history = orch_json("task", "history", "fix-1", "fix-value", *db_args(tmp_path))
    assert [d["decision"] for d in history["decisions"]] == ["retry", "proceed"]
    assert [t["trigger"] for t in history["transitions"]] == [
        "release",
        "start",
        "retry",
        "wake",
        "start",
        "succeed",
    ]


def test_breakpoint_pauses_then_resolve_and_resume_finish(tmp_path: Path) -> None:
    rules = tmp_path / "review.yaml"
    rules.write_text(
        "breakpoints:\n"
        "  - name: needs_review\n"
        "    at: before\n"
        "    when: \"'review-me' in tags\"\n"
        "    priority: 99\n"
        "    severity: high\n"
        "    action: pause\n"
        '    message: "{task_id} must be reviewed first"\n'
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "review",
            "rules": ["review.yaml"],
            "tasks": [
                shell_task("free", "pass"),
                shell_task("guarded", "pass", tags=["review-me"]),
                shell_task("after", "pass", depends_on=["guarded"]),
            ],
        },
    )
    paused = orch("run", str(plan), "--run-id", "rv", *db_args(tmp_path), "--quiet")
    assert paused.returncode == 3, paused.stderr
    assert "orch breakpoints resolve" in paused.stderr
    states = {t["id"]: t["state"] for t in orch_json("status", "rv", *db_args(tmp_path))["tasks"]}
    assert states == {"free": "completed", "guarded": "blocked", "after": "pending"}
    listed = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    assert [(b["task"], b["rule"], b["state"]) for b in listed] == [
        ("guarded", "needs_review", "open")
    ]
    assert listed[0]["message"] == "guarded must be reviewed first"

    shown = orch("breakpoints", "show", str(listed[0]["id"]), *db_args(tmp_path))
    assert shown.returncode == 0 and "--approve" in shown.stdout

    resolved = orch(
        "breakpoints",
        "resolve",
        str(listed[0]["id"]),
        "--approve",
        "--note",
        "fine",
        "--actor",
        "alice",
        *db_args(tmp_path),
    )
    assert resolved.returncode == 0, resolved.stderr
    again = orch("breakpoints", "resolve", str(listed[0]["id"]), "--reject", *db_args(tmp_path))
    assert again.returncode == 2 and "already resolved" in again.stderr

    finished = orch("resume", "rv", *db_args(tmp_path), "--quiet")
    assert finished.returncode == 0, finished.stderr
    states = {t["id"]: t["state"] for t in orch_json("status", "rv", *db_args(tmp_path))["tasks"]}
    assert set(states.values()) == {"completed"}
    history = orch_json("task", "history", "rv", "guarded", *db_args(tmp_path))["transitions"]
    unblock = next(t for t in history if t["trigger"] == "unblock")
    assert unblock["actor"] == "alice" and "fine" in unblock["reason"]
    everything = orch_json("breakpoints", "list", "--all", *db_args(tmp_path))["breakpoints"]
    assert everything[0]["resolution"] == "approve" and everything[0]["note"] == "fine"


def test_failed_upstream_cancels_dependents_and_exit_code_is_1(tmp_path: Path) -> None:
    decisions = tmp_path / "strict.yaml"
    decisions.write_text(
        "breakpoints:\n"
        "  - {name: consecutive_failures, enabled: false}\n"
        "decisions:\n"
        "  - {when: 'not gate_passed', decide: retry}\n"
        "  - {decide: proceed}\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "fails",
            "rules": ["strict.yaml"],
            "defaults": {"retry": {"max_attempts": 2, "base_seconds": 0, "jitter": False}},
            "tasks": [
                shell_task("broken", "raise SystemExit(1)"),
                shell_task("child", "pass", depends_on=["broken"]),
                shell_task("cleanup", "pass", depends_on=["broken"], trigger="all_done"),
            ],
        },
    )
    done = orch("run", str(plan), "--run-id", "f", *db_args(tmp_path), "--quiet")
    assert done.returncode == 1, done.stderr
    tasks = {t["id"]: t for t in orch_json("status", "f", *db_args(tmp_path))["tasks"]}
    assert (tasks["broken"]["state"], tasks["broken"]["attempts"]) == ("failed", 2)
    assert tasks["child"]["state"] == "cancelled"
    assert tasks["cleanup"]["state"] == "completed"
    history = orch_json("task", "history", "f", "child", *db_args(tmp_path))["transitions"]
    assert history[-1]["reason"] == "upstream failed: broken"


def test_status_json_shape(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {"version": 1, "name": "one", "tasks": [shell_task("a", "pass")]})
    assert orch("run", str(plan), "--run-id", "s1", *db_args(tmp_path), "--quiet").returncode == 0
    status = orch_json("status", "s1", *db_args(tmp_path))
    assert set(status) == {"run", "tasks", "page", "recent", "breakpoints"}
    assert status["page"]["total"] == 1 and status["recent"][0]["task"] == "a"
    assert {"id", "plan", "state", "started_at"} <= set(status["run"])
    assert status["run"]["plan"] == "one"
    assert {"id", "state", "attempts", "priority", "depends_on"} <= set(status["tasks"][0])
    latest = orch_json("status", *db_args(tmp_path))
    assert latest["run"]["id"] == "s1"
    runs = orch_json("status", "--all", *db_args(tmp_path))
    assert [r["id"] for r in runs["runs"]] == ["s1"]


def test_default_store_is_beside_the_plan_and_orch_db_overrides(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path / "p", {"version": 1, "name": "d", "tasks": [shell_task("a", "pass")]}
    )
    assert orch("run", str(plan), "--run-id", "d1", "--quiet").returncode == 0
    assert (tmp_path / "p" / ".orchestration" / "state.db").is_file()
    # found from the plan's directory without --db
    assert orch_json("status", "d1", cwd=tmp_path / "p")["run"]["id"] == "d1"
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert (
        orch("run", str(plan), "--run-id", "d2", "--quiet", env={"ORCH_DB": other}).returncode == 0
    )
    assert orch_json("status", "d2", env={"ORCH_DB": other})["run"]["id"] == "d2"


def test_unknown_run_and_breakpoint_are_clear_errors(tmp_path: Path) -> None:
    missing = orch("status", "nope", *db_args(tmp_path))
    assert (
        missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    )
    bp = orch("breakpoints", "resolve", "999", "--approve", *db_args(tmp_path))
    assert bp.returncode == 2 and "999" in bp.stderr
    both = orch("breakpoints", "resolve", "1", "--approve", "--reject", *db_args(tmp_path))
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_help_and_module_entry_point() -> None:
    shown = orch("--help")
    assert shown.returncode == 0
    for command in ("run", "resume", "status", "breakpoints", "validate", "demo"):
        assert command in shown.stdout
    assert "3 paused waiting for a human" in shown.stdout


def test_a_run_killed_mid_attempt_resumes_without_losing_or_redoing_work(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    gate = tmp_path / "never"  # t2's first attempt waits for it: the engine is killed meanwhile
    code = (
        "import os, pathlib, time; "
        "task, attempt = os.environ['ORCH_TASK_ID'], os.environ['ORCH_ATTEMPT']; "
        f"open({str(log)!r}, 'a').write(f'{{task}} {{attempt}} start\\n'); "
        f"held = (task, attempt) == ('t2', '1'); deadline = time.monotonic() + 300\n"
        f"while held and not pathlib.Path({str(gate)!r}).exists() and time.monotonic() < deadline:"
        " time.sleep(0.01)\n"
        f"open({str(log)!r}, 'a').write(f'{{task}} {{attempt}} end\\n')"
    )
    tasks = [
        shell_task(f"t{i}", code, **({"depends_on": [f"t{i - 1}"]} if i else {})) for i in range(6)
    ]
    plan = write_plan(tmp_path, {"version": 1, "name": "kill", "tasks": tasks})
    process = orch_in_background("run", str(plan), "--run-id", "k", "--quiet", *db_args(tmp_path))
    deadline = time.monotonic() + 60
    while "t2 1 start" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the run never reached t2"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()  # reaps it and closes its pipe

    before = {t["id"]: t for t in orch_json("status", "k", *db_args(tmp_path))["tasks"]}
    assert before["t2"]["state"] == "running" and before["t0"]["state"] == "completed"
    # Its heartbeat is fresh, but its process is gone from this host: resume takes over at once.
    resumed = orch("resume", "k", "--quiet", *db_args(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    after = {t["id"]: t for t in orch_json("status", "k", *db_args(tmp_path))["tasks"]}
    assert {t["state"] for t in after.values()} == {"completed"}
    assert after["t2"]["attempts"] == 2  # the interrupted attempt ran again, with a higher number
    starts = [line for line in log.read_text().splitlines() if line.endswith("start")]
    assert starts.count("t0 1 start") == 1 and starts.count("t1 1 start") == 1  # not redone
    assert "t2 2 start" in starts
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.integrity_ok()
        for task_id in after:
            moves = store.transitions("k", task_id)
            assert is_legal_path([(m.source, m.dest, m.trigger) for m in moves])
    finally:
        store.close()


def escalating_plan(tmp_path: Path) -> Path:
    rules = tmp_path / "quiet.yaml"
    rules.write_text("breakpoints:\n  - {name: consecutive_failures, enabled: false}\n")
    flaky = "import os, sys; sys.exit(0 if os.environ['ORCH_ATTEMPT'] == '2' else 3)"
    return write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "escalate",
            "rules": ["quiet.yaml"],
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [
                shell_task("flaky", flaky),
                shell_task("next", "pass", depends_on=["flaky"]),
            ],
        },
    )


@pytest.mark.parametrize(
    ("resolution", "flaky_state", "next_state", "exit_code"),
    [
        ("--retry", "completed", "completed", 0),
        ("--skip", "completed", "completed", 0),
        ("--approve", "completed", "completed", 0),
        ("--reject", "cancelled", "cancelled", 1),
    ],
)
def test_an_escalated_task_waits_for_a_human_and_each_answer_is_applied(
    tmp_path: Path, resolution: str, flaky_state: str, next_state: str, exit_code: int
) -> None:
    plan = escalating_plan(tmp_path)
    paused = orch("run", str(plan), "--run-id", "e", "--quiet", *db_args(tmp_path))
    assert paused.returncode == 3, paused.stderr
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    assert bp["rule"] == "decision:escalate" and "quality gate failed" in bp["message"]
    # The step failed its gate: approving it needs a reason (--note), as any answer may give.
    resolve = ("breakpoints", "resolve", str(bp["id"]), resolution, "--note", "seen")
    assert orch(*resolve, *db_args(tmp_path)).returncode == 0
    resumed = orch("resume", "e", "--quiet", *db_args(tmp_path))
    assert resumed.returncode == exit_code, resumed.stderr
    tasks = {t["id"]: t for t in orch_json("status", "e", *db_args(tmp_path))["tasks"]}
    assert (tasks["flaky"]["state"], tasks["next"]["state"]) == (flaky_state, next_state)
    expected_outcome = {
        "--skip": "skipped",
        "--approve": "approved",
        "--retry": "succeeded",
        "--reject": "rejected",
    }
    assert tasks["flaky"]["outcome"] == expected_outcome.get(resolution)
    assert tasks["flaky"]["attempts"] == (2 if resolution == "--retry" else 1)


def test_an_approved_before_breakpoint_does_not_fire_again_on_a_retry(tmp_path: Path) -> None:
    rules = tmp_path / "review.yaml"
    rules.write_text(
        "breakpoints:\n"
        "  - {name: needs_review, at: before, when: \"'review-me' in tags\", action: pause,\n"
        "     priority: 99, severity: high, message: review first}\n"
        "  - {name: consecutive_failures, enabled: false}\n"
    )
    flaky = "import os, sys; sys.exit(0 if os.environ['ORCH_ATTEMPT'] == '2' else 1)"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "approve-once",
            "rules": ["review.yaml"],
            "defaults": {"retry": {"max_attempts": 3, "base_seconds": 0, "jitter": False}},
            "tasks": [shell_task("guarded", flaky, tags=["review-me"])],
        },
    )
    assert orch("run", str(plan), "--run-id", "a", "--quiet", *db_args(tmp_path)).returncode == 3
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    orch("breakpoints", "resolve", str(bp["id"]), "--approve", *db_args(tmp_path))
    finished = orch("resume", "a", "--quiet", *db_args(tmp_path))
    assert finished.returncode == 0, finished.stderr
    assert orch_json("status", "a", *db_args(tmp_path))["tasks"][0]["attempts"] == 2
    everything = orch_json("breakpoints", "list", "--all", *db_args(tmp_path))["breakpoints"]
    assert len(everything) == 1  # attempt 2 ran without asking again


def test_sigterm_stops_cleanly_and_resume_finishes(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    code = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(30)"
    quick = "import os; open('done-' + os.environ['ORCH_TASK_ID'], 'w').close()"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "term",
            "tasks": [shell_task("slow", code), shell_task("after", quick, depends_on=["slow"])],
        },
    )
    process = orch_in_background(
        "run", str(plan), "--run-id", "t", "--quiet", "--grace", "0.5", *db_args(tmp_path)
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "orch resume t" in stderr
    status = orch_json("status", "t", *db_args(tmp_path))
    assert status["run"]["state"] == "paused"
    tasks = {t["id"]: t["state"] for t in status["tasks"]}
    assert tasks == {"slow": "retrying", "after": "pending"}
    history = orch_json("task", "history", "t", "slow", *db_args(tmp_path))["transitions"]
    assert "interrupted" in history[-1]["reason"]


def test_a_one_failed_handler_that_was_not_needed_is_no_failure(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "handler",
            "tasks": [
                shell_task("work", "pass"),
                shell_task("on-failure", "pass", depends_on=["work"], trigger="one_failed"),
            ],
        },
    )
    done = orch("run", str(plan), "--run-id", "h", "--quiet", *db_args(tmp_path))
    assert done.returncode == 0, done.stderr
    tasks = {t["id"]: t for t in orch_json("status", "h", *db_args(tmp_path))["tasks"]}
    assert (tasks["on-failure"]["state"], tasks["on-failure"]["outcome"]) == (
        "cancelled",
        "not_needed",
    )


def test_an_auto_breakpoint_with_then_proceed_completes_the_task(tmp_path: Path) -> None:
    rules = tmp_path / "auto.yaml"
    rules.write_text(
        "breakpoints:\n"
        "  - {name: known_noise, at: after, when: \"contains(output_tail, 'NOISE')\", action: auto,\n"
        "     auto: {wait_seconds: 0, then: proceed}, priority: 99, severity: low, message: noise}\n"
        "  - {name: consecutive_failures, enabled: false}\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "auto",
            "rules": ["auto.yaml"],
            "defaults": {"retry": {"max_attempts": 1}},
            "tasks": [shell_task("noisy", "print('NOISE'); raise SystemExit(1)")],
        },
    )
    done = orch("run", str(plan), "--run-id", "n", "--quiet", *db_args(tmp_path))
    assert done.returncode == 0, done.stderr
    history = orch_json("task", "history", "n", "noisy", *db_args(tmp_path))["transitions"]
    assert history[-1]["trigger"] == "succeed" and "known_noise" in history[-1]["reason"]


def test_rich_markup_in_user_text_is_printed_literally(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "breakpoints:\n"
        "  - {name: stop_here, at: before, when: 'True', action: pause, priority: 1,\n"
        '     severity: low, message: "[/b] {title} [red]"}\n'
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "markup",
            "rules": ["r.yaml"],
            "tasks": [shell_task("t", "pass", title="[bold]odd[/b] title")],
        },
    )
    paused = orch("run", str(plan), "--run-id", "m", *db_args(tmp_path))
    assert paused.returncode == 3, paused.stderr
    assert "[/b] [bold]odd[/b] title [red]" in paused.stderr
    assert "[stop_here]" in paused.stderr


def test_resume_ends_an_attempt_that_outlived_its_killed_engine(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    pid_file = tmp_path / "attempt.pid"
    gate = tmp_path / "never"  # attempt 1 waits for it, so it outlives its engine until resumed
    code = (
        "import os, pathlib, time; attempt = os.environ['ORCH_ATTEMPT']; "
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); "
        f"open({str(log)!r}, 'a').write(f'start {{attempt}}\\n'); "
        f"deadline = time.monotonic() + {GATE_WAIT_LIMIT_S}\n"
        f"while attempt == '1' and not pathlib.Path({str(gate)!r}).exists()"
        " and time.monotonic() < deadline: time.sleep(0.01)\n"
        f"open({str(log)!r}, 'a').write(f'end {{attempt}}\\n')"
    )
    plan = write_plan(
        tmp_path, {"version": 1, "name": "orphan", "tasks": [shell_task("long", code)]}
    )
    process = orch_in_background("run", str(plan), "--run-id", "o", "--quiet", *db_args(tmp_path))
    deadline = time.monotonic() + 60
    while "start 1" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()  # reaps it and closes its pipe
    orphan = int(pid_file.read_text())
    assert _running(orphan)  # the attempt outlived its engine
    resumed = orch("resume", "o", "--force", "--quiet", *db_args(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert not _running(orphan)
    assert log.read_text().splitlines() == ["start 1", "start 2", "end 2"]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan may wait for a reaper that never comes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
