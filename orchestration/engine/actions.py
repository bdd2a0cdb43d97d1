"""Runs the work of one attempt: a shell argv, an agent command, a python callable or a plugin's
kind."""

from __future__ import annotations

import codecs
import contextlib
import copy
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from orchestration.core import bounded_regex, kept_threads
from orchestration.core.attempt_logs import OutputWriter
from orchestration.core.errors import OrchestrationError
from orchestration.core.guarded import ThreadCall
from orchestration.core.inputfiles import load_json, read_capped
from orchestration.core.models import (
    AgentAction,
    ErrorRules,
    PluginAction,
    PythonAction,
    ShellAction,
    TaskSpec,
)
from orchestration.extension import ERROR_KINDS, ActionInput, ActionKind, ActionResult

logger = logging.getLogger(__name__)

OUTPUT_TAIL_CHARS = 4_000
RESULT_MAX_BYTES = 1_000_000
KILL_GRACE_SECONDS = 3.0
EXIT_RATE_LIMITED = 75
EXIT_TIMEOUT = 124
PLACEHOLDER = re.compile(r"\{(prompt|feedback|answer|task_id|workdir|python|run_id|attempt)\}")


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """Everything an attempt needs; built by the loop from the stored task."""

    run_id: str
    task: TaskSpec
    attempt: int
    workdir: Path
    timeout_seconds: float
    feedback: str = ""
    answer: str = ""
    agent_command: tuple[str, ...] | None = None
    plugin_kind: ActionKind | None = None  # the loaded plugin's kind for a PluginAction
    agent_session: str | None = None  # an agent preset's session from an earlier attempt
    inline: bool = False  # a python action run in the loop's thread: no timeout, no thread


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    exit_code: int | None
    timed_out: bool
    duration_seconds: float
    output_tail: str
    result: dict[str, Any] = field(default_factory=dict)
    error_kind: str = "none"  # none | transient | permanent | timeout
    command: tuple[str, ...] = ()
    interrupted: bool = False  # the engine stopped it; its exit code says nothing about the work
    declared: bool = False  # a plugin said the error kind itself: exit-code rules do not apply

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def fill_placeholders(template: str, values: Mapping[str, str]) -> str:
    """Replace the documented `{name}` placeholders only; other braces stay literal."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def classify(exit_code: int | None, timed_out: bool) -> str:
    if timed_out or exit_code == EXIT_TIMEOUT:
        return "timeout"
    if exit_code == 0:
        return "none"
    if exit_code is None:
        return "permanent"  # the program could not be started at all
    return "transient"


def classify_error(outcome: ActionOutcome, rules: ErrorRules) -> str:
    """The error kind by the plan's rules: exit codes first, then output patterns.

    A pattern that runs past the time limit counts as not found (classify_error_noting says so).
    """
    return classify_error_noting(outcome, rules)[0]


def classify_error_noting(outcome: ActionOutcome, rules: ErrorRules) -> tuple[str, list[str]]:
    """classify_error, with a note for each error pattern that was stopped at the time limit."""
    notes: list[str] = []
    if outcome.timed_out:
        return "timeout", notes
    if outcome.exit_code == 0 or outcome.interrupted:
        return ("none" if outcome.exit_code == 0 else outcome.error_kind), notes
    if outcome.exit_code is None:
        return "permanent", notes
    if outcome.declared:
        # The plugin's exit code is a stand-in (1 for any failure); only what its output says
        # can make a failure it called transient a permanent one.
        permanent = _any_found(rules.permanent_patterns, "permanent", outcome, notes)
        kind = "permanent" if permanent and outcome.error_kind == "transient" else None
        return kind or outcome.error_kind, notes
    for kind, codes in (
        ("timeout", rules.timeout_exit_codes),
        ("permanent", rules.permanent_exit_codes),
        ("transient", rules.transient_exit_codes),
    ):
        if outcome.exit_code in codes:
            return kind, notes
    for kind, patterns in (
        ("permanent", rules.permanent_patterns),
        ("transient", rules.transient_patterns),
    ):
        if _any_found(patterns, kind, outcome, notes):
            return kind, notes
    return outcome.error_kind, notes


def _any_found(patterns: list[str], kind: str, outcome: ActionOutcome, notes: list[str]) -> bool:
    where = f"defaults.errors.{kind}_patterns"
    for pattern in patterns:
        try:
            if bounded_regex.search(pattern, outcome.output_tail, where=where, from_end=True):
                return True
        except bounded_regex.PatternTimeout as error:
            logger.warning("%s; stopped, treated as not found", error)
            notes.append(f"[orchestration] {error}; stopped, treated as not found")
    return False


def placeholder_values(request: ActionRequest) -> dict[str, str]:
    """The values of the documented placeholders but `{prompt}` (which is made of them)."""
    return {
        "feedback": request.feedback,
        "answer": request.answer,
        "task_id": request.task.id,
        "workdir": str(request.workdir),
        "python": sys.executable,
        "run_id": request.run_id,
        "attempt": str(request.attempt),
    }


def build_argv(request: ActionRequest) -> list[str]:
    """The argv of a shell or agent action with its placeholders filled in."""
    action = request.task.action
    values = placeholder_values(request)
    if isinstance(action, ShellAction):
        return [fill_placeholders(arg, values) for arg in action.run]
    assert isinstance(action, AgentAction)
    values["prompt"] = fill_placeholders(action.prompt, values)
    template = action.command or list(request.agent_command or ())
    return [fill_placeholders(arg, values) for arg in template]


def action_env(
    request: ActionRequest, result_path: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    """The environment of a process action: the engine's, the action's own, the ORCH_ names."""
    return {
        **os.environ,
        **extra,
        "ORCH_RUN_ID": request.run_id,
        "ORCH_TASK_ID": request.task.id,
        "ORCH_ATTEMPT": str(request.attempt),
        "ORCH_RESULT": str(result_path),
    }


def read_result(path: Path) -> tuple[dict[str, Any], str]:
    """The JSON object an action wrote to ORCH_RESULT, and a note when it was unusable."""
    if not path.exists() or path.stat().st_size == 0:
        return {}, ""
    try:
        # The action made this file: a FIFO, a device or NaN must not hang or poison the engine.
        raw = read_capped(path, RESULT_MAX_BYTES)
        data = load_json(raw.decode("utf-8"), file=str(path))
    except OrchestrationError as error:
        return {}, f"[orchestration] ORCH_RESULT ignored: {error.message}"
    except UnicodeDecodeError as error:
        return {}, f"[orchestration] ORCH_RESULT ignored: not valid JSON ({error})"
    if not isinstance(data, dict):
        return {}, "[orchestration] ORCH_RESULT ignored: expected a JSON object"
    return data, ""


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    # The action runs in its own session: signal the whole group so its children stop too.
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _drain(stream: Any, tail: deque[str], on_output: Callable[[str], None] | None) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in iter(lambda: stream.read1(8192), b""):
        text = decoder.decode(chunk)  # a character split between two reads stays whole
        tail.append(text)
        if on_output is not None:
            on_output(text)
        while sum(map(len, tail)) > OUTPUT_TAIL_CHARS * 2 and len(tail) > 1:
            tail.popleft()


@dataclass(frozen=True, slots=True)
class ProcessResult:
    exit_code: int | None  # None: the program could not be started
    timed_out: bool
    interrupted: bool  # stopped because the engine was asked to stop
    output: str


class StopSignal(threading.Event):
    """A stop for one attempt: set by itself (a rule stopped it) or by the engine's stop."""

    def __init__(self, parent: threading.Event) -> None:
        super().__init__()
        self.parent = parent

    def is_set(self) -> bool:
        return super().is_set() or self.parent.is_set()


