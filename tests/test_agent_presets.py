"""Agent presets: each CLI's command line, and its recorded output read into figures and a
failure kind (tests/data/agents holds the recordings, in each CLI's documented format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestration.agents import (
    AUTH,
    FAILED,
    OUT_OF_BUDGET,
    PRESETS,
    RATE_LIMIT,
    AgentReport,
    LineSplitter,
    TurnSettings,
    missing_program,
    settings_problem,
)
from orchestration.agents.base import failure_in
from orchestration.core.models import AgentAction, TaskSpec
from orchestration.engine.actions import EXIT_RATE_LIMITED, ActionRequest, ProcessResult
from orchestration.engine.agent_turns import (
    follow_up_prompt,
    judge,
    preset_outcome,
    run_agent_turn,
    turn_settings,
)
from tests.agent_fakes import AGENTS, exit_code, recording


def read(agent: str, scenario: str, chunk: int = 7) -> AgentReport:
    """Feed a recording through the preset's reader in small pieces, as a pipe delivers it."""
    reader = PRESETS[agent].reader()
    splitter = LineSplitter(reader.line)
    text = recording(agent, scenario).read_text()
    for start in range(0, len(text), chunk):
        splitter.feed(text[start : start + chunk])
    splitter.close()
    reader.finish(exit_code(agent, scenario))
    return reader.report


# Figures each recording holds (its numbers summed as each preset documents).
SUCCESS = {
    "claude": {"cost": 0.0421, "tokens": 6750, "turns": 3, "session_id": "8b1f6c2e-4d3a-4f5e-9a7b-1c2d3e4f5a6b"},
    "codex": {"tokens": 24885, "turns": 1, "session_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"},
    "gemini": {"tokens": 8123, "turns": 2, "session_id": "c0ffee00-1111-4222-8333-444455556666"},
    "aider": {"cost": 0.01, "tokens": 2410, "turns": 1},
    "opencode": {"cost": 0.0163, "tokens": 10940, "turns": 2, "session_id": "ses_5f2a1b3c4d5eAbCdEfGhIjKl"},
}  # fmt: skip
SUMMARY = {
    "claude": "Done: retry.py adds retry() with exponential backoff.",
    "codex": "Added retry.py with retry() and exponential backoff.",
    "gemini": "Done: retry.py has retry() with exponential backoff.",
    "opencode": "Added retry.py with retry() and exponential backoff.",
}


@pytest.mark.parametrize("agent", AGENTS)
def test_a_successful_turn_reports_its_session_cost_tokens_and_turns(agent: str) -> None:
    report = read(agent, "success")
    figures = report.figures(agent)
    for name, value in SUCCESS[agent].items():
        assert figures[name] == pytest.approx(value), name
    assert "cost" in figures or agent in ("codex", "gemini")  # those two report tokens only
    assert report.failure is None and report.tool_errors == 0
    if agent in SUMMARY:
        assert figures["summary"] == SUMMARY[agent]
    assert judge(report, 0) == (0, "none", False, "")


@pytest.mark.parametrize("agent", AGENTS)
def test_a_failed_tool_call_is_counted_but_the_turn_still_succeeds(agent: str) -> None:
    report = read(agent, "tool_error")
    assert report.failure is None
    assert judge(report, 0)[:2] == (0, "none")
    if agent == "aider":  # aider's edit that did not apply is followed by a second call
        assert report.turns == 2 and report.cost == pytest.approx(0.02)
    else:
        assert report.tool_errors == 1
        assert any(line.startswith("tool error:") for line in report.transcript)


@pytest.mark.parametrize("agent", AGENTS)
def test_a_rate_limit_becomes_exit_code_75_and_a_transient_error(agent: str) -> None:
    report = read(agent, "rate_limit")
    assert report.failure == RATE_LIMIT
    code, kind, declared, why = judge(report, exit_code(agent, "rate_limit"))
    assert (code, kind, declared) == (EXIT_RATE_LIMITED, "transient", False)
    assert "rate limited" in why


@pytest.mark.parametrize("agent", AGENTS)
def test_an_exhausted_budget_or_quota_is_a_permanent_failure(agent: str) -> None:
    report = read(agent, "out_of_budget")
    assert report.failure == OUT_OF_BUDGET
    code, kind, declared, why = judge(report, exit_code(agent, "out_of_budget"))
    assert (kind, declared) == ("permanent", True) and code != 0
    assert why.startswith("out of budget")


@pytest.mark.parametrize("agent", AGENTS)
def test_a_crash_mid_stream_is_a_transient_failure_that_keeps_what_was_read(agent: str) -> None:
    report = read(agent, "crash")
    code, kind, _, _ = judge(report, exit_code(agent, "crash"))
    assert (code, kind) == (1, "transient")
    assert not report.finished
    assert report.transcript, "what the agent said before it died is kept for the output tail"
    if agent != "aider":
        assert report.session_id, "the session began, so a retry can continue it"


