"""Lets a source checkout import rules/, plugins/ and examples/ under their installed names.

pyproject.toml installs the top-level rules/, plugins/ and examples/ directories as
`orchestration.default_rules`, `orchestration.plugins` and `orchestration.examples`. When Python
imports `orchestration` from the checkout itself (e.g. `python -m orchestration` run in the
repository root, which puts the checkout ahead of any installed copy), those names have no
directory inside orchestration/; this finder, consulted after every other one, supplies them.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {
    "orchestration.default_rules": ROOT / "rules",
    "orchestration.plugins": ROOT / "plugins",
    "orchestration.examples": ROOT / "examples",
}


class SourceCheckoutFinder:
    """A meta path finder (the protocol is `find_spec`; importlib.abc is not imported: it is
    slow to import and every `orch` command starts here)."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        directory = MAPPED.get(fullname)
        if directory is None or not (directory / "__init__.py").is_file():
            return None
        return importlib.util.spec_from_file_location(
            fullname, directory / "__init__.py", submodule_search_locations=[str(directory)]
        )


def install() -> None:
    """Append the finder when running from a checkout (an installed copy has no pyproject.toml)."""
    if not (ROOT / "pyproject.toml").is_file():
        return
    if not any(isinstance(f, SourceCheckoutFinder) for f in sys.meta_path):
        sys.meta_path.append(SourceCheckoutFinder())
