"""Entry point for `python -m orchestration`."""

from orchestration.cli.root import main

main()
