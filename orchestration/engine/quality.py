"""QualityController: runs validators, scores the four stages and applies the quality gate."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from orchestration.core.errors import RuleError
from orchestration.core.guarded import call_in_thread
from orchestration.core.models import TaskGate, ValidatorRef
from orchestration.extension import STAGES, CheckResult, ValidationInput, Validator
from orchestration.rules.expressions import Expression
from orchestration.rules.rule_files import QualityConfig

logger = logging.getLogger(__name__)

DEFAULT_VALIDATOR_TIMEOUT_SECONDS = 900.0
FEEDBACK_MAX_CHARS = 6_000
# Improvement hints a validator may return as `figures["suggestions"]` (a string or a list).
MAX_SUGGESTIONS_PER_CHECK = 20
MAX_SUGGESTION_CHARS = 500
# Figures that validators may report and that the rule context carries (others are kept too).
SUMMED_FIGURES = ("tests_passed", "tests_failed", "lint_errors")
# Terminal escape sequences (ECMA-48: CSI such as colours, OSC such as hyperlinks, and others
# such as charset switches). Validators' output feeds an agent's prompt and a reviewer's
# table: no escapes there.
# Written out because rich's decoder drops tab-indented lines and click's misses OSC.
ANSI_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC, ended by BEL or ST
    r"|\x1b[ -/]*[0-~]"  # the others: ESC, intermediate bytes, a final byte
)
# What a validator's figures may hold: they are stored as JSON and read by rules. Deeper (or
# cyclic), larger or non-finite figures fail that validator's check instead of the engine.
MAX_FIGURE_DEPTH = 32  # nesting levels
MAX_FIGURE_VALUES = 10_000  # values in all, at every level
MAX_FIGURE_INT = 2**63 - 1  # what both stores' JSON and a rule's arithmetic hold exactly
MAX_FIGURE_STRING = 100_000  # characters of one string


class _BadFigures(ValueError):
    """Internal: a validator's figures cannot be stored; the message says where and why."""


@dataclass(frozen=True, slots=True)
class QualityReport:
    """The verdict on one attempt: weighted score, gate, per-stage scores and every check."""

    score: float
    gate_passed: bool
    stage_scores: Mapping[str, float]
    checks: tuple[CheckResult, ...]
    gate_failures: tuple[str, ...] = ()
    figures: Mapping[str, Any] = field(default_factory=dict)
    # Stages where one validator passed and another failed: cross-validation disagreed.
    stage_conflicts: tuple[str, ...] = ()

    @property
    def suggestions(self) -> tuple[str, ...]:
        """Validators' improvement hints (`figures["suggestions"]`), failed checks' first."""
        ordered = sorted(self.checks, key=lambda c: c.passed)  # stable: failed checks first
        hints = [
            f"[{c.name}] {hint}"
            for c in ordered
            for hint in _suggestions(c.figures.get("suggestions"))
        ]
        return tuple(dict.fromkeys(hints))

    @property
    def feedback(self) -> str:
        """What the validators said about the attempt, for the next attempt's `{feedback}`.

        The gate's failures, each failed check's message, the stages whose validators
        disagree, then the suggestions of every check (a passed check may still suggest an
        improvement). Cut at FEEDBACK_MAX_CHARS, so suggestions are what a long report loses.
        """
        lines = [f"- {reason}" for reason in self.gate_failures]
        lines += [f"[{c.name}] {c.message}" for c in self.checks if not c.passed and c.message]
        if self.stage_conflicts:
            stages = ", ".join(self.stage_conflicts)
            lines.append(f"- validators of the same stage disagree: {stages}")
        if self.suggestions:
            lines += ["Suggestions:", *(f"- {hint}" for hint in self.suggestions)]
        return "\n".join(lines)[:FEEDBACK_MAX_CHARS]


def _failed(name: str, stage: str, message: str) -> CheckResult:
    return CheckResult(name, stage, False, 0.0, message)


def _sanitise(result: object, name: str, stage: str) -> CheckResult:
    """Garbage from a plugin becomes a failed check with a message saying what came back."""
    if not isinstance(result, CheckResult):
        return _failed(
            name, stage, f"validator returned {type(result).__name__}, not a CheckResult"
        )
    score = result.score if isinstance(result.score, int | float) else -1
    if not 0.0 <= float(score) <= 1.0:
        return _failed(name, stage, f"validator returned score {result.score!r}, not 0..1")
    if not isinstance(result.figures, Mapping):
        return _failed(name, stage, "validator returned figures that are not a mapping")
    try:
        figures = _plain_figures(result.figures)
    except _BadFigures as bad:
        return _failed(name, stage, f"validator returned unusable figures: {bad}")
    except Exception as error:  # figures whose items or text cannot even be read
        return _failed(name, stage, f"validator returned unreadable figures ({error!r:.200})")
    return replace(
        result,
        name=name,
        stage=stage,
        score=float(score),
        passed=bool(result.passed),
        message=strip_ansi(str(result.message))[:FEEDBACK_MAX_CHARS],
        figures=figures,
    )


