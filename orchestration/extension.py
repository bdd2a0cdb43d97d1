"""The public extension API: everything a plugin may import from the engine (docs/plugins.md).

Plugins, the bundled ones included, import only `orchestration.hookimpl` and this module
(tests/test_boundaries.py checks it). Here are the values plugins exchange with the engine
(action kinds, validators, notifiers and their data) and, under stable names, the engine's
helpers a plugin may use: running a program safely, rule expressions, the requirements check,
signed webhooks.
"""

from __future__ import annotations

import importlib
import os
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.core.attempt_logs import OutputWriter
from orchestration.core.errors import OrchestrationError, RuleError
from orchestration.core.models import TaskSpec
from orchestration.core.safe_git import run_git
from orchestration.core.terminal_text import strip_control

if TYPE_CHECKING:
    from orchestration.engine.actions import (
        OUTPUT_TAIL_CHARS,
        ProcessResult,
        fill_placeholders,
        run_process,
    )
    from orchestration.engine.quality import acceptance_check
    from orchestration.pluginhost.webhooks import (
        WebhookConfig,
        WebhookConfigError,
        WebhookSender,
        webhook_notifier,
    )
    from orchestration.pluginhost.webhooks import config_from_env as webhook_config_from_env
    from orchestration.pluginhost.webhooks import verify_signature as verify_webhook_signature
    from orchestration.rules.expressions import Expression, compile_expression

# Engine helpers re-exported under stable names: {public name: (module, name there)}. They are
# imported on first use, because those modules import this one (and most plugins need few).
LAZY_EXPORTS: dict[str, tuple[str, str]] = {
    "run_process": ("orchestration.engine.actions", "run_process"),
    "ProcessResult": ("orchestration.engine.actions", "ProcessResult"),
    "fill_placeholders": ("orchestration.engine.actions", "fill_placeholders"),
    "OUTPUT_TAIL_CHARS": ("orchestration.engine.actions", "OUTPUT_TAIL_CHARS"),
    "Expression": ("orchestration.rules.expressions", "Expression"),
    "compile_expression": ("orchestration.rules.expressions", "compile_expression"),
    "acceptance_check": ("orchestration.engine.quality", "acceptance_check"),
    "WebhookConfig": ("orchestration.pluginhost.webhooks", "WebhookConfig"),
    "WebhookConfigError": ("orchestration.pluginhost.webhooks", "WebhookConfigError"),
    "WebhookSender": ("orchestration.pluginhost.webhooks", "WebhookSender"),
    "webhook_config_from_env": ("orchestration.pluginhost.webhooks", "config_from_env"),
    "webhook_notifier": ("orchestration.pluginhost.webhooks", "webhook_notifier"),
    "verify_webhook_signature": ("orchestration.pluginhost.webhooks", "verify_signature"),
}

__all__ = [
    "ERROR_KINDS",
    "NOTIFY_TIMEOUT_SECONDS",
    "OUTPUT_TAIL_CHARS",
    "STAGES",
    "ActionInput",
    "ActionKind",
    "ActionResult",
    "BaselineInput",
    "CheckResult",
    "Expression",
    "Notification",
    "Notifier",
    "OrchestrationError",
    "PreflightInput",
    "ProcessResult",
    "ProjectEnvironment",
    "RuleError",
    "TaskSpec",
    "ValidationInput",
    "Validator",
    "WebhookConfig",
    "WebhookConfigError",
    "WebhookSender",
    "acceptance_check",
    "compile_expression",
    "fill_placeholders",
    "run_git",  # a plugin that runs git runs it the safe way
    "run_process",
    "strip_control",  # a plugin that prints untrusted text cleans it
    "verify_webhook_signature",
    "webhook_config_from_env",
    "webhook_notifier",
]


def __getattr__(name: str) -> Any:
    """The engine helper `name` of LAZY_EXPORTS, imported on first use."""
    try:
        module_name, attribute = LAZY_EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attribute)
    globals()[name] = value  # later lookups find it without this function
    return value


