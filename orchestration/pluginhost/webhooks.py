"""Signed webhook delivery: POSTs notifications as signed JSON to the URL in $ORCH_WEBHOOK_URL.

Configured from the environment (see CONFIGURATION_DOC for the full table): ORCH_WEBHOOK_URL
(unset: no notifier), ORCH_WEBHOOK_SECRET (HMAC-SHA256 signing key), ORCH_WEBHOOK_TIMEOUT
(seconds per attempt), ORCH_WEBHOOK_RETRIES (tries after the first) and ORCH_WEBHOOK_KINDS
(comma list of notification kinds to send). The bundled `webhook` notifier plugin and the
dashboard (which checks the settings at start) share it; plugins reach it through
`orchestration.extension` (`WebhookSender`, `webhook_notifier`, `webhook_config_from_env`,
`verify_webhook_signature`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import IO, Any

from orchestration.core.errors import OrchestrationError
from orchestration.extension import NOTIFY_TIMEOUT_SECONDS, Notification, Notifier

logger = logging.getLogger(__name__)

ENV_URL = "ORCH_WEBHOOK_URL"
ENV_SECRET = "ORCH_WEBHOOK_SECRET"
ENV_TIMEOUT = "ORCH_WEBHOOK_TIMEOUT"
ENV_RETRIES = "ORCH_WEBHOOK_RETRIES"
ENV_KINDS = "ORCH_WEBHOOK_KINDS"

USER_AGENT = "orchestration-webhook/1"
SIGNATURE_HEADER = "X-Orch-Signature"
TIMESTAMP_HEADER = "X-Orch-Timestamp"
EVENT_HEADER = "X-Orch-Event"
DELIVERY_HEADER = "X-Orch-Delivery"

DEFAULT_TIMEOUT_SECONDS = 5.0  # per attempt: connecting, and each wait for the server
DEFAULT_RETRIES = 3  # tries after the first one
MAX_RETRIES = 10
DEFAULT_BACKOFF_BASE_SECONDS = 0.5  # waits 0.5, 1, 2, ... between tries
MAX_BACKOFF_SECONDS = 4.0  # one wait between tries, at most
MAX_RETRY_AFTER_SECONDS = 5.0  # a server's Retry-After is honoured up to this
# The whole delivery (tries and waits) ends before the engine stops waiting for the notifier.
DEFAULT_DEADLINE_SECONDS = NOTIFY_TIMEOUT_SECONDS - 1.0
MIN_ATTEMPT_SECONDS = 0.05  # with less time left than this, no further try is started
SIGNATURE_MAX_AGE_SECONDS = 300.0  # receivers reject older timestamps (replays)
RESPONSE_SNIPPET_CHARS = 200  # of an error response's body, quoted in the failure message
MAX_RESPONSE_BYTES = 64 * 1024  # read (and dropped) of any response, so the connection closes
RETRY_STATUSES = frozenset({408, 429})  # besides every 5xx
KIND_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
DIGITS = re.compile(r"[0-9]+")

# (variable, what it means, default): the table in the docs is built from these rows.
CONFIGURATION: tuple[tuple[str, str, str], ...] = (
    (
        ENV_URL,
        "`http://` or `https://` URL each notification is POSTed to. Unset or empty: no webhook"
        " notifier is registered. `user:password@` in the URL is sent as HTTP Basic auth.",
        "unset",
    ),
    (
        ENV_SECRET,
        f"Key for the `{SIGNATURE_HEADER}: sha256=<hex>` header, the HMAC-SHA256 of"
        f" `<{TIMESTAMP_HEADER}>.<body bytes>`. Unset: requests are not signed. Set but empty"
        " is an error.",
        "unset",
    ),
    (
        ENV_TIMEOUT,
        "Seconds to wait for the server on each try: more than 0, at most"
        f" {DEFAULT_DEADLINE_SECONDS:g}.",
        f"{DEFAULT_TIMEOUT_SECONDS:g}",
    ),
    (
        ENV_RETRIES,
        f"Tries after the first one (0 to {MAX_RETRIES}) on connection errors, timeouts, HTTP"
        f" 408, 429 and 5xx, waiting {DEFAULT_BACKOFF_BASE_SECONDS:g} s, then twice as long"
        f" each time (at most {MAX_BACKOFF_SECONDS:g} s); a `Retry-After` in seconds is"
        f" honoured up to {MAX_RETRY_AFTER_SECONDS:g} s. Other 4xx and 3xx are final"
        " (redirects are not followed). A delivery gives up after"
        f" {DEFAULT_DEADLINE_SECONDS:g} s in all.",
        f"{DEFAULT_RETRIES}",
    ),
    (
        ENV_KINDS,
        "Comma-separated notification kinds to send, e.g. `breakpoint_raised,run_finished`."
        " Unset or empty: every kind.",
        "unset",
    ),
)
CONFIGURATION_DOC = "| variable | meaning | default |\n|---|---|---|\n" + "".join(
    f"| `{name}` | {meaning} | {default} |\n" for name, meaning, default in CONFIGURATION
)


class WebhookConfigError(OrchestrationError, ValueError):
    """An ORCH_WEBHOOK_* variable holds a value the notifier cannot use."""

    def __init__(self, variable: str, expected: str, got: str) -> None:
        super().__init__(f"{expected}, got {got!r}", field=variable)
        self.variable = variable


class WebhookDeliveryError(OrchestrationError):
    """A notification could not be delivered: every try failed or the failure was final."""

    def __init__(self, url: str, attempts: int, status: int | None, reason: str) -> None:
        tries = "try" if attempts == 1 else "tries"
        super().__init__(f"webhook POST to {url} failed after {attempts} {tries}: {reason}")
        self.url = url
        self.attempts = attempts
        self.status = status


# ---- the body and its signature ---------------------------------------------------------------


def notification_payload(notification: Notification) -> dict[str, Any]:
    """The JSON object sent for a notification: its fields, by name."""
    return {
        "kind": notification.kind,
        "run_id": notification.run_id,
        "task_id": notification.task_id,
        "title": notification.title,
        "message": notification.message,
        "severity": notification.severity,
        "data": dict(notification.data),
    }


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON; values JSON cannot hold are sent as their text."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: `sha256=` + hex HMAC-SHA256 of `timestamp.body`."""
    signed = timestamp.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str,
    body: bytes,
    header: str | None,
    timestamp: str | None,
    *,
    max_age_seconds: float | None = SIGNATURE_MAX_AGE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if `header` signs `timestamp.body` with `secret` and the timestamp is recent.

    Compares in constant time. `max_age_seconds=None` skips the age check (not recommended: the
    age check is what stops a captured request from being replayed later).
    """
    if not header or not timestamp or not DIGITS.fullmatch(timestamp):
        return False
    current = time.time() if now is None else now
    if max_age_seconds is not None and abs(current - int(timestamp)) > max_age_seconds:
        return False
    expected = sign(secret, timestamp, body).encode("ascii")
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


# ---- one try and the decision about the next ------------------------------------------------


@dataclass(frozen=True, slots=True)
class TryResult:
    """What one POST came to: `status` is None when no response arrived."""

    status: int | None
    reason: str = ""
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def retry_wait(
    result: TryResult,
    tries_done: int,
    *,
    backoff_base: float,
    max_backoff: float = MAX_BACKOFF_SECONDS,
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
) -> float | None:
    """Seconds to wait before trying again after `result`, or None if the failure is final."""
    status = result.status
    retryable = status is None or status >= 500 or status in RETRY_STATUSES
    if result.delivered or not retryable:
        return None
    if result.retry_after is not None:
        return min(result.retry_after, max_retry_after)
    return min(backoff_base * 2 ** (tries_done - 1), max_backoff)


def _retry_after_seconds(headers: Message | None) -> float | None:
    """Retry-After given in seconds; an HTTP date (rare for webhooks) falls back to backoff."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _snippet(stream: IO[bytes] | None) -> str:
    if stream is None:
        return ""
    try:
        text = stream.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
    text = " ".join(text.split())[:RESPONSE_SNIPPET_CHARS]
    return f": {text}" if text else ""


