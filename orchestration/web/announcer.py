"""Tells the plugins of resolutions made in the dashboard, as `orch breakpoints resolve` does.

Each resolution emits `on_breakpoint_resolved` and sends a `breakpoint_resolved` notification to
every notifier (the signed webhook among them when ORCH_WEBHOOK_URL is set), in the background so
that a slow plugin or receiver never delays a reviewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestration.core.models import BreakpointRecord
from orchestration.engine.review import announce_resolution
from orchestration.pluginhost.hooks import Plugins, load_plugins
from orchestration.pluginhost.webhooks import config_from_env

SENDER_THREADS = 2  # announcements under way at once; more wait their turn


class ResolutionAnnouncer:
    """Announces each resolution to the loaded plugins, one background task per resolution."""

    def __init__(self, plugins: Plugins) -> None:
        self.plugins = plugins
        self._executor = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="orch-announce")

    @classmethod
    def from_env(cls) -> ResolutionAnnouncer:
        """The installed plugins. Bad ORCH_WEBHOOK_* settings raise WebhookConfigError here, at
        start, rather than leaving the webhook out with only a logged plugin problem."""
        config_from_env()
        plugins = load_plugins()
        plugins.muted.add("console")  # the server's terminal is not where reviewers look
        return cls(plugins)

    def breakpoint_resolved(self, resolved: BreakpointRecord, extra: Mapping[str, Any]) -> None:
        """`review_actions.Announce`: `extra` (rule, note, task state, run live) joins the
        notification's data."""
        self._executor.submit(announce_resolution, self.plugins, resolved, dict(extra))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