def test_the_truncated_last_event_is_kept_as_text_not_lost() -> None:
    report = read("claude", "crash")
    assert report.transcript[-1].startswith('{"type":"user"')


def test_a_result_event_with_an_error_and_exit_0_is_still_a_failure() -> None:
    report = AgentReport()
    report.fail("the model refused the request")
    assert report.failure == FAILED
    assert judge(report, 0)[:2] == (1, "transient")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("You've hit your usage limit. Try again at 3:05 PM.", RATE_LIMIT),
        ("exceeded retry limit, last status: 429 Too Many Requests", RATE_LIMIT),
        ("Quota exceeded. Check your plan and billing details.", OUT_OF_BUDGET),
        ("Error code: 429 - insufficient_quota", OUT_OF_BUDGET),
        ("Invalid API key · Please run /login", AUTH),
        ("stream disconnected before completion", None),
    ],
)
def test_provider_messages_name_their_failure(message: str, kind: str | None) -> None:
    assert failure_in(message) == kind


# ---- command lines ------------------------------------------------------------------------


def argv(agent: str, **turn: Any) -> list[str]:
    return PRESETS[agent].arguments(TurnSettings(prompt="Fix it", **turn))


def test_claude_runs_print_mode_with_stream_json_and_resumes_by_session_id() -> None:
    assert argv("claude", model="sonnet", permissions="plan", session_id="s-1") == [
        "-p", "Fix it", "--output-format", "stream-json", "--verbose", "--model", "sonnet",
        "--permission-mode", "plan", "--resume", "s-1",
    ]  # fmt: skip
    assert "acceptEdits" in argv("claude")  # edits need no human in print mode


def test_codex_puts_its_options_before_resume() -> None:
    assert argv("codex", model="gpt-5-codex", args=("--skip-git-repo-check",)) == [
        "exec", "--json", "--model", "gpt-5-codex", "--sandbox", "workspace-write",
        "--skip-git-repo-check", "Fix it",
    ]  # fmt: skip
    resumed = argv("codex", permissions="bypass", session_id="t-1")
    assert resumed == [
        "exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "resume", "t-1", "Fix it",
    ]  # fmt: skip


def test_gemini_opencode_and_aider_command_lines() -> None:
    assert argv("gemini", permissions="yolo", session_id="g-1") == [
        "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust",
        "--resume", "g-1", "--prompt", "Fix it",
    ]  # fmt: skip
    assert "--skip-trust" not in argv("gemini", permissions="default")
    assert argv("opencode", model="anthropic/claude-sonnet-4-5", permissions="auto") == [
        "run", "--format", "json", "--model", "anthropic/claude-sonnet-4-5", "--auto", "--",
        "Fix it",
    ]  # fmt: skip
    aider = argv("aider", model="gpt-4.1", restore_history=True, state_dir=Path("/s"))
    assert aider[:2] == ["--message", "Fix it"] and "--yes-always" in aider
    assert "--no-auto-commits" in aider and aider[-3:] == [
        "--model",
        "gpt-4.1",
        "--restore-chat-history",
    ]
    assert aider[aider.index("--chat-history-file") + 1] == "/s/chat.history.md"


def test_a_prompt_that_looks_like_an_option_stays_a_prompt() -> None:
    assert argv("claude")[1] == "Fix it"
    turn = TurnSettings(prompt="--help me")
    assert PRESETS["claude"].arguments(turn)[1] == " --help me"
    assert PRESETS["opencode"].arguments(turn)[-2:] == ["--", "--help me"]


def request(action: dict[str, Any], attempt: int, **extra: Any) -> ActionRequest:
    task = TaskSpec.model_validate({"id": "t", "action": {"kind": "agent", **action}})
    return ActionRequest("run-1", task, attempt, Path("/w"), 60.0, **extra)


def test_a_retry_continues_the_session_with_the_feedback_as_the_new_message() -> None:
    first = request({"agent": "claude", "prompt": "Add retries. {feedback}"}, 1)
    action = first.task.action
    assert isinstance(action, AgentAction)
    turn = turn_settings(first, action, PRESETS["claude"])
    assert (turn.prompt, turn.session_id) == ("Add retries. ", None)
    retry = request(
        {"agent": "claude", "prompt": "Add retries. {feedback}"},
        2,
        feedback="2 tests fail",
        agent_session="s-1",
    )
    turn = turn_settings(retry, action, PRESETS["claude"])
    assert turn.session_id == "s-1"
    assert turn.prompt == follow_up_prompt("2 tests fail", "")
    assert "2 tests fail" in turn.prompt and "Add retries" not in turn.prompt


