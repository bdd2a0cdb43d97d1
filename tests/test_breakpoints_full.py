"""Breakpoints in full: run scope, expiry, stored waits, during-rules that stop attempts, --set,
budgets, stuck agents, digests, rules switched per run, stats and history."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.review import resolve_breakpoint
from orchestration.extension import Notification, Notifier
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store
from tests.helpers import (
    StderrWatch,
    held_code,
    orch,
    orch_in_background,
    orch_json,
    shell_task,
    write_plan,
)

FAST_RETRY = {"max_attempts": 5, "base_seconds": 0, "jitter": False}


def plan_with(tmp_path: Path, tasks: list[dict], rules: str | None = None, **extra: Any) -> Path:
    spec: dict[str, Any] = {"version": 1, "name": "bp", "tasks": tasks, **extra}
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules)
        spec["rules"] = ["rules.yaml"]
    spec.setdefault("defaults", {"retry": FAST_RETRY})
    return write_plan(tmp_path, spec)


def start(path: Path, store: Store, notifier: Notifier | None = None) -> Orchestrator:
    plan = load_plan(path)
    plugins = load_plugins(entry_points=False)
    if notifier is not None:
        plugins.notifiers.append(notifier)
    return Orchestrator.start(plan, store, run_id="r", engine=build_engine(plan, plugins))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def result_code(payload: dict[str, Any]) -> str:
    return f"import json,os; json.dump({payload!r}, open(os.environ['ORCH_RESULT'], 'w'))"


# ---- scope: run -----------------------------------------------------------------------------

HOLD_RULE = """
breakpoints:
  - name: hold_everything
    at: after
    when: "task_id == 'a'"
    scope: {scope}
    message: "look at a before anything else runs"
"""


@pytest.mark.parametrize("scope", ["run", "task"])
def test_a_run_scoped_pause_holds_every_task_a_task_scoped_one_only_its_own(
    tmp_path: Path, store: Store, scope: str
) -> None:
    tasks = [shell_task("a", "pass", priority=9), shell_task("b", "pass"), shell_task("c", "pass")]
    orchestrator = start(plan_with(tmp_path, tasks, HOLD_RULE.format(scope=scope)), store)
    summary = orchestrator.run_until_stopped()
    assert summary.state == "paused"
    states = {t.task_id: t.state for t in store.tasks("r")}
    (bp,) = store.breakpoints("r", state="open")
    assert bp.scope == scope and states["a"] == "blocked"
    if scope == "run":
        assert states["b"] == states["c"] == "ready"  # nothing started while it held
        resolve_breakpoint(store, bp.id, "approve", actor="alice")
        resumed = Orchestrator.resume(store, "r", force=True)
        assert resumed.run_until_stopped().state == "completed"
    else:
        assert states["b"] == states["c"] == "completed"


# ---- expires_after + default ------------------------------------------------------------------

EXPIRING_RULE = """
breakpoints:
  - name: quick_look
    at: after
    when: "task_id == 'a'"
    expires_after: 1s
    default: {default}
