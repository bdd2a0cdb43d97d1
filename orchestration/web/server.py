"""Starting the dashboard: the bind check, the token, the printed address, uvicorn."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from orchestration.core.errors import OrchestrationError
from orchestration.core.hints import db_hint
from orchestration.store import masked_url, resolve_db_url
from orchestration.web.auth import load_or_create_token
from orchestration.web.config import (
    AUTH_FAILURES_PER_MINUTE,
    MAX_BODY_BYTES,
    STREAMS_PER_CLIENT,
    ServerConfig,
)

logger = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 2  # open event streams are cut after this on Ctrl-C


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db: str | None
    host: str
    port: int
    allow_remote: bool
    token_file: Path
    rotate_token: bool
    rate_per_second: float
    rate_burst: int
    session_hours: float
    max_body_bytes: int = MAX_BODY_BYTES
    auth_failures_per_minute: int = AUTH_FAILURES_PER_MINUTE
    streams_per_client: int = STREAMS_PER_CLIENT
    event_log: Path | None = None  # write the JSONL event log here while serving
    event_log_days: int = 14  # ...deleting its files older than this


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> tuple[str, ...]:
    """The Host headers a browser sends for a loopback address."""
    bare = host.strip("[]")
    names = {"127.0.0.1", "localhost", "[::1]", f"[{bare}]" if ":" in bare else bare}
    return tuple(sorted(names))


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse an address other machines can reach unless the user asked for it."""
    if is_loopback(host) or allow_remote:
        return
    raise OrchestrationError(
        f"refusing to listen on {host}: other machines could reach the dashboard. Use the "
        "default 127.0.0.1 (and an SSH tunnel), or pass --allow-remote behind a TLS proxy"
    )


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise OrchestrationError(
                f"cannot listen on {host}:{port}: {error.strerror or error}; choose another "
                "port with --port"
            ) from None


def url_for(host: str, port: int) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(options: ServeOptions, out: TextIO) -> None:
    """Check, print how to log in, and serve until Ctrl-C."""
    import uvicorn

    from orchestration.web.app import create_app

    check_bind(options.host, options.allow_remote)
    if not 0 < options.port < 65536:
        raise OrchestrationError(f"--port {options.port} is not a TCP port (1..65535)")
    if options.rate_per_second <= 0 or options.rate_burst < 1:
        raise OrchestrationError("--rate-limit must be above 0 and --burst at least 1")
    if options.session_hours <= 0:
        raise OrchestrationError("--session-hours must be above 0")
    _check_port_free(options.host, options.port)
    db_url = resolve_db_url(options.db, None)
    source = load_or_create_token(options.token_file, rotate=options.rotate_token)
    hint = "" if "ORCH_DB" in os.environ else db_hint(masked_url(db_url))
    config = ServerConfig(
        db_url=db_url,
        token=source.token,
        session_seconds=options.session_hours * 3600,
        rate_per_second=options.rate_per_second,
        rate_burst=options.rate_burst,
        db_hint=hint,
        allowed_hosts=() if options.allow_remote else allowed_hosts(options.host),
        secure_cookies=not is_loopback(options.host),
        max_body_bytes=options.max_body_bytes,
        auth_failures_per_minute=options.auth_failures_per_minute,
        streams_per_client=options.streams_per_client,
    )
    app = create_app(config)
    store = app.state.store
    out.write(f"orch serve: the dashboard is at {url_for(options.host, options.port)}\n")
    out.write(f"store: {store.display_url}\n")
    if not store.list_runs():
        out.write(
            "(no runs in this store yet: start the server beside your plan's .orchestration/ "
            "directory, or name the store with --db)\n"
        )
    if source.created:
        out.write(
            f"Your access token (shown this once; kept in {source.path}, mode 0600):\n\n"
            f"    {source.token}\n\n"
        )
    else:
        out.write(f"Log in with the token kept in {source.path} (cat it to see it).\n")
    if not is_loopback(options.host):
        out.write(
            "warning: listening beyond this machine. Put an HTTPS proxy in front of it: the "
            "session cookie is marked Secure, so the login form works over HTTPS only\n"
        )
    out.write("Ctrl-C stops the server; runs go on without it.\n")
    out.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=options.host.strip("[]"),
            port=options.port,
            log_level="warning",
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
            server_header=False,
            proxy_headers=False,
        )
    )
    shipper = _event_log_shipper(options, store)
    try:
        server.run()
    finally:
        if shipper is not None:
            shipper.stop()


def _event_log_shipper(options: ServeOptions, store: Any) -> Any:
    """The background writer of the JSONL event log, started (None without --event-log)."""
    if options.event_log is None:
        return None
    from orchestration.operations.event_log import EventLogFiles, EventLogShipper

    shipper = EventLogShipper(store, EventLogFiles(options.event_log, options.event_log_days))
    shipper.start()
    return shipper
