"""An attempt's request and result survive the trip through JSON between conductor and worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.core.models import TaskSpec
from orchestration.engine.actions import ActionOutcome, ActionRequest
from orchestration.engine.attempt_wire import (
    WireError,
    WorkerError,
    context_of,
    error_json,
    request_of,
    request_payload,
    result_json,
    result_of,
)
from orchestration.engine.attempts import AttemptResult
from orchestration.engine.quality import QualityReport
from orchestration.extension import CheckResult
from orchestration.project.workspace import Changes

SPEC = TaskSpec.model_validate(
    {"id": "a", "action": {"kind": "shell", "run": ["true"]}, "tags": ["gpu"], "priority": 7}
)


def test_a_request_and_its_context_travel_intact() -> None:
    request = ActionRequest(
        "r1",
        SPEC,
        3,
        Path("/w"),
        60.0,
        feedback="fix it",
        agent_command=("a", "b"),
        agent_session="s1",
    )
    context = {"tags": ("gpu",), "attempt": 3, "confidence": 0.5}
    payload = json.loads(json.dumps(request_payload(request, context, 12.5)))
    back = request_of(payload)
    assert back == request
    assert context_of(payload["context"]) == context
    assert payload["task_seconds"] == 12.5


def test_a_result_travels_intact() -> None:
    check = CheckResult("pytest", "tests", False, 0.25, "2 failed", {"failed": 2})
    report = QualityReport(0.6, False, {"tests": 0.25}, (check,), ("tests",), {"n": 1}, ())
    outcome = ActionOutcome(1, False, 1.5, "tail", {"cost": 0.2}, "transient", ("sh", "-c", "x"))
    result = AttemptResult("a", 2, outcome, Changes(("f.py",), 4, "1 file"), report, {"k": (1,)})
    assert result_of(json.loads(json.dumps(result_json(result)))) == result


def test_errors_and_other_versions_are_refused_clearly() -> None:
    with pytest.raises(WorkerError, match="on worker w1: boom"):
        result_of(error_json("boom", "w1"))
    with pytest.raises(WireError, match="wire version 99"):
        result_of({"version": 99})