"""


@pytest.mark.parametrize(
    ("default", "state", "outcome"),
    [
        ("approve", "completed", "approved"),
        ("skip", "completed", "skipped"),
        ("reject", "cancelled", "rejected"),
    ],
)
def test_an_unanswered_breakpoint_takes_its_default_resolution_when_it_expires(
    tmp_path: Path, default: str, state: str, outcome: str
) -> None:
    path = plan_with(tmp_path, [shell_task("a", "pass")], EXPIRING_RULE.format(default=default))
    started = time.monotonic()
    completed = orch("run", str(path), *db_args(tmp_path), timeout=120)
    assert time.monotonic() - started < 60  # it did not wait for an answer that never comes
    assert completed.returncode == (0 if state == "completed" else 1), completed.stderr
    assert "expired" in completed.stdout + completed.stderr
    (bp,) = orch_json("breakpoints", "list", "--all", *db_args(tmp_path))["breakpoints"]
    assert (bp["resolution"], bp["resolved_by"]) == (default, "engine (expired)")
    task = orch_json("status", *db_args(tmp_path))["tasks"][0]
    assert (task["state"], task["outcome"]) == (state, outcome)
    stats = orch_json("breakpoints", "stats", *db_args(tmp_path))["stats"]
    assert stats[0]["expired"] == 1 and stats[0]["auto_resolved"] == 1


def test_a_breakpoint_that_expired_while_no_engine_ran_resolves_on_resume(
    tmp_path: Path, store: Store
) -> None:
    orchestrator = start(
        plan_with(tmp_path, [shell_task("a", "pass")], EXPIRING_RULE.format(default="approve")),
        store,
    )
    while not store.breakpoints("r", state="open"):
        orchestrator.tick()
    orchestrator.stop()
    assert orchestrator.run_until_stopped().state == "stopped"
    later = datetime.now(UTC) + timedelta(seconds=5)  # it expired while nothing ran
    resumed = Orchestrator.resume(store, "r", force=True, clock=lambda: later)
    assert resumed.run_until_stopped().state == "completed"
    assert store.breakpoints("r")[0].resolved_by == "engine (expired)"


def test_expires_after_needs_a_default_and_a_pause(tmp_path: Path) -> None:
    bad = "breakpoints:\n  - {name: x, at: after, when: 'True', expires_after: 10m}\n"
    path = plan_with(tmp_path, [shell_task("a", "pass")], bad)
    completed = orch("validate", str(path))
    assert completed.returncode == 2
    assert "rules.yaml" in completed.stdout + completed.stderr
    assert "`expires_after` and `default` go together" in completed.stdout + completed.stderr


# ---- rate_limit_hit: the wait is stored and survives a kill ------------------------------------

# Long enough that the resumed engine, however slowly it starts, is up before the wait ends.
RATE_LIMIT_WAIT_S = 15
RATE_LIMIT_WAIT = (
    "breakpoints:\n"
    f"  - {{name: rate_limit_hit, auto: {{wait_seconds: {RATE_LIMIT_WAIT_S}, then: retry}}}}\n"
)


def test_a_rate_limit_wait_is_stored_and_holds_after_a_kill_and_resume(tmp_path: Path) -> None:
    marker = tmp_path / "limited-once"
    code = (
        "import pathlib,sys; p=pathlib.Path(sys.argv[1]);"
        "sys.exit(0) if p.exists() else (p.touch(), print('429 too many requests'), sys.exit(75))"
    )
    task = {
        "id": "a",
        "action": {"kind": "shell", "run": [os.sys.executable, "-c", code, str(marker)]},
    }
    path = plan_with(tmp_path, [task], RATE_LIMIT_WAIT)
    process = orch_in_background("run", str(path), *db_args(tmp_path))
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        deadline = time.monotonic() + 120
        while True:
            runs = store.list_runs()
            if runs and store.tasks(runs[0].id)[0].state == "retrying":
                break
            assert time.monotonic() < deadline, "the task never waited for the rate limit"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        run_id = store.list_runs()[0].id
        waiting = store.task(run_id, "a")
        assert waiting.state == "retrying" and waiting.next_attempt_at is not None
        wake_at = waiting.next_attempt_at
        # The wait counts from the moment the rate limit was met, not from when this test looks.
        limited = [m for m in store.transitions(run_id, "a") if m.dest == "retrying"][-1]
        assert abs((wake_at - limited.at).total_seconds() - RATE_LIMIT_WAIT_S) <= 1
        resumed = orch("resume", run_id, "--force", *db_args(tmp_path), timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        starts = [m for m in store.transitions(run_id, "a") if m.trigger == "start"]
        assert len(starts) == 2 and starts[1].at >= wake_at  # it waited, across the restart
        (bp,) = store.breakpoints(run_id)
        assert (bp.rule, bp.resolution) == ("rate_limit_hit", "auto")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        store.close()


# ---- at: during -- time_threshold_exceeded stops the attempt and retries ---------------------

SHORT_THRESHOLD = (
    "breakpoints:\n  - {name: time_threshold_exceeded, when: 'duration_seconds >= 1'}\n"
)


def test_time_threshold_kills_the_attempts_process_group_and_retries(
    tmp_path: Path, store: Store
) -> None:
    marker, pids = tmp_path / "slow-once", tmp_path / "pids"
    # The first attempt starts a child that would outlive a kill of its parent alone.
    code = (
        "import pathlib,subprocess,sys,time; p=pathlib.Path(sys.argv[1]);"
        "done=p.exists(); p.touch();"
        "child=None if done else subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)']);"
        "open(sys.argv[2],'a').write(f'{child.pid}\\n') if child else None;"
        "time.sleep(0 if done else 60)"
    )
    task = {
        "id": "a",
        "action": {"kind": "shell", "run": [os.sys.executable, "-c", code, str(marker), str(pids)]},
    }
    orchestrator = start(plan_with(tmp_path, [task], SHORT_THRESHOLD), store)
    started = time.monotonic()
    assert orchestrator.run_until_stopped().state == "completed"
    assert time.monotonic() - started < 50  # not the 60 s the first attempt sleeps
    assert store.task("r", "a").attempts == 2
    child = int(pids.read_text().split()[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
    stopped = [e for e in store.events("r") if e.kind == "attempt_stopped"]
    assert len(stopped) == 1 and stopped[0].data["rule"] == "time_threshold_exceeded"
    retry = [m for m in store.transitions("r", "a") if m.trigger == "retry"]
    assert "time_threshold_exceeded: attempt stopped" in retry[0].reason


# ---- --set on retry, reject as failed ----------------------------------------------------------

CHECK_VALUE = """
breakpoints:
  - name: wrong_value
    at: after
    when: "contains(output_tail, 'value=bad')"
