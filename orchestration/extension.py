"""The values plugins exchange with the engine: action kinds, validators, notifiers, their data."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.models import TaskSpec
from orchestration.safe_git import run_git
from orchestration.terminal_text import strip_control

# Re-exported for plugins: a plugin that prints untrusted text cleans it; one that runs git
# runs it the safe way.
__all__ = ["run_git", "strip_control"]

STAGES = ("syntax", "requirements", "quality", "testing")
ERROR_KINDS = ("transient", "permanent", "timeout")


@dataclass(frozen=True, slots=True)
class ActionInput:
    """What a plugin action kind sees of one attempt of a task whose `action.kind` it provides."""

    run_id: str
    task: TaskSpec
    attempt: int
    workdir: Path
    args: Mapping[str, Any]  # the task's `action.args`, placeholders not filled
    timeout_seconds: float  # the attempt is abandoned (a timeout) after this long
    stop: threading.Event  # set when the engine wants the attempt to end: return soon
    feedback: str = ""  # the validators' suggestions from the previous attempt
    answer: str = ""  # a human's answer to a clarify breakpoint


@dataclass(frozen=True, slots=True)
class ActionResult:
    """How an attempt of a plugin action ended.

    `result` is what a shell action prints as `ORCH_RESULT`: `confidence`, `cost`, `spawn` (new
    tasks) and any figures the rules read as `result`. A failure is retried unless its
    `error_kind` is `permanent`.
    """

    succeeded: bool
    output: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    error_kind: str = "transient"  # for a failure: transient | permanent | timeout


@dataclass(frozen=True, slots=True)
class ActionKind:
    """A kind of work plans may name as `action: {kind: <name>, args: {...}}`.

    `run` is called on a worker thread, once per attempt, and returns an ActionResult. One
    that raises is a transient failure with the traceback as its output; one that returns
    anything else is a permanent failure; one that outlives the attempt's timeout is a timeout
    (its `stop` event is set and the engine stops waiting for it).
    """

    name: str
    run: Callable[[ActionInput], ActionResult]
    description: str = ""


@dataclass(frozen=True, slots=True)
class ValidationInput:
    """What a validator sees of one attempt."""

    run_id: str
    task: TaskSpec
    attempt: int
    workdir: Path
    changed_files: tuple[str, ...]
    exit_code: int | None
    output_tail: str
    result: Mapping[str, Any]
    options: Mapping[str, Any]
    context: Mapping[str, Any]
    timeout_seconds: float
    baseline: Mapping[str, Any] = field(default_factory=dict)  # this validator's run-start figures


@dataclass(frozen=True, slots=True)
class BaselineInput:
    """What a validator's `baseline` callable sees once at run start, before any task ran."""

    run_id: str
    workdir: Path
    options: Mapping[str, Any]
    timeout_seconds: float


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One validator's verdict: `score` is 0..1; `figures` feed the rule context."""

    name: str
    stage: str
    passed: bool
    score: float
    message: str = ""
    figures: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "passed": self.passed,
            "score": self.score,
            "message": self.message,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True, slots=True)
class Validator:
    """A named check of a stage. `check` returns a CheckResult (anything else is a failed check).

    `baseline`, when given, is called once at run start; what it returns (plain JSON data) is
    handed back to every later check as `ValidationInput.baseline`.
    """

    name: str
    stage: str
    check: Callable[[ValidationInput], CheckResult]
    description: str = ""
    baseline: Callable[[BaselineInput], Mapping[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # breakpoint_raised | breakpoint_resolved | run_finished | ...
    run_id: str
    title: str
    message: str
    severity: str = "medium"
    task_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notifier:
    name: str
    notify: Callable[[Notification], None]
