"""Runs one turn of an agent preset: its command line, its process, its report as the outcome."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestration.agents import (
    AUTH,
    FAILED,
    OUT_OF_BUDGET,
    PRESETS,
    RATE_LIMIT,
    AgentPreset,
    AgentReport,
    LineSplitter,
    TurnSettings,
    missing_program,
    program_of,
    settings_problem,
)
from orchestration.core.models import AgentAction
from orchestration.engine.actions import (
    EXIT_RATE_LIMITED,
    OUTPUT_TAIL_CHARS,
    ActionOutcome,
    ActionRequest,
    ProcessResult,
    action_env,
    classify,
    fill_placeholders,
    placeholder_values,
    read_result,
    run_process,
)

# Result fields the CLI measured: an ORCH_RESULT the agent wrote cannot change them.
MEASURED = ("agent", "session_id", "cost", "tokens", "input_tokens", "output_tokens", "turns")
STATE_DIR_NAME = "orchestration-agents"  # under the system's temporary directory
_PERMANENT_WHY = {OUT_OF_BUDGET: "out of budget", AUTH: "not authenticated"}


def run_agent_turn(
    request: ActionRequest,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> ActionOutcome:
    """Run the preset's CLI for one turn and read its output as it streams.

    `on_output` receives the CLI's raw output (its event stream) as it comes: the attempt's log.
    """
    action = request.task.action
    assert isinstance(action, AgentAction) and action.agent is not None
    preset = PRESETS[action.agent]
    cwd = request.workdir / action.cwd if action.cwd else request.workdir
    with tempfile.TemporaryDirectory(prefix="orch-result-") as tmp:
        result_path = Path(tmp) / "result.json"
        env = action_env(request, result_path, action.env)
        # A plan's settings were checked when it loaded; a `--set` on a retry was not.
        cannot_run = settings_problem(action.agent, action.permissions) or missing_program(
            action, env, cwd
        )
        if cannot_run is not None:
            return ActionOutcome(
                None, False, 0.0, cannot_run, {"agent": preset.name}, "permanent",
                (program_of(action),), declared=True,
            )  # fmt: skip
        argv = [program_of(action), *preset.arguments(turn_settings(request, action, preset))]
        reader = preset.reader()
        splitter = LineSplitter(reader.line)
        started = time.monotonic()
        ran = run_process(
            argv,
            cwd=cwd,
            env=env,
            timeout_seconds=request.timeout_seconds,
            stop=stop,
            on_start=on_start,
            on_output=splitter.feed if on_output is None else _both(splitter.feed, on_output),
        )
        duration = time.monotonic() - started
        splitter.close()
        reader.finish(ran.exit_code)
        written, note = read_result(result_path)
    return preset_outcome(preset, reader.report, ran, duration, tuple(argv), written, note)


def _both(first: Callable[[str], None], second: Callable[[str], None]) -> Callable[[str], None]:
    def feed(text: str) -> None:
        first(text)
        second(text)

    return feed


def turn_settings(request: ActionRequest, action: AgentAction, preset: AgentPreset) -> TurnSettings:
    """The turn's prompt and options; on a retry, the follow-up in the agent's own session."""
    values = placeholder_values(request)
    prompt = fill_placeholders(action.prompt, values)
    retry = action.resume and request.attempt > 1
    session = request.agent_session if retry and preset.resumes == "session" else None
    state_dir = None
    restore = False
    if preset.resumes == "history":
        state_dir = agent_state_dir(request)
        restore = retry and state_dir.is_dir() and any(state_dir.iterdir())
        state_dir.mkdir(parents=True, exist_ok=True)
    if session is not None or restore:
        prompt = follow_up_prompt(request.feedback, request.answer)
    return TurnSettings(
        prompt=prompt,
        model=action.model,
        permissions=action.permissions,
        args=tuple(fill_placeholders(arg, values) for arg in action.args),
        session_id=session,
        restore_history=restore,
        state_dir=state_dir,
    )


def agent_state_dir(request: ActionRequest) -> Path:
    """Where a CLI that keeps its history in files keeps it for this task (never the work
    tree: the engine counts every file there as the agent's change)."""
    return Path(tempfile.gettempdir()) / STATE_DIR_NAME / request.run_id / request.task.id


def follow_up_prompt(feedback: str, answer: str) -> str:
    """What a continued session is told: the agent has the task already, not the verdict."""
    parts = []
    if feedback.strip():
        parts.append(
            f"Your previous attempt at this task was checked and did not pass:\n{feedback.strip()}"
        )
    if answer.strip():
        parts.append(f"A reviewer answered your question:\n{answer.strip()}")
    if not parts:
        return "Your previous attempt at this task stopped before it was done. Continue it."
    return "\n\n".join([*parts, "Continue the task and put this right."])


def preset_outcome(
    preset: AgentPreset,
    report: AgentReport,
    ran: ProcessResult,
    duration: float,
    argv: tuple[str, ...],
    written: dict[str, Any],
    note: str,
) -> ActionOutcome:
    """The attempt's outcome from what the CLI reported: figures, failure kind, output."""
    figures = report.figures(preset.name)
    result = {**figures, **written, **{k: figures[k] for k in MEASURED if k in figures}}
    if ran.exit_code is not None:
        result["agent_exit_code"] = ran.exit_code
    lines = list(report.transcript) or [ran.output]
    exit_code, error_kind, declared = ran.exit_code, classify(ran.exit_code, ran.timed_out), False
    if ran.timed_out or ran.interrupted:
        lines.append(ran.output.rstrip().rsplit("\n", 1)[-1])  # the engine's own note
    elif ran.exit_code is not None:
        exit_code, error_kind, declared, why = judge(report, ran.exit_code)
        if why:
            lines.append(f"[orchestration] {preset.name}: {why}")
    if note:
        lines.append(note)
    output = "\n".join(lines)[-OUTPUT_TAIL_CHARS:]
    return ActionOutcome(
        exit_code, ran.timed_out, duration, output, result, error_kind, argv,
        interrupted=ran.interrupted, declared=declared,
    )  # fmt: skip


def judge(report: AgentReport, exit_code: int) -> tuple[int, str, bool, str]:
    """(exit code, error kind, declared, why) of a turn whose process ended by itself.

    A rate limit becomes exit code 75, the convention the `rate_limit_hit` rule and the
    default error rules know; an empty account or a failed login is permanent (declared: the
    plan's exit-code rules must not make it transient); an error the CLI reported with exit 0
    is still a failure.
    """
    if report.failure == RATE_LIMIT:
        why = f"rate limited (exit {exit_code}, reported as {EXIT_RATE_LIMITED}): {report.error}"
        return EXIT_RATE_LIMITED, "transient", False, why.rstrip(": ")
    if report.failure in _PERMANENT_WHY:
        why = f"{_PERMANENT_WHY[report.failure]}: {report.error}".rstrip(": ")
        return exit_code or 1, "permanent", True, why
    if report.failure == FAILED and exit_code == 0:
        return 1, "transient", False, f"the agent reported an error: {report.error}"
    if exit_code != 0 and not report.finished and report.failure is None:
        return (
            exit_code,
            classify(exit_code, False),
            False,
            (f"the output ended without a result (exit {exit_code})"),
        )
    return exit_code, classify(exit_code, False), False, ""
