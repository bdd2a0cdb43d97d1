"""What every agent preset shares: a turn's settings, the report read from the CLI's output."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

TRANSCRIPT_LINES = 200  # the report keeps this many rendered lines for the output tail
LINE_CHARS = 600  # one rendered line is cut to this many characters
SUMMARY_CHARS = 2_000  # the agent's final text kept in the result

# Why a turn failed, as the engine's error handling needs it.
RATE_LIMIT = "rate_limit"  # wait and retry: exit code 75, the `rate_limit_hit` rule
OUT_OF_BUDGET = "out_of_budget"  # quota, credits or the CLI's own budget cap: permanent
AUTH = "auth"  # not logged in, bad key: permanent
FAILED = "failed"  # anything else the agent reported: the plan's error rules decide

# Provider messages, checked in this order: a quota error often arrives as an HTTP 429.
_OUT_OF_BUDGET = re.compile(
    r"insufficient.?quota|quota exceeded|exceeded your current quota|credit balance is too low"
    r"|out of credits|purchase more credits|billing|budget.?exceeded|max.?budget"
    r"|insufficient.?credits",
    re.IGNORECASE,
)
_AUTH = re.compile(
    r"authenticat|unauthori[sz]ed|\b401\b|invalid.{0,12}api.?key"
    r"|api.?key.{0,20}(missing|invalid|not set)|please run /login|not logged in"
    r"|log ?in again|refresh token|oauth token",
    re.IGNORECASE,
)
_RATE_LIMIT = re.compile(
    r"rate.?limit|too many requests|\b429\b|usage limit|resource.?exhausted", re.IGNORECASE
)


def failure_in(message: str) -> str | None:
    """The failure kind a provider's error message names, if it names one."""
    for kind, pattern in (
        (OUT_OF_BUDGET, _OUT_OF_BUDGET),
        (AUTH, _AUTH),
        (RATE_LIMIT, _RATE_LIMIT),
    ):
        if pattern.search(message):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class TurnSettings:
    """One non-interactive turn of an agent CLI, as the preset turns it into an argv."""

    prompt: str
    model: str | None = None
    permissions: str | None = None
    args: tuple[str, ...] = ()
    session_id: str | None = None  # continue this session of the agent (None: a new one)
    restore_history: bool = False  # for CLIs whose history is a file, not a session id
    state_dir: Path | None = None  # where such a CLI keeps its files for this task


@dataclass
class AgentReport:
    """What a turn's output said: session, final text, cost, tokens, turns and failure."""

    session_id: str | None = None
    model: str | None = None
    text: str = ""
    cost: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    tokens_seen: bool = False
    turns: int | None = None
    finished: bool = False  # the CLI's terminal event (its result) was read
    failure: str | None = None
    error: str = ""
    tool_errors: int = 0
    transcript: deque[str] = field(default_factory=lambda: deque(maxlen=TRANSCRIPT_LINES))

    def note(self, line: str) -> None:
        line = line.rstrip()
        if line:
            self.transcript.append(line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + "…")

    def fail(self, message: str, kind: str | None = None) -> None:
        """Record the turn's failure; its kind from the message unless the CLI said it."""
        self.error = message.strip()
        self.failure = kind or failure_in(message) or FAILED
        self.note(f"error: {self.error}")

    def add_tokens(self, input_tokens: Any, output_tokens: Any) -> None:
        self.input_tokens += _count(input_tokens)
        self.output_tokens += _count(output_tokens)
        self.tokens_seen = True

    def add_turns(self, count: int = 1) -> None:
        self.turns = (self.turns or 0) + count

    def figures(self, agent: str) -> dict[str, Any]:
        """The result fields of the turn (the budget reads `cost` and `tokens`)."""
        figures: dict[str, Any] = {"agent": agent}
        if self.session_id:
            figures["session_id"] = self.session_id
        if self.model:
            figures["model"] = self.model
        if self.cost is not None:
            figures["cost"] = round(self.cost, 6)
        if self.tokens_seen:
            figures["tokens"] = self.input_tokens + self.output_tokens
            figures["input_tokens"] = self.input_tokens
            figures["output_tokens"] = self.output_tokens
        if self.turns is not None:
            figures["turns"] = self.turns
        if self.tool_errors:
            figures["tool_errors"] = self.tool_errors
        if self.text:
            figures["summary"] = self.text[-SUMMARY_CHARS:]
        if self.failure is not None:
            figures["agent_error"] = self.failure
            figures["agent_error_message"] = self.error[:LINE_CHARS]
        return figures


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def number(value: Any) -> float | None:
    """A JSON number as a float (None for anything else, booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class EventReader(Protocol):
    """Reads one CLI's output, line by line, into a report."""

    report: AgentReport

    def line(self, text: str) -> None: ...

    def finish(self, exit_code: int | None) -> None:
        """The output ended and the process exited with `exit_code`."""


class JsonLinesReader:
    """A reader of JSONL events; a line that is not a JSON object goes to the transcript."""

    def __init__(self) -> None:
        self.report = AgentReport()

    def line(self, text: str) -> None:
        try:
            event = json.loads(text)
        except ValueError:
            self.report.note(text)  # stderr shares the pipe: warnings, a crash's last words
            return
        if isinstance(event, dict):
            self.event(event)
        else:
            self.report.note(text)

    def event(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, exit_code: int | None) -> None:
        """Nothing more to read; a reader may conclude from what it did not see."""


class LineSplitter:
    """Cuts a byte stream into lines, keeping a partial last line until more arrives."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.pending = ""

    def feed(self, chunk: str) -> None:
        self.pending += chunk
        *complete, self.pending = self.pending.split("\n")
        for text in complete:
            if text.strip():
                self.on_line(text)

    def close(self) -> None:
        """The stream ended: a last line without a newline (a truncated event) is read too."""
        if self.pending.strip():
            self.on_line(self.pending)
        self.pending = ""


Resumes = Literal["session", "history"] | None


@dataclass(frozen=True, slots=True)
class AgentPreset:
    """How one agent CLI takes a non-interactive turn and reports on it."""

    name: str
    program: str
    install: str  # the command that installs the program
    checked_version: str  # the version whose documentation and source the preset follows
    arguments: Callable[[TurnSettings], list[str]]  # the argv after the program
    reader: Callable[[], EventReader]
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default_permissions: str | None = None
    resumes: Resumes = None

    def permission_args(self, chosen: str | None) -> list[str]:
        mode = chosen or self.default_permissions
        return list(self.permissions[mode]) if mode is not None else []


def guarded_prompt(prompt: str) -> str:
    """A prompt that starts with '-' would be read as an option: a leading space prevents it."""
    return f" {prompt}" if prompt.startswith("-") else prompt
