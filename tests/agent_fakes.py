"""Fake agent CLIs for tests: executables named like the real ones that replay recorded output.

Each fake records its argv and working directory (one JSON line per call in FAKE_AGENT_LOG),
then writes tests/data/agents/<agent>/<scenario>.* to stdout and exits with the code
tests/data/agents/exit_codes.json gives that scenario. FAKE_AGENT_SCENARIOS lists the scenario
of each call in order ("tool_error,success": the first call replays tool_error, later calls
success). A fake given FAKE_AGENT_WRITES writes that file in its working directory (the change
the recorded agent made), so the engine sees a change.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "agents"
AGENTS = ("claude", "codex", "gemini", "aider", "opencode")

_SCRIPT = """#!{python}
import json, os, pathlib, sys

data = pathlib.Path({data!r})
name = pathlib.Path(sys.argv[0]).name
log = pathlib.Path(os.environ["FAKE_AGENT_LOG"])
calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
earlier = sum(1 for call in calls if call["agent"] == name)
with log.open("a") as handle:
    handle.write(json.dumps({{"agent": name, "argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
scenarios = os.environ.get("FAKE_AGENT_SCENARIOS", "success").split(",")
scenario = scenarios[min(earlier, len(scenarios) - 1)]
recording = next(data.joinpath(name).glob(scenario + ".*"))
if "--chat-history-file" in sys.argv:  # aider keeps its chat in the file it is given
    history = pathlib.Path(sys.argv[sys.argv.index("--chat-history-file") + 1])
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as handle:
        handle.write("#### " + sys.argv[sys.argv.index("--message") + 1] + "\\n")
written = os.environ.get("FAKE_AGENT_WRITES")
if written and scenario in ("success", "tool_error"):
    pathlib.Path(written).write_text("def retry(fn, attempts=3):\\n    return fn()\\n")
sys.stdout.write(recording.read_text())
sys.stdout.flush()
sys.exit(json.loads((data / "exit_codes.json").read_text())[name][scenario])
"""


def install_fakes(bin_dir: Path, agents: tuple[str, ...] = AGENTS) -> Path:
    """Write the fake executables into bin_dir; returns bin_dir (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for agent in agents:
        path = bin_dir / agent
        path.write_text(_SCRIPT.format(python=sys.executable, data=str(DATA)))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def calls(log: Path) -> list[dict[str, Any]]:
    """The fakes' calls, in order: {"agent", "argv", "cwd"}."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def recording(agent: str, scenario: str) -> Path:
    return next((DATA / agent).glob(scenario + ".*"))


def exit_code(agent: str, scenario: str) -> int:
    codes: dict[str, dict[str, int]] = json.loads((DATA / "exit_codes.json").read_text())
    return codes[agent][scenario]
