"""The loop's view of agents and waves: who runs an attempt, which wave may start, anomalies.

The loop calls four methods, each at one point: `admit` (may this ready task start now: its
wave is open and a capable agent is free), `assign` (the attempt's request, with the chosen
agent's preset or command), `concluded` (an attempt was assessed: its figures, anomalies) and
`tick` (slots freed, wave gates, held tasks given back). Policy sits in assignment.py,
waves.py and anomalies.py; this module keeps their state and records what they decide.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from typing import Any

from orchestration.core.agent_specs import assignable, assigned_action, task_kind
from orchestration.core.errors import RuleError
from orchestration.core.lifecycle import FINAL_STATES, TaskState
from orchestration.core.models import EventRecord
from orchestration.engine.anomalies import Anomaly, after_attempt, coordination
from orchestration.engine.assignment import AgentState, Choice, Snapshot, TaskAsk, choose
from orchestration.engine.fleet_health import (
    ANOMALY,
    ASSIGNED,
    STEP,
    Assignment,
    AttemptFigure,
    assignments_from,
    attempt_cost,
    attempt_figures,
    health,
)
from orchestration.engine.waves import TaskEnd, compile_gate, plan_waves, wave_figures, wave_index

logger = logging.getLogger(__name__)

WAVE_GATE = "wave_gate"  # the breakpoint raised when a wave's gate does not hold
NO_AGENT = "agent_unavailable"  # the breakpoint raised when no declared agent can run a task
ANOMALY_WINDOW = 500  # the anomaly detectors look at this many latest attempts


def open_fleet(orchestrator: Any) -> Fleet:
    """The fleet of a loop (`Orchestrator`), its history read from the store."""
    fleet = Fleet(orchestrator)
    fleet.load()
    return fleet


class Fleet:
    def __init__(self, orchestrator: Any) -> None:
        self.o = orchestrator
        spec = orchestrator.plan.spec
        self.spec = spec
        self.agents = {a.name: a for a in spec.agents}
        self.running: dict[str, str] = {}  # task id -> agent running its attempt
        self.waiting: dict[str, tuple[datetime, str]] = {}  # task id -> (since, why)
        self.held: set[str] = set()  # ready tasks whose wave is not open yet
        self.chosen: dict[str, Choice] = {}  # admitted, about to start
        self.previous: dict[str, list[str]] = defaultdict(list)  # task id -> agents so far
        self.history: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.attempts: list[AttemptFigure] = []
        self.assignments: list[Assignment] = []
        self.reported: set[str] = set()
        self.to_pause: list[Anomaly] = []  # anomalies whose breakpoint holds the next start
        self.turn = 0
        self.gate = compile_gate(spec.waves.gate) if spec.waves and spec.waves.gate else None
        self.waves_on = spec.waves is not None
        self.passed = 0  # waves 1..passed are open for the next one
        self.gate_tasks: dict[int, str] = {}  # wave -> the task blocked at its gate
        self._waves: list[list[str]] = []
        self._waves_for = -1
        self._freed = False
        self.watching = bool(self.agents) or "health" in spec.model_fields_set
        # a plan without agents, waves or health settings pays nothing for this module
        self.active = self.watching or self.waves_on

    # ---- history --------------------------------------------------------------------------

    def load(self) -> None:
        if not self.active:
            return
        store, run = self.o.store, self.o.run
        costs = {a.name: a.cost_per_unit for a in self.agents.values()}
        if self.agents and self.spec.assignment.strategy in ("confidence_based", "priority_based"):
            for run_id in store.run_ids_of_plan(run.plan_name):
                if run_id != run.id:
                    self._learn(
                        attempt_figures(store.events(run_id, kinds=[ASSIGNED, STEP]), costs)
                    )
        events = store.events(run.id, kinds=[ASSIGNED, STEP, ANOMALY])
        self.assignments = assignments_from(events)
        for a in self.assignments:
            self.previous[a.task_id].append(a.agent)
        self.turn = len(self.assignments)
        self.attempts = attempt_figures(events, costs)
        self._learn(self.attempts)
        self.reported = {
            f"{e.data.get('kind')}:{e.data.get('subject')}" for e in events if e.kind == ANOMALY
        }
        for bp in store.breakpoints(run.id):
            if bp.rule == WAVE_GATE:  # open: still waits; resolved: the human's answer holds
                self.gate_tasks[int(bp.context.get("wave", 0))] = bp.task_id

    def _learn(self, attempts: list[AttemptFigure]) -> None:
        for a in attempts:
            if a.agent is not None:
                tally = self.history[(a.agent, a.kind)]
                tally[0] += 1
                tally[1] += a.succeeded

    # ---- the loop's four calls ------------------------------------------------------------

    def admit(self, task: Any, now: datetime) -> bool:
        """Whether the ready task may start now; if not it is held and given back later."""
        if self.to_pause:  # `health.anomalies.action: pause`: a human looks first
            anomaly = self.to_pause.pop(0)
            context = {"kind": anomaly.kind, "subject": anomaly.subject, **anomaly.figures}
            self._raise(
                task,
                "anomaly_detected",
                "high",
                "pause",
                anomaly.message,
                context,
                now,
                scope="run",
            )
            return False
        if self.waves_on and self._wave_of(task.task_id) > self.passed + 1:
            self.held.add(task.task_id)
            return False
        if not self.agents or not assignable(task.spec.action):
            return True
        choice = choose(self._ask(task), self._snapshot(task))
        if choice.agent is not None:
            self.chosen[task.task_id] = choice
            return True
        if not choice.waits:  # no declared agent can run it: a human decides
            self._raise(
                task,
                NO_AGENT,
                "high",
                "pause",
                choice.reason,
                {"requires": sorted(task.spec.requires)},
                now,
            )
            return False
        self.waiting.setdefault(task.task_id, (now, choice.reason))
        self._check_coordination(now)
        return False

    def assign(self, request: Any, now: datetime) -> Any:
        """The attempt's request with its chosen agent's action, the choice recorded."""
        task_id = request.task.id
        choice = self.chosen.pop(task_id, None)
        if choice is None or choice.agent is None:
            return request
        agent = self.agents[choice.agent]
        since = self.waiting.pop(task_id, None)
        waited = round((now - since[0]).total_seconds(), 3) if since else 0.0
        earlier = self.previous[task_id]
        same = bool(earlier) and earlier[-1] == agent.name
        self.running[task_id] = agent.name
        self.previous[task_id].append(agent.name)
        self.turn += 1
        kind = task_kind(request.task.tags, "agent")
        data = {
            "attempt": request.attempt,
            "agent": agent.name,
            "strategy": self.spec.assignment.strategy,
            "reason": choice.reason,
            "predicted": choice.predicted,
            "scores": choice.scores,
            "capable": list(choice.capable),
            "waited_seconds": waited,
            "kind": kind,
        }
        self.o.state.event(ASSIGNED, task_id, data, now)
        self.assignments.append(
            assignments_from([EventRecord(self.o.run.id, ASSIGNED, task_id, data, now)])[0]
        )
        spec = request.task.model_copy(
            update={"action": assigned_action(agent, request.task.action)}
        )
        return replace(request, task=spec, agent_session=request.agent_session if same else None)

    def concluded(self, task: Any, result: Any, now: datetime) -> None:
        """An attempt was assessed: count it, and look for anomalies."""
        if not self.active:
            return
        agent = self.running.pop(task.task_id, None)
        self._freed = self._freed or agent is not None
        assigned = next(
            (
                a
                for a in reversed(self.assignments)
                if a.task_id == task.task_id and a.attempt == result.attempt
            ),
            None,
        )
        duration = result.outcome.duration_seconds
        cost_per_unit = self.agents[agent].cost_per_unit if agent in self.agents else 0.0
        figure = AttemptFigure(
            task.task_id,
            result.attempt,
            bool(result.report.gate_passed),
            duration,
            attempt_cost(result.outcome.result, duration, cost_per_unit),
            assigned.kind if assigned else task_kind(task.spec.tags, "task"),
            agent,
            assigned.predicted if assigned else None,
        )
        self.attempts.append(figure)
        self._learn([figure])
        if self.watching and self.spec.health.anomalies.action != "off":
            window = self.attempts[-ANOMALY_WINDOW:]
            for anomaly in after_attempt(window, list(self.agents), self.spec.health.anomalies):
                self._report(anomaly, task, now)

    def tick(self, now: datetime) -> int:
        """Free the slots of attempts that ended, open waves, give held tasks back."""
        if not self.active:
            return 0
        for task_id in [t for t in self.running if self.o.tasks[t].state != TaskState.RUNNING]:
            del self.running[task_id]
            self._freed = True
        opened = self._advance_waves(now) if self.waves_on else False
        given = 0
        if opened:
            given += self._give_back(self.held, lambda t: self._wave_of(t) <= self.passed + 1)
        if self._freed:
            self._freed = False
            given += self._give_back(set(self.waiting), lambda t: True, keep=True)
        return given

    def holding(self) -> int:
        """Ready tasks held until their wave opens: they wait for other work, not for time."""
        return sum(1 for t in self.held if self.o.tasks[t].state == TaskState.READY)

    # ---- helpers ---------------------------------------------------------------------------

    def _give_back(self, ids: set[str], allowed: Any, keep: bool = False) -> int:
        given = 0
        for task_id in sorted(ids):
            task = self.o.tasks.get(task_id)
            if task is None or task.state != TaskState.READY:
                self.held.discard(task_id)
                self.waiting.pop(task_id, None)
                continue
            if allowed(task_id):
                self.held.discard(task_id)
                if not keep:
                    self.waiting.pop(task_id, None)
                self.o.queue(task)
                given += 1
        return given

    def _ask(self, task: Any) -> TaskAsk:
        retry_on = task.spec.retry_on or self.spec.assignment.retry_on
        return TaskAsk(
            task.task_id,
            task.spec.priority,
            task_kind(task.spec.tags, "agent"),
            frozenset(task.spec.requires),
            tuple(self.previous[task.task_id]),
            retry_on,
        )

    def _snapshot(self, task: Any) -> Snapshot:
        kind = task_kind(task.spec.tags, "agent")
        counts: dict[str, int] = defaultdict(int)
        for name in self.running.values():
            counts[name] += 1
        states = tuple(
            AgentState(
                a.name,
                frozenset(a.capabilities),
                a.cost_per_unit,
                a.max_concurrent,
                counts[a.name],
                self._expected_seconds(a.name, a.expected_seconds),
                *self.history[(a.name, kind)],
            )
            for a in self.agents.values()
        )
        settings = self.spec.assignment
        return Snapshot(
            states, settings.strategy, self.turn, settings.exploration, settings.important_priority
        )

    def _expected_seconds(self, agent: str, declared: float) -> float:
        """The agent's mean duration in this run so far, else what it declares."""
        mine = [a.duration_seconds for a in self.attempts[-ANOMALY_WINDOW:] if a.agent == agent]
        return round(sum(mine) / len(mine), 3) if mine else declared

    def _check_coordination(self, now: datetime) -> None:
        if not self.watching or self.spec.health.anomalies.action == "off":
            return
        counts = dict.fromkeys(self.agents, 0)
        for name in self.running.values():
            counts[name] += 1
        anomaly = coordination({t: why for t, (_, why) in self.waiting.items()}, counts)
        if anomaly is not None and anomaly.task_id is not None:
            self._report(anomaly, self.o.tasks[anomaly.task_id], now)

    def _report(self, anomaly: Anomaly, task: Any, now: datetime) -> None:
        """Once per run and key: an event, and an `anomaly_detected` breakpoint (notify)."""
        if anomaly.key in self.reported:
            return
        self.reported.add(anomaly.key)
        data = {
            "kind": anomaly.kind,
            "subject": anomaly.subject,
            "message": anomaly.message,
            "figures": anomaly.figures,
        }
        self.o.state.event(ANOMALY, task.task_id, data, now)
        self.o.observer.message(f"anomaly: {anomaly.message}")
        from orchestration.engine.conclusion import Raised

        if self.spec.health.anomalies.action == "pause":
            self.to_pause.append(anomaly)
            return
        raised = Raised("anomaly_detected", "after", "medium", "notify", anomaly.message)
        self.o.state.add_breakpoint(
            task, raised, {"task_id": task.task_id, **data}, now, state="resolved"
        )

    def _raise(
        self,
        task: Any,
        rule: str,
        severity: str,
        action: str,
        message: str,
        context: dict[str, Any],
        now: datetime,
        scope: str = "task",
    ) -> None:
        from orchestration.engine.conclusion import Raised

        self.o.scheduler.discard(task.task_id)
        raised = Raised(rule, "before", severity, action, message, scope)
        self.o.state.block(task, raised, {"task_id": task.task_id, **context}, now)

    # ---- waves -----------------------------------------------------------------------------

    def _wave_of(self, task_id: str) -> int:
        if self._waves_for != len(self.o.tasks):
            self._waves = plan_waves(t.spec for t in self.o.tasks.values())
            self._index = wave_index(self._waves)
            self._waves_for = len(self.o.tasks)
        return self._index.get(task_id, 1)

    def _advance_waves(self, now: datetime) -> bool:
        """Open the next waves whose predecessor is final and whose gate holds; True if any."""
        self._wave_of("")  # the waves of the tasks as they are now
        opened = False
        while self.passed < len(self._waves):
            number = self.passed + 1
            wave = self._waves[number - 1]
            if not all(self.o.tasks[t].state in FINAL_STATES for t in wave):
                break
            verdict = self._gate_verdict(number, wave, now)
            if verdict is None:
                break
            self.passed += 1
            opened = True
        return opened

    def _gate_verdict(self, number: int, wave: list[str], now: datetime) -> bool | None:
        """True: the next wave may start; None: it waits (for a human at a wave_gate)."""
        if self.gate is None or number == len(self._waves):
            return True
        if number in self.gate_tasks:
            return self._gate_answered(number, now)
        members = set(wave)
        attempts = [a for a in self.attempts if a.task_id in members]
        ends = [TaskEnd(t, self.o.tasks[t].state, self.o.tasks[t].outcome) for t in wave]
        weights = self.spec.health.weights.model_dump()
        score = health(
            attempts,
            [a for a in self.assignments if a.task_id in members],
            list(self.agents),
            weights,
        ).score
        figures = wave_figures(number, ends, attempts, score)
        try:
            holds, error = bool(self.gate.evaluate(figures)), ""
        except RuleError as failure:
            holds, error = False, failure.message
        data = {
            "wave": number,
            "gate": self.gate.source,
            "holds": holds,
            "figures": figures,
            "error": error,
        }
        self.o.state.event("wave_gate", None, data, now)
        if holds:
            return True
        waiting = [t for t in self._waves[number] if self.o.tasks[t].state == TaskState.READY]
        if not waiting:
            if all(self.o.tasks[t].state in FINAL_STATES for t in self._waves[number]):
                return True  # nothing of the next wave can run anyway
            return None
        shown = ", ".join(f"{k}={v}" for k, v in figures.items())
        why = f" ({error})" if error else ""
        message = f"wave {number} did not pass its gate `{self.gate.source}`{why}: {shown}"
        self.gate_tasks[number] = waiting[0]
        self._raise(
            self.o.tasks[waiting[0]],
            WAVE_GATE,
            "high",
            "pause",
            message,
            {"wave": number, **figures},
            now,
            scope="run",
        )
        return None

    def _gate_answered(self, number: int, now: datetime) -> bool | None:
        """A human answered the wave gate: approve, retry or skip open the next wave."""
        task = self.o.tasks[self.gate_tasks[number]]
        if task.state == TaskState.BLOCKED:
            return None
        if task.state == TaskState.CANCELLED:  # rejected: the waves after it do not run
            for later in self._waves[number:]:
                for other in later:
                    t = self.o.tasks[other]
                    if t.state not in FINAL_STATES and t.state != TaskState.RUNNING:
                        self.o.scheduler.discard(other)
                        self.held.discard(other)
                        self.o.state.update(t, outcome="cancelled")
                        self.o.state.move(t, "cancel", f"wave {number} gate rejected")
        return True


__all__ = ["NO_AGENT", "WAVE_GATE", "Fleet", "open_fleet"]
