"""Rule files: breakpoints, decision rules and the quality gate, validated and compiled at load."""

from __future__ import annotations

import importlib.resources
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.core.context import CONTEXT_NAME_SET, freeze
from orchestration.core.durations import parse_duration
from orchestration.core.errors import RuleError
from orchestration.core.inputfiles import read_capped
from orchestration.core.yamlstrict import Position, YamlError, load_strict_yaml_positions
from orchestration.rules import signals
from orchestration.rules.expressions import Expression, compile_expression

logger = logging.getLogger(__name__)

DEFAULT_RULES_PACKAGE = "orchestration.default_rules"
STAGES = ("syntax", "requirements", "quality", "testing")
MAX_RULE_FILE_BYTES = 1_000_000
MAX_MESSAGE_VALUE_CHARS = 300  # one substituted value in a breakpoint message
RULE_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]*$"

Stage = Literal["syntax", "requirements", "quality", "testing"]
Criterion = Literal["quality", "confidence", "history"]
CRITERIA: tuple[str, ...] = ("quality", "confidence", "history")
# A `decide: score` rule's defaults, for the keys its `scoring:` block leaves out.
DEFAULT_SCORE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"quality": 0.5, "confidence": 0.3, "history": 0.2}
)
DEFAULT_PROCEED_THRESHOLD = 0.7
DEFAULT_RETRY_THRESHOLD = 0.4
Functions = Mapping[str, Callable[..., Any]]
_M = TypeVar("_M", bound=BaseModel)


# ---- the records the engine uses ------------------------------------------------------------


@dataclass(frozen=True)
class AutoResolution:
    """What an `auto` breakpoint does by itself: wait, then retry or proceed."""

    wait_seconds: float
    then: Literal["retry", "proceed"]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class BreakpointRule:
    """A condition under which the engine stops (pause), tells (notify) or handles it (auto).

    `at: during` rules are checked while an attempt runs; when one fires, the attempt is stopped
    (its process group killed) before the action applies.
    """

    name: str
    at: Literal["before", "after", "during"]
    when: Expression
    priority: int
    severity: Literal["low", "medium", "high", "critical"]
    action: Literal["pause", "notify", "auto"]
    message: str
    scope: Literal["task", "run"]
    auto: AutoResolution | None
    doc: str
    file: str
    expires_after: float | None = None  # seconds until `default` resolves an open breakpoint
    default: Literal["approve", "reject", "retry", "skip"] | None = None
    digest_seconds: float | None = None  # notifications gathered into one digest per window

    def message_for(self, context: Mapping[str, Any]) -> str:
        """The message with `{name}` placeholders of context names filled in.

        Plain substitution, no `str.format`: no attribute access, no format specs, nothing but the
        names of the rule context; other placeholders are left as written.
        """

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in CONTEXT_NAME_SET or name not in context:
                return match.group(0)
            return _display(context[name])

        return _PLACEHOLDER.sub(fill, self.message)


def _display(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, Mapping):  # `syntax 1, testing 0.5`, not a FrozenMap's repr
        text = ", ".join(f"{key} {_display(item)}" for key, item in value.items()) or "none"
    elif isinstance(value, list | tuple | set | frozenset):
        text = ", ".join(_display(item) for item in value) or "none"
    elif value is None:
        text = "none"
    else:
        text = str(value)
    if len(text) > MAX_MESSAGE_VALUE_CHARS:
        text = text[: MAX_MESSAGE_VALUE_CHARS - 3] + "..."
    return text


@dataclass(frozen=True)
class ScoringPolicy:
    """How a `decide: score` rule chooses: criteria weights and the bands of the score.

    score >= proceed (and the gate passed): proceed; score >= retry (and a retry is possible):
    retry; otherwise `otherwise`. Weights are as written; criteria without evidence are left out
    and the rest renormalised when the score is computed (scoring.weighted_score).
    """

    weights: Mapping[str, float]
    proceed: float = DEFAULT_PROCEED_THRESHOLD
    retry: float = DEFAULT_RETRY_THRESHOLD
    otherwise: Literal["escalate", "clarify", "checkpoint"] = "escalate"