def strip_ansi(text: str) -> str:
    """`text` without terminal escape sequences (colours, cursor moves, hyperlinks)."""
    return ANSI_ESCAPE.sub("", text) if "\x1b" in text else text


def _plain_figures(figures: Mapping[Any, Any]) -> dict[str, Any]:
    """Figures as plain JSON data; a count that is not a number is dropped, not trusted."""
    plain: dict[str, Any] = {}
    budget = [MAX_FIGURE_VALUES]
    for key, value in figures.items():
        if key in SUMMED_FIGURES and not _is_number(value):
            continue
        if key == "tests_regressed":
            value = [str(v) for v in value] if isinstance(value, list | tuple) else []
        if key == "suggestions":
            value = _suggestions(value)
        plain[str(key)] = _json_value(value, str(key), 1, budget)
    return plain


def _suggestions(value: Any) -> list[str]:
    """A validator's suggestions as a short list of non-empty strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return []
    hints = [
        strip_ansi(str(item)).strip()[:MAX_SUGGESTION_CHARS] for item in items if item is not None
    ]
    return [hint for hint in hints if hint][:MAX_SUGGESTIONS_PER_CHECK]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_value(value: Any, where: str, depth: int, budget: list[int]) -> Any:
    """`value` as plain JSON data, or _BadFigures naming the figure (`where`) and the limit."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _BadFigures(f"more than {MAX_FIGURE_VALUES} values")
    if depth > MAX_FIGURE_DEPTH:
        raise _BadFigures(f"'{where}' is nested deeper than {MAX_FIGURE_DEPTH} levels (or cyclic)")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_FIGURE_INT:
            raise _BadFigures(f"'{where}' is an integer beyond 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _BadFigures(f"'{where}' is {value!r}, not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_FIGURE_STRING:
            raise _BadFigures(f"'{where}' is a string of more than {MAX_FIGURE_STRING} characters")
        return strip_ansi(value)
    if isinstance(value, Mapping):
        return {str(k): _json_value(v, f"{where}.{k}", depth + 1, budget) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v, f"{where}[{i}]", depth + 1, budget) for i, v in enumerate(value)]
    return _json_value(str(value), where, depth, budget)


def run_validator(validator: Validator, step: ValidationInput, stage: str) -> CheckResult:
    """Call one validator in a thread with a timeout; it never raises or hangs the loop."""
    call = call_in_thread(
        lambda: validator.check(step),
        name=f"validator-{validator.name}",
        timeout=step.timeout_seconds,
    )
    if call.timed_out:
        return _failed(
            validator.name, stage, f"validator did not finish within {step.timeout_seconds:g}s"
        )
    if call.error is not None:  # a plugin's failure is that check's failure
        logger.error("validator %s raised", validator.name, exc_info=call.error)
        error = call.error
        return _failed(validator.name, stage, f"validator raised {type(error).__name__}: {error}")
    return _sanitise(call.value, validator.name, stage)


def _timeout(value: Any) -> float | None:
    if value is None:
        return DEFAULT_VALIDATOR_TIMEOUT_SECONDS
    if _is_number(value) and value > 0:
        return float(value)
    return None


def acceptance_check(
    acceptance: Sequence[Expression], context: Mapping[str, Any], action_ok: bool, exit_code: Any
) -> CheckResult:
    """The requirements stage: the action succeeded and every acceptance expression holds."""
    failures = [] if action_ok else [_action_failure(exit_code, context)]
    for expression in acceptance:
        try:
            if not expression.evaluate(context):
                failures.append(f"acceptance not met: {expression.source}")
        except RuleError as error:
            failures.append(f"acceptance could not be evaluated: {error}")
    total = len(acceptance) + 1
    score = (total - len(failures)) / total
    if failures:
        return CheckResult("requirements", "requirements", False, score, "; ".join(failures))
    return CheckResult("requirements", "requirements", True, 1.0, "requirements met")


def _action_failure(exit_code: Any, context: Mapping[str, Any]) -> str:
    """Why the action did not succeed, in words: no exit code means it did not run (or ran out
    of time), and its output's first line says why."""
    if exit_code is not None:
        return f"the action exited {exit_code}"
    if context.get("timed_out"):
        return "the action timed out"
    lines = str(context.get("output_tail") or "").strip().splitlines()
    return f"the action could not run: {lines[0]}" if lines else "the action could not run"


def effective_gate(config: QualityConfig, gate: TaskGate | None) -> QualityConfig:
    """The rule files' quality settings with a task's own gate applied key by key."""
    if gate is None:
        return config
    return QualityConfig(
        config.weights,
        config.min_score if gate.min_score is None else gate.min_score,
        config.required if gate.required is None else tuple(dict.fromkeys(gate.required)),
    )


