"""orchestration: runs long autonomous coding sessions safely."""

from __future__ import annotations

import pluggy

from orchestration import _source_checkout

_source_checkout.install()

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("orchestration")

__all__ = ["Orchestrator", "__version__", "hookimpl", "load_plan"]


def __getattr__(name: str) -> object:
    # Lazy re-exports keep `import orchestration` cheap for plugins that only need `hookimpl`.
    if name == "load_plan":
        from orchestration.plan import load_plan

        return load_plan
    if name == "Orchestrator":
        from orchestration.loop import Orchestrator

        return Orchestrator
    raise AttributeError(name)