def test_resume_false_starts_a_new_session_with_the_full_prompt() -> None:
    retry = request(
        {"agent": "codex", "prompt": "Add retries. {feedback}", "resume": False},
        2,
        feedback="2 tests fail",
        agent_session="s-1",
    )
    action = retry.task.action
    assert isinstance(action, AgentAction)
    turn = turn_settings(retry, action, PRESETS["codex"])
    assert (turn.session_id, turn.prompt) == (None, "Add retries. 2 tests fail")


# ---- plan settings ------------------------------------------------------------------------


def test_permissions_are_checked_against_the_presets_modes() -> None:
    assert settings_problem("claude", "acceptEdits") is None
    problem = settings_problem("claude", "yolo")
    assert problem is not None and "acceptEdits" in problem and "'yolo'" in problem
    aider = settings_problem("aider", "auto")
    assert aider is not None and "no permission modes" in aider


def test_a_preset_and_a_command_template_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="either 'agent'"):
        AgentAction.model_validate(
            {"kind": "agent", "prompt": "p", "agent": "claude", "command": ["x"]}
        )
    with pytest.raises(ValueError, match="need 'agent'"):
        AgentAction.model_validate({"kind": "agent", "prompt": "p", "command": ["x"], "model": "m"})


# ---- the outcome ---------------------------------------------------------------------------


def test_an_orch_result_adds_fields_but_cannot_change_what_the_cli_measured() -> None:
    report = read("claude", "success")
    ran = ProcessResult(0, False, False, "")
    written = {"cost": 0, "tokens": 1, "confidence": 0.8, "summary": "my own words"}
    outcome = preset_outcome(PRESETS["claude"], report, ran, 1.0, ("claude",), written, "")
    assert (outcome.result["cost"], outcome.result["tokens"]) == (0.0421, 6750)
    assert (outcome.result["confidence"], outcome.result["summary"]) == (0.8, "my own words")
    assert outcome.exit_code == 0 and outcome.error_kind == "none"
    assert outcome.output_tail.splitlines()[-1].startswith("result: Done")


def test_a_timed_out_turn_keeps_the_transcript_and_the_engines_note() -> None:
    report = read("claude", "crash")
    note = "[orchestration] killed after 5s timeout"
    ran = ProcessResult(None, True, False, f"raw output\n{note}")
    outcome = preset_outcome(PRESETS["claude"], report, ran, 5.0, ("claude",), {}, "")
    assert outcome.timed_out and outcome.error_kind == "timeout"
    assert outcome.output_tail.splitlines()[-1] == note
    assert "claude: I'll add a retry helper in retry.py." in outcome.output_tail


def test_a_relative_program_is_looked_up_from_the_work_directory(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    program = tmp_path / "bin" / "my-claude"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    action = AgentAction.model_validate(
        {"kind": "agent", "agent": "claude", "prompt": "p", "program": "./bin/my-claude"}
    )
    assert missing_program(action, {"PATH": ""}, tmp_path) is None
    missing = missing_program(action, {"PATH": ""}, tmp_path / "bin")
    assert missing == (
        "agent program './bin/my-claude' is not installed: npm install -g @anthropic-ai/claude-code"
    )


def test_an_error_event_captured_from_opencode_is_a_transient_failure_of_its_session() -> None:
    report = read("opencode", "server_error")  # opencode 1.18.33 with no provider reachable
    assert report.session_id == "ses_dbe23b4a2ffel9df18KlvWiG8I"
    assert (report.failure, report.error) == (
        FAILED,
        "UnknownError: Unexpected server error. Check server logs for details.",
    )
    assert judge(report, 1)[:2] == (1, "transient")


def test_a_login_failure_captured_from_claude_code_is_permanent() -> None:
    report = read("claude", "auth")  # Claude Code 2.1.332, not logged in
    assert report.session_id == "b60b4b19-0f4e-4045-8075-7ca7b56a189f"
    assert (report.failure, report.error) == (AUTH, "Not logged in · Please run /login")
    assert report.figures("claude")["cost"] == 0
    assert judge(report, 1) == (
        1,
        "permanent",
        True,
        "not authenticated: Not logged in · Please run /login",
    )


def test_gemini_clis_own_exit_codes_captured_without_auth_or_session() -> None:
    auth = read("gemini", "auth")  # gemini-cli 0.61.0 with no auth method: exit 41
    assert auth.failure == AUTH and judge(auth, 41)[1] == "permanent"
    refused = read("gemini", "resume_refused")  # --resume of a session it does not have: exit 42
    assert refused.failure is None and refused.session_id is None
    assert judge(refused, 42)[:2] == (42, "transient")


def test_permissions_changed_after_the_plan_loaded_fail_the_attempt_not_the_engine() -> None:
    outcome = run_agent_turn(request({"agent": "claude", "prompt": "p", "permissions": "yolo"}, 1))
    assert (outcome.exit_code, outcome.error_kind) == (None, "permanent")
    assert "unknown permissions 'yolo' for the claude preset" in outcome.output_tail
