"""What one dashboard server is configured with: the store, the token and its limits."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SESSION_SECONDS = 12 * 3600.0  # a login lasts this long
RATE_PER_SECOND = 10.0  # requests a token may make per second, on average
RATE_BURST = 100  # ...and in one burst
MAX_BODY_BYTES = 8 * 1024 * 1024  # a request body above this is refused (413) unread
AUTH_FAILURES_PER_MINUTE = 10  # failed authentications per client address, then 429
STREAMS_PER_CLIENT = 100  # open event streams per client address, then 429
STREAM_POLL_SECONDS = 0.5  # how often the event stream looks for new events in the store
STREAM_MAX_SECONDS = 300.0  # a stream then ends; EventSource reconnects with Last-Event-ID
PAGE_LIMIT = 500  # rows one poll of the event stream (or one page of events) reads at most
MAX_ROW_ID = 2**63 - 1  # the largest id either store holds (BIGINT): a larger cursor is refused


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything `create_app` needs; the CLI builds one from its options."""

    db_url: str
    token: str
    session_seconds: float = SESSION_SECONDS
    rate_per_second: float = RATE_PER_SECOND
    rate_burst: int = RATE_BURST
    max_body_bytes: int = MAX_BODY_BYTES
    auth_failures_per_minute: int = AUTH_FAILURES_PER_MINUTE
    streams_per_client: int = STREAMS_PER_CLIENT
    stream_poll_seconds: float = STREAM_POLL_SECONDS
    stream_max_seconds: float = STREAM_MAX_SECONDS
    db_hint: str = ""  # ` --db URL` (shell-quoted) for `orch resume` hints: `hints.db_hint`
    allowed_hosts: tuple[str, ...] = ()  # Host headers accepted; empty: any (behind a proxy)
    secure_cookies: bool = False  # mark cookies Secure (served over HTTPS, e.g. behind a proxy)
    launch_dir: str = ""  # plans and logs of runs started by the API; empty: beside the store
    # HMAC-SHA256 secret of forge webhooks (/api/v1/webhooks/NAME); empty: from the environment
    webhook_secret: str = ""
