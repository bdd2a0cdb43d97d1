"""Plugin action kinds (`register_actions`): registered, checked in plans, run guarded in a loop."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestration import hookimpl
from orchestration.cli.plugins import describe_plugins
from orchestration.core.errors import PlanError
from orchestration.core.models import TaskRecord, TaskSpec
from orchestration.engine.actions import ActionRequest, run_action
from orchestration.engine.loop import Orchestrator, build_engine, plan_from_stored
from orchestration.engine.plan import load_plan
from orchestration.engine.spawning import SpawnError, prepare_tasks
from orchestration.extension import ActionInput, ActionKind, ActionResult
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.resilience.overrides import OverrideError, apply_to_spec
from orchestration.store import Batch, Store
from tests.helpers import write_plan


class Kinds:
    """Action kinds that succeed, fail, raise, return garbage, hang, or grow the plan."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, Any]]] = []
        self.release = threading.Event()  # lets a kind that ignores its stop end at last
        self.stopped = threading.Event()  # set when `polite` saw its stop

    @hookimpl
    def register_actions(self) -> list[ActionKind]:
        def echo(call: ActionInput) -> ActionResult:
            self.calls.append(("echo", call.attempt, dict(call.args)))
            (call.workdir / f"{call.task.id}.out").write_text(str(call.args.get("text", "")))
            return ActionResult(True, f"echoed {call.args.get('text')}", {"length": 3})

        def flaky(call: ActionInput) -> ActionResult:
            self.calls.append(("flaky", call.attempt, dict(call.args)))
            if call.attempt < 2:
                raise ConnectionError("service reset the connection")
            return ActionResult(True, "second time lucky")

        def refuses(call: ActionInput) -> ActionResult:
            self.calls.append(("refuses", call.attempt, dict(call.args)))
            return ActionResult(False, "no such repository", error_kind="permanent")

        def garbage(call: ActionInput) -> ActionResult:
            self.calls.append(("garbage", call.attempt, dict(call.args)))
            return {"ok": True}  # type: ignore[return-value]

        def hangs(call: ActionInput) -> ActionResult:
            self.calls.append(("hangs", call.attempt, dict(call.args)))
            self.release.wait(30)  # ignores its stop event
            return ActionResult(True)

        def polite(call: ActionInput) -> ActionResult:
            if call.stop.wait(30):
                self.stopped.set()
                return ActionResult(False, "stopped")
            return ActionResult(True)

        def planner(call: ActionInput) -> ActionResult:
            spawn = [{"id": "follow-up", "action": {"kind": "echo", "args": {"text": "abc"}}}]
            return ActionResult(True, "planned", {"spawn": spawn})

        def wild_planner(call: ActionInput) -> ActionResult:
            spawn = [{"id": "ship", "action": {"kind": "deploy", "args": {"env": "prod"}}}]
            return ActionResult(True, "planned", {"spawn": spawn})

        def mutator(call: ActionInput) -> ActionResult:
            self.calls.append(("mutator", call.attempt, dict(call.args)))
            # Read only: the stored spec cannot be changed through it.
            with contextlib.suppress(AttributeError, TypeError):
                call.args.pop("secret")  # type: ignore[attr-defined]
            return ActionResult(call.attempt > 1, "", error_kind="transient")

        return [
            ActionKind(name, function)
            for name, function in (
                ("echo", echo),
                ("flaky", flaky),
                ("refuses", refuses),
                ("garbage", garbage),
                ("hangs", hangs),
                ("polite", polite),
                ("planner", planner),
                ("wild_planner", wild_planner),
                ("mutator", mutator),
            )
        ]


def plugins_with(kinds: object) -> Plugins:
    plugins = load_plugins(entry_points=False, extra=[kinds])
    plugins.muted.add("console")
    return plugins


