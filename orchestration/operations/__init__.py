"""What a team runs the engine with: Prometheus metrics and the JSONL event log.

Imports views and the layers below; never triggers, web or cli.
"""
