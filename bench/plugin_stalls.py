"""What a hanging plugin costs a run: `python -m bench.plugin_stalls --sleep 10`.

A 5-task chain of shell tasks, each with a `notify` breakpoint after it, runs in process once with
no extra plugin and once with each of: a notifier, an `on_transition` hook and an
`override_decision` hook that sleeps `--sleep` seconds. It prints the wall-clock time of each run
(from start to `run_until_stopped` returning) and the plugin events the run stored.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from orchestration import hookimpl
from orchestration.core.yamlfile import dump_plan
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.extension import Notification, Notifier
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store

TASKS = 5
RULES = (
    "breakpoints:\n"
    "  - name: tell_me\n"
    "    at: after\n"
    "    when: exit_code == 0\n"
    "    action: notify\n"
    "    message: '{task_id} done'\n"
)
RELEASE = threading.Event()  # set at the end, so the sleeping threads left behind can end


class SleepyNotifier:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def register_notifiers(self) -> list[Notifier]:
        return [Notifier("sleepy", self.sleep)]

    def sleep(self, notification: Notification) -> None:
        RELEASE.wait(self.seconds)


class SleepyTransition:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def on_transition(self, task_id: str) -> None:
        RELEASE.wait(self.seconds)


class SleepyOverride:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def override_decision(self, decision: str) -> str | None:
        RELEASE.wait(self.seconds)
        return None


def one_run(directory: Path, extra: list[Any]) -> tuple[str, float, list[str]]:
    (directory / "rules.yaml").write_text(RULES)
    tasks = [
        {
            "id": f"t{i}",
            "action": {"kind": "shell", "run": ["true"]},
            "depends_on": [f"t{i - 1}"] if i else [],
        }
        for i in range(TASKS)
    ]
    spec = {"version": 1, "name": "stalls", "rules": ["rules.yaml"], "tasks": tasks}
    (directory / "plan.yaml").write_text(dump_plan(spec))
    plan = load_plan(directory / "plan.yaml")
    plugins = load_plugins(entry_points=False, extra=extra)
    plugins.muted.add("console")
    started = time.monotonic()
    with Store.open(f"sqlite:///{directory / 'state.db'}") as store:
        engine = build_engine(plan, plugins)
        summary = Orchestrator.start(plan, store, run_id="r", engine=engine).run_until_stopped()
        elapsed = time.monotonic() - started
        events = [e.kind for e in store.events("r") if e.kind.startswith(("plugin_", "notif"))]
    return summary.state, elapsed, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sleep", type=float, default=10.0, help="seconds each hook sleeps")
    seconds = parser.parse_args().sleep
    cases: dict[str, list[Any]] = {
        "no extra plugin": [],
        "sleeping notifier": [SleepyNotifier(seconds)],
        "sleeping on_transition": [SleepyTransition(seconds)],
        "sleeping override_decision": [SleepyOverride(seconds)],
    }
    try:
        for label, extra in cases.items():
            with tempfile.TemporaryDirectory() as tmp:
                state, elapsed, events = one_run(Path(tmp), extra)
            print(f"{label:28} {state:10} {elapsed:6.1f} s  {', '.join(events) or '-'}")
    finally:
        RELEASE.set()


if __name__ == "__main__":
    main()
