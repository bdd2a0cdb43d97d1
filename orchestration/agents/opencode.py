"""opencode (`opencode`, npm opencode-ai): `opencode run --format json` JSON events."""

from __future__ import annotations

from typing import Any

from orchestration.agents.base import (
    AUTH,
    RATE_LIMIT,
    AgentPreset,
    JsonLinesReader,
    TurnSettings,
    number,
)

# `opencode run` rejects every permission request unless told to approve them.
PERMISSIONS = {"auto": ("--auto",)}
_ERROR_NAMES = {"ProviderAuthError": AUTH}


def arguments(turn: TurnSettings) -> list[str]:
    """`opencode run --format json [options] -- PROMPT` (after `--` a prompt is never read as
    an option)."""
    argv = ["run", "--format", "json"]
    if turn.model:
        argv += ["--model", turn.model]
    argv += PRESET.permission_args(turn.permissions)
    if turn.session_id:
        argv += ["--session", turn.session_id]
    return [*argv, *turn.args, "--", turn.prompt]


class OpencodeReader(JsonLinesReader):
    """Every event names its sessionID; text, tool_use (finished tool calls), step_finish (cost
    and tokens of one model call), error (the session's error), done."""

    def event(self, event: dict[str, Any]) -> None:
        report = self.report
        if isinstance(event.get("sessionID"), str):
            report.session_id = event["sessionID"]
        part = _mapping(event.get("part"))
        kind = event.get("type")
        if kind == "text":
            report.text = str(part.get("text", ""))
            report.note(f"opencode: {report.text}")
        elif kind == "tool_use":
            state = _mapping(part.get("state"))
            if state.get("status") == "error":
                report.tool_errors += 1
                report.note(f"tool error: {part.get('tool')}: {state.get('error', '')}")
        elif kind == "step_finish":
            self._step(part)
        elif kind == "error":
            self._error(event.get("error"))
        elif kind == "done":
            report.finished = True

    def _step(self, part: dict[str, Any]) -> None:
        report = self.report
        cost = number(part.get("cost"))
        if cost is not None and cost >= 0:
            report.cost = (report.cost or 0.0) + cost
        tokens = part.get("tokens")
        if isinstance(tokens, dict):
            cache = _mapping(tokens.get("cache"))
            input_tokens = sum(
                int(number(value) or 0)
                for value in (tokens.get("input"), cache.get("read"), cache.get("write"))
            )
            output_tokens = int(number(tokens.get("output")) or 0) + int(
                number(tokens.get("reasoning")) or 0
            )
            report.add_tokens(input_tokens, output_tokens)
        report.add_turns()
        if part.get("reason") != "tool-calls":  # the model answered: the run ends here
            report.finished = True

    def _error(self, error: Any) -> None:
        error = _mapping(error)
        name = str(error.get("name", "error"))
        data = _mapping(error.get("data"))
        message = f"{name}: {data.get('message', '')}".rstrip(": ")
        kind = _ERROR_NAMES.get(name)
        if kind is None and data.get("statusCode") == 429:
            kind = RATE_LIMIT
        self.report.fail(message, kind)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


PRESET = AgentPreset(
    name="opencode",
    program="opencode",
    install="npm install -g opencode-ai",
    checked_version="1.18.33",
    arguments=arguments,
    reader=OpencodeReader,
    permissions=PERMISSIONS,
    default_permissions=None,
    resumes="session",
)
