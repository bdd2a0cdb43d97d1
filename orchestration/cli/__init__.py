"""The `orch` command line (typer), one module per noun.

The top layer: may import everything, and nothing imports it.

Modules that define commands evaluate their annotations at import (no `from __future__ import
annotations`; names imported only for type checking are quoted): typer reads every command's
signature at each start, and string annotations would be compiled and evaluated twice there.
"""