@dataclass(frozen=True)
class DecisionRule:
    """One row of the decision table: when `when` holds (or always, if None), decide this.

    `decide: score` hands the choice to the weighted score of `scoring` (never None then).
    """

    name: str
    when: Expression | None
    decide: Literal["proceed", "retry", "clarify", "escalate", "checkpoint", "fail", "score"]
    reason: str
    file: str
    scoring: ScoringPolicy | None = None


@dataclass(frozen=True)
class QualityConfig:
    """Stage weights (normalised to sum 1) and the gate: minimum score and required stages."""

    weights: Mapping[str, float]
    min_score: float
    required: tuple[str, ...]


@dataclass(frozen=True)
class RuleSet:
    """Everything the rule files say, compiled: breakpoints by priority, decisions in order."""

    breakpoints: tuple[BreakpointRule, ...]
    decisions: tuple[DecisionRule, ...]
    quality: QualityConfig
    files: tuple[str, ...]

    def breakpoints_at(self, at: str) -> tuple[BreakpointRule, ...]:
        """The enabled breakpoints checked `before` or `after` a step, highest priority first."""
        return self._by_moment.get(at, ())

    @cached_property
    def _by_moment(self) -> dict[str, tuple[BreakpointRule, ...]]:
        # Asked twice per step: grouped once (the set is frozen) instead of filtered each time.
        moments = dict.fromkeys(rule.at for rule in self.breakpoints)
        return {at: tuple(r for r in self.breakpoints if r.at == at) for at in moments}


# ---- the file schema (pydantic: unknown keys and wrong types are errors) -------------------


class _Strict(BaseModel):
    # Non-finite figures (.nan, .inf) are refused: a NaN weight or threshold compares false
    # with everything and passes every range check.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class _AutoModel(_Strict):
    wait_seconds: float = Field(ge=0, le=86_400)
    then: Literal["retry", "proceed"] = "retry"


class _BreakpointModel(_Strict):
    name: str = Field(pattern=RULE_NAME_PATTERN, max_length=100)
    at: Literal["before", "after", "during"]
    when: str = Field(min_length=1)
    priority: int = Field(50, ge=0, le=1000)
    severity: Literal["low", "medium", "high", "critical"] = "medium"
    action: Literal["pause", "notify", "auto"] = "pause"
    message: str = Field("", max_length=2_000)
    scope: Literal["task", "run"] = "task"
    auto: _AutoModel | None = None
    doc: str = ""
    enabled: bool = True
    expires_after: str | float | int | None = None
    default: Literal["approve", "reject", "retry", "skip"] | None = None
    digest: str | float | int | None = None


class _ThresholdsModel(_Strict):
    proceed: float = Field(DEFAULT_PROCEED_THRESHOLD, ge=0, le=1)
    retry: float = Field(DEFAULT_RETRY_THRESHOLD, ge=0, le=1)


class _ScoringModel(_Strict):
    weights: dict[Criterion, float] | None = None
    thresholds: _ThresholdsModel | None = None
    otherwise: Literal["escalate", "clarify", "checkpoint"] = "escalate"


class _DecisionModel(_Strict):
    name: str | None = Field(None, pattern=RULE_NAME_PATTERN, max_length=100)
    when: str | None = Field(None, min_length=1)
    decide: Literal["proceed", "retry", "clarify", "escalate", "checkpoint", "fail", "score"]
    reason: str = ""
    scoring: _ScoringModel | None = None


class _GateModel(_Strict):
    min_score: float | None = Field(None, ge=0, le=1)
    required: list[Stage] | None = None


class _QualityModel(_Strict):
    weights: dict[Stage, float] | None = None
    gate: _GateModel | None = None


class _RuleFileModel(_Strict):
    # Breakpoint entries are validated one by one after merging with an earlier rule of the name.
    breakpoints: list[dict[str, Any]] | None = None
    decisions: list[_DecisionModel] | None = None
    quality: _QualityModel | None = None


# ---- loading -----------------------------------------------------------------------------