def _wait(
    process: subprocess.Popen[bytes], deadline: float, stop: threading.Event | None
) -> tuple[bool, bool]:
    """Wait for the process; kill its group on timeout or stop. Returns (timed out, interrupted)."""
    while True:
        try:
            process.wait(timeout=0.05)
            return False, False
        except subprocess.TimeoutExpired:
            timed_out = time.monotonic() >= deadline
            interrupted = stop is not None and stop.is_set()
            if timed_out or interrupted:
                _stop_group(process)
                return timed_out, interrupted and not timed_out


def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout_seconds: float,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> ProcessResult:
    """Run argv (never through a shell) in its own session, with a timeout and a stop signal.

    `on_start` receives the process id (also its process group id) once it runs; `on_output`
    every piece of its output as it arrives (on the reading thread).
    """
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except (OSError, ValueError) as error:
        return ProcessResult(None, False, False, f"could not start {argv[0]!r}: {error}")
    if on_start is not None:
        on_start(process.pid)
    tail: deque[str] = deque()
    reader = threading.Thread(target=_drain, args=(process.stdout, tail, on_output), daemon=True)
    reader.start()
    timed_out, interrupted = _wait(process, time.monotonic() + timeout_seconds, stop)
    # Whatever the action left behind in its session (a background server, a child that
    # ignored SIGTERM) would hold the output pipe open and outlive the attempt: end it.
    _signal_group(process.pid, signal.SIGKILL)
    reader.join(timeout=KILL_GRACE_SECONDS)
    if not reader.is_alive() and process.stdout:
        process.stdout.close()
    output = "".join(tail)[-OUTPUT_TAIL_CHARS:]
    if timed_out:
        output += f"\n[orchestration] killed after {timeout_seconds:g}s timeout"
    if interrupted:
        output += "\n[orchestration] stopped: the engine is shutting down"
    return ProcessResult(process.returncode, timed_out, interrupted, output)


