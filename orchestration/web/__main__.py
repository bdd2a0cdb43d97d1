"""`python -m orchestration.web`: the same as `orch serve`, with the same options."""

from __future__ import annotations

import sys

import typer

from orchestration.core.errors import OrchestrationError
from orchestration.core.terminal_text import strip_control
from orchestration.web.command import register


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    try:
        app()
    except OrchestrationError as error:
        sys.stderr.write(f"error: {strip_control(str(error))}\n")
        sys.exit(error.exit_code)


if __name__ == "__main__":
    main()