def default_rule_files() -> list[Path]:
    """The YAML files of the default rule set shipped with the package, in name order."""
    root = importlib.resources.files(DEFAULT_RULES_PACKAGE)
    files = [Path(str(entry)) for entry in root.iterdir() if entry.name.endswith(".yaml")]
    return sorted(files, key=lambda path: path.name)


@dataclass
class _Accumulator:
    """Rule files merged so far: later files refine earlier ones."""

    breakpoints: dict[str, tuple[dict[str, Any], BreakpointRule]]
    decisions: tuple[DecisionRule, ...]
    weights: dict[str, float]
    min_score: float
    required: tuple[str, ...]


def load_rules(
    paths: Sequence[str | Path] = (),
    *,
    include_defaults: bool = True,
    functions: Functions | None = None,
    texts: Sequence[tuple[str, str]] = (),
) -> RuleSet:
    """Load, merge and compile rule files: the defaults first, then `paths` in order.

    `texts` are (name, content) of rule files added to a run while it runs; they load last.

    A breakpoint named like an earlier one updates it (keys given replace earlier values;
    `enabled: false` switches it off); a file with `decisions` replaces the decision list;
    `quality` keys override earlier ones. Any problem raises RuleError with file and line.
    """
    files = [*(default_rule_files() if include_defaults else []), *(Path(p) for p in paths)]
    state = _Accumulator({}, (), dict.fromkeys(STAGES, 0.25), 0.0, ())
    for path in files:
        _load_text(str(path), _read(path), state, functions or {})
    for name, text in texts:
        _load_text(name, text, state, functions or {})
    names = (*(str(path) for path in files), *(name for name, _ in texts))
    rules = _finish(state, names)
    if any("secrets_in" in rule.when.source for rule in rules.breakpoints):
        signals.prepare_secret_scanner()  # its first use must not count against a rule's time
    return rules


def _read(path: Path) -> str:
    if not path.exists():
        raise RuleError("cannot read rule file: no such file", file=str(path))
    data = read_capped(path, MAX_RULE_FILE_BYTES, RuleError, "a rule file")  # no FIFO, no device
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RuleError(f"rule file is not UTF-8: {error.reason}", file=str(path)) from None


def _load_text(file: str, text: str, state: _Accumulator, functions: Functions) -> None:
    if len(text.encode()) > MAX_RULE_FILE_BYTES:
        raise RuleError(f"rule file larger than {MAX_RULE_FILE_BYTES:,} bytes", file=file)
    try:
        data, positions = load_strict_yaml_positions(text, file)
    except YamlError as error:
        raise RuleError(error.message, file=file, line=error.line, column=error.column) from None
    if data is None:
        return  # an empty file adds nothing
    if not isinstance(data, dict):
        raise RuleError("a rule file must be a mapping of sections", file=file, line=1)
    where = _Where(file, positions)
    model = where.validate(_RuleFileModel, data, ())
    if model.breakpoints is not None:
        _merge_breakpoints(model.breakpoints, state, where, functions)
    if model.decisions is not None:
        state.decisions = _decisions(model.decisions, where, functions)
    if model.quality is not None:
        _merge_quality(model.quality, state, where)


@dataclass(frozen=True)
class _Where:
    """One file's name and positions, to turn any problem into a RuleError with a line."""

    file: str
    positions: Mapping[tuple[Any, ...], Position]

    def line(self, path: tuple[Any, ...]) -> int | None:
        while path and path not in self.positions:
            path = path[:-1]  # the nearest enclosing entry that exists in the file
        position = self.positions.get(path)
        return position.line if position else None

    def error(
        self,
        message: str,
        path: tuple[Any, ...],
        rule: str | None = None,
        column: int | None = None,
    ) -> RuleError:
        return RuleError(message, rule=rule, file=self.file, line=self.line(path), column=column)

    def validate(
        self, model: type[_M], data: Any, path: tuple[Any, ...], rule: str | None = None
    ) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            loc = (*path, *first["loc"])
            field = ".".join(str(part) for part in first["loc"]) or "entry"
            message = f"{field}: {first['msg']}"
            if first["type"] == "extra_forbidden":
                message = f"unknown key {str(first['loc'][-1])!r}"
            raise self.error(message, loc, rule) from None

    def compile(
        self, source: str, path: tuple[Any, ...], rule: str, functions: Functions
    ) -> Expression:
        position = self.positions.get(path)
        line = position.line if position else self.line(path)
        try:
            return compile_expression(
                source, file=self.file, rule=rule, line=line, functions=functions
            )
        except RuleError as error:
            error.column = _file_column(error.column, position)
            raise


