"""Agent CLI presets for `kind: agent`: each knows its CLI's turn, output, session and errors.

One module per CLI (claude, codex, gemini, aider, opencode); docs/agents.md lists what each
runs and reads. This package knows commands and formats only; the engine's actions module runs
the process and turns the report into the attempt's outcome.

Imports core only.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from orchestration.agents import aider, claude, codex, gemini, opencode
from orchestration.agents.base import (
    AUTH,
    FAILED,
    OUT_OF_BUDGET,
    RATE_LIMIT,
    AgentPreset,
    AgentReport,
    EventReader,
    LineSplitter,
    TurnSettings,
)
from orchestration.core.models import AGENT_PRESETS, AgentAction

PRESETS: dict[str, AgentPreset] = {
    preset.name: preset
    for preset in (claude.PRESET, codex.PRESET, gemini.PRESET, aider.PRESET, opencode.PRESET)
}
assert tuple(PRESETS) == AGENT_PRESETS, "models.AGENT_PRESETS names the presets in this order"

__all__ = [
    "AUTH",
    "FAILED",
    "OUT_OF_BUDGET",
    "PRESETS",
    "RATE_LIMIT",
    "AgentPreset",
    "AgentReport",
    "EventReader",
    "LineSplitter",
    "TurnSettings",
    "missing_program",
    "program_of",
    "settings_problem",
]


def settings_problem(agent: object, permissions: object) -> str | None:
    """What is wrong with a preset's `permissions` (None: nothing, or no such preset)."""
    preset = PRESETS.get(agent) if isinstance(agent, str) else None
    if preset is None or permissions is None:
        return None
    if not preset.permissions:
        return (
            f"the {preset.name} preset has no permission modes (it runs without asking); "
            "remove 'permissions' or pass the CLI's own flags in 'args'"
        )
    if permissions not in preset.permissions:
        return (
            f"unknown permissions {permissions!r} for the {preset.name} preset; expected "
            f"{' | '.join(preset.permissions)} (other flags go in 'args')"
        )
    return None


def program_of(action: AgentAction) -> str:
    """The executable a preset action runs: its `program`, else the preset's."""
    assert action.agent is not None
    return action.program or PRESETS[action.agent].program


def missing_program(
    action: AgentAction, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str | None:
    """Why the preset's program cannot run (not found on PATH), with how to install it.

    A relative path with a slash is looked up from `cwd`, as the process start does.
    """
    program = program_of(action)
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    lookup = str(cwd / program) if cwd is not None and os.sep in program else program
    if shutil.which(lookup, path=path) is not None:
        return None
    install = PRESETS[action.agent or ""].install
    return f"agent program {program!r} is not installed: {install}"
