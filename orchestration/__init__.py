"""orchestration: runs long autonomous coding sessions safely."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestration import _source_checkout

if TYPE_CHECKING:
    import pluggy

    hookimpl: pluggy.HookimplMarker  # made on first use by `__getattr__` (pluggy is imported then)

_source_checkout.install()

__version__ = "0.1.0"

__all__ = ["Orchestrator", "__version__", "hookimpl", "load_plan"]


def __getattr__(name: str) -> object:
    # Lazy re-exports keep `import orchestration` cheap: `orch --help` needs none of them.
    if name == "hookimpl":
        return _hookimpl()
    if name == "load_plan":
        from orchestration.engine.plan import load_plan

        return load_plan
    if name == "Orchestrator":
        from orchestration.engine.loop import Orchestrator

        return Orchestrator
    raise AttributeError(name)


def _hookimpl() -> pluggy.HookimplMarker:
    """The marker plugins put on their hook implementations, made once on first use.

    Any two markers of the project name are equivalent to pluggy; caching keeps one object.
    """
    global hookimpl
    import pluggy

    hookimpl = pluggy.HookimplMarker("orchestration")
    return hookimpl
