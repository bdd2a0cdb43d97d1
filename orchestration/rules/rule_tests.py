"""Runs a rule set against recorded step contexts: which breakpoints fire, and would it stop."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.core.context import CONTEXT_NAME_SET, neutral_context
from orchestration.core.errors import OrchestrationError
from orchestration.core.inputfiles import load_json, open_regular
from orchestration.core.models import Scheduling
from orchestration.rules.rule_files import RuleSet, evaluate_breakpoints

# Keys a contexts file may carry beside the rule context: where the check runs, and labels.
EXTRA_KEYS = frozenset({"at", "label", "kind", "why", "borderline", "project"})
MAX_LINE_BYTES = 1_000_000


@dataclass(frozen=True)
class ContextVerdict:
    """What the rules say about one recorded step context."""

    line: int
    task_id: str
    at: str
    fired: list[tuple[str, str]]  # (rule, action)
    errors: list[str]
    label: str | None

    @property
    def stops(self) -> bool:
        return any(action == "pause" for _, action in self.fired)


def read_contexts(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The JSON objects of a contexts file, one per line (blank lines skipped)."""
    display = str(path)
    with io.TextIOWrapper(open_regular(path), encoding="utf-8") as handle:
        for number in itertools.count(1):
            try:
                text = handle.readline(MAX_LINE_BYTES + 1)  # a capped read: never a whole blob
            except UnicodeDecodeError as error:
                raise OrchestrationError(
                    f"not UTF-8 text: {error.reason}", file=display, line=number
                ) from None
            if not text:
                return
            if not text.strip():
                continue
            if len(text) > MAX_LINE_BYTES:
                raise OrchestrationError("line is too long", file=display, line=number)
            data = load_json(text, file=display, line=number)
            if not isinstance(data, dict):
                raise OrchestrationError("expected a JSON object", file=display, line=number)
            yield number, data


def _context(data: dict[str, Any], path: Path, number: int) -> dict[str, Any]:
    unknown = sorted(set(data) - CONTEXT_NAME_SET - EXTRA_KEYS)
    if unknown:
        raise OrchestrationError(
            f"unknown context name '{unknown[0]}' (docs/rules.md lists them)",
            file=str(path),
            line=number,
        )
    context = neutral_context()
    context.update({k: v for k, v in data.items() if k not in EXTRA_KEYS})
    return context


def risk_gate_holds(context: dict[str, Any], at: str) -> bool:
    """The engine's risk gate, which stops high-risk low-confidence work before any rule."""
    threshold = Scheduling().risk_gate_confidence
    return at == "before" and context.get("risk") == "high" and context["confidence"] < threshold


def verdicts(rules: RuleSet, path: Path) -> list[ContextVerdict]:
    results = []
    for number, data in read_contexts(path):
        at = str(data.get("at", "after"))
        if at not in ("before", "after"):
            raise OrchestrationError(
                f"'at' must be before or after, not {at!r}", file=str(path), line=number
            )
        context = _context(data, path, number)
        fired: list[tuple[str, str]] = []
        errors: list[str] = []
        if risk_gate_holds(context, at):
            fired.append(("risk_gate", "pause"))
        for rule, error in evaluate_breakpoints(rules, at, context):
            if error is not None:
                errors.append(f"{rule.name}: {error.message}")
            else:
                fired.append((rule.name, rule.action))
        label = data.get("label")
        results.append(
            ContextVerdict(
                number,
                str(context.get("task_id", "")),
                at,
                fired,
                errors,
                label if isinstance(label, str) else None,
            )
        )
    return results


@dataclass(frozen=True)
class LabelFigures:
    """How the rules did on labelled contexts: recall on `stop` lines, false stops on `go` ones."""

    stop_lines: int
    stops_caught: int
    go_lines: int
    go_stopped: int

    @classmethod
    def of(cls, results: list[ContextVerdict]) -> LabelFigures:
        stop = [r for r in results if r.label == "stop"]
        go = [r for r in results if r.label == "go"]
        return cls(len(stop), sum(r.stops for r in stop), len(go), sum(r.stops for r in go))

    @property
    def recall(self) -> float | None:
        """Share of the `stop` lines where the engine stops; None without such lines."""
        return round(self.stops_caught / self.stop_lines, 4) if self.stop_lines else None

    @property
    def false_stop_rate(self) -> float | None:
        """Share of the `go` lines where the engine stops all the same; None without them."""
        return round(self.go_stopped / self.go_lines, 4) if self.go_lines else None


@dataclass(frozen=True)
class BacktestRow:
    """One stored step of a run: what fired then, and what the rule set under test fires."""

    task_id: str
    attempt: int
    fired_then: list[str]
    fired_now: list[tuple[str, str]]
    errors: list[str]

    @property
    def added(self) -> list[str]:
        return [name for name, _ in self.fired_now if name not in self.fired_then]

    @property
    def removed(self) -> list[str]:
        now = {name for name, _ in self.fired_now}
        return [name for name in self.fired_then if name not in now]


def backtest(store: Any, run_id: str, rules: RuleSet) -> list[BacktestRow]:
    """Replay the run's stored after-step contexts against `rules`.

    Only after-step contexts are stored for every attempt; before-step checks are not replayed.
    What fired then comes from the run's breakpoints (decision escalations are left out).
    """
    then: dict[tuple[str, int], list[str]] = {}
    for bp in store.breakpoints(run_id):
        if bp.at == "after" and not bp.rule.startswith("decision:"):
            key = (bp.task_id, int(bp.context.get("attempt", 0) or 0))
            then.setdefault(key, []).append(bp.rule)
    rows = []
    for event in store.events(run_id):
        if event.kind != "step" or not event.task_id:
            continue
        context = neutral_context()
        context.update({k: v for k, v in event.data.items() if k in CONTEXT_NAME_SET})
        attempt = int(context.get("attempt", 0) or 0)
        fired: list[tuple[str, str]] = []
        errors: list[str] = []
        for rule, error in evaluate_breakpoints(rules, "after", context):
            if error is not None:
                errors.append(f"{rule.name}: {error.message}")
            else:
                fired.append((rule.name, rule.action))
        rows.append(
            BacktestRow(
                event.task_id, attempt, then.get((event.task_id, attempt), []), fired, errors
            )
        )
    return rows