def run_plan(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    kinds: Kinds,
    errors: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the plan to its end in-process; each task's state, attempts and last step."""
    # Failures in a row would hold later tasks for a human (a default rule): not the subject.
    (tmp_path / "rules.yaml").write_text(
        "breakpoints:\n"
        "  - {name: consecutive_failures_before, enabled: false}\n"
        "  - {name: consecutive_failures, enabled: false}\n"
    )
    plugins = plugins_with(kinds)
    spec = {
        "version": 1,
        "name": "plugin-kinds",
        "rules": ["rules.yaml"],
        "defaults": {
            "retry": {"max_attempts": 2, "base_seconds": 0, "jitter": False},
            "errors": errors or {},
        },
        "tasks": tasks,
    }
    plan = load_plan(write_plan(tmp_path, spec), action_kinds=plugins.action_kinds)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        engine = build_engine(plan, plugins)
        summary = Orchestrator.start(plan, store, run_id="r", engine=engine).run_until_stopped()
        steps = {e.task_id: e.data for e in store.events("r") if e.kind == "step"}
        tasks_by_id = {t.task_id: t for t in store.tasks("r")}
    finally:
        kinds.release.set()
        store.close()
    return {"summary": summary, "steps": steps, "tasks": tasks_by_id}


def test_registration_keeps_good_kinds_and_reports_bad_ones() -> None:
    class Bad:
        @hookimpl
        def register_actions(self) -> list[object]:
            run = lambda call: ActionResult(True)  # noqa: E731
            return [
                ActionKind("shell", run),
                ActionKind("Bad Name", run),
                "not a kind",
                ActionKind("fine", run, "a good one"),
            ]

    plugins = load_plugins(entry_points=False, extra=[Bad()])
    assert set(plugins.actions) == {"fine"}
    assert plugins.action_kinds == ("shell", "agent", "python", "fine")
    problems = "\n".join(plugins.problems)
    assert "cannot replace the built-in action kind 'shell'" in problems
    assert "'Bad Name'" in problems and "'not a kind'" in problems


def test_a_plugin_kind_runs_with_its_args_and_its_result_reaches_the_rules(
    tmp_path: Path,
) -> None:
    kinds = Kinds()
    tasks = [
        {"id": "say", "action": {"kind": "echo", "args": {"text": "abc"}}},
        {
            "id": "after",
            "depends_on": ["say"],
            "acceptance": ["result['length'] == 3"],
            "action": {"kind": "echo", "args": {"text": "xyz"}},
        },
    ]
    ran = run_plan(tmp_path, tasks, kinds)
    assert ran["summary"].state == "completed"
    assert kinds.calls == [("echo", 1, {"text": "abc"}), ("echo", 1, {"text": "xyz"})]
    assert (tmp_path / "say.out").read_text() == "abc"
    step = ran["steps"]["say"]
    assert step["result"] == {"length": 3} and step["exit_code"] == 0
    assert "say.out" in step["changed_files"]


def test_failures_of_plugin_kinds_are_classified_and_the_run_goes_on(tmp_path: Path) -> None:
    kinds = Kinds()
    tasks = [
        {"id": "flaky", "action": {"kind": "flaky"}},
        {"id": "refuses", "action": {"kind": "refuses"}},
        {"id": "garbage", "action": {"kind": "garbage"}},
        {"id": "hangs", "action": {"kind": "hangs", "timeout_seconds": 0.3}},
        {"id": "fine", "action": {"kind": "echo", "args": {"text": "ok"}}},
    ]
    ran = run_plan(tmp_path, tasks, kinds)
    tasks_by_id, steps = ran["tasks"], ran["steps"]
    assert tasks_by_id["flaky"].state == "completed" and tasks_by_id["flaky"].attempts == 2
    assert tasks_by_id["fine"].state == "completed"
    # A permanent failure and garbage are not retried; a timeout is, and times out again.
    assert [c[0] for c in kinds.calls].count("refuses") == 1
    assert [c[0] for c in kinds.calls].count("garbage") == 1
    assert [c[0] for c in kinds.calls].count("hangs") == 2
    assert tasks_by_id["refuses"].last_error_kind == "permanent"
    assert "no such repository" in steps["refuses"]["output_tail"]
    assert tasks_by_id["garbage"].last_error_kind == "permanent"
    assert "returned {'ok': True}; expected an ActionResult" in steps["garbage"]["output_tail"]
    assert tasks_by_id["hangs"].last_error_kind == "timeout"
    assert "abandoned after 0.3s timeout" in steps["hangs"]["output_tail"]
    # Out of attempts: failed, or held for a human by the default escalation.
    assert {tasks_by_id[t].state for t in ("refuses", "garbage", "hangs")} <= {"failed", "blocked"}


def test_a_plugin_kind_that_raises_leaves_its_traceback_as_the_output() -> None:
    kinds = Kinds()
    plugins = plugins_with(kinds)
    task = TaskSpec.model_validate({"id": "t", "action": {"kind": "flaky"}})
    request = ActionRequest("r", task, 1, Path("."), 5.0, plugin_kind=plugins.actions["flaky"])
    outcome = run_action(request)
    assert outcome.exit_code == 1 and outcome.error_kind == "transient"
    assert "ConnectionError: service reset the connection" in outcome.output_tail


def test_the_engines_stop_reaches_a_running_plugin_kind() -> None:
    kinds = Kinds()
    plugins = plugins_with(kinds)
    task = TaskSpec.model_validate({"id": "t", "action": {"kind": "polite"}})
    request = ActionRequest("r", task, 1, Path("."), 30.0, plugin_kind=plugins.actions["polite"])
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    outcome = run_action(request, stop)
    assert outcome.interrupted and kinds.stopped.is_set()
    assert time.monotonic() - started < 20  # not its 30 s timeout


def test_a_kind_no_loaded_plugin_provides_fails_for_good_at_run_time() -> None:
    task = TaskSpec.model_validate({"id": "t", "action": {"kind": "gone"}})
    outcome = run_action(ActionRequest("r", task, 1, Path("."), 5.0))
    assert outcome.exit_code is None and outcome.error_kind == "permanent"
    assert "no loaded plugin provides action kind 'gone'" in outcome.output_tail


def test_a_plugin_kind_can_grow_the_plan_and_spawned_kinds_are_checked(tmp_path: Path) -> None:
    kinds = Kinds()
    ran = run_plan(tmp_path, [{"id": "plan", "action": {"kind": "planner"}}], kinds)
    assert ran["summary"].state == "completed"
    assert ran["tasks"]["follow-up"].state == "completed"
    assert (tmp_path / "follow-up.out").read_text() == "abc"
    unknown = TaskSpec.model_validate({"id": "x", "action": {"kind": "deploy"}})
    with pytest.raises(SpawnError, match="task 'x' names unknown action kind 'deploy'"):
        prepare_tasks([unknown], {}, "r", "orch task add", ("shell", "agent", "python"))


def test_resuming_without_the_plugin_is_refused_with_the_kind_named(tmp_path: Path) -> None:
    kinds = Kinds()
    run_plan(tmp_path, [{"id": "say", "action": {"kind": "echo"}}], kinds)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        stored = plan_from_stored(store.get_run("r"))  # read without any plugin
    finally:
        store.close()
    assert stored.spec.tasks[0].action.kind == "echo"
    with pytest.raises(PlanError) as caught:
        build_engine(stored, load_plugins(entry_points=False))
    assert caught.value.task == "say" and caught.value.field == "action.kind"
    assert "unknown action kind 'echo'; loaded kinds: shell, agent, python" in caught.value.message


def test_the_plans_exit_code_rules_do_not_reclassify_a_plugins_failures(tmp_path: Path) -> None:
    # Exit code 1 is a plugin failure's stand-in: a plan that calls exit 1 permanent (for its
    # shell scripts) must not stop a transient plugin failure from being retried.
    kinds = Kinds()
    tasks = [{"id": "flaky", "action": {"kind": "flaky"}}]
    ran = run_plan(tmp_path, tasks, kinds, errors={"permanent_exit_codes": [1]})
    assert ran["tasks"]["flaky"].state == "completed" and ran["tasks"]["flaky"].attempts == 2


def test_a_permanent_pattern_in_a_plugins_output_makes_its_failure_permanent(
    tmp_path: Path,
) -> None:
    kinds = Kinds()
    tasks = [{"id": "flaky", "action": {"kind": "flaky"}}]
    ran = run_plan(tmp_path, tasks, kinds, errors={"permanent_patterns": ["reset the connection"]})
    assert ran["tasks"]["flaky"].attempts == 1
    assert ran["tasks"]["flaky"].last_error_kind == "permanent"


def test_a_plugin_cannot_change_the_stored_args(tmp_path: Path) -> None:
    kinds = Kinds()
    tasks = [{"id": "m", "action": {"kind": "mutator", "args": {"secret": "s3"}}}]
    ran = run_plan(tmp_path, tasks, kinds)
    assert ran["tasks"]["m"].state == "completed"
    assert [c[2] for c in kinds.calls] == [{"secret": "s3"}, {"secret": "s3"}]
    assert ran["tasks"]["m"].spec.action.args == {"secret": "s3"}


def test_a_spawned_task_of_an_unknown_kind_is_refused_and_the_run_goes_on(tmp_path: Path) -> None:
    kinds = Kinds()
    tasks = [
        {"id": "plan", "action": {"kind": "wild_planner"}},
        {"id": "other", "action": {"kind": "echo", "args": {"text": "x"}}},
    ]
    ran = run_plan(tmp_path, tasks, kinds)
    assert ran["summary"].state == "completed"
    assert set(ran["tasks"]) == {"plan", "other"}  # `ship` never joined the run
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        (refused,) = [e for e in store.events("r") if e.kind == "tasks_refused"]
    finally:
        store.close()
    assert "task 'ship' names unknown action kind 'deploy'" in refused.data["reason"]


def test_resuming_refuses_an_added_task_whose_kind_is_gone(tmp_path: Path) -> None:
    kinds = Kinds()
    run_plan(tmp_path, [{"id": "say", "action": {"kind": "echo"}}], kinds)
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        spec = TaskSpec.model_validate({"id": "later", "action": {"kind": "echo"}})
        store.commit("r", Batch(new_tasks=[TaskRecord("r", "later", "pending", spec, priority=5)]))
        # The plan's own task is finished; only the added one names the vanished kind.
        plugins_without = load_plugins(entry_points=False)
        plan = plan_from_stored(store.get_run("r"))
        engine = build_engine(
            replace(plan, spec=plan.spec.model_copy(update={"tasks": []})), plugins_without
        )
        with pytest.raises(PlanError) as caught:
            Orchestrator.resume(store, "r", engine=engine, force=True)
    finally:
        store.close()
    assert caught.value.task == "later" and caught.value.field == "action.kind"


def test_set_action_kind_is_checked_against_the_loaded_kinds() -> None:
    spec = TaskSpec.model_validate({"id": "t", "action": {"kind": "shell", "run": ["make"]}})
    with pytest.raises(OverrideError, match="unknown action kind 'nosuch'; loaded kinds: shell"):
        apply_to_spec(spec, {"action": {"kind": "nosuch"}})
    with pytest.raises(OverrideError) as caught:
        apply_to_spec(spec, {"action.kind": "nosuch"})  # `run` is no field of a plugin action
    assert "field action.run: not a field of a plugin action" in caught.value.message
    with pytest.raises(OverrideError, match="the action's kind must be text"):
        apply_to_spec(spec, {"action.kind": 5})


def test_orch_plugins_does_not_list_refused_kinds_as_provided() -> None:
    class Bad:
        @hookimpl
        def register_actions(self) -> list[ActionKind]:
            run = lambda call: ActionResult(True)  # noqa: E731
            return [ActionKind("shell", run), ActionKind("fine", run)]

    listing = describe_plugins(load_plugins(entry_points=False, extra=[Bad()]))
    (row,) = [p for p in listing["plugins"] if p["actions"]]
    assert [a["name"] for a in row["actions"]] == ["fine"]
    assert any("built-in action kind 'shell'" in p for p in listing["problems"])
