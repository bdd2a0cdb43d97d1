"""Outgoing webhooks for what reviewers do in the dashboard: a breakpoint resolved.

They are sent by the engine's signed webhook notifier with the same ORCH_WEBHOOK_* settings, in
the background so that a slow receiver never delays a reviewer.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from orchestration.extension import Notification
from orchestration.plugins.webhook import (
    WebhookConfig,
    WebhookDeliveryError,
    config_from_env,
    notification_payload,
)
from orchestration.web import schemas

logger = logging.getLogger(__name__)

SENDER_THREADS = 2  # deliveries under way at once; more wait their turn
KIND = "breakpoint_resolved"


class WebhookRelay:
    """Sends a `breakpoint_resolved` notification per resolution, when a webhook is set up."""

    def __init__(self, config: WebhookConfig | None) -> None:
        self.config = config
        self._executor = (
            ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="orch-webhook")
            if config is not None
            else None
        )

    @classmethod
    def from_env(cls) -> WebhookRelay:
        """From ORCH_WEBHOOK_URL and friends (a bad value raises WebhookConfigError at start)."""
        return cls(config_from_env())

    def breakpoint_resolved(self, outcome: schemas.ResolveOut) -> None:
        config = self.config
        if config is None or self._executor is None:
            return
        if config.kinds is not None and KIND not in config.kinds:
            return
        bp = outcome.breakpoint
        notification = Notification(
            KIND,
            bp.run,
            f"breakpoint {bp.id} ({bp.rule}): {bp.resolution} by {bp.resolved_by}",
            bp.note or bp.message,
            bp.severity,
            bp.task,
            {
                "breakpoint": bp.id,
                "rule": bp.rule,
                "resolution": bp.resolution,
                "actor": bp.resolved_by,
                "note": bp.note,
                "task_state": outcome.task_state,
                "run_live": outcome.run_live,
            },
        )
        self._executor.submit(self._send, config, notification_payload(notification))

    @staticmethod
    def _send(config: WebhookConfig, payload: dict[str, Any]) -> None:
        try:
            config.sender().send(payload, event=KIND)
        except WebhookDeliveryError as error:
            logger.warning("webhook for a resolved breakpoint not delivered: %s", error)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
