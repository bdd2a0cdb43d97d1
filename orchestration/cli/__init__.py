"""The `orch` command line (typer), one module per noun.

The top layer: may import everything, and nothing imports it.
"""
