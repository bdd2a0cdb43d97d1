"""End to end: `kind: agent` presets run by the real `orch`, against fake agent CLIs (named
claude, codex, ... first on PATH) that replay recorded output and log how they were called."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from orchestration.store import Store
from tests.agent_fakes import calls, install_fakes
from tests.helpers import orch, orch_json, write_plan

CLAUDE_SESSION = "8b1f6c2e-4d3a-4f5e-9a7b-1c2d3e4f5a6b"
FAST_RETRY = {"max_attempts": 3, "base_seconds": 0, "jitter": False}
NO_RATE_LIMIT_WAIT = (
    "breakpoints:\n  - name: rate_limit_hit\n    auto: {wait_seconds: 0, then: retry}\n"
)


def db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def agent_task(task_id: str, agent: str, **action: Any) -> dict[str, Any]:
    prompt = action.pop("prompt", "Add a retry helper. {feedback}")
    return {"id": task_id, "action": {"kind": "agent", "agent": agent, "prompt": prompt, **action}}


def plan(tmp_path: Path, tasks: list[dict[str, Any]], **extra: Any) -> Path:
    (tmp_path / "repo").mkdir(exist_ok=True)
    (tmp_path / "rules.yaml").write_text(NO_RATE_LIMIT_WAIT)
    spec = {
        "version": 1,
        "name": "agents",
        "workdir": "repo",
        "rules": ["rules.yaml"],
        "defaults": {"retry": FAST_RETRY, "validators": []},
        "tasks": tasks,
        **extra,
    }
    return write_plan(tmp_path, spec)


def fake_env(tmp_path: Path, scenarios: str, *, with_fakes: bool = True) -> dict[str, str]:
    bin_dir = install_fakes(tmp_path / "bin") if with_fakes else tmp_path / "empty-bin"
    bin_dir.mkdir(exist_ok=True)
    python_dir = str(Path(sys.executable).parent)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        "TMPDIR": str(tmp_path / "tmp"),  # aider's history directory goes under it
        # The fakes first; no system directories, so a real CLI never answers instead.
        "PATH": f"{bin_dir}:{python_dir}",
        "FAKE_AGENT_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_AGENT_SCENARIOS": scenarios,
        "FAKE_AGENT_WRITES": "retry.py",
    }


def steps(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        return [event.data for event in store.events(run_id) if event.kind == "step"]
    finally:
        store.close()


def test_a_claude_turn_reports_cost_and_tokens_and_a_retry_resumes_its_session(
    tmp_path: Path,
) -> None:
    path = plan(tmp_path, [agent_task("write", "claude", model="sonnet")])
    env = fake_env(tmp_path, "crash,success")
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    first, second = calls(tmp_path / "calls.jsonl")
    assert first["argv"][:2] == ["-p", "Add a retry helper. "]
    assert first["argv"][first["argv"].index("--model") + 1] == "sonnet"
    assert "--resume" not in first["argv"]
    assert first["cwd"] == str(tmp_path / "repo")
    # The crashed turn had begun its session: the retry continues it, told what went wrong.
    assert second["argv"][second["argv"].index("--resume") + 1] == CLAUDE_SESSION
    assert "did not pass" in second["argv"][1] and "exited 1" in second["argv"][1]

    crashed, succeeded = steps(tmp_path, "r")
    assert (crashed["exit_code"], crashed["error_kind"]) == (1, "transient")
    assert "the output ended without a result" in crashed["output_tail"]
    assert crashed["result"]["session_id"] == CLAUDE_SESSION and "cost" not in crashed["result"]
    result = succeeded["result"]
    assert (result["cost"], result["tokens"], result["turns"]) == (0.0421, 6750, 3)
    assert succeeded["changed_files"] == ["retry.py"]


def test_the_reported_cost_counts_against_the_run_budget(tmp_path: Path) -> None:
    tasks = [
        agent_task("a", "claude"),
        {**agent_task("b", "claude"), "depends_on": ["a"]},
        {**agent_task("c", "claude"), "depends_on": ["b"]},
    ]
    # Each turn reports $0.0421: the second one passes the limit, without any ORCH_RESULT.
    path = plan(tmp_path, tasks, budget={"max_cost": 0.05})
    done = orch("run", str(path), *db(tmp_path), "--quiet", env=fake_env(tmp_path, "success"))
    assert done.returncode == 3, done.stdout + done.stderr
    (bp,) = orch_json("breakpoints", "list", *db(tmp_path))["breakpoints"]
    assert (bp["rule"], bp["task"]) == ("budget_exceeded", "b")
    assert "max_cost" in bp["message"]
    assert len(calls(tmp_path / "calls.jsonl")) == 2  # c never started


def test_a_rate_limited_turn_goes_through_the_rate_limit_rule_and_is_retried(
    tmp_path: Path,
) -> None:
    path = plan(tmp_path, [agent_task("write", "gemini")])
    env = fake_env(tmp_path, "rate_limit,success")
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    limited, succeeded = steps(tmp_path, "r")
    assert (limited["exit_code"], limited["error_kind"]) == (75, "transient")
    assert limited["result"]["agent_exit_code"] == 1
    assert succeeded["result"]["tokens"] == 8123
    history = orch_json("task", "history", "r", "write", *db(tmp_path))
    assert any(move["reason"].startswith("rate_limit_hit") for move in history["transitions"])
    resumed = calls(tmp_path / "calls.jsonl")[1]["argv"]
    assert resumed[resumed.index("--resume") + 1] == "c0ffee00-1111-4222-8333-444455556666"


def test_an_exhausted_quota_is_permanent_and_not_retried(tmp_path: Path) -> None:
    path = plan(tmp_path, [agent_task("write", "codex")])
    env = fake_env(tmp_path, "out_of_budget,success")
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode in (1, 3), done.stdout + done.stderr
    (step,) = steps(tmp_path, "r")
    assert step["error_kind"] == "permanent"
    assert "out of budget: Quota exceeded" in step["output_tail"]
    assert len(calls(tmp_path / "calls.jsonl")) == 1


def test_aider_restores_its_chat_history_on_a_retry(tmp_path: Path) -> None:
    path = plan(tmp_path, [agent_task("write", "aider", model="gpt-4.1")])
    env = fake_env(tmp_path, "crash,success")
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = (call["argv"] for call in calls(tmp_path / "calls.jsonl"))
    assert "--restore-chat-history" not in first and "--restore-chat-history" in second
    history = Path(second[second.index("--chat-history-file") + 1])
    assert history == tmp_path / "tmp" / "orchestration-agents" / "r" / "write" / "chat.history.md"
    assert history.read_text().startswith("#### Add a retry helper.")  # the first turn's chat
    assert not (tmp_path / "repo" / ".aider.chat.history.md").exists()
    assert steps(tmp_path, "r")[1]["result"]["cost"] == 0.01


@pytest.mark.parametrize("agent", ["gemini", "opencode"])
def test_validate_names_the_task_and_the_missing_program_with_its_install_hint(
    tmp_path: Path, agent: str
) -> None:
    path = plan(tmp_path, [agent_task("write-tests", agent)])
    checked = orch("validate", str(path), env=fake_env(tmp_path, "success", with_fakes=False))
    assert checked.returncode == 2
    assert "write-tests" in checked.stderr
    assert f"agent program '{agent}' is not installed" in checked.stderr
    install = {
        "gemini": "npm install -g @google/gemini-cli",
        "opencode": "npm install -g opencode-ai",
    }
    assert install[agent] in checked.stderr
    found = orch("validate", str(path), env=fake_env(tmp_path, "success"))
    assert found.returncode == 0, found.stderr


def test_a_missing_program_at_run_time_fails_permanently_with_the_install_hint(
    tmp_path: Path,
) -> None:
    path = plan(tmp_path, [agent_task("write", "claude")])
    env = fake_env(tmp_path, "success", with_fakes=False)
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode in (1, 3)
    (step,) = steps(tmp_path, "r")  # permanent: no second attempt
    assert step["error_kind"] == "permanent" and step["exit_code"] is None
    message = "agent program 'claude' is not installed: npm install -g @anthropic-ai/claude-code"
    assert step["output_tail"] == message
    decisions = orch_json("task", "history", "r", "write", *db(tmp_path))
    assert "exited None" not in str(decisions)
    assert f"could not run: {message}" in str(decisions)


def test_a_session_the_cli_cannot_resume_is_dropped_and_the_next_retry_starts_afresh(
    tmp_path: Path,
) -> None:
    path = plan(tmp_path, [agent_task("write", "codex", args=["--skip-git-repo-check"])])
    env = fake_env(tmp_path, "crash,resume_refused,success")
    done = orch("run", str(path), "--run-id", "r", *db(tmp_path), "--quiet", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    crashed, refused, fresh = (call["argv"] for call in calls(tmp_path / "calls.jsonl"))
    session = "01a241c9-cac7-7e52-a1e7-21dee036fb44"  # the crashed turn's thread
    assert "resume" not in crashed
    assert refused[refused.index("resume") + 1] == session
    assert refused.index("--skip-git-repo-check") < refused.index("resume")
    assert "resume" not in fresh and fresh[-1].startswith("Add a retry helper.")
    assert steps(tmp_path, "r")[1]["error_kind"] == "transient"
