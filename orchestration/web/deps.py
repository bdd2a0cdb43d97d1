"""What endpoints receive from the app: the store and the server's configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orchestration.store import Store
from orchestration.web.config import ServerConfig
from orchestration.web.webhooks import WebhookRelay


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _config(request: Request) -> ServerConfig:
    config: ServerConfig = request.app.state.config
    return config


def _webhooks(request: Request) -> WebhookRelay:
    relay: WebhookRelay = request.app.state.webhooks
    return relay


StoreDep = Annotated[Store, Depends(_store)]
WebhooksDep = Annotated[WebhookRelay, Depends(_webhooks)]
ConfigDep = Annotated[ServerConfig, Depends(_config)]
