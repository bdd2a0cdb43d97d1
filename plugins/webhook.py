"""Notifier `webhook`: POSTs each notification as signed JSON to the URL in $ORCH_WEBHOOK_URL.

ORCH_WEBHOOK_SECRET, ORCH_WEBHOOK_TIMEOUT, ORCH_WEBHOOK_RETRIES and ORCH_WEBHOOK_KINDS tune it
(docs/plugins.md); the delivery itself is the extension API's `webhook_notifier`.
"""

from __future__ import annotations

from orchestration import hookimpl
from orchestration.extension import Notifier, webhook_config_from_env, webhook_notifier


@hookimpl
def register_notifiers() -> list[Notifier]:
    config = webhook_config_from_env()
    return [webhook_notifier(config)] if config else []