def _no_response(error: BaseException) -> str:
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, TimeoutError):
        return "no response: timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "no response: connection refused"
    return f"no response: {reason}"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirected POST would lose its body (or carry it to another host): report 3xx instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


# ---- the sender ------------------------------------------------------------------------------


def display_url(url: str) -> str:
    """The URL without credentials, query or fragment: safe for messages and logs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _split_credentials(url: str) -> tuple[str, str | None]:
    """(URL without `user:password@`, the Basic Authorization value or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.netloc.rpartition("@")[2]
    user = urllib.parse.unquote(parts.username)
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), f"Basic {token}"


class WebhookSender:
    """POSTs JSON payloads to one URL: signed, with a timeout, retried with backoff.

    `retries` counts tries after the first. The whole delivery (tries and waits between them)
    stays within `deadline` seconds, so it fits the engine's notifier timeout.
    """

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retries: int = DEFAULT_RETRIES,
        backoff_base: float = DEFAULT_BACKOFF_BASE_SECONDS,
        *,
        max_backoff: float = MAX_BACKOFF_SECONDS,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        deadline: float = DEFAULT_DEADLINE_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0 or deadline <= 0 or retries < 0:
            raise ValueError("timeout and deadline must be above 0, retries at least 0")
        self.url, self._authorization = _split_credentials(url)
        self.display_url = display_url(url)
        self._secret = secret  # never put into a message, a log line or a repr
        self.timeout = timeout
        self.retries = retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.deadline = deadline
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def __repr__(self) -> str:
        signed = "signed" if self._secret else "unsigned"
        return f"WebhookSender({self.display_url!r}, {signed}, retries={self.retries})"

    def send(self, payload: Mapping[str, Any], *, event: str | None = None) -> None:
        """POST `payload` until it is delivered; raise WebhookDeliveryError when giving up.

        `event` (default: the payload's `kind`) goes into the X-Orch-Event header. Every try
        carries the same X-Orch-Delivery id, so a receiver can drop duplicates.
        """
        body = encode_body(payload)
        event_name = event or str(payload.get("kind", "notification"))
        delivery = uuid.uuid4().hex
        started = time.monotonic()
        tries = 0
        while True:
            left = self.deadline - (time.monotonic() - started)
            tries += 1
            result = self._try(body, event_name, delivery, min(self.timeout, left))
            if result.delivered:
                logger.debug("webhook %s delivered to %s", delivery, self.display_url)
                return
            wait = self._next_wait(result, tries, started)
            if wait is None:
                raise WebhookDeliveryError(self.display_url, tries, result.status, result.reason)
            logger.info(
                "webhook %s to %s: try %d failed (%s); next in %.2f s",
                delivery,
                self.display_url,
                tries,
                result.reason,
                wait,
            )
            self._sleep(wait)

    def _next_wait(self, result: TryResult, tries: int, started: float) -> float | None:
        if tries > self.retries:
            return None
        wait = retry_wait(
            result,
            tries,
            backoff_base=self.backoff_base,
            max_backoff=self.max_backoff,
            max_retry_after=self.max_retry_after,
        )
        left = self.deadline - (time.monotonic() - started)
        if wait is None or wait + MIN_ATTEMPT_SECONDS > left:
            return None
        return wait

    def _headers(self, event: str, delivery: str, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery,
            TIMESTAMP_HEADER: timestamp,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        if self._authorization:
            headers["Authorization"] = self._authorization
        return headers

    def _try(self, body: bytes, event: str, delivery: str, timeout: float) -> TryResult:
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers=self._headers(event, delivery, body)
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read(MAX_RESPONSE_BYTES)
                return TryResult(response.status, f"HTTP {response.status}")
        except urllib.error.HTTPError as error:
            try:
                reason = f"HTTP {error.code} {error.reason}{_snippet(error.fp)}"
                return TryResult(error.code, reason, _retry_after_seconds(error.headers))
            finally:
                error.close()
        except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, resets
            return TryResult(None, _no_response(error))


# ---- configuration from the environment and the notifier -------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    url: str
    secret: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    retries: int = DEFAULT_RETRIES
    kinds: frozenset[str] | None = None  # None: every kind

    def sender(self) -> WebhookSender:
        return WebhookSender(self.url, self.secret, self.timeout, self.retries)


def _parse_url(value: str) -> str:
    expected = "must be an http:// or https:// URL with a host"
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise WebhookConfigError(ENV_URL, expected, display_url(value)) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError(ENV_URL, expected, display_url(value))
    return value


def _parse_timeout(value: str) -> float:
    expected = f"must be a number of seconds above 0 and at most {DEFAULT_DEADLINE_SECONDS:g}"
    try:
        seconds = float(value)
    except ValueError:
        raise WebhookConfigError(ENV_TIMEOUT, expected, value) from None
    if not 0 < seconds <= DEFAULT_DEADLINE_SECONDS:  # also false for NaN
        raise WebhookConfigError(ENV_TIMEOUT, expected, value)
    return seconds


def _parse_retries(value: str) -> int:
    expected = f"must be a whole number from 0 to {MAX_RETRIES}"
    if not DIGITS.fullmatch(value) or int(value) > MAX_RETRIES:
        raise WebhookConfigError(ENV_RETRIES, expected, value)
    return int(value)


def _parse_kinds(value: str) -> frozenset[str] | None:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    for kind in kinds:
        if not KIND_PATTERN.fullmatch(kind):
            expected = "must be a comma-separated list of kinds such as breakpoint_raised"
            raise WebhookConfigError(ENV_KINDS, expected, value)
    return frozenset(kinds) or None


def config_from_env(environ: Mapping[str, str] | None = None) -> WebhookConfig | None:
    """The configuration in ORCH_WEBHOOK_*, or None without a URL; WebhookConfigError if bad."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_URL, "").strip()
    if not url:
        return None
    secret = env.get(ENV_SECRET)
    if secret is not None and not secret:
        expected = "must not be empty (unset it to send unsigned requests)"
        raise WebhookConfigError(ENV_SECRET, expected, "")
    timeout, retries = env.get(ENV_TIMEOUT, "").strip(), env.get(ENV_RETRIES, "").strip()
    return WebhookConfig(
        url=_parse_url(url),
        secret=secret,
        timeout=_parse_timeout(timeout) if timeout else DEFAULT_TIMEOUT_SECONDS,
        retries=_parse_retries(retries) if retries else DEFAULT_RETRIES,
        kinds=_parse_kinds(env.get(ENV_KINDS, "")),
    )


def webhook_notifier(config: WebhookConfig) -> Notifier:
    """A notifier sending the configured kinds of notification through one sender."""
    sender = config.sender()

    def notify(notification: Notification) -> None:
        if config.kinds is not None and notification.kind not in config.kinds:
            return
        sender.send(notification_payload(notification), event=notification.kind)

    return Notifier("webhook", notify)
