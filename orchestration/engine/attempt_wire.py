"""An attempt's request and result as JSON: what a conductor offers and a worker reports."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from orchestration.core.context import jsonable
from orchestration.core.models import TaskRecord, TaskSpec
from orchestration.engine.actions import ActionOutcome, ActionRequest
from orchestration.engine.attempts import AttemptResult
from orchestration.engine.quality import QualityReport
from orchestration.extension import CheckResult
from orchestration.project.workspace import Changes

WIRE_VERSION = 1  # a worker refuses a payload of another version rather than misread it


class WireError(ValueError):
    """A payload or result this version cannot read."""


class WorkerError(RuntimeError):
    """The worker could not run the attempt (an engine error there): the task is retried."""


def error_json(message: str, worker: str) -> dict[str, Any]:
    """What a worker reports when the engine failed around the attempt."""
    return {"version": WIRE_VERSION, "error": f"on worker {worker}: {message}"}


def request_payload(
    request: ActionRequest, context: dict[str, Any], task_seconds: float
) -> dict[str, Any]:
    """What a worker needs to run the attempt: the request (its plugin kind by name), the
    `before` context the rules saw and the task's time spent in earlier attempts."""
    return {
        "version": WIRE_VERSION,
        "run_id": request.run_id,
        "task": request.task.model_dump(mode="json", exclude_none=True),
        "attempt": request.attempt,
        "workdir": str(request.workdir),
        "timeout_seconds": request.timeout_seconds,
        "feedback": request.feedback,
        "answer": request.answer,
        "agent_command": list(request.agent_command) if request.agent_command else None,
        "agent_session": request.agent_session,
        "context": jsonable(context),
        "task_seconds": task_seconds,
    }


def _check_version(data: dict[str, Any], what: str) -> None:
    if data.get("version") != WIRE_VERSION:
        raise WireError(
            f"{what} of wire version {data.get('version')!r}; this engine reads version "
            f"{WIRE_VERSION}: run the same orchestration version on conductor and workers"
        )


def task_of(payload: dict[str, Any]) -> TaskRecord:
    """The task as the worker sees it: its spec, feedback and answer from the payload."""
    _check_version(payload, "attempt payload")
    spec = TaskSpec.model_validate(payload["task"])
    return TaskRecord(
        payload["run_id"],
        spec.id,
        "running",
        spec,
        attempts=payload["attempt"],
        feedback=payload.get("feedback", ""),
        answer=payload.get("answer", ""),
    )


def request_of(payload: dict[str, Any], plugin_kind: Any = None) -> ActionRequest:
    """The ActionRequest the payload describes; `plugin_kind` is the worker's loaded plugin."""
    task = task_of(payload)
    command = payload.get("agent_command")
    return ActionRequest(
        run_id=payload["run_id"],
        task=task.spec,
        attempt=payload["attempt"],
        workdir=Path(payload["workdir"]),
        timeout_seconds=float(payload["timeout_seconds"]),
        feedback=task.feedback,
        answer=task.answer,
        agent_command=tuple(command) if command else None,
        agent_session=payload.get("agent_session"),
        plugin_kind=plugin_kind,
        inline=False,  # a worker runs every attempt on a thread of its own
    )


def context_of(data: dict[str, Any]) -> dict[str, Any]:
    """A context read back: lists at its top level become tuples again, as the engine makes
    them (`tags`, `changed_files`...)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def result_json(result: AttemptResult) -> dict[str, Any]:
    """The assessed attempt as the worker reports it."""
    report = result.report
    return {
        "version": WIRE_VERSION,
        "task_id": result.task_id,
        "attempt": result.attempt,
        "outcome": jsonable(asdict(result.outcome)),
        "changes": jsonable(asdict(result.changes)),
        "report": {
            "score": report.score,
            "gate_passed": report.gate_passed,
            "stage_scores": dict(report.stage_scores),
            "checks": [jsonable(check.as_dict()) for check in report.checks],
            "gate_failures": list(report.gate_failures),
            "figures": jsonable(report.figures),
            "stage_conflicts": list(report.stage_conflicts),
        },
        "context": jsonable(result.context),
    }


def result_of(data: dict[str, Any]) -> AttemptResult:
    """The AttemptResult a worker reported, as the loop concludes it."""
    _check_version(data, "attempt result")
    if "error" in data:
        raise WorkerError(str(data["error"]))
    out = dict(data["outcome"])
    out["command"] = tuple(out.get("command") or ())
    changes = data["changes"]
    report = data["report"]
    checks = tuple(
        CheckResult(
            c["name"],
            c["stage"],
            c["passed"],
            c["score"],
            c.get("message", ""),
            c.get("figures") or {},
        )
        for c in report["checks"]
    )
    return AttemptResult(
        data["task_id"],
        data["attempt"],
        ActionOutcome(**out),
        Changes(tuple(changes["files"]), changes["lines_changed"], changes.get("diff_stat", "")),
        QualityReport(
            score=report["score"],
            gate_passed=report["gate_passed"],
            stage_scores=report["stage_scores"],
            checks=checks,
            gate_failures=tuple(report["gate_failures"]),
            figures=report["figures"],
            stage_conflicts=tuple(report["stage_conflicts"]),
        ),
        context_of(data["context"]),
    )
