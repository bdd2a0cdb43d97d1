"""Entry point for `python -m orchestration`."""

from orchestration.cli import main

main()