def _run_command(
    request: ActionRequest,
    stop: threading.Event | None,
    on_start: Callable[[int], None] | None,
    on_output: Callable[[str], None] | None = None,
) -> ActionOutcome:
    action = request.task.action
    assert isinstance(action, ShellAction | AgentAction)
    argv = build_argv(request)
    if not argv:
        return ActionOutcome(None, False, 0.0, "agent action has no command", {}, "permanent")
    cwd = request.workdir / action.cwd if action.cwd else request.workdir
    with tempfile.TemporaryDirectory(prefix="orch-result-") as tmp:
        result_path = Path(tmp) / "result.json"
        env = action_env(request, result_path, action.env)
        started = time.monotonic()
        ran = run_process(
            argv,
            cwd=cwd,
            env=env,
            timeout_seconds=request.timeout_seconds,
            stop=stop,
            on_start=on_start,
            on_output=on_output,
        )
        duration = time.monotonic() - started
        result, note = read_result(result_path)
    output = f"{ran.output}\n{note}"[-OUTPUT_TAIL_CHARS:] if note else ran.output
    return ActionOutcome(
        ran.exit_code,
        ran.timed_out,
        duration,
        output,
        result,
        classify(ran.exit_code, ran.timed_out),
        tuple(argv),
        interrupted=ran.interrupted,
    )


def resolve_callable(reference: str) -> Callable[..., Any]:
    """Import `package.module:function`; ImportError or AttributeError when it is missing."""
    module_name, _, attribute = reference.partition(":")
    function = getattr(importlib.import_module(module_name), attribute)
    if not callable(function):
        raise TypeError(f"{reference} is not callable")
    return function


def _run_python(request: ActionRequest, stop: threading.Event | None) -> ActionOutcome:
    """Call the function: inline in the loop's thread (fast, no timeout) or on a kept action
    thread, abandoned when the timeout passes or the engine stops (a thread cannot be killed)."""
    action = request.task.action
    assert isinstance(action, PythonAction)
    label = (action.call,)
    try:
        function = resolve_callable(action.call)
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        message = f"cannot load {action.call}: {error}"
        return ActionOutcome(None, False, 0.0, message, {}, "permanent", label)
    if request.inline:
        started = time.monotonic()
        try:
            returned = function(**action.args)
        except (Exception, SystemExit):  # even sys.exit() is the action's failure
            # KeyboardInterrupt is not caught: an action run in the loop's own thread must
            # not swallow the user's Ctrl-C.
            output = traceback.format_exc()[-OUTPUT_TAIL_CHARS:]
            return ActionOutcome(
                1, False, time.monotonic() - started, output, {}, "transient", label
            )
        return _python_outcome(returned, time.monotonic() - started, label)
    call = kept_threads.KEPT_THREADS.call(
        lambda: function(**action.args),
        name=f"action-{action.call}",
        timeout=request.timeout_seconds,
        stop=stop,
    )
    if not call.returned:
        return _unfinished_outcome(call, request, label)
    return _python_outcome(call.value, call.duration, label)


def _python_outcome(returned: Any, duration: float, label: tuple[str, ...]) -> ActionOutcome:
    result = returned if isinstance(returned, dict) else {}
    output = "" if returned is None or isinstance(returned, dict) else str(returned)
    return ActionOutcome(0, False, duration, output[-OUTPUT_TAIL_CHARS:], result, "none", label)


