"""The dashboard server's command-line options (`orch serve`, `python -m orchestration.web`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestration.web.config import (
    AUTH_FAILURES_PER_MINUTE,
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BODY_BYTES,
    RATE_BURST,
    RATE_PER_SECOND,
    STREAMS_PER_CLIENT,
)


def _default_token_file() -> Path:
    from orchestration.web.auth import default_token_file

    return default_token_file()


def serve(
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="ORCH_DB",
            help="Store URL (sqlite:///path or postgresql+psycopg://...). Default: the nearest "
            ".orchestration/state.db in this directory or a parent.",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; only loopback without --allow-remote."),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = DEFAULT_PORT,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow an address other machines can reach (put a TLS proxy in front).",
        ),
    ] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            envvar="ORCH_TOKEN_FILE",
            help="Where the access token is kept (created with mode 0600 on first start). "
            "Default: ~/.config/orchestration/dashboard-token.",
        ),
    ] = None,
    rotate_token: Annotated[
        bool,
        typer.Option("--rotate-token", help="Make a new token; every session ends."),
    ] = False,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Requests per second a token may make.")
    ] = RATE_PER_SECOND,
    burst: Annotated[
        int, typer.Option("--burst", help="Requests a token may make in one burst.")
    ] = RATE_BURST,
    session_hours: Annotated[
        float, typer.Option("--session-hours", help="How long a login lasts.")
    ] = 12.0,
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="A request body larger than this is refused (413) before it is read.",
        ),
    ] = MAX_BODY_BYTES,
    auth_failures: Annotated[
        int,
        typer.Option(
            "--auth-failures",
            min=1,
            help="Failed authentications a client address may make per minute; then 429.",
        ),
    ] = AUTH_FAILURES_PER_MINUTE,
    streams_per_client: Annotated[
        int,
        typer.Option(
            "--streams-per-client",
            min=1,
            help="Event streams a client address may hold open at once; then 429.",
        ),
    ] = STREAMS_PER_CLIENT,
    event_log: Annotated[
        Path | None,
        typer.Option(
            "--event-log",
            help="Also write the JSONL event log to DIR/events-YYYY-MM-DD.jsonl while serving "
            "(as `orch events follow --to DIR`).",
        ),
    ] = None,
    event_log_days: Annotated[
        int, typer.Option("--event-log-days", min=1, help="Delete event log files older than this.")
    ] = 14,
) -> None:
    """Serve the review dashboard and REST API while runs go on in other processes.

    Listens on 127.0.0.1:8765 by default. Every request needs the access token, printed on
    first start: log in with it in the browser, or send 'Authorization: Bearer TOKEN'.
    """
    from orchestration.web.server import ServeOptions
    from orchestration.web.server import serve as run_server

    options = ServeOptions(
        db=db,
        host=host,
        port=port,
        allow_remote=allow_remote,
        token_file=token_file or _default_token_file(),
        rotate_token=rotate_token,
        rate_per_second=rate_limit,
        rate_burst=burst,
        session_hours=session_hours,
        max_body_bytes=max_body_bytes,
        auth_failures_per_minute=auth_failures,
        streams_per_client=streams_per_client,
        event_log=event_log,
        event_log_days=event_log_days,
    )
    run_server(options, sys.stdout)


def register(app: typer.Typer) -> None:
    """Add the `serve` command to a typer application (`orch`, or `python -m orchestration.web`)."""
    app.command("serve")(serve)
