"""What endpoints receive from the app: the store and the server's configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orchestration.store import Store
from orchestration.web.announcer import ResolutionAnnouncer
from orchestration.web.config import ServerConfig


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _config(request: Request) -> ServerConfig:
    config: ServerConfig = request.app.state.config
    return config


def _announcer(request: Request) -> ResolutionAnnouncer:
    announcer: ResolutionAnnouncer = request.app.state.announcer
    return announcer


StoreDep = Annotated[Store, Depends(_store)]
AnnouncerDep = Annotated[ResolutionAnnouncer, Depends(_announcer)]
ConfigDep = Annotated[ServerConfig, Depends(_config)]
