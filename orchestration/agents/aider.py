"""Aider (`aider`, PyPI aider-chat): one `--message` turn; plain text, read for its usage lines.

Aider has no structured output and no session id: it prints a usage line per model call
("Tokens: 2.1k sent, 310 received. Cost: $0.01 message, $0.03 session.") and keeps its chat
history in a markdown file, which `--restore-chat-history` reloads on a retry. It exits 0 even
when the provider refused every request, so its error lines are what tell a failure.
"""

from __future__ import annotations

import re

from orchestration.agents.base import (
    AUTH,
    FAILED,
    OUT_OF_BUDGET,
    RATE_LIMIT,
    AgentPreset,
    AgentReport,
    TurnSettings,
    failure_in,
    guarded_prompt,
)

# Non-interactive and tidy: no prompts, no colours, no update check, no commits (the engine
# reviews the change), no edits to .gitignore, no analytics question.
FIXED_OPTIONS = (
    "--yes-always",
    "--no-pretty",
    "--no-stream",
    "--no-fancy-input",
    "--no-check-update",
    "--no-show-model-warnings",
    "--no-auto-commits",
    "--no-gitignore",
    "--no-analytics",
)
CHAT_HISTORY = "chat.history.md"
INPUT_HISTORY = "input.history"

_TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.]+k?) sent(?:, (?P<write>[\d.]+k?) cache write)?"
    r"(?:, (?P<hit>[\d.]+k?) cache hit)?, (?P<received>[\d.]+k?) received\."
)
_COST = re.compile(r"Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.")
# aider/exceptions.py: the litellm errors it names, and the advice it prints for them.
_ERROR_LINE = re.compile(
    r"litellm\.\w+Error|RateLimitError|AuthenticationError|PermissionDeniedError"
    r"|BudgetExceededError|The API provider (has rate limited you|is not able to authenticate)"
    r"|Permission was denied",
    re.IGNORECASE,
)
_LITELLM_KINDS = {
    "BudgetExceededError": OUT_OF_BUDGET,
    "AuthenticationError": AUTH,
    "PermissionDeniedError": AUTH,
    "RateLimitError": RATE_LIMIT,
}


def arguments(turn: TurnSettings) -> list[str]:
    """`aider --message PROMPT [fixed options] --chat-history-file ... [--model M] ...`: its
    history files live in a directory of the task's own, not in the work tree."""
    argv = ["--message", guarded_prompt(turn.prompt), *FIXED_OPTIONS]
    if turn.state_dir is not None:
        argv += [
            "--chat-history-file",
            str(turn.state_dir / CHAT_HISTORY),
            "--input-history-file",
            str(turn.state_dir / INPUT_HISTORY),
        ]
    if turn.model:
        argv += ["--model", turn.model]
    if turn.restore_history:
        argv.append("--restore-chat-history")
    return argv + list(turn.args)


class AiderReader:
    """Usage lines add tokens, cost (the session figure) and a turn; an error line marks a
    failure until a later usage line shows that a retry of aider's own got through."""

    def __init__(self) -> None:
        self.report = AgentReport()

    def line(self, text: str) -> None:
        report = self.report
        report.note(text)
        tokens = _TOKENS.search(text)
        if tokens:
            sent = _amount(tokens["sent"]) + _amount(tokens["hit"])
            report.add_tokens(sent, _amount(tokens["received"]))
            report.add_turns()
            report.failure, report.error = None, ""  # the call went through
        cost = _COST.search(text)
        if cost:
            report.cost = float(cost["session"])
        if _ERROR_LINE.search(text):
            self._error(text)

    def _error(self, text: str) -> None:
        named = next((kind for name, kind in _LITELLM_KINDS.items() if name in text), None)
        said = failure_in(text)
        # A RateLimitError that says the quota is gone is an empty account, not a busy one.
        kind = said if said == OUT_OF_BUDGET else named or said
        if self.report.failure in (OUT_OF_BUDGET, AUTH) and kind not in (OUT_OF_BUDGET, AUTH):
            return  # the advice line after a quota error speaks of rate limits: keep the cause
        if kind is not None or self.report.failure is None:
            self.report.error = text.strip()
            self.report.failure = kind or FAILED

    def finish(self, exit_code: int | None) -> None:
        """Aider's own output has no end marker: a clean exit is a finished turn."""
        self.report.finished = exit_code == 0


def _amount(value: str | None) -> int:
    """aider's format_tokens: 950, 2.1k, 12k."""
    if not value:
        return 0
    if value.endswith("k"):
        return round(float(value[:-1]) * 1000)
    return int(float(value))


PRESET = AgentPreset(
    name="aider",
    program="aider",
    install="python -m pip install aider-chat",
    checked_version="0.86.3.dev (main, 2026-05-22)",
    arguments=arguments,
    reader=AiderReader,
    permissions={},
    default_permissions=None,
    resumes="history",
)