def _file_column(column: int | None, position: Position | None) -> int | None:
    """Map a column inside an expression to the column in the file, when the value is inline."""
    if column is None or position is None or not position.inline:
        return None
    return position.value_column + column - 1 + (1 if position.quoted else 0)


def _merge_breakpoints(
    entries: list[dict[str, Any]], state: _Accumulator, where: _Where, functions: Functions
) -> None:
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        path = ("breakpoints", index)
        name = entry.get("name")
        if not isinstance(name, str):
            raise where.error("every breakpoint needs a `name`", path)
        if name in seen:
            raise where.error(f"breakpoint {name!r} is defined twice in this file", path, name)
        seen.add(name)
        earlier = state.breakpoints.get(name)
        if earlier is None and set(entry) <= {"name", "enabled"}:
            raise where.error(f"no earlier breakpoint named {name!r} to change", path, name)
        merged = _merged_entry(earlier[0] if earlier else {}, entry)
        model = where.validate(_BreakpointModel, merged, path, name)
        if "when" in entry or earlier is None:
            when = where.compile(model.when, (*path, "when"), name, functions)
        else:
            when = earlier[1].when
        state.breakpoints[name] = (merged, _breakpoint(model, when, where, path))


def _merged_entry(earlier: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    merged = {**earlier, **entry}
    # Turning an `auto` rule into a pausing one must not trip over the inherited `auto:` block.
    if merged.get("action", "pause") != "auto" and "auto" not in entry:
        merged.pop("auto", None)
    return merged


def _breakpoint(
    model: _BreakpointModel, when: Expression, where: _Where, path: tuple[Any, ...]
) -> BreakpointRule:
    if model.action == "auto" and model.auto is None:
        raise where.error(
            "action `auto` needs an `auto: {wait_seconds, then}` block", path, model.name
        )
    if model.action != "auto" and model.auto is not None:
        raise where.error("an `auto` block needs `action: auto`", (*path, "auto"), model.name)
    auto = AutoResolution(model.auto.wait_seconds, model.auto.then) if model.auto else None
    expires_after = _duration(model.expires_after, "expires_after", where, path, model.name)
    if (expires_after is None) != (model.default is None):
        raise where.error(
            "`expires_after` and `default` go together: when the breakpoint expires, the "
            "default resolution applies",
            (*path, "expires_after" if expires_after is None else "default"),
            model.name,
        )
    if expires_after is not None and model.action != "pause":
        raise where.error(
            "only a `pause` breakpoint waits for a resolution that can expire",
            (*path, "expires_after"),
            model.name,
        )
    return BreakpointRule(
        name=model.name,
        at=model.at,
        when=when,
        priority=model.priority,
        severity=model.severity,
        action=model.action,
        message=model.message or f"breakpoint '{model.name}' fired",
        scope=model.scope,
        auto=auto,
        doc=model.doc.strip(),
        file=where.file,
        expires_after=expires_after,
        default=model.default,
        digest_seconds=_duration(model.digest, "digest", where, path, model.name),
    )


def _duration(
    value: str | float | None, key: str, where: _Where, path: tuple[Any, ...], rule: str
) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise where.error(f"{key}: {error}", (*path, key), rule) from None


def _decisions(
    entries: list[_DecisionModel], where: _Where, functions: Functions
) -> tuple[DecisionRule, ...]:
    rules: list[DecisionRule] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        path = ("decisions", index)
        name = entry.name or f"{entry.decide}-{index + 1}"
        if name in names:
            raise where.error(f"decision rule {name!r} is named twice", path, name)
        names.add(name)
        if rules and rules[-1].when is None:
            raise where.error(
                "this rule can never match: the rule before it has no `when`", path, name
            )
        when = None
        if entry.when is not None:
            when = where.compile(entry.when, (*path, "when"), name, functions)
        scoring = _scoring(entry, where, path, name)
        rules.append(DecisionRule(name, when, entry.decide, entry.reason, where.file, scoring))
    return tuple(rules)


def _scoring(
    entry: _DecisionModel, where: _Where, path: tuple[Any, ...], name: str
) -> ScoringPolicy | None:
    """A score rule's policy: its `scoring:` block over the defaults; checked with its line."""
    if entry.decide != "score":
        if entry.scoring is not None:
            raise where.error("`scoring` goes with `decide: score`", (*path, "scoring"), name)
        return None
    model = entry.scoring or _ScoringModel()
    weights = dict(DEFAULT_SCORE_WEIGHTS)
    if model.weights is not None:
        given: dict[str, float] = {str(k): v for k, v in model.weights.items()}
        weights = {criterion: given.get(criterion, 0.0) for criterion in CRITERIA}
        for criterion, weight in given.items():
            if weight < 0:
                raise where.error(
                    f"weight of {criterion!r} must not be negative",
                    (*path, "scoring", "weights", criterion),
                    name,
                )
        if sum(weights.values()) <= 0:
            raise where.error(
                "scoring weights must sum to more than 0", (*path, "scoring", "weights"), name
            )
    thresholds = model.thresholds or _ThresholdsModel()
    if thresholds.retry > thresholds.proceed:
        raise where.error(
            f"the retry threshold {thresholds.retry:g} is above the proceed threshold "
            f"{thresholds.proceed:g}",
            (*path, "scoring", "thresholds"),
            name,
        )
    return ScoringPolicy(
        MappingProxyType(weights), thresholds.proceed, thresholds.retry, model.otherwise
    )


def _merge_quality(quality: _QualityModel, state: _Accumulator, where: _Where) -> None:
    if quality.weights is not None:
        for stage, weight in quality.weights.items():
            if weight < 0:
                raise where.error(
                    f"weight of {stage!r} must not be negative", ("quality", "weights", stage)
                )
            state.weights[stage] = weight
        if sum(state.weights.values()) <= 0:
            raise where.error("quality weights must sum to more than 0", ("quality", "weights"))
    if quality.gate is not None:
        if quality.gate.min_score is not None:
            state.min_score = quality.gate.min_score
        if quality.gate.required is not None:
            state.required = tuple(dict.fromkeys(quality.gate.required))


def _finish(state: _Accumulator, files: tuple[str, ...]) -> RuleSet:
    enabled = [rule for raw, rule in state.breakpoints.values() if raw.get("enabled", True)]
    # sorted() is stable: rules of equal priority keep the order they were loaded in.
    ordered = tuple(sorted(enabled, key=lambda rule: -rule.priority))
    total = sum(state.weights.values())
    weights = MappingProxyType({stage: state.weights[stage] / total for stage in STAGES})
    quality = QualityConfig(weights, state.min_score, state.required)
    return RuleSet(ordered, state.decisions, quality, files)


# ---- evaluation --------------------------------------------------------------------------


def evaluate_breakpoints(
    rules: RuleSet, at: str, context: Mapping[str, Any]
) -> list[tuple[BreakpointRule, RuleError | None]]:
    """The breakpoints at `at` that fire, highest priority first, each with None.

    A rule whose expression fails is reported with its RuleError instead (the caller decides what
    to do about a broken rule); this function never raises for a rule's failure.
    """
    fired: list[tuple[BreakpointRule, RuleError | None]] = []
    try:
        context = freeze(context)  # once for all rules, not once per expression
    except (TypeError, ValueError, RecursionError) as error:
        broken = RuleError(f"the context cannot be read: {error}")
        return [(rule, broken) for rule in rules.breakpoints_at(at)]
    for rule in rules.breakpoints_at(at):
        try:
            if rule.when.evaluate(context):
                fired.append((rule, None))
        except RuleError as error:
            fired.append((rule, error))
        except Exception as error:  # evaluate converts failures; this is a last line of defence
            fired.append((rule, RuleError(f"{type(error).__name__}: {error}", rule=rule.name)))
    return fired
