"""The demo's scripted agent, run as a real subprocess against a copy of the demo project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from orchestration.core.models import AgentAction, PlanSpec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "coding-session"
AGENT = EXAMPLE / "agent" / "scripted_agent.py"
UNITTEST = [sys.executable, "-B", "-m", "unittest", "discover", "-s", "tests", "-t", "."]
FAILING_TEST = "test_sku_at_reorder_point_is_reordered"
TIMEOUT = 60


@dataclass
class Ran:
    code: int
    output: str
    result: dict[str, object]


class Session:
    """A temporary copy of the example, and the agent and test suite run inside its project."""

    def __init__(self, root: Path) -> None:
        shutil.copytree(
            EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".orchestration")
        )
        self.project = root / "project"
        self.result_path = root / "result.json"
        self.env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "ORCH_RUN_ID": "demo-test"}

    def agent(self, task: str, attempt: int = 1, feedback: str = "", answer: str = "") -> Ran:
        self.result_path.unlink(missing_ok=True)
        env = {
            **self.env,
            "ORCH_TASK_ID": task,
            "ORCH_ATTEMPT": str(attempt),
            "ORCH_RESULT": str(self.result_path),
        }
        argv = [sys.executable, "../agent/scripted_agent.py", "--task", task]
        argv += ["--prompt", f"do {task}", "--feedback", feedback, "--answer", answer]
        done = subprocess.run(
            argv, cwd=self.project, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        result = (
            json.loads(self.result_path.read_text(encoding="utf-8"))
            if self.result_path.exists()
            else {}
        )
        return Ran(done.returncode, done.stdout + done.stderr, result)

    def tests(self) -> Ran:
        done = subprocess.run(
            UNITTEST, cwd=self.project, env=self.env, capture_output=True, text=True,
            timeout=TIMEOUT,
        )  # fmt: skip
        return Ran(done.returncode, done.stdout + done.stderr, {})

    def files(self) -> dict[str, str]:
        return {
            path.relative_to(self.project).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(self.project.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        }


@pytest.fixture
def session(tmp_path: Path) -> Session:
    return Session(tmp_path / "coding-session")


def _ok(ran: Ran) -> Ran:
    assert ran.code == 0, ran.output
    return ran


def test_the_project_starts_green(session: Session) -> None:
    ran = session.tests()
    assert ran.code == 0, ran.output
    assert "OK" in ran.output


def test_a_whole_session_in_plan_order(session: Session) -> None:
    ran = _ok(session.agent("write-tests"))
    assert "writing tests/test_reorder.py" in ran.output
    assert (session.project / "tests" / "test_reorder.py").is_file()
    assert ran.result["confidence"] == pytest.approx(0.9)
    assert {"summary", "tokens", "cost_usd"} <= set(ran.result)
    red = session.tests()
    assert red.code != 0
    assert "test_reorder" in red.output

    ran = _ok(session.agent("design-storage", answer="a JSON file is fine"))
    assert "human answer: a JSON file is fine" in ran.output
    assert (session.project / "docs" / "adr" / "0001-reorder-rules-in-a-json-file.md").is_file()
    assert (session.project / "inventory" / "policy.py").is_file()

    _ok(session.agent("implement", attempt=1))
    first = session.tests()
    assert first.code != 0
    assert f"FAIL: {FAILING_TEST}" in first.output
    assert "FAILED (failures=1)" in first.output  # exactly the designed failure, no errors

    feedback = (
        f"- the testing stage failed\n[command] `{' '.join(UNITTEST)}` exited 1:\n{first.output}"
    )
    ran = _ok(session.agent("implement", attempt=2, feedback=feedback))
    assert "feedback: - the testing stage failed" in ran.output
    assert f"feedback: FAIL: {FAILING_TEST}" in ran.output
    assert "editing inventory/reorder.py (+1 -1)" in ran.output
    assert ran.result["confidence"] == pytest.approx(0.95)
    assert ran.result["files_changed"] == ["inventory/reorder.py"]
    green = session.tests()
    assert green.code == 0, green.output
    assert "Ran 19 tests" in green.output

    before = (session.project / "inventory" / "reorder.py").read_text(encoding="utf-8")
    _ok(session.agent("refactor"))
    assert (session.project / "inventory" / "reorder.py").read_text(encoding="utf-8") != before
    assert session.tests().code == 0

    readme = session.project / "README.md"
    _ok(session.agent("docs"))
    assert "## Reorder report" in readme.read_text(encoding="utf-8")
    assert session.tests().code == 0


def test_rerunning_an_attempt_gives_the_same_files(session: Session) -> None:
    for task in ("write-tests", "design-storage"):
        _ok(session.agent(task))
    _ok(session.agent("implement", attempt=1))
    after_first = session.files()
    again = _ok(session.agent("implement", attempt=1))
    assert "unchanged inventory/reorder.py" in again.output
    assert again.result["files_changed"] == []
    assert session.files() == after_first
    _ok(session.agent("implement", attempt=2))
    for task in ("refactor", "docs"):
        _ok(session.agent(task))
    finished = session.files()
    for task in ("refactor", "docs"):
        _ok(session.agent(task))
    assert session.files() == finished
    assert finished["README.md"].count("## Reorder report") == 1


def test_a_task_whose_input_is_missing_fails(session: Session) -> None:
    ran = session.agent("implement")
    assert ran.code == 1
    assert "tests/test_reorder.py is missing" in ran.output


def test_an_unknown_task_exits_2(session: Session) -> None:
    ran = session.agent("deploy-to-production")
    assert ran.code == 2
    assert "unknown task id 'deploy-to-production'" in ran.output
    assert ran.result == {}


def test_feedback_that_looks_like_a_flag_is_taken_verbatim(session: Session) -> None:
    _ok(session.agent("write-tests"))
    _ok(session.agent("design-storage"))
    ran = _ok(session.agent("implement", attempt=2, feedback="--task"))
    assert "feedback: --task" in ran.output


def test_the_plan_drives_this_agent() -> None:
    spec = PlanSpec.model_validate(yaml.safe_load((EXAMPLE / "plan.yaml").read_text("utf-8")))
    ids = [task.id for task in spec.tasks]
    assert ids == ["write-tests", "design-storage", "implement", "refactor", "docs"]
    assert spec.workdir == "./project"
    assert spec.defaults.agent_command == [
        "{python}", "../agent/scripted_agent.py", "--task", "{task_id}", "--prompt", "{prompt}",
        "--feedback", "{feedback}", "--answer", "{answer}",
    ]  # fmt: skip
    assert all(isinstance(task.action, AgentAction) for task in spec.tasks)
    design = next(task for task in spec.tasks if task.id == "design-storage")
    assert design.risk == "medium"  # only the architecture rule pauses it, before it runs
    assert {"architecture", "design"} <= set(design.tags)
    implement = next(task for task in spec.tasks if task.id == "implement")
    assert [v.name for v in implement.validators or []] == ["python_syntax", "command"]
    command = (implement.validators or [])[1]
    assert command.stage == "testing"
    assert command.options["run"] == ["{python}", *UNITTEST[1:]]
    source = AGENT.read_text(encoding="utf-8")
    for task_id in ids:
        assert f'"{task_id}":' in source
