"""The rule context: the names rules may read, their values frozen, or made plain JSON to store."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

# Bounds on data handed to expressions: deeper or larger values are an error, never a slow walk.
MAX_FREEZE_DEPTH = 32
MAX_FREEZE_ITEMS = 100_000


@dataclass(frozen=True, slots=True)
class ContextName:
    """One name of the rule context: its type as rules see it and what it means."""

    name: str
    type: str
    doc: str


# THE contract (DESIGN section 5). docs/rules.md lists the same names; tests/test_docs_rules.py
# fails when the two drift. Add a name here, to `neutral_context` and to the docs together.
CONTEXT_NAMES: tuple[ContextName, ...] = (
    ContextName("task_id", "str", "The task's id from the plan."),
    ContextName("title", "str", "The task's title."),
    ContextName("tags", "tuple[str]", "The task's tags, e.g. `'milestone' in tags`."),
    ContextName(
        "priority", "str", "Priority level name: critical, high, medium, low or background."
    ),
    ContextName("risk", "str", "The plan's risk for the task: low, medium or high."),
    ContextName(
        "confidence",
        "float",
        "0..1; the planner's confidence, replaced by the action's own report after a step.",
    ),
    ContextName("attempt", "int", "This attempt's number; 1 for the first."),
    ContextName("max_attempts", "int", "Attempts allowed by the task's retry policy."),
    ContextName(
        "exit_code", "int | None", "The action's exit code; None before a step (75 rate limit)."
    ),
    ContextName("timed_out", "bool", "The action was killed at its timeout."),
    ContextName("duration_seconds", "float", "How long this attempt's action ran."),
    ContextName("output_tail", "str", "The last part of the action's combined output."),
    ContextName("error_kind", "str", "none, transient, permanent or timeout."),
    ContextName("changed_files", "tuple[str]", "Paths the step changed in the workspace."),
    ContextName("changed_files_count", "int", "len(changed_files)."),
    ContextName("lines_changed", "int", "Lines added plus lines removed by the step."),
    ContextName("tests_passed", "int", "Tests that passed in this attempt."),
    ContextName("tests_failed", "int", "Tests that failed in this attempt."),
    ContextName("baseline_tests_failed", "int", "Tests that already failed when the run started."),
    ContextName("tests_regressed", "tuple[str]", "Tests green at the run's start that fail now."),
    ContextName("lint_errors", "int", "Lint errors reported by the validators."),
    ContextName(
        "validator_modified_tree",
        "tuple[str]",
        "Files the validators changed in the work tree (they were restored to the agent's "
        "version and the gate failed); () when the validators left it alone.",
    ),
    ContextName(
        "stage_scores",
        "mapping[str, float]",
        "Score 0..1 per stage: syntax, requirements, quality, testing.",
    ),
    ContextName("quality_score", "float", "The weighted score 0..1 of the stages."),
    ContextName("gate_passed", "bool", "The quality gate passed (score and required stages)."),
    ContextName(
        "decision",
        "str",
        "The decision taken for this attempt (proceed, retry, clarify, escalate, checkpoint).",
    ),
    ContextName(
        "consecutive_failures", "int", "Failed attempts in a row across the run, this included."
    ),
    ContextName("run_failures", "int", "Failed attempts in the run so far."),
    ContextName("completed_count", "int", "Tasks of the run completed so far."),
    ContextName("total_count", "int", "Tasks in the run."),
    ContextName("run_elapsed_seconds", "float", "Wall time since the run started."),
    ContextName("task_elapsed_seconds", "float", "Time spent on this task over all its attempts."),
    ContextName(
        "result",
        "mapping",
        "The JSON object the action wrote to ORCH_RESULT; for an agent preset also what its "
        "CLI reported (cost, tokens, turns, session_id, agent_error: docs/agents.md); {} when "
        "there is none. Read optional keys with get(result, 'key', default).",
    ),
    ContextName("now_hour", "int", "The local hour 0..23 when the check runs."),
    ContextName(
        "repeated_output_count",
        "int",
        "Attempts of this task in a row, this one included, whose output was the same "
        "(numbers and hex ids ignored); 1 when it differs from the one before.",
    ),
    ContextName(
        "repeated_error_count",
        "int",
        "Failed attempts of this task in a row, this one included, that ended with the same "
        "error (exit code and last error line); 0 when this attempt did not fail.",
    ),
    ContextName(
        "unchanged_attempts",
        "int",
        "Attempts of this task in a row, this one included, that changed no file.",
    ),
    ContextName("run_attempts", "int", "Attempts started in the run so far, this one included."),
    ContextName(
        "run_cost",
        "float",
        "Sum of the `cost` (or `cost_usd`) the run's actions reported in ORCH_RESULT.",
    ),
    ContextName("run_tokens", "int", "Sum of the `tokens` the run's actions reported."),
    ContextName(
        "over_budget",
        "tuple[str]",
        "The run's budget limits that are used up: max_attempts, max_wall_seconds, max_cost, "
        "max_tokens (plan `budget:`, extended by `--set budget.<limit>=...`).",
    ),
    ContextName(
        "score_delta",
        "float",
        "quality_score minus the score of this task's previous attempt; 0 for the first attempt.",
    ),
    ContextName(
        "regressed_vs_previous",
        "tuple[str]",
        "Stages whose score fell since this task's previous attempt; () for the first attempt.",
    ),
    ContextName(
        "tests_failed_delta",
        "int",
        "Failing tests now minus failing tests in this task's previous attempt; 0 for the first.",
    ),
    ContextName(
        "stage_conflicts",
        "tuple[str]",
        "Stages where two validators disagree: one passed and another failed "
        "(cross-validation), e.g. `len(stage_conflicts) > 0`.",
    ),
    ContextName(
        "historical_success_rate",
        "float",
        "0..1; the share of earlier attempts of this action kind (and tags) in runs of this plan "
        "that passed the gate, a Beta posterior mean; 0.5 with no history.",
    ),
    ContextName(
        "historical_attempts",
        "int",
        "Earlier attempts of this action kind in runs of this plan: the evidence behind "
        "historical_success_rate; 0 with no history.",
    ),
    ContextName(
        "tests_new_failing",
        "int",
        "Failing tests that did not exist at the run's start (a TDD step's new tests), as opposed "
        "to tests_regressed; from the test runner's ids, else tests_failed minus the baseline's "
        "failures and the regressions.",
    ),
    ContextName(
        "tests_removed",
        "int",
        "Test functions or test files present before the step and gone after it (from the "
        "step's diff: deleted test files, and test definitions removed and not re-added).",
    ),
    ContextName(
        "tests_skipped_new",
        "int",
        "Skip or xfail markers the step added to tests beyond those it removed "
        "(pytest, unittest, Jest/Vitest, Go, JUnit, Rust).",
    ),
    ContextName(
        "secrets_added",
        "tuple[str]",
        "`path: kind` for each credential detect-secrets finds in the step's added lines "
        "(API keys, tokens, private keys, passwords in assignments).",
    ),
    ContextName(
        "destructive_operations",
        "tuple[str]",
        "Names of destructive operations in the action's command, prompt or title (before) and "
        "in its diff or output (after): drop_table, drop_column, truncate, delete_all_rows, "
        "cascade, force_push, history_rewrite, recursive_delete, purge, bucket_delete, "
        "flush_cache_db, terraform_destroy, plus the plan's `signals.destructive_patterns`.",
    ),
    ContextName(
        "api_breaking_changes",
        "tuple[str]",
        "Breaking changes griffe finds in the public API of the Python packages the step "
        "touched, one line each (`path:line: name(param): Parameter was removed`).",
    ),
    ContextName(
        "auth_failure",
        "bool",
        "The failed step's output shows an authentication or authorisation failure (401/403, a "
        "revoked or invalid token or key); such errors are classified permanent.",
    ),
    ContextName(
        "expected_change",
        "str",
        "The task's declared scope: small, medium or large; '' when not declared.",
    ),
    ContextName(
        "change_budget",
        "int",
        "Lines the task may change: its `line_budget`, else 150/800/5000 for an "
        "expected_change of small/medium/large; 0 when neither is declared.",
    ),
    ContextName(
        "when_exhausted",
        "str",
        "What happens to the task when it runs out of attempts with a failed gate: escalate "
        "(a human decides) or fail (trigger rules and failure branches go on).",
    ),
    ContextName(
        "calibrated_confidence",
        "float",
        "0..1; `confidence` corrected by how the agent's past confidence compared with its "
        "success (docs: Learning from outcomes); equal to confidence with no history.",
    ),
)

CONTEXT_NAME_SET: frozenset[str] = frozenset(n.name for n in CONTEXT_NAMES)


def neutral_context() -> dict[str, Any]:
    """A fresh context with every name at its neutral value: what a `before` check starts from.

    Outcome fields say "nothing happened yet" (exit_code None, no changes, zero counts, result {}).
    Callers fill in the task and run fields; the dict is theirs to change.
    """
    context: dict[str, Any] = {
        "task_id": "",
        "title": "",
        "tags": (),
        "priority": "medium",
        "risk": "low",
        "confidence": 1.0,
        "attempt": 1,
        "max_attempts": 1,
        "exit_code": None,
        "timed_out": False,
        "duration_seconds": 0.0,
        "output_tail": "",
        "error_kind": "none",
        "changed_files": (),
        "changed_files_count": 0,
        "lines_changed": 0,
        "tests_passed": 0,
        "tests_failed": 0,
        "baseline_tests_failed": 0,
        "tests_regressed": (),
        "lint_errors": 0,
        "validator_modified_tree": (),
        "stage_scores": {"syntax": 0.0, "requirements": 0.0, "quality": 0.0, "testing": 0.0},
        "quality_score": 0.0,
        "gate_passed": False,
        "decision": "proceed",
        "consecutive_failures": 0,
        "run_failures": 0,
        "completed_count": 0,
        "total_count": 0,
        "run_elapsed_seconds": 0.0,
        "task_elapsed_seconds": 0.0,
        "result": {},
        "now_hour": 0,
        "repeated_output_count": 0,
        "repeated_error_count": 0,
        "unchanged_attempts": 0,
        "run_attempts": 0,
        "run_cost": 0.0,
        "run_tokens": 0,
        "over_budget": (),
        "score_delta": 0.0,
        "regressed_vs_previous": (),
        "tests_failed_delta": 0,
        "stage_conflicts": (),
        "historical_success_rate": 0.5,
        "historical_attempts": 0,
        "calibrated_confidence": 1.0,
        "tests_new_failing": 0,
        "tests_removed": 0,
        "tests_skipped_new": 0,
        "secrets_added": (),
        "destructive_operations": (),
        "api_breaking_changes": (),
        "auth_failure": False,
        "expected_change": "",
        "change_budget": 0,
        "when_exhausted": "escalate",
    }
    assert set(context) == CONTEXT_NAME_SET, "neutral_context and CONTEXT_NAMES drifted"
    return context


class FrozenMap(Mapping[Any, Any]):
    """A read-only mapping of frozen values.

    Expressions cannot reach attributes at all (the compiler rejects them), so the only ways in
    are subscripts and the documented functions; the class still keeps its data in a slot and
    offers no mutating method, so a plugin function handed one cannot change the context either.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[Any, Any]) -> None:
        self._data: dict[Any, Any] = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    # Mapping's generic versions go through __getitem__ and exceptions; the decision engine and
    # the scoring read a frozen context by `get` a few dozen times per step.
    def get(self, key: Any, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if type(other) is FrozenMap:  # the rule memo compares these: no copies
            return self._data == other._data
        if isinstance(other, Mapping):
            return dict(self._data) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


class _Budget:
    """Counts the values a freeze has visited, so a huge input fails fast."""

    __slots__ = ("left",)

    def __init__(self, items: int) -> None:
        self.left = items

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ValueError(
                f"value too large for the rule context (over {MAX_FREEZE_ITEMS} items)"
            )


def freeze(
    value: Any, *, max_depth: int = MAX_FREEZE_DEPTH, max_items: int = MAX_FREEZE_ITEMS
) -> Any:
    """Copy JSON-ish data into plain immutable values that expressions may safely see.

    str/int/float/bool/None stay (subclasses such as enums become the plain base type), lists and
    tuples become tuples, sets frozensets, mappings FrozenMap. Anything else, a cycle, nesting
    deeper than `max_depth` or more than `max_items` values raises ValueError or TypeError.
    """
    if isinstance(value, FrozenMap):
        return value  # only _freeze builds them, from values it froze: already done
    return _freeze(value, max_depth, _Budget(max_items), set())


def _freeze(value: Any, depth: int, budget: _Budget, path: set[int]) -> Any:
    budget.spend()
    if type(value) is tuple and not value and depth > 0:
        return ()  # the usual "none" of a list name: nothing to copy, no cycle possible
    scalar = _freeze_scalar(value)
    if scalar is not _NOT_SCALAR:
        return scalar
    if depth <= 0:
        raise ValueError(f"value nested deeper than {MAX_FREEZE_DEPTH} levels")
    if id(value) in path:
        raise ValueError("cyclic value cannot be part of the rule context")
    path.add(id(value))
    try:
        if type(value) is dict or isinstance(value, Mapping):
            return FrozenMap(_freeze_items(value, depth - 1, budget, path))
        if isinstance(value, list | tuple):
            return tuple(_freeze(v, depth - 1, budget, path) for v in value)
        if isinstance(value, set | frozenset):
            return frozenset(_freeze(v, depth - 1, budget, path) for v in value)
    finally:
        path.discard(id(value))
    raise TypeError(f"a {type(value).__name__} cannot be part of the rule context")


_NOT_SCALAR = object()
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


def _freeze_items(
    value: Mapping[Any, Any], depth: int, budget: _Budget, path: set[int]
) -> dict[Any, Any]:
    # Most context values are plain scalars: copy those without a call per value.
    items: dict[Any, Any] = {}
    plain = 0
    for key, item in value.items():
        if type(key) is not str:
            key = _freeze(key, depth, budget, path)
        kind = type(item)
        if kind in _PLAIN_TYPES:
            plain += 1
            items[key] = item
        elif kind is tuple and not item and depth > 0:
            plain += 1  # an empty tuple: one value, as in _freeze
            items[key] = ()
        else:
            items[key] = _freeze(item, depth, budget, path)
    budget.left -= plain - 1
    budget.spend()  # checks the budget once for all the plain values
    return items


def _freeze_scalar(value: Any) -> Any:
    # Exact types first (the common case); subclasses are copied to the base type so no custom
    # method or attribute rides along into an expression.
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, FrozenMap):
        return _NOT_SCALAR
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float(value) if not math.isnan(value) else math.nan
    return _NOT_SCALAR


def frozen_or_plain(context: dict[str, Any], frozen: Any = None) -> Any:
    """The context frozen for rule evaluation (reusing `frozen` when only `decision` changed)."""
    try:
        if isinstance(frozen, FrozenMap):
            return FrozenMap({**frozen._data, "decision": context["decision"]})
        return freeze(context)
    except (TypeError, ValueError, RecursionError):
        return context  # each rule then reports why it cannot read it


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """Plain JSON data from a context (tuples to lists, mappings to dicts, others to str)."""
    if type(value) in _JSON_SCALARS:  # the common case, first and cheap
        return value
    if isinstance(value, dict) or hasattr(value, "items"):
        # A context is mostly scalars and empty tuples: test those inline instead of paying a
        # call per value (a step context has about fifty).
        items: dict[str, Any] = {}
        for k, v in value.items():
            kind = type(v)
            items[k if type(k) is str else str(k)] = (
                v if kind in _JSON_SCALARS else [] if kind is tuple and not v else jsonable(v)
            )
        return items
    if isinstance(value, list | tuple | set | frozenset):
        return [v if type(v) in _JSON_SCALARS else jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