"""


def test_retry_with_set_changes_the_task_for_its_next_attempt(tmp_path: Path) -> None:
    code = "import os; print('value=' + os.environ['X'])"
    task = {
        "id": "a",
        "action": {"kind": "shell", "run": [os.sys.executable, "-c", code], "env": {"X": "bad"}},
    }
    path = plan_with(tmp_path, [task], CHECK_VALUE)
    assert orch("run", str(path), *db_args(tmp_path)).returncode == 3
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    bad_set = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--retry",
        "--set",
        "depends_on=[]",
        *db_args(tmp_path),
    )
    assert bad_set.returncode == 2 and "depends_on cannot change" in bad_set.stderr
    bad_type = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--retry",
        "--set",
        "timeout_seconds=-5",
        *db_args(tmp_path),
    )
    assert bad_type.returncode == 2 and "timeout_seconds" in bad_type.stderr
    resolved = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--retry",
        "--set",
        "action.env.X=good",
        *db_args(tmp_path),
    )
    assert resolved.returncode == 0, resolved.stderr
    run_id = bp["run"]
    assert orch("resume", run_id, *db_args(tmp_path)).returncode == 0
    history = orch_json("breakpoints", "history", "--run", run_id, *db_args(tmp_path))["history"]
    assert [e["event"] for e in history] == ["raised", "resolved"]
    assert history[1]["params"] == {"action.env.X": "good"} and history[1]["resolution"] == "retry"
    task_state = orch_json("status", run_id, *db_args(tmp_path))["tasks"][0]
    assert (task_state["state"], task_state["attempts"]) == ("completed", 2)


def test_reject_with_fail_ends_the_task_failed(tmp_path: Path) -> None:
    task = shell_task("a", "print('value=bad')")
    path = plan_with(tmp_path, [task], CHECK_VALUE)
    assert orch("run", str(path), *db_args(tmp_path)).returncode == 3
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    resolved = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--reject",
        "--fail",
        "--note",
        "wrong approach",
        *db_args(tmp_path),
    )
    assert resolved.returncode == 0, resolved.stderr
    task_state = orch_json("status", bp["run"], *db_args(tmp_path))["tasks"][0]
    assert (task_state["state"], task_state["outcome"]) == ("failed", "rejected")


# ---- budgets ------------------------------------------------------------------------------------


def test_budget_exceeded_holds_the_run_until_a_human_extends_the_budget(tmp_path: Path) -> None:
    spend = result_code({"cost": 0.6, "tokens": 1000})
    tasks = [
        shell_task("a", spend),
        shell_task("b", spend, depends_on=["a"]),
        shell_task("c", spend, depends_on=["b"]),
    ]
    path = plan_with(tmp_path, tasks, budget={"max_cost": 1.0})
    assert orch("run", str(path), *db_args(tmp_path)).returncode == 3
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    assert (bp["rule"], bp["task"], bp["scope"]) == ("budget_exceeded", "b", "run")
    assert "max_cost" in bp["message"]
    run_id = bp["run"]
    states = {t["id"]: t["state"] for t in orch_json("status", run_id, *db_args(tmp_path))["tasks"]}
    assert states == {"a": "completed", "b": "blocked", "c": "pending"}
    bad = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--approve",
        "--set",
        "budget.max_money=5",
        *db_args(tmp_path),
    )
    assert bad.returncode == 2 and "unknown budget limit 'max_money'" in bad.stderr
    ok = orch(
        "breakpoints",
        "resolve",
        str(bp["id"]),
        "--approve",
        "--set",
        "budget.max_cost=5",
        *db_args(tmp_path),
    )
    assert ok.returncode == 0, ok.stderr
    assert orch("resume", run_id, *db_args(tmp_path)).returncode == 0
    history = orch_json("breakpoints", "history", "--run", run_id, *db_args(tmp_path))["history"]
    assert any(e["event"] == "budget_changed" and e["value"] == 5 for e in history)


def test_an_attempt_budget_stops_new_attempts_before_they_start(
    tmp_path: Path, store: Store
) -> None:
    tasks = [shell_task(f"t{i}", "pass") for i in range(4)]
    orchestrator = start(plan_with(tmp_path, tasks, budget={"max_attempts": 2}), store)
    assert orchestrator.run_until_stopped().state == "paused"
    (bp,) = store.breakpoints("r", state="open")
    assert (bp.rule, bp.at) == ("budget_exceeded_before", "before")
    assert sum(t.attempts for t in store.tasks("r")) == 2


# ---- agent_stuck --------------------------------------------------------------------------------


def test_an_agent_repeating_the_same_error_is_escalated_not_retried_forever(
    tmp_path: Path, store: Store
) -> None:
    code = "import os,sys; print(f'ImportError: cannot import name foo (pid {os.getpid()})'); sys.exit(1)"
    orchestrator = start(plan_with(tmp_path, [shell_task("a", code)]), store)
    assert orchestrator.run_until_stopped().state == "paused"
    (bp,) = store.breakpoints("r", state="open")
    assert bp.rule == "agent_stuck"
    assert bp.context["repeated_error_count"] == 3 and bp.context["unchanged_attempts"] == 3
    assert store.task("r", "a").attempts == 3  # of 5 allowed: it stopped retrying


def test_different_errors_are_not_stuck(tmp_path: Path, store: Store) -> None:
    code = (
        "import os,sys,pathlib; p=pathlib.Path('n'); n=int(p.read_text()) if p.exists() else 0;"
        "p.write_text(str(n+1)); print(['SyntaxError here','TypeError there','KeyError elsewhere','ok'][n]);"
        "sys.exit(0 if n >= 3 else 1)"
    )
    task = shell_task("a", code)
    task["action"]["cwd"] = str(tmp_path)  # the counter file is a change to the work tree
    rules = (
        "breakpoints:\n  - {name: consecutive_failures, enabled: false}\n"
        "  - {name: consecutive_failures_before, enabled: false}\n"
    )
    orchestrator = start(plan_with(tmp_path, [task], rules), store)
    assert orchestrator.run_until_stopped().state == "completed"
    assert not [bp for bp in store.breakpoints("r") if bp.rule == "agent_stuck"]


# ---- digests ------------------------------------------------------------------------------------

DIGEST_RULE = """
breakpoints:
  - name: note_each
    at: after
    when: "True"
    action: notify
    digest: 30m
  - name: tell_now
    at: after
    when: "task_id == 't0'"
    action: notify
