"""`orch daemon`: run schedules, event triggers and the runs they start until SIGTERM."""

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestration.cli.common import DbOption, err_console, open_store


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)


def daemon(
    db: DbOption = None,
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Seconds between two ticks.")
    ] = 1.0,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir",
            help="Where the started runs' output goes (default: beside "
            "a SQLite store, in trigger-logs/).",
        ),
    ] = None,
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            min=0,
            help="On SIGTERM, how long to wait for the runs to drain before exiting anyway.",
        ),
    ] = 60.0,
) -> None:
    """Fire schedules and event triggers, and keep the runs they start going (resumed after a
    restart). SIGTERM or Ctrl-C: nothing new starts, the runs get SIGTERM and drain like
    `orch run` (running actions get their grace, then are retried on resume), the daemon waits
    for them and exits 0. The next daemon resumes them. See docs/triggers.md.
    """
    from orchestration.triggers.daemon import Daemon
    from orchestration.triggers.trigger_service import launch_context

    store = open_store(db)
    worker = Daemon(store, launch_context(store, log_dir))
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt  # a second signal: exit now; the runs drain on their own
        worker.stopping.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    err_console.print(f"orch daemon: store {store.display_url}; SIGTERM stops it", markup=False)
    try:
        worker.run(interval)
        err_console.print("stopping: no new runs start; the running ones drain", markup=False)
        left = worker.drain(drain_seconds)
        if left:
            err_console.print(f"runs still draining (pids {left}); exiting", markup=False)
    except KeyboardInterrupt:
        raise typer.Exit(128 + received[0]) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
    err_console.print("orch daemon stopped", markup=False)
