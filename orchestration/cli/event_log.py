"""`orch events follow [--run RUN] [--to DIR]`: the JSONL event log, printed or written to files."""

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from orchestration.cli.common import DbOption, err_console, open_store

POLL_SECONDS = 1.0  # how often a follower reads the store for new records


def follow(
    run_id: Annotated[
        str | None, typer.Option("--run", help="Only this run's records (default: every run).")
    ] = None,
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Write daily files DIR/events-YYYY-MM-DD.jsonl (with a cursor, so a restart "
            "repeats and loses nothing) instead of printing.",
        ),
    ] = None,
    retention_days: Annotated[
        int, typer.Option("--retention-days", min=1, help="With --to: delete older files.")
    ] = 14,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="Printing: begin with the oldest stored record."),
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="Read what is there, then exit (no following).")
    ] = False,
    poll: Annotated[
        float, typer.Option("--poll", min=0.05, help="Seconds between reads of the store.")
    ] = POLL_SECONDS,
    db: DbOption = None,
) -> None:
    """Follow every state change, decision, breakpoint, event and alert as JSON lines.

    One JSON object per line (fields in docs/operations.md). Printing starts with what comes
    next (--from-start: everything stored); --to DIR writes daily-rotated files and keeps going
    until Ctrl-C, which is how a service ships the log.
    """
    from orchestration.operations.event_log import Cursor, EventLogFiles, export_once, read_new

    store = open_store(db)
    try:
        if to is not None:
            files = EventLogFiles(to, retention_days)
            while True:
                written = export_once(store, files, run_id=run_id)
                if once:
                    err_console.print(f"{written} record(s) written to {to}", markup=False)
                    return
                time.sleep(poll)
        cursor = Cursor() if from_start or once else Cursor.at_end(store, run_id)
        while True:
            for entry in read_new(store, cursor, run_id):
                sys.stdout.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()
            if once:
                return
            time.sleep(poll)
    except KeyboardInterrupt:
        return
    finally:
        store.close()


def register_follow(events_app: typer.Typer) -> None:
    """Add `follow` to the `orch events` group that cli_events makes."""
    events_app.command("follow")(follow)