def _unfinished_outcome(
    call: ThreadCall, request: ActionRequest, label: tuple[str, ...], *, declared: bool = False
) -> ActionOutcome:
    """The outcome of a guarded call that raised, timed out or was stopped; `declared`: a
    plugin's, whose stand-in exit code the plan's exit-code rules must not read."""
    if call.timed_out:
        note = f"[orchestration] abandoned after {request.timeout_seconds:g}s timeout"
        return ActionOutcome(None, True, call.duration, note, {}, "timeout", label)
    if call.interrupted:
        note = "[orchestration] stopped: the engine is shutting down"
        return ActionOutcome(None, False, call.duration, note, {}, "transient", label, True)
    output = call.traceback
    return ActionOutcome(1, False, call.duration, output, {}, "transient", label, declared=declared)


def _run_plugin(
    request: ActionRequest, stop: threading.Event | None, output: OutputWriter | None = None
) -> ActionOutcome:
    """Call the plugin's `run` on its own thread: the timeout and the engine's stop hold even
    when the plugin ignores its stop event (the thread is then left behind, logged)."""
    action = request.task.action
    assert isinstance(action, PluginAction)
    label = (f"{action.kind}",)
    kind = request.plugin_kind
    if kind is None or kind.name != action.kind:
        message = f"no loaded plugin provides action kind '{action.kind}' (see `orch plugins`)"
        return ActionOutcome(None, False, 0.0, message, {}, "permanent", label)
    own_stop = threading.Event()
    call_input = ActionInput(
        run_id=request.run_id,
        task=request.task,
        attempt=request.attempt,
        workdir=request.workdir,
        args=MappingProxyType(copy.deepcopy(action.args)),  # the stored spec stays as written
        timeout_seconds=request.timeout_seconds,
        stop=own_stop,
        feedback=request.feedback,
        answer=request.answer,
        output=output,
    )
    call = kept_threads.KEPT_THREADS.call(
        lambda: kind.run(call_input),
        name=f"action-{action.kind}",
        timeout=request.timeout_seconds,
        stop=stop,
        tell_to_stop=own_stop,
        grace=KILL_GRACE_SECONDS,
    )
    if not call.returned:
        return _unfinished_outcome(call, request, label, declared=True)
    return _plugin_outcome(action.kind, call.value, call.duration, label)


def _plugin_outcome(
    kind: str, value: Any, duration: float, label: tuple[str, ...]
) -> ActionOutcome:
    if not isinstance(value, ActionResult):
        message = f"action kind '{kind}' returned {_short(value)}; expected an ActionResult"
        return ActionOutcome(None, False, duration, message, {}, "permanent", label)
    output = str(value.output)[-OUTPUT_TAIL_CHARS:]
    result, note = _plain_result(value.result)
    if note:
        output = f"{output}\n{note}"[-OUTPUT_TAIL_CHARS:]
    if value.succeeded:
        return ActionOutcome(0, False, duration, output, result, "none", label)
    error_kind = value.error_kind if value.error_kind in ERROR_KINDS else "transient"
    timed_out = error_kind == "timeout"
    return ActionOutcome(1, timed_out, duration, output, result, error_kind, label, declared=True)


def _plain_result(result: Any) -> tuple[dict[str, Any], str]:
    """The plugin's result as the plain JSON object a shell action's ORCH_RESULT would be."""
    if not isinstance(result, Mapping):
        return {}, "[orchestration] result ignored: expected a mapping"
    try:
        encoded = json.dumps(dict(result), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        return {}, f"[orchestration] result ignored: not plain JSON data ({error})"
    if len(encoded) > RESULT_MAX_BYTES:
        return {}, f"[orchestration] result ignored: larger than {RESULT_MAX_BYTES} bytes"
    data: dict[str, Any] = json.loads(encoded)
    return data, ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def run_action(
    request: ActionRequest,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    output: OutputWriter | None = None,
) -> ActionOutcome:
    """Run one attempt of a task. Never raises for a failure of the action itself.

    `on_start` receives the process id of a shell or agent action once it runs; `output` its
    output as it comes (a plugin kind gets it as `ActionInput.output`; a python action's output
    is what it returns, written when it ends).
    """
    action = request.task.action
    if isinstance(action, PythonAction):
        return _run_python(request, stop)
    if isinstance(action, PluginAction):
        return _run_plugin(request, stop, output)
    on_output = output.write if output is not None else None
    if isinstance(action, AgentAction) and action.agent is not None:
        # Imported here: the agent turn builds on this module's process running.
        from orchestration.engine.agent_turns import run_agent_turn

        return run_agent_turn(request, stop, on_start, on_output)
    return _run_command(request, stop, on_start, on_output)