def stage_conflicts(checks: Sequence[CheckResult]) -> tuple[str, ...]:
    """Stages (in STAGES order) where at least one check passed and another failed."""
    verdicts: dict[str, set[bool]] = {}
    for check in checks:
        verdicts.setdefault(check.stage, set()).add(check.passed)
    return tuple(stage for stage in STAGES if verdicts.get(stage) == {True, False})


class QualityController:
    def __init__(
        self,
        validators: Mapping[str, Validator],
        config: QualityConfig,
        baselines: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.validators = validators
        self.config = config
        # Each validator's figures from the run's start (its `baseline`), by validator name.
        self.baselines: Mapping[str, Mapping[str, Any]] = baselines or {}

    def with_baselines(self, baselines: Mapping[str, Mapping[str, Any]]) -> QualityController:
        """A controller like this one that compares against `baselines` (this one unchanged)."""
        return QualityController(self.validators, self.config, baselines)

    def unknown(self, refs: Sequence[ValidatorRef]) -> list[str]:
        return [ref.name for ref in refs if ref.name not in self.validators]

    def assess(
        self,
        step: ValidationInput,
        refs: Sequence[ValidatorRef],
        requirements: CheckResult,
        gate: TaskGate | None = None,
    ) -> QualityReport:
        """Run the validators on one attempt and score it against the gate.

        The gate is the rule files' (`quality.gate`) refined by `gate`, or else by the task's
        own `gate:` from the plan (`step.task.gate`).
        """
        checks = [requirements]
        for ref in refs:
            validator = self.validators.get(ref.name)
            stage = ref.stage or (validator.stage if validator else "quality")
            if validator is None:
                checks.append(
                    _failed(ref.name, stage, f"no validator named '{ref.name}' is loaded")
                )
                continue
            options = {**ref.options, "stage": stage}
            timeout = _timeout(ref.options.get("timeout_seconds"))
            if timeout is None:
                message = "option timeout_seconds must be a positive number of seconds"
                checks.append(_failed(ref.name, stage, message))
                continue
            baseline = self.baselines.get(ref.name, {})
            checks.append(
                run_validator(
                    validator,
                    replace(step, options=options, timeout_seconds=timeout, baseline=baseline),
                    stage,
                )
            )
        return self.score(checks, gate if gate is not None else step.task.gate)

    def score(self, checks: Sequence[CheckResult], gate: TaskGate | None = None) -> QualityReport:
        """Stage scores (the lowest check of each stage), the weighted score and the gate."""
        config = effective_gate(self.config, gate)
        by_stage: dict[str, list[CheckResult]] = {}
        for check in checks:
            by_stage.setdefault(check.stage, []).append(check)
        stage_scores = {
            stage: min(c.score for c in by_stage[stage]) for stage in STAGES if stage in by_stage
        }
        # Stages nobody checked are left out and the remaining weights renormalised: a task
        # with no tests is not scored as if its tests had failed.
        weights = {s: config.weights.get(s, 0.0) for s in stage_scores}
        total_weight = sum(weights.values())
        score = (
            sum(stage_scores[s] * w for s, w in weights.items()) / total_weight
            if total_weight
            else (1.0 if all(c.passed for c in checks) else 0.0)
        )
        gate_failures = _gate_failures(config, score, by_stage)
        if not math.isfinite(score):  # weights made in code can be NaN: never store such a score
            gate_failures.insert(0, f"quality score is {score!r}: the stage weights are unusable")
            score = 0.0
        return QualityReport(
            round(score, 4),
            not gate_failures,
            stage_scores,
            tuple(checks),
            tuple(gate_failures),
            _figures(checks),
            stage_conflicts(checks),
        )


def _gate_failures(
    config: QualityConfig, score: float, by_stage: Mapping[str, list[CheckResult]]
) -> list[str]:
    failures = []
    if score < config.min_score:
        failures.append(f"quality score {score:.2f} is below the gate's {config.min_score:.2f}")
    for stage in config.required:
        failed = [c.name for c in by_stage.get(stage, []) if not c.passed]
        if failed:
            failures.append(f"required stage '{stage}' failed: {', '.join(failed)}")
    # The action's own success is always required, whatever the weights say.
    for check in by_stage.get("requirements", []):
        if (
            check.name == "requirements"
            and not check.passed
            and "requirements" not in config.required
        ):
            failures.append(f"requirements failed: {check.message}")
    return failures


def _figures(checks: Sequence[CheckResult]) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for check in checks:
        for key, value in check.figures.items():
            if key in SUMMED_FIGURES and isinstance(value, int | float):
                figures[key] = figures.get(key, 0) + value
            else:
                figures.setdefault(key, value)
    return figures
