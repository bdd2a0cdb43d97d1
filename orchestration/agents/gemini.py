"""Gemini CLI (`gemini`, npm @google/gemini-cli): headless `--output-format stream-json`."""

from __future__ import annotations

from typing import Any

from orchestration.agents.base import (
    AUTH,
    OUT_OF_BUDGET,
    RATE_LIMIT,
    AgentPreset,
    JsonLinesReader,
    TurnSettings,
    guarded_prompt,
)

# Gemini CLI falls back to `default` in a folder it does not trust, where headless mode has
# nobody to approve an edit: the modes that approve by themselves trust the work directory.
PERMISSIONS = {
    "default": ("--approval-mode", "default"),
    "plan": ("--approval-mode", "plan"),
    "auto_edit": ("--approval-mode", "auto_edit", "--skip-trust"),
    "yolo": ("--approval-mode", "yolo", "--skip-trust"),
}
# `error.type` of a failed result: the class name of the error the CLI ended on.
_ERROR_TYPES = {
    "RetryableQuotaError": RATE_LIMIT,  # a per-minute quota: wait
    "TerminalQuotaError": OUT_OF_BUDGET,  # a daily quota or no credits left
    "FatalAuthenticationError": AUTH,
}
_EXIT_CODES = {41: AUTH}  # FatalAuthenticationError's exit code


def arguments(turn: TurnSettings) -> list[str]:
    """`gemini --output-format stream-json [options] --prompt PROMPT` (headless mode)."""
    argv = ["--output-format", "stream-json"]
    if turn.model:
        argv += ["--model", turn.model]
    argv += PRESET.permission_args(turn.permissions)
    if turn.session_id:
        argv += ["--resume", turn.session_id]
    return [*argv, *turn.args, "--prompt", guarded_prompt(turn.prompt)]


class GeminiReader(JsonLinesReader):
    """init (session, model), message (assistant text, in deltas), tool_result, error, result
    (status, stats with token counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.speaking = False  # the last event was an assistant message chunk

    def event(self, event: dict[str, Any]) -> None:
        report = self.report
        kind = event.get("type")
        if kind != "message" or event.get("role") != "assistant":
            self._end_message()
        if kind == "init":
            report.session_id = _text(event.get("session_id")) or report.session_id
            report.model = _text(event.get("model")) or report.model
        elif kind == "message" and event.get("role") == "assistant":
            self._message(event)
        elif kind == "tool_result" and event.get("status") == "error":
            report.tool_errors += 1
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else event.get("output")
            report.note(f"tool error: {message}")
        elif kind == "error":
            report.note(f"{event.get('severity', 'error')}: {event.get('message', '')}")
        elif kind == "result":
            self._result(event)

    def _message(self, event: dict[str, Any]) -> None:
        content = str(event.get("content", ""))
        if not self.speaking:  # a new model turn begins
            self.report.add_turns()
            self.report.text = ""
        self.report.text = self.report.text + content if event.get("delta") else content
        self.speaking = True

    def _end_message(self) -> None:
        if self.speaking and self.report.text:
            self.report.note(f"gemini: {self.report.text}")
        self.speaking = False

    def _result(self, event: dict[str, Any]) -> None:
        report = self.report
        report.finished = True
        stats = event.get("stats")
        if isinstance(stats, dict):  # input_tokens includes the cached ones
            report.add_tokens(stats.get("input_tokens"), stats.get("output_tokens"))
        if event.get("status") == "success":
            report.note(f"result: {report.text}")
            return
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        message = str(error.get("message") or "the turn failed")
        report.fail(
            f"{error.get('type', 'error')}: {message}", _ERROR_TYPES.get(str(error.get("type")))
        )

    def finish(self, exit_code: int | None) -> None:
        self._end_message()
        if exit_code in _EXIT_CODES and self.report.failure is None:
            self.report.fail(f"gemini exited {exit_code}", _EXIT_CODES[exit_code])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


PRESET = AgentPreset(
    name="gemini",
    program="gemini",
    install="npm install -g @google/gemini-cli",
    checked_version="0.61.0",
    arguments=arguments,
    reader=GeminiReader,
    permissions=PERMISSIONS,
    default_permissions="auto_edit",
    resumes="session",
)
