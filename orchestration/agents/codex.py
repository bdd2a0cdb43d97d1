"""OpenAI Codex CLI (`codex`, npm @openai/codex): `codex exec --json` JSONL thread events."""

from __future__ import annotations

from typing import Any

from orchestration.agents.base import (
    AgentPreset,
    JsonLinesReader,
    TurnSettings,
    guarded_prompt,
    number,
)

PERMISSIONS = {
    "read-only": ("--sandbox", "read-only"),
    "workspace-write": ("--sandbox", "workspace-write"),
    "danger-full-access": ("--sandbox", "danger-full-access"),
    "bypass": ("--dangerously-bypass-approvals-and-sandbox",),
}


def arguments(turn: TurnSettings) -> list[str]:
    """`codex exec --json [options] PROMPT`, or `codex exec --json [options] resume ID PROMPT`:
    the options go before `resume` (only some are accepted after it)."""
    argv = ["exec", "--json"]
    if turn.model:
        argv += ["--model", turn.model]
    argv += PRESET.permission_args(turn.permissions)
    argv += list(turn.args)
    if turn.session_id:
        argv += ["resume", turn.session_id]
    return [*argv, guarded_prompt(turn.prompt)]


class CodexReader(JsonLinesReader):
    """thread.started (session), item.completed (messages, commands, errors), turn.completed
    (usage), turn.failed and error (fatal errors; `error` also reports reconnect attempts)."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error = ""

    def event(self, event: dict[str, Any]) -> None:
        report = self.report
        kind = event.get("type")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            report.session_id = event["thread_id"]
        elif kind == "item.completed" and isinstance(event.get("item"), dict):
            self._item(event["item"])
        elif kind == "turn.completed":
            usage = event.get("usage")
            if isinstance(usage, dict):  # input_tokens includes cached_input_tokens
                report.add_tokens(usage.get("input_tokens"), usage.get("output_tokens"))
            report.add_turns()
            report.finished = True
        elif kind == "turn.failed":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            report.fail(str(message or self.last_error or "turn failed"))
            report.finished = True
        elif kind == "error":
            # Also sent for each reconnect attempt; only the last one matters, and only if
            # the process then ends without a completed turn.
            self.last_error = str(event.get("message", ""))
            report.note(f"error: {self.last_error}")

    def _item(self, item: dict[str, Any]) -> None:
        report = self.report
        kind = item.get("type")
        if kind == "agent_message":
            report.text = str(item.get("text", ""))
            report.note(f"codex: {report.text}")
        elif kind == "command_execution":
            code = number(item.get("exit_code"))
            if item.get("status") in ("failed", "declined") or (code is not None and code != 0):
                report.tool_errors += 1
                output = str(item.get("aggregated_output", "")).strip().splitlines()
                tail = output[-1] if output else ""
                report.note(f"tool error: {item.get('command')} exited {code}: {tail}")
        elif kind in ("mcp_tool_call", "file_change") and item.get("status") == "failed":
            report.tool_errors += 1
            error = item.get("error")
            message = error.get("message") if isinstance(error, dict) else kind
            report.note(f"tool error: {message}")
        elif kind == "error":
            report.note(f"warning: {item.get('message', '')}")

    def finish(self, exit_code: int | None) -> None:
        """The process ended with no completed or failed turn: its last error says why."""
        if not self.report.finished and exit_code != 0 and self.last_error:
            self.report.fail(self.last_error)


PRESET = AgentPreset(
    name="codex",
    program="codex",
    install="npm install -g @openai/codex",
    checked_version="0.171.0",
    arguments=arguments,
    reader=CodexReader,
    permissions=PERMISSIONS,
    default_permissions="workspace-write",
    resumes="session",
)
