"""Agents, waves and anomalies in real runs: scripted agent processes on a real SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestration.core.errors import PlanErrors
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.review import resolve_breakpoint
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, shell_task, write_plan

AGENT = str(Path(__file__).parent / "data" / "fleet" / "agent.py")
RETRY = {"max_attempts": 2, "base_seconds": 0, "jitter": False}


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    opened = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    yield opened
    opened.close()


def agent(name: str, log: Path, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "command": [PY, AGENT, "{prompt}"],
        "env": {"FLEET_LOG": str(log)},
        **more,
    }


def agent_task(task_id: str, prompt: str = "work", **more: Any) -> dict[str, Any]:
    return {"id": task_id, "action": {"kind": "agent", "prompt": prompt}, **more}


def run_plan(tmp_path: Path, store: Store, plan: dict[str, Any]) -> Any:
    loaded = load_plan(write_plan(tmp_path, {"version": 1, "name": "fleet", **plan}))
    engine = build_engine(loaded, load_plugins(entry_points=False))
    return Orchestrator.start(loaded, store, run_id="r", engine=engine).run_until_stopped()


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def test_round_robin_capabilities_and_retry_on_another_agent(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": RETRY},
        "agents": [
            agent("alpha", log, capabilities=["python"]),
            agent("beta", log, capabilities=["python", "docs"]),
        ],
        "assignment": {"strategy": "round_robin"},
        "tasks": [
            agent_task("t1", "fail-on:alpha", retry_on="other_agent", requires=["python"]),
            agent_task("t2", depends_on=["t1"], requires=["docs"]),
        ],
    }
    summary = run_plan(tmp_path, store, plan)
    assert summary.state == "completed"
    # t1: turn 1 goes to alpha, which fails; the retry must go to another agent: beta
    assert log_lines(log) == ["t1 1 alpha", "t1 2 beta", "t2 1 beta"]
    chosen = [
        (e.task_id, e.data["attempt"], e.data["agent"])
        for e in store.events("r", kinds=["agent_assigned"])
    ]
    assert chosen == [("t1", 1, "alpha"), ("t1", 2, "beta"), ("t2", 1, "beta")]
    retry = store.events("r", kinds=["agent_assigned"])[1].data
    assert "another agent than alpha" in retry["reason"]
    explained = orch_json("explain", "r", "t1", "--db", store.url)
    assert [(a["attempt"], a["agent"]) for a in explained["assignments"]] == [
        (1, "alpha"),
        (2, "beta"),
    ]
    text = orch("explain", "r", "t2", "--db", store.url).stdout
    assert "why this agent" in text.lower() and "has docs" in text


def test_max_concurrent_makes_tasks_wait_for_a_free_agent(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "concurrency": {"max_workers": 3},
        "agents": [agent("solo", log, max_concurrent=1)],
        "tasks": [agent_task(f"t{i}") for i in range(3)],
    }
    assert run_plan(tmp_path, store, plan).state == "completed"
    assert sorted(line.split()[0] for line in log_lines(log)) == ["t0", "t1", "t2"]
    waited = [e.data["waited_seconds"] for e in store.events("r", kinds=["agent_assigned"])]
    assert waited[0] == 0.0 and all(w > 0 for w in waited[1:])  # one slot: the others waited
    health = orch_json("health", "r", "--db", store.url)
    assert health["parts"]["availability"] == pytest.approx(1 / 3, abs=1e-6)


def test_wave_gate_holds_the_next_wave_until_a_human_approves(tmp_path: Path, store: Store) -> None:
    plan = {
        "concurrency": {"max_workers": 3},
        "defaults": {"retry": {"max_attempts": 1}, "when_exhausted": "fail"},
        "waves": {"gate": "failed == 0"},
        "tasks": [
            shell_task("a", "pass"),
            shell_task("b", "raise SystemExit(1)"),
            shell_task("c", "pass", depends_on=["a"]),
        ],
    }
    summary = run_plan(tmp_path, store, plan)
    assert summary.state == "paused"
    (bp,) = store.breakpoints("r", state="open")
    assert bp.rule == "wave_gate" and bp.task_id == "c" and bp.scope == "run"
    assert bp.context["wave"] == 1 and bp.context["failed"] == 1 and bp.context["succeeded"] == 1
    (gate,) = store.events("r", kinds=["wave_gate"])
    assert gate.data["holds"] is False and gate.data["figures"]["tasks"] == 2
    assert store.task("r", "c").attempts == 0
    resolve_breakpoint(store, bp.id, "approve", actor="tester")
    summary = Orchestrator.resume(store, "r").run_until_stopped()
    assert store.task("r", "c").state == "completed"
    assert summary.state == "failed"  # b failed for good; c ran because a human opened wave 2


def test_an_agents_failure_streak_is_an_anomaly_event_and_breakpoint(
    tmp_path: Path, store: Store
) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": {"max_attempts": 1}, "when_exhausted": "fail"},
        "agents": [agent("flaky", log)],
        "tasks": [agent_task(f"t{i}", "fail-on:flaky", trigger="all_done") for i in range(3)],
    }
    run_plan(tmp_path, store, plan)
    (event,) = store.events("r", kinds=["anomaly_detected"])
    assert event.data["kind"] == "failure_pattern" and event.data["subject"] == "flaky"
    notes = [bp for bp in store.breakpoints("r") if bp.rule == "anomaly_detected"]
    assert len(notes) == 1 and notes[0].action == "notify" and notes[0].state == "resolved"
    health = orch_json("health", "r", "--db", store.url)
    assert health["anomalies"][0]["kind"] == "failure_pattern"
    (flaky,) = health["agents"]
    assert (flaky["attempts"], flaky["succeeded"], flaky["success_rate"]) == (3, 0, 0.0)
    assert health["parts"]["success"] == 0.0


def test_plan_errors_name_the_file_the_field_and_what_was_expected(tmp_path: Path) -> None:
    shared = tmp_path / "agents.yaml"
    shared.write_text(
        "agents:\n  - name: a\n    command: [x]\n    max_concurrent: 0\n"
        "  - name: b\n    command: [x]\n    capabilities: [python]\n"
    )
    plan = {
        "version": 1,
        "name": "p",
        "agents": "agents.yaml",
        "tasks": [agent_task("t", requires=["gpu"])],
    }
    with pytest.raises(PlanErrors) as raised:
        load_plan(write_plan(tmp_path, plan))
    messages = [str(e) for e in raised.value.errors]
    assert any(str(shared) in m and "max_concurrent" in m and "at least 1" in m for m in messages)
    assert any(
        "task 't'" in m and "requires" in m and "gpu" in m and "python" in m for m in messages
    )
    shared.write_text("agents:\n  - name: a\n    command: [x]\n    capabilities: [gpu]\n")
    loaded = load_plan(write_plan(tmp_path, plan))
    assert [a.name for a in loaded.spec.agents] == ["a"]  # the plan keeps the agents themselves
    bad_gate = {**plan, "waves": {"gate": "tests_failed == 0"}}
    with pytest.raises(PlanErrors, match=r"waves\.gate"):
        load_plan(write_plan(tmp_path, bad_gate))


def test_plan_waves_shows_waves_and_the_load_balance_score(tmp_path: Path) -> None:
    plan = {
        "version": 1,
        "name": "p",
        "agents": [
            {"name": "a", "command": ["x"], "expected_seconds": 60},
            {"name": "b", "command": ["x"], "expected_seconds": 60},
        ],
        "assignment": {"strategy": "round_robin"},
        "tasks": [
            agent_task("t1"),
            agent_task("t2"),
            agent_task("t3"),
            agent_task("t4", depends_on=["t1", "t2"]),
        ],
    }
    shown = orch_json("plan", "waves", str(write_plan(tmp_path, plan)))
    assert shown["waves"] == [["t1", "t2", "t3"], ["t4"]]
    # round robin: t1 a, t2 b, t3 a, t4 b -> a 120 s, b 120 s: even, 100
    assert shown["assignment"] == {"t1": "a", "t2": "b", "t3": "a", "t4": "b"}
    assert shown["loads"] == {"a": 120.0, "b": 120.0} and shown["load_balance"] == 100.0


def test_dashboard_run_page_shows_health_parts_and_anomalies(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from tests.test_web_api import bearer, make_client

    url = f"sqlite:///{tmp_path / 'state.db'}"
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": {"max_attempts": 1}, "when_exhausted": "fail"},
        "agents": [agent("flaky", log), agent("steady", log)],
        "assignment": {"strategy": "round_robin"},
        "tasks": [
            agent_task(f"t{i}", "fail-on:flaky", trigger="all_done", depends_on=[f"t{i - 1}"])
            if i
            else agent_task("t0", "fail-on:flaky")
            for i in range(6)
        ],
    }
    with Store.open(url) as store:
        run_plan(tmp_path, store, plan)
        # from the store itself: which attempts passed their gate, who ran them
        passed = {q.task_id: q.gate_passed for q in store.quality("r")}
        agents = {e.task_id: e.data["agent"] for e in store.events("r", kinds=["agent_assigned"])}
        kinds = [e.data["kind"] for e in store.events("r", kinds=["anomaly_detected"])]
        assigned = store.events("r", kinds=["agent_assigned"])
        predicted = [pytest.approx(e.data["predicted"], abs=1e-6) for e in assigned]
    assert sum(passed.values()) == 3 and set(agents.values()) == {"flaky", "steady"}
    assert kinds == ["failure_pattern"]
    for client in make_client(url):
        api = client.get("/api/v1/runs/r/health", headers=bearer()).json()
        page = client.get("/runs/r", headers=bearer()).text
    # Predictions, (s + 1) / (n + 2) as each agent's record grows: flaky 1/2, 1/3, 1/4 (all
    # failed), steady 1/2, 2/3, 3/4 (all passed). Brier = 2 * (1/4 + 1/9 + 1/16) / 6 = 0.141204.
    # success 3/6, availability 1, 3 and 3 attempts per agent -> load balance 1:
    # 100 * (0.4 * 0.5 + 0.2 * 1 + 0.2 * 0.858796 + 0.2 * 1) = 77.18
    assert predicted == [0.5, 0.5, 1 / 3, 2 / 3, 0.25, 0.75]
    assert api["parts"] == {
        "success": 0.5,
        "availability": 1.0,
        "prediction": 0.858796,
        "load_balance": 1.0,
    }
    assert api["score"] == 77.18
    assert [(a["agent"], a["succeeded"]) for a in api["agents"]] == [("flaky", 0), ("steady", 3)]
    assert '<span id="health-score">77.18</span>' in page
    assert '<tr data-part="prediction"><td>prediction</td><td class="value">0.858796</td>' in page
    assert 'data-anomaly="failure_pattern"' in page
    # one task per wave: t0 (flaky, failed) is wave 1, scored from its own attempt alone:
    # success 0, availability 1, prediction 1 - 0.25, loads 1 and 0 -> Jain 0.5:
    # 100 * (0 + 0.2 + 0.2 * 0.75 + 0.2 * 0.5) = 45
    assert api["waves"][0]["score"] == 45.0
    assert '<span data-wave="1">wave 1: 45.0</span>' in page


def test_a_wave_waiting_on_a_human_pauses_the_run(tmp_path: Path, store: Store) -> None:
    plan = {
        "concurrency": {"max_workers": 2},
        "defaults": {"retry": {"max_attempts": 1}},
        "waves": {},
        "tasks": [
            shell_task("a", "raise SystemExit(1)"),  # out of attempts: escalated to a human
            shell_task("d", "pass"),
            shell_task("c", "pass", depends_on=["d"]),
        ],
    }
    summary = run_plan(tmp_path, store, plan)
    assert summary.state == "paused"  # c is ready but held for wave 1; a waits for a human
    assert store.task("r", "a").state == "blocked"
    assert store.task("r", "c").state == "ready" and store.task("r", "c").attempts == 0
    (bp,) = store.breakpoints("r", state="open")
    resolve_breakpoint(store, bp.id, "skip", actor="tester")
    assert Orchestrator.resume(store, "r").run_until_stopped().state == "completed"
    assert store.task("r", "c").state == "completed"


def test_coordination_anomaly_when_tasks_wait_for_a_busy_agent_while_another_idles(
    tmp_path: Path, store: Store
) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "concurrency": {"max_workers": 2},
        "agents": [agent("gpu", log, capabilities=["gpu"]), agent("plain", log)],
        "tasks": [agent_task("t1", requires=["gpu"]), agent_task("t2", requires=["gpu"])],
    }
    assert run_plan(tmp_path, store, plan).state == "completed"
    (event,) = store.events("r", kinds=["anomaly_detected"])
    assert event.data["kind"] == "coordination"
    assert event.data["figures"] == {"waiting": ["t2"], "idle": ["plain"]}


def test_confidence_based_learns_from_earlier_runs_of_the_plan(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": {"max_attempts": 1}, "when_exhausted": "fail"},
        "agents": [agent("bad", log), agent("good", log)],
        "assignment": {"strategy": "confidence_based", "exploration": 0.1},
        "tasks": [
            agent_task(f"t{i}", "fail-on:bad", tags=["fix"], trigger="all_done") for i in range(2)
        ],
    }
    path = write_plan(tmp_path, {"version": 1, "name": "learning", **plan})
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        for run_id in ("one", "two"):
            loaded = load_plan(path)
            engine = build_engine(loaded, load_plugins(entry_points=False))
            Orchestrator.start(loaded, store, run_id=run_id, engine=engine).run_until_stopped()
        first = [e.data["agent"] for e in store.events("one", kinds=["agent_assigned"])]
        second = store.events("two", kinds=["agent_assigned"])
    # run one: both new (tie -> declared order) -> bad fails (1/3), then good (1/2 + bonus)
    assert first == ["bad", "good"]
    # run two knows bad 0/1 and good 1/1 on 'fix': good, predicted 2/3
    assert second[0].data["agent"] == "good"
    assert second[0].data["predicted"] == pytest.approx(2 / 3, abs=1e-6)


def test_inline_agents_errors_and_the_text_of_plan_waves_and_health(
    tmp_path: Path, store: Store
) -> None:
    dup = {
        "version": 1,
        "name": "p",
        "agents": [{"name": "a", "command": ["x"]}, {"name": "a", "preset": "claude"}],
        "tasks": [agent_task("t")],
    }
    with pytest.raises(PlanErrors, match="duplicate agent name 'a'"):
        load_plan(write_plan(tmp_path, dup))
    log = tmp_path / "runs.log"
    plan = {
        "agents": [agent("solo", log, cost_per_unit=6.0)],
        "tasks": [agent_task("t1"), agent_task("t2", depends_on=["t1"])],
    }
    run_plan(tmp_path, store, plan)
    waves = orch("plan", "waves", str(tmp_path / "plan.yaml"))
    assert waves.returncode == 0, waves.stderr
    assert "wave 1 (1 tasks): t1 -> solo" in waves.stdout
    assert "wave 2 (1 tasks): t2 -> solo" in waves.stdout
    assert "load balance 100/100" in waves.stdout
    report = orch_json("health", "r", "--db", store.url)
    steps = store.events("r", kinds=["step"])
    seconds = [e.data["duration_seconds"] for e in steps]
    # no cost reported by the turns: 6 per minute of running time
    assert report["cost"] == pytest.approx(round(6.0 * sum(seconds) / 60, 6), abs=1e-6)
    assert report["agents"][0]["mean_duration_seconds"] == pytest.approx(sum(seconds) / 2, abs=1e-6)
    text = orch("health", "r", "--db", store.url).stdout
    assert f"run r: health {report['score']:g}/100" in text
    assert "solo: 2/2 (100%)" in text
    assert "wave 1: health" in text and "wave 2: health" in text


def test_anomaly_action_pause_holds_the_next_task_for_a_human(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": {"max_attempts": 1}, "when_exhausted": "fail"},
        "agents": [agent("flaky", log)],
        "health": {"anomalies": {"action": "pause", "failure_streak": 2}},
        "tasks": [
            agent_task("t0", "fail-on:flaky"),
            agent_task("t1", "fail-on:flaky", depends_on=["t0"], trigger="all_done"),
            agent_task("t2", depends_on=["t1"], trigger="all_done"),
        ],
    }
    assert run_plan(tmp_path, store, plan).state == "paused"
    (bp,) = store.breakpoints("r", state="open")
    assert (bp.rule, bp.task_id, bp.action, bp.scope) == ("anomaly_detected", "t2", "pause", "run")
    assert bp.context["kind"] == "failure_pattern" and store.task("r", "t2").attempts == 0
    resolve_breakpoint(store, bp.id, "approve", actor="tester")
    Orchestrator.resume(store, "r").run_until_stopped()
    assert store.task("r", "t2").state == "completed"


def test_assignment_and_health_on_each_store(tmp_path: Path, db_url: str) -> None:
    log = tmp_path / "runs.log"
    plan = {
        "defaults": {"retry": RETRY},
        "agents": [agent("alpha", log), agent("beta", log)],
        "assignment": {"strategy": "load_balanced"},
        "tasks": [agent_task("t1", "fail-on:alpha", retry_on="other_agent")],
    }
    with Store.open(db_url) as store:
        assert run_plan(tmp_path, store, plan).state == "completed"
        chosen = [e.data["agent"] for e in store.events("r", kinds=["agent_assigned"])]
        assert chosen == ["alpha", "beta"]
        report = orch_json("health", "r", "--db", db_url)
    assert report["parts"]["success"] == 0.5 and report["attempts"] == 2