"""


def test_a_digest_rule_sends_one_summary_an_immediate_rule_one_each(
    tmp_path: Path, store: Store
) -> None:
    received: list[Notification] = []
    notifier = Notifier("recorder", received.append)
    tasks = [shell_task(f"t{i}", "pass") for i in range(3)]
    orchestrator = start(plan_with(tmp_path, tasks, DIGEST_RULE), store, notifier)
    assert orchestrator.run_until_stopped().state == "completed"
    kinds = [(n.kind, n.data.get("rule")) for n in received if n.kind != "run_finished"]
    assert kinds.count(("breakpoint_raised", "tell_now")) == 1
    assert ("breakpoint_raised", "note_each") not in kinds
    (digest,) = [n for n in received if n.kind == "digest"]
    assert digest.data["count"] == 3 and "t2" in digest.message


# ---- rules switched and added for a running run ----------------------------------------------

GATE_B = """
breakpoints:
  - name: gate_b
    at: before
    when: "task_id == 'b'"
"""


def wait_for_run(store: Store, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs:
            return runs[0].id
        time.sleep(0.05)
    raise AssertionError("the run did not start")


def test_disabling_a_rule_for_a_running_run_takes_effect_and_is_recorded(tmp_path: Path) -> None:
    gate = tmp_path / "release-a"
    tasks = [
        shell_task("a", held_code(gate)),  # the run works until the rule is disabled
        shell_task("b", "pass", depends_on=["a"]),
    ]
    path = plan_with(tmp_path, tasks, GATE_B)
    process = orch_in_background("run", str(path), *db_args(tmp_path))
    engine = StderrWatch(process)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_id = wait_for_run(store)
        unknown = orch("rules", "disable", "gate_c", "--run", run_id, *db_args(tmp_path))
        assert unknown.returncode == 2 and "gate_b" in unknown.stderr
        off = orch(
            "rules", "disable", "gate_b", "--run", run_id, "--note", "trusted", *db_args(tmp_path)
        )
        assert off.returncode == 0, off.stderr
        engine.wait_for("rule gate_b disabled for this run")  # the engine took it in
        gate.touch()
        engine.finish()
        assert process.returncode == 0  # b ran without stopping
        assert not store.breakpoints(run_id)
        changes = orch_json("rules", "changes", "--run", run_id, *db_args(tmp_path))
        assert changes["disabled"] == ["gate_b"] and changes["changes"][0]["note"] == "trusted"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        store.close()


def test_a_rule_file_added_to_a_running_run_fires(tmp_path: Path) -> None:
    gate = tmp_path / "release-a"
    tasks = [
        shell_task("a", held_code(gate)),  # the run works until the rule file is added
        shell_task("b", "pass", depends_on=["a"]),
    ]
    path = plan_with(tmp_path, tasks)
    extra = tmp_path / "extra.yaml"
    process = orch_in_background("run", str(path), *db_args(tmp_path))
    engine = StderrWatch(process)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        run_id = wait_for_run(store)
        extra.write_text(
            "breakpoints:\n  - {name: gate_b, at: before, when: 'task_id == \"c\" and reslt'}\n"
        )
        broken = orch("rules", "add", str(extra), "--run", run_id, *db_args(tmp_path))
        assert broken.returncode == 2 and "extra.yaml" in broken.stderr and "reslt" in broken.stderr
        extra.write_text(GATE_B)
        added = orch("rules", "add", str(extra), "--run", run_id, *db_args(tmp_path))
        assert added.returncode == 0, added.stderr
        engine.wait_for("rules added to this run")  # the engine took them in
        gate.touch()
        engine.finish()
        assert process.returncode == 3  # paused at the added rule
        (bp,) = store.breakpoints(run_id, state="open")
        assert (bp.rule, bp.task_id) == ("gate_b", "b")
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        store.close()


# ---- stats ----------------------------------------------------------------------------------


def test_stats_count_types_resolutions_and_time_to_resolution(tmp_path: Path, store: Store) -> None:
    tasks = [shell_task(f"t{i}", "print('value=bad')") for i in range(3)]
    orchestrator = start(plan_with(tmp_path, tasks, CHECK_VALUE), store)
    assert orchestrator.run_until_stopped().state == "paused"
    open_bps = store.breakpoints("r", state="open")
    assert len(open_bps) == 3
    for bp, resolution in zip(open_bps[:2], ["approve", "skip"], strict=True):
        resolve_breakpoint(store, bp.id, resolution, actor="alice")
    completed = orch("breakpoints", "stats", "--run", "r", "--json", *db_args(tmp_path))
    data = json.loads(completed.stdout)
    (row,) = [s for s in data["stats"] if s["rule"] == "wrong_value"]
    assert (row["triggered"], row["resolved"], row["open"]) == (3, 2, 1)
    assert row["resolutions"] == {"approve": 1, "skip": 1}
    assert (
        row["mean_seconds_to_resolution"] is not None and row["median_seconds_to_resolution"] >= 0
    )
    table = orch("breakpoints", "stats", "--run", "r", *db_args(tmp_path))
    assert "wrong_value" in table.stdout and "(all)" in table.stdout


def test_an_expired_breakpoint_and_the_run_end_reach_the_notifiers(
    tmp_path: Path, store: Store
) -> None:
    received: list[Notification] = []
    path = plan_with(tmp_path, [shell_task("a", "pass")], EXPIRING_RULE.format(default="approve"))
    orchestrator = start(path, store, Notifier("recorder", received.append))
    assert orchestrator.run_until_stopped().state == "completed"
    kinds = [n.kind for n in received]
    assert kinds == ["breakpoint_raised", "breakpoint_resolved", "run_finished"]
    resolved = received[1]
    assert resolved.data["actor"] == "engine (expired)" and resolved.data["resolution"] == "approve"
    assert received[2].data["state"] == "completed"


def test_a_resolution_from_the_command_line_reaches_the_notifiers(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    class Collect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        path = plan_with(tmp_path, [shell_task("a", "print('value=bad')")], CHECK_VALUE)
        assert orch("run", str(path), *db_args(tmp_path)).returncode == 3
        (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
        env = {"ORCH_WEBHOOK_URL": f"http://127.0.0.1:{server.server_port}/hook"}
        resolved = orch(
            "breakpoints",
            "resolve",
            str(bp["id"]),
            "--approve",
            "--actor",
            "ann",
            *db_args(tmp_path),
            env=env,
        )
        assert resolved.returncode == 0, resolved.stderr
    finally:
        server.shutdown()
        server.server_close()
    kinds = [(n["kind"], n["data"].get("actor")) for n in received]
    assert kinds == [("breakpoint_resolved", "ann")]