STAGES = ("syntax", "requirements", "quality", "testing")
ERROR_KINDS = ("transient", "permanent", "timeout")
# How long the engine waits for a notifier's `notify` (seconds); a webhook's retries fit in it.
NOTIFY_TIMEOUT_SECONDS = 10.0
# Variables that would make a tool colour its output for a terminal nobody reads.
COLOUR_FORCING_VARIABLES = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")


@dataclass(frozen=True, slots=True)
class ProjectEnvironment:
    """The project's own environment, where validators and the test baseline run their commands.

    `python` is the project's interpreter (an absolute path, or a name that `command_prefix`
    resolves, e.g. `python` under `uv run`); `command_prefix` goes before every command (e.g.
    `("uv", "run")`); `env` holds the plan's variables; `source` says how it was chosen.
    """

    python: str
    command_prefix: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    source: str = "the python3 on PATH"

    @classmethod
    def on_path(cls) -> ProjectEnvironment:
        """The interpreter on PATH (python3, else python): the default for a bare workdir."""
        for name in ("python3", "python"):
            found = shutil.which(name)
            if found:
                return cls(found, source=f"the {name} on PATH")
        return cls("python3", source="python3 (none found on PATH)")

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` as run in this environment: the command prefix, then argv."""
        return [*self.command_prefix, *argv]

    def python_command(self, *args: str) -> list[str]:
        """The project's interpreter with `args`, e.g. `python_command("-m", "pytest")`."""
        return self.command([self.python, *args])

    @property
    def bin_dir(self) -> Path | None:
        """The scripts directory of the virtual environment `python` belongs to, if any."""
        if not os.path.isabs(self.python):
            return None
        scripts = Path(self.python).parent  # not resolved: a venv's python links outside it
        return scripts if (scripts.parent / "pyvenv.cfg").is_file() else None

    def process_env(self) -> dict[str, str]:
        """The variables of a validator's process: ours, the venv activated, the plan's, no colour.

        Colour is switched off (`NO_COLOR=1`, forcing variables removed) so that no escape codes
        reach the agent's feedback, and no bytecode is written into the project.
        """
        env = dict(os.environ)
        if self.bin_dir is not None:  # what `activate` does: the venv's tools come first
            env["VIRTUAL_ENV"] = str(self.bin_dir.parent)
            env["PATH"] = os.pathsep.join([str(self.bin_dir), env.get("PATH", "")])
            env.pop("PYTHONHOME", None)
        env.update(self.env)
        for name in COLOUR_FORCING_VARIABLES:
            env.pop(name, None)
        env["NO_COLOR"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def find(self, program: str, workdir: Path) -> str | None:
        """Where `program` would start from: a path (relative to workdir), else the PATH search
        of this environment's processes (its venv's scripts first); None when it is nowhere."""
        if os.sep in program or "/" in program:
            path = workdir / Path(program).expanduser()
            return str(path) if path.is_file() and os.access(path, os.X_OK) else None
        return shutil.which(program, path=self.process_env().get("PATH"))

    def describe(self) -> str:
        """One line for a person: the interpreter, the prefix and how it was chosen."""
        prefix = " ".join(self.command_prefix)
        shown = f"{prefix} {self.python}" if prefix else self.python
        return f"{shown} ({self.source})"


@dataclass(frozen=True, slots=True)
class ActionInput:
    """What a plugin action kind sees of one attempt of a task whose `action.kind` it provides."""

    run_id: str
    task: TaskSpec
    attempt: int
    workdir: Path
    args: Mapping[str, Any]  # the task's `action.args`, placeholders not filled
    timeout_seconds: float  # the attempt is abandoned (a timeout) after this long
    stop: threading.Event  # set when the engine wants the attempt to end: return soon
    feedback: str = ""  # the validators' suggestions from the previous attempt
    answer: str = ""  # a human's answer to a clarify breakpoint
    # The attempt's live log: `output.write(text)` as work goes on (e.g. an agent's events as
    # lines) shows in `orch logs -f`, the console and the dashboard. None in tests that run a
    # kind alone. What `ActionResult.output` holds is written too if nothing was.
    output: OutputWriter | None = None


@dataclass(frozen=True, slots=True)
class ActionResult:
    """How an attempt of a plugin action ended.

    `result` is what a shell action prints as `ORCH_RESULT`: `confidence`, `cost`, `spawn` (new
    tasks) and any figures the rules read as `result`. A failure is retried unless its
    `error_kind` is `permanent`.
    """

    succeeded: bool
    output: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    error_kind: str = "transient"  # for a failure: transient | permanent | timeout


@dataclass(frozen=True, slots=True)
class ActionKind:
    """A kind of work plans may name as `action: {kind: <name>, args: {...}}`.

    `run` is called on a worker thread, once per attempt, and returns an ActionResult. One
    that raises is a transient failure with the traceback as its output; one that returns
    anything else is a permanent failure; one that outlives the attempt's timeout is a timeout
    (its `stop` event is set and the engine stops waiting for it).
    """

    name: str
    run: Callable[[ActionInput], ActionResult]
    description: str = ""


@dataclass(frozen=True, slots=True)
class ValidationInput:
    """What a validator sees of one attempt."""

    run_id: str
    task: TaskSpec
    attempt: int
    workdir: Path
    changed_files: tuple[str, ...]
    exit_code: int | None
    output_tail: str
    result: Mapping[str, Any]
    options: Mapping[str, Any]
    context: Mapping[str, Any]
    timeout_seconds: float
    baseline: Mapping[str, Any] = field(default_factory=dict)  # this validator's run-start figures
    # Where to run the project's commands: its interpreter, prefix and variables.
    environment: ProjectEnvironment = field(default_factory=ProjectEnvironment.on_path)
    # The task is a milestone (tagged `milestone`): validators that check a selection of the
    # project (pytest's `select: affected`) check all of it here.
    milestone: bool = False


@dataclass(frozen=True, slots=True)
class BaselineInput:
    """What a validator's `baseline` callable sees once at run start, before any task ran."""

    run_id: str
    workdir: Path
    options: Mapping[str, Any]
    timeout_seconds: float
    environment: ProjectEnvironment = field(default_factory=ProjectEnvironment.on_path)


@dataclass(frozen=True, slots=True)
class PreflightInput:
    """What a validator's `preflight` callable sees when `orch validate` checks a plan."""

    workdir: Path
    options: Mapping[str, Any]
    environment: ProjectEnvironment


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One validator's verdict: `score` is 0..1; `figures` feed the rule context."""

    name: str
    stage: str
    passed: bool
    score: float
    message: str = ""
    figures: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "stage": self.stage,
            "passed": self.passed,
            "score": self.score,
            "message": self.message,
            "figures": dict(self.figures),
        }


@dataclass(frozen=True, slots=True)
class Validator:
    """A named check of a stage. `check` returns a CheckResult (anything else is a failed check).

    `baseline`, when given, is called once at run start; what it returns (plain JSON data) is
    handed back to every later check as `ValidationInput.baseline`.

    `preflight`, when given, is called by `orch validate` for each distinct set of options the
    plan gives the validator: it returns a problem (say what is missing and how to install it),
    or None when the validator can run in the project's environment.
    """

    name: str
    stage: str
    check: Callable[[ValidationInput], CheckResult]
    description: str = ""
    baseline: Callable[[BaselineInput], Mapping[str, Any]] | None = None
    preflight: Callable[[PreflightInput], str | None] | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    kind: str  # breakpoint_raised | breakpoint_resolved | run_finished | ...
    run_id: str
    title: str
    message: str
    severity: str = "medium"
    task_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notifier:
    name: str
    notify: Callable[[Notification], None]
