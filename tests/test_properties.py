"""Property tests: random DAGs run in-process to the end on a real SQLite file.

Each hypothesis example writes a plan of 5..40 `kind: python` tasks (random dependencies on
earlier tasks, trigger rules, priorities, pools, attempt limits and ok / fail / flaky actions),
runs it with `Orchestrator.run_until_stopped()` and checks the stored transition log against the
design: every task ends, every history is a legal walk of the state machine, no task starts
before its trigger rule holds, worker and pool limits hold at every point of the log, and the
final states equal those of a small independent reference model of the trigger rules.

Breakpoints are all switched off and the decision rules never ask a human, so a run can only end
`completed` or `failed`: a task out of attempts fails (decision `retry` with no attempt left).
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import TransitionRecord
from orchestration.engine.loop import Orchestrator, RunSummary, build_engine
from orchestration.engine.plan import load_plan
from orchestration.pluginhost.hooks import load_plugins
from orchestration.rules.rule_files import load_rules
from orchestration.store import Store
from tests.helpers import is_legal_path, write_plan

ACTIONS = "tests.property_actions"
TRIGGERS = ("all_success", "all_done", "one_failed", "none_failed")
BEHAVIOURS = ("ok", "fail", "flaky")  # flaky: the first attempt fails, later ones succeed
RUN_ID = "prop"
FINAL = {s.value for s in FINAL_STATES}
RUN_TIME_LIMIT_SECONDS = 60.0  # a run still going by then is stopped (and the property fails)


# ---- the random plans -----------------------------------------------------------------------


@dataclass(frozen=True)
class TaskShape:
    task_id: str
    deps: tuple[str, ...]
    trigger: str
    priority: int
    pool: str | None
    behaviour: str
    max_attempts: int


@dataclass(frozen=True)
class PlanShape:
    tasks: tuple[TaskShape, ...]
    max_workers: int
    pools: dict[str, int]

    def task(self, task_id: str) -> TaskShape:
        return next(t for t in self.tasks if t.task_id == task_id)


@st.composite
def plan_shapes(draw: st.DrawFn) -> PlanShape:
    pool_names = [f"pool{i}" for i in range(draw(st.integers(0, 3)))]
    pools = {name: draw(st.integers(1, 3), label=f"{name} slots") for name in pool_names}
    count = draw(st.integers(5, 40), label="tasks")
    tasks: list[TaskShape] = []
    for index in range(count):
        earlier = [t.task_id for t in tasks]
        deps = (
            draw(st.lists(st.sampled_from(earlier), max_size=min(4, len(earlier)), unique=True))
            if earlier
            else []
        )
        tasks.append(
            TaskShape(
                task_id=f"t{index:02d}",
                deps=tuple(sorted(deps)),
                trigger=draw(st.sampled_from(TRIGGERS)),
                priority=draw(st.integers(1, 10)),
                pool=draw(st.sampled_from([None, *pool_names])),
                behaviour=draw(st.sampled_from(BEHAVIOURS)),
                max_attempts=draw(st.integers(1, 2)),
            )
        )
    return PlanShape(tuple(tasks), draw(st.integers(1, 4), label="max_workers"), pools)


def _action(shape: TaskShape, directory: Path) -> dict[str, Any]:
    if shape.behaviour == "flaky":
        marker = str(directory / f"{shape.task_id}.attempted")
        return {"kind": "python", "call": f"{ACTIONS}:flaky", "args": {"marker": marker}}
    return {"kind": "python", "call": f"{ACTIONS}:{shape.behaviour}"}


def _plan_data(shape: PlanShape, directory: Path) -> dict[str, Any]:
    tasks = []
    for task in shape.tasks:
        data: dict[str, Any] = {
            "id": task.task_id,
            "action": _action(task, directory),
            "trigger": task.trigger,
            "priority": task.priority,
            "retry": {"max_attempts": task.max_attempts, "base_seconds": 0, "jitter": False},
        }
        if task.deps:
            data["depends_on"] = list(task.deps)
        if task.pool is not None:
            data["pool"] = task.pool
        tasks.append(data)
    return {
        "version": 1,
        "name": "property",
        "workdir": str(directory),
        "rules": ["./rules.yaml"],
        "concurrency": {"max_workers": shape.max_workers, "pools": dict(shape.pools)},
        "tasks": tasks,
    }


def _rule_file() -> dict[str, Any]:
    """Every default breakpoint off; a failed attempt is retried, and fails when out of tries."""
    return {
        "breakpoints": [
            {"name": rule.name, "enabled": False} for rule in load_rules([]).breakpoints
        ],
        "decisions": [
            {"when": "not gate_passed and attempt < max_attempts", "decide": "retry"},
            {"when": "not gate_passed", "decide": "retry"},
            {"decide": "proceed"},
        ],
    }


@dataclass
class Outcome:
    summary: RunSummary
    run_state: str  # as stored
    states: dict[str, str]
    outcomes: dict[str, str | None]
    transitions: list[TransitionRecord]


def run_plan(shape: PlanShape) -> Outcome:
    """Write the plan, run it to the end in-process on a fresh SQLite file, read the store."""
    with tempfile.TemporaryDirectory(prefix="orch-prop-") as tmp:
        directory = Path(tmp)
        write_plan(directory, _rule_file(), name="rules.yaml")
        plan = load_plan(write_plan(directory, _plan_data(shape, directory)))
        store = Store.open(f"sqlite:///{directory / 'state.db'}")
        try:
            engine = build_engine(plan, load_plugins(entry_points=False))
            orchestrator = Orchestrator.start(plan, store, run_id=RUN_ID, engine=engine)
            # A run that never ends would hang the suite: stop it, so property 1 reports it.
            watchdog = threading.Timer(RUN_TIME_LIMIT_SECONDS, orchestrator.stop)
            watchdog.start()
            try:
                summary = orchestrator.run_until_stopped()
            finally:
                watchdog.cancel()
            tasks = store.tasks(RUN_ID)
            return Outcome(
                summary,
                store.get_run(RUN_ID).state,
                {t.task_id: t.state for t in tasks},
                {t.task_id: t.outcome for t in tasks},
                store.transitions(RUN_ID),
            )
        finally:
            store.close()


# ---- the reference model --------------------------------------------------------------------


def expected_model(shape: PlanShape) -> tuple[dict[str, str], set[str]]:
    """Final states, and the cancelled tasks that were not needed, from the trigger-rule table
    alone (docs/scheduling.md).

    A dependency is good when it completed, not needed when it was cancelled as not needed (a
    handler nothing called for, or a task whose only bad dependencies were not needed), and a
    real failure otherwise. all_success and none_failed run when every dependency is good, and
    are not needed when the bad ones were all not needed; all_done always runs; one_failed runs
    when a dependency really failed and is not needed otherwise. A task that runs completes
    unless its action fails on every attempt it gets.
    """
    states: dict[str, str] = {}
    not_needed: set[str] = set()
    for task in shape.tasks:  # dependencies are on earlier tasks: plan order is topological
        bad = [dep for dep in task.deps if states[dep] != TaskState.COMPLETED]
        real_failures = [dep for dep in bad if dep not in not_needed]
        if task.trigger == "all_done":
            runs = True
        elif task.trigger == "one_failed":
            runs = bool(real_failures)
        else:
            runs = not bad
        if not runs:
            states[task.task_id] = TaskState.CANCELLED.value
            if not real_failures:
                not_needed.add(task.task_id)
        elif task.behaviour == "ok" or (task.behaviour == "flaky" and task.max_attempts >= 2):
            states[task.task_id] = TaskState.COMPLETED.value
        else:
            states[task.task_id] = TaskState.FAILED.value
    return states, not_needed


def expected_run_state(shape: PlanShape, states: dict[str, str], not_needed: set[str]) -> str:
    """Failed when a task failed, or was cancelled because of a real failure upstream."""
    for task in shape.tasks:
        state = states[task.task_id]
        if state == TaskState.FAILED or (
            state == TaskState.CANCELLED and task.task_id not in not_needed
        ):
            return "failed"
    return "completed"


# ---- the properties -------------------------------------------------------------------------


def _histories(transitions: list[TransitionRecord]) -> dict[str, list[TransitionRecord]]:
    histories: dict[str, list[TransitionRecord]] = {}
    for move in transitions:
        histories.setdefault(move.task_id, []).append(move)
    return histories


def check_every_task_ends(shape: PlanShape, outcome: Outcome) -> None:
    assert outcome.summary.state in ("completed", "failed"), (
        f"run ended {outcome.summary.state}: {outcome.summary}"
    )
    assert outcome.run_state == outcome.summary.state, "the stored run state differs"
    assert set(outcome.states) == {t.task_id for t in shape.tasks}
    unfinished = {t: s for t, s in outcome.states.items() if s not in FINAL}
    assert not unfinished, f"tasks not in a final state: {unfinished}"


def check_legal_histories(outcome: Outcome) -> None:
    histories = _histories(outcome.transitions)
    for task_id, state in outcome.states.items():
        history = histories.get(task_id, [])
        path = [(m.source, m.dest, m.trigger) for m in history]
        assert is_legal_path(path), f"{task_id}: illegal history {path}"
        assert path and path[-1][1] == state, f"{task_id}: history {path} does not end in {state}"


def check_starts_respect_triggers(shape: PlanShape, outcome: Outcome) -> None:
    """No attempt starts before the task's trigger rule holds on the dependencies ended so far.

    all_success, none_failed and all_done wait for every dependency to end (the first two for
    every one to complete); one_failed starts as soon as one dependency failed or was cancelled
    (docs/scheduling.md), the others may still be running.
    """
    final_at: dict[str, tuple[int, str]] = {}  # task -> (id, state) of its first final move
    for move in outcome.transitions:
        if move.dest in FINAL and move.task_id not in final_at:
            final_at[move.task_id] = (move.id, move.dest)
    for move in outcome.transitions:
        if move.trigger != "start":
            continue
        task = shape.task(move.task_id)
        ended = {
            dep: final_at[dep][1]
            for dep in task.deps
            if dep in final_at and final_at[dep][0] < move.id
        }
        bad = sorted(dep for dep, state in ended.items() if state != TaskState.COMPLETED)
        when = f"{task.task_id} ({task.trigger}) started at transition {move.id}"
        if task.trigger == "one_failed":
            assert bad, f"{when} although no dependency had failed: {ended}"
            continue
        unfinished = sorted(set(task.deps) - set(ended))
        assert not unfinished, f"{when} before its dependencies {unfinished} ended"
        if task.trigger in ("all_success", "none_failed"):
            assert not bad, f"{when} although {bad} did not complete"


def check_concurrency_limits(shape: PlanShape, outcome: Outcome) -> None:
    running: set[str] = set()
    for move in outcome.transitions:  # ordered by id: the order the engine committed them
        if move.source == TaskState.RUNNING:
            running.discard(move.task_id)
        if move.dest == TaskState.RUNNING:
            running.add(move.task_id)
            assert len(running) <= shape.max_workers, (
                f"{len(running)} running at transition {move.id} with max_workers "
                f"{shape.max_workers}: {sorted(running)}"
            )
            busy = Counter(shape.task(t).pool for t in running if shape.task(t).pool)
            for pool, count in busy.items():
                assert count <= shape.pools[pool], (
                    f"pool {pool}: {count} running at transition {move.id}, "
                    f"{shape.pools[pool]} slots"
                )
    assert not running, f"still running at the end: {sorted(running)}"


def check_reference_model(shape: PlanShape, outcome: Outcome) -> None:
    expected, not_needed = expected_model(shape)
    wrong = {
        t: f"expected {expected[t]}, stored {outcome.states[t]}"
        for t in expected
        if expected[t] != outcome.states[t]
    }
    assert not wrong, f"final states differ from the reference model: {wrong}"
    for task in shape.tasks:
        state, stored = expected[task.task_id], outcome.outcomes[task.task_id]
        if state == TaskState.COMPLETED:
            assert stored == "succeeded", f"{task.task_id}: completed with outcome {stored}"
        elif state == TaskState.CANCELLED:
            want = "not_needed" if task.task_id in not_needed else "upstream_failed"
            assert stored == want, f"{task.task_id}: cancelled with outcome {stored}, not {want}"
    assert outcome.summary.state == expected_run_state(shape, expected, not_needed)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(shape=plan_shapes())
def test_random_dags_run_to_the_end_by_the_rules(shape: PlanShape) -> None:
    outcome = run_plan(shape)
    check_every_task_ends(shape, outcome)
    check_legal_histories(outcome)
    check_starts_respect_triggers(shape, outcome)
    check_concurrency_limits(shape, outcome)
    check_reference_model(shape, outcome)
