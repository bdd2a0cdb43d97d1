"""Shows a run's progress: a live rich bar on a terminal, plain timestamped lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from textwrap import shorten
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestration.cli.task_table import STATE_STYLES
from orchestration.core.attempt_logs import last_line, log_path
from orchestration.core.models import BreakpointRecord, TaskRecord
from orchestration.core.terminal_text import TerminalConsole, strip_control

QUIET_STATES = frozenset({"pending", "ready"})  # too many to print one line each on big runs
PLAIN_STATUS_SECONDS = 30.0  # without a terminal: how often running attempts are reported
LINE_CHARS = 160  # a detail or output line shown in plain mode is shortened at a word to this
MAX_RUNNING_SHOWN = 12  # attempts listed in the live view (the bar counts them all)
DETAIL_CHARS = 160  # a progress line's reason is cut to this many characters, at a word


def clip_words(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters at a space, with an ellipsis to say so."""
    if len(text) <= limit:
        return text
    head = text[: limit - 2]
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut.rstrip(" ,;:") + " …"


class RunDisplay:
    """An Observer for the loop. Use as a context manager around `run_until_stopped`.

    On a terminal it keeps a live view: the progress bar and, for each attempt under way, its
    task, attempt, elapsed time and last line of output (read from the attempt's log). Otherwise
    it prints timestamped lines, and every `PLAIN_STATUS_SECONDS` one line per attempt still
    running, so a long agent turn is never silent.
    """

    def __init__(
        self,
        total: int,
        console: Console | None = None,
        *,
        live: bool | None = None,
        status_every: float = PLAIN_STATUS_SECONDS,
    ):
        self.console = console or TerminalConsole(stderr=True)
        self.status_every = status_every
        self.live = self.console.is_terminal if live is None else live
        self.total = total
        self.finished = 0
        self.progress: Progress | None = None
        self.bar: Any = None
        self.running: dict[str, tuple[int, float]] = {}  # task id -> (attempt, monotonic start)
        self.log_of: Callable[[str, int], Path] | None = None
        self._view: Live | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._print_lock = threading.Lock()

    def follow_logs(self, plan_path: str, run_id: str) -> None:
        """Show the last line of each running attempt's log (attempt_logs)."""
        self.log_of = partial(log_path, plan_path, run_id)

    def __enter__(self) -> RunDisplay:
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.bar = self.progress.add_task("tasks", total=self.total)
            self._view = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._view.start()
        else:
            self._ticker = threading.Thread(
                target=self._print_running_now_and_then, name="orch-display", daemon=True
            )
            self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._view is not None:
            self._view.stop()
        if self._ticker is not None:
            self._ticker.join()

    def __rich__(self) -> RenderableType:
        """What the live view shows at each refresh: the bar and the attempts under way."""
        assert self.progress is not None
        rows = self._running_rows()
        if not rows:
            return self.progress
        table = Table.grid(padding=(0, 1))
        table.add_column(style="blue", no_wrap=True)
        table.add_column(no_wrap=True)
        table.add_column(style="dim", no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        for task_id, attempt, elapsed, last in rows:
            table.add_row(f"▶ {task_id}", f"attempt {attempt}", elapsed, Text(last))
        return Group(self.progress, table)

    def _running_rows(self) -> list[tuple[str, int, str, str]]:
        now = time.monotonic()
        rows = []
        for task_id, (attempt, since) in sorted(dict(self.running).items())[:MAX_RUNNING_SHOWN]:
            last = last_line(self.log_of(task_id, attempt)) if self.log_of else ""
            rows.append((task_id, attempt, elapsed(now - since), last))
        return rows

    def _print_running_now_and_then(self) -> None:
        while not self._stop.wait(self.status_every):
            for task_id, attempt, elapsed, last in self._running_rows():
                said = f": {shorten(last, LINE_CHARS, placeholder=' …')}" if last else ""
                self._line(f"  {task_id} attempt {attempt} running for {elapsed}{said}")

    def _line(self, text: str, style: str = "") -> None:
        text = strip_control(text)  # titles, details and messages come from plans and agents
        if self.live:
            self.console.print(text, style=style, highlight=False, markup=False)
        else:
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            with self._print_lock:
                print(f"{stamp} {text}", file=sys.stderr, flush=True)

    def task_started(self, task: TaskRecord) -> None:
        self.running[task.task_id] = (task.attempts, time.monotonic())
        if self.progress is not None:
            self.progress.update(self.bar, description=f"{len(self.running)} running")
        self._line(f"▶ {task.task_id}: attempt {task.attempts}", "blue")

    def task_changed(self, task: TaskRecord, state: str, detail: str) -> None:
        if state != "running":
            self.running.pop(task.task_id, None)
            if self.progress is not None:
                self.progress.update(self.bar, description=f"{len(self.running)} running")
        if state in QUIET_STATES or state == "running":
            return
        if state in ("completed", "failed", "cancelled"):
            self.finished += 1
            if self.progress is not None:
                self.progress.update(self.bar, completed=self.finished)
        first = detail.splitlines()[0] if detail else ""
        detail = clip_words(first, LINE_CHARS) if first else ""
        self._line(f"  {task.task_id} → {state} {detail}", STATE_STYLES.get(state, ""))

    def breakpoint_raised(self, breakpoint: BreakpointRecord) -> None:
        self._line(
            f"⏸ breakpoint {breakpoint.id} on {breakpoint.task_id} [{breakpoint.rule}]: "
            f"{breakpoint.message}",
            "bold yellow",
        )

    def message(self, text: str) -> None:
        self._line(text, "yellow")


def elapsed(seconds: float) -> str:
    """A running attempt's age as a clock: 7s, 2m05s, 1h02m."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
