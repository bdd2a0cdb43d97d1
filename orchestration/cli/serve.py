"""`orch serve`: the review dashboard and REST API over the store; the web app owns its options."""

import typer

from orchestration.web import command


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the `orch` application."""
    command.register(app)
