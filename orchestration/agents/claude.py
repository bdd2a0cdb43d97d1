"""Claude Code (`claude`, npm @anthropic-ai/claude-code): print mode with stream-json events."""

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
    number,
)

# 2.1.332 offers acceptEdits, auto, bypassPermissions, manual, dontAsk, plan; earlier versions
# call `manual` `default`.
PERMISSIONS = {
    mode: ("--permission-mode", mode)
    for mode in ("acceptEdits", "auto", "bypassPermissions", "manual", "default", "dontAsk", "plan")
}
# `error` of an assistant message whose API call failed (Agent SDK's SDKAssistantMessageError).
_MESSAGE_ERRORS = {
    "rate_limit": RATE_LIMIT,
    "authentication_failed": AUTH,
    "billing_error": OUT_OF_BUDGET,
}
_RESULT_SUBTYPES = {"error_max_budget_usd": OUT_OF_BUDGET}


def arguments(turn: TurnSettings) -> list[str]:
    """`claude -p PROMPT --output-format stream-json --verbose ...` (stream-json in print mode
    requires --verbose)."""
    argv = ["-p", guarded_prompt(turn.prompt), "--output-format", "stream-json", "--verbose"]
    if turn.model:
        argv += ["--model", turn.model]
    argv += PRESET.permission_args(turn.permissions)
    if turn.session_id:
        argv += ["--resume", turn.session_id]
    return argv + list(turn.args)


class ClaudeReader(JsonLinesReader):
    """system/init (session, model), assistant and user messages, rate_limit_event, result."""

    def event(self, event: dict[str, Any]) -> None:
        report = self.report
        kind = event.get("type")
        if isinstance(event.get("session_id"), str):
            report.session_id = event["session_id"]
        if kind == "system" and event.get("subtype") == "init":
            report.model = event.get("model") if isinstance(event.get("model"), str) else None
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._tool_results(event)
        elif kind == "rate_limit_event":
            info = event.get("rate_limit_info")
            if isinstance(info, dict) and info.get("status") == "rejected":
                report.note(f"rate limit reached ({info.get('rateLimitType', 'limit')})")
                report.failure = RATE_LIMIT
        elif kind == "result":
            self._result(event)

    def _assistant(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "text":
                self.report.note(f"claude: {block.get('text', '')}")
        error = event.get("error")
        if isinstance(error, str) and error in _MESSAGE_ERRORS:
            self.report.failure = _MESSAGE_ERRORS[error]

    def _tool_results(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else []:
            if (
                isinstance(block, dict)
                and block.get("type") == "tool_result"
                and block.get("is_error")
            ):
                self.report.tool_errors += 1
                self.report.note(f"tool error: {_text_of(block.get('content'))}")

    def _result(self, event: dict[str, Any]) -> None:
        report = self.report
        report.finished = True
        cost = number(event.get("total_cost_usd"))
        report.cost = cost if cost is not None and cost >= 0 else report.cost
        usage = event.get("usage")
        if isinstance(usage, dict):
            cached = sum(
                int(number(usage.get(key)) or 0)
                for key in ("cache_creation_input_tokens", "cache_read_input_tokens")
            )
            report.add_tokens(
                int(number(usage.get("input_tokens")) or 0) + cached, usage.get("output_tokens")
            )
        turns = number(event.get("num_turns"))
        if turns is not None:
            report.add_turns(int(turns))
        text = event.get("result")
        subtype = event.get("subtype")
        if not event.get("is_error") and subtype == "success":
            report.text = text if isinstance(text, str) else ""
            report.note(f"result: {report.text}")
            if report.failure == RATE_LIMIT:  # a warning it recovered from
                report.failure = None
            return
        message = text if isinstance(text, str) and text else str(subtype)
        errors = event.get("errors")
        if isinstance(errors, list) and errors:
            message = f"{message}: {'; '.join(map(str, errors))}"
        kind = _RESULT_SUBTYPES.get(str(subtype))
        if kind is None and event.get("api_error_status") == 429:
            kind = RATE_LIMIT
        # An earlier event may have said why already (an assistant message's error, a rejected
        # rate limit); the result's text says it in words only.
        report.fail(message, kind or report.failure)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content)


PRESET = AgentPreset(
    name="claude",
    program="claude",
    install="npm install -g @anthropic-ai/claude-code",
    checked_version="2.1.332",
    arguments=arguments,
    reader=ClaudeReader,
    permissions=PERMISSIONS,
    default_permissions="acceptEdits",
    resumes="session",
)
