"""A third-party plugin installed with pip: `orch plugins` lists it and a real run uses it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.store import Store
from tests.helpers import write_plan

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plugin-example"
NOTIFY_ENV = "ORCH_EXAMPLE_NOTIFY_FILE"  # read by the example's `jsonl_file` notifier
# Until cli.py mounts `orch plugins`, the same command on a bare typer app (see orch_plugins).
BARE_APP = (
    "import typer\n"
    "from orchestration import cli_plugins\n"
    "app = typer.Typer()\n"
    "app.callback()(lambda: None)\n"
    "cli_plugins.register(app)\n"
    "app()\n"
)


@dataclass(frozen=True)
class Installed:
    python: Path  # the fresh environment's interpreter
    source: Path  # the copy of examples/plugin-example that was installed


def run(
    argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in ("ORCH_DB", NOTIFY_ENV)}
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env={**inherited, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """A fresh venv that sees the installed orchestration and gets the example from pip."""
    base = tmp_path_factory.mktemp("external-plugin")
    # A copy: pip builds in the source folder and would leave build/ and *.egg-info there.
    source = base / "plugin-example"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    venv = base / "venv"
    # --system-site-packages: orchestration and its dependencies are not installed again.
    # --without-pip: the running pip installs into the venv through --python, seconds faster.
    created = run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv], base
    )
    assert created.returncode == 0, created.stderr
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:  # tests run in a venv: the new one sees its packages too
        site_packages = run([python, "-c", "import site; print(site.getsitepackages()[0])"], base)
        outer = sysconfig.get_paths()["purelib"]
        Path(site_packages.stdout.strip(), "outer-env.pth").write_text(
            f"import site; site.addsitedir({outer!r})\n"
        )
    pip: list[str | Path] = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "-q",
        "--no-deps",
        source,
    ]
    done = run(pip, base, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return Installed(python, source)


def orch_plugins(python: Path, cwd: Path, env: dict[str, str]) -> dict:
    """`orch plugins --json` in the venv, as a user runs it."""
    from orchestration.cli import root as cli

    if any(command.name == "plugins" for command in cli.app.registered_commands):
        argv: list[str | Path] = [python, "-m", "orchestration", "plugins", "--json"]
    else:
        argv = [python, "-c", BARE_APP, "plugins", "--json"]
    listed = run(argv, cwd, env)
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_orch_plugins_lists_the_installed_plugin_and_where_it_came_from(
    installed: Installed, tmp_path: Path
) -> None:
    listing = orch_plugins(installed.python, tmp_path, {NOTIFY_ENV: str(tmp_path / "n.jsonl")})
    by_name = {plugin["name"]: plugin for plugin in listing["plugins"]}
    example = by_name["example"]  # the entry point's name
    assert example["distribution"] == {"name": "orch-plugin-example", "version": "0.1.0"}
    assert example["from"] == "orch-plugin-example 0.1.0"
    assert example["module"] == "orch_plugin_example.plugin"
    assert example["file"].endswith("orch_plugin_example/plugin.py")
    assert example["validators"] == [
        {
            "name": "todo_comments",
            "stage": "quality",
            "baseline": False,
            "description": example["validators"][0]["description"],
            "active": True,
        }
    ]
    assert example["notifiers"] == ["jsonl_file"]
    assert [(a["name"], a["active"]) for a in example["actions"]] == [("replace_text", True)]
    # The bundled plugins come the same way, from orchestration's own entry points.
    assert by_name["python_syntax"]["distribution"]["name"] == "orchestration"
    assert by_name["pytest"]["validators"][0]["baseline"] is True
    assert listing["problems"] == []


def test_a_run_fails_the_plugins_check_and_its_notifier_records_the_breakpoint(
    installed: Installed, tmp_path: Path
) -> None:
    python = str(installed.python)
    (tmp_path / "src").mkdir()
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "external-plugin",
            "workdir": "src",
            "defaults": {"retry": {"max_attempts": 1}, "validators": ["todo_comments"]},
            "tasks": [
                {
                    "id": "add-note",
                    "action": {
                        "kind": "shell",
                        "run": [
                            python,
                            "-c",
                            "open('notes.py', 'w').write('# TODO: empty case\\nx = 1\\n')",
                        ],
                    },
                },
                {
                    "id": "add-clean",
                    "action": {
                        "kind": "shell",
                        "run": [python, "-c", "open('clean.py', 'w').write('y = 2\\n')"],
                    },
                },
            ],
        },
    )
    notified = tmp_path / "notifications.jsonl"
    env = {NOTIFY_ENV: str(notified)}
    orch = [python, "-m", "orchestration"]
    validated = run([*orch, "validate", plan], tmp_path, env)
    assert validated.returncode == 0 and "todo_comments" in validated.stdout, validated.stdout

    ran = run([*orch, "run", plan, "--run-id", "ext", "--quiet"], tmp_path, env)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # paused for a human; the other task ran
    status = json.loads(run([*orch, "status", "ext", "--json"], tmp_path).stdout)
    states = {task["id"]: task["state"] for task in status["tasks"]}
    assert states == {"add-note": "blocked", "add-clean": "completed"}

    store = Store.open(f"sqlite:///{tmp_path / '.orchestration' / 'state.db'}")
    try:
        (quality,) = store.quality("ext", "add-note")
        (clean,) = store.quality("ext", "add-clean")
        (bp,) = store.breakpoints("ext", state="open")
    finally:
        store.close()
    check = next(c for c in quality.checks if c["name"] == "todo_comments")
    assert not check["passed"] and check["stage"] == "quality"
    assert "notes.py:1" in check["message"] and check["figures"]["todo_comments"] == 1
    assert not quality.gate_passed
    assert next(c for c in clean.checks if c["name"] == "todo_comments")["passed"]

    shown = run([*orch, "breakpoints", "show", str(bp.id)], tmp_path)
    assert "todo_comments" in shown.stdout and "notes.py:1" in shown.stdout, shown.stdout

    records = [json.loads(line) for line in notified.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["breakpoint_raised", "run_finished"]
    record = records[0]
    assert record["kind"] == "breakpoint_raised" and record["task_id"] == "add-note"
    assert record["run_id"] == "ext" and record["data"]["rule"] == bp.rule


def test_the_example_plugins_own_tests_pass(installed: Installed) -> None:
    tested = run([installed.python, "-m", "pytest", "-q"], installed.source)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_plan_runs_the_plugins_action_kind_and_refuses_a_kind_nobody_provides(
    installed: Installed, tmp_path: Path
) -> None:
    python = str(installed.python)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def total(xs):\n    return sum_all(xs)\n")
    spec = {
        "version": 1,
        "name": "plugin-action",
        "workdir": "src",
        "defaults": {"retry": {"max_attempts": 1}, "validators": ["python_syntax"]},
        "tasks": [
            {
                "id": "rename",
                "action": {
                    "kind": "replace_text",
                    "args": {"path": "app.py", "old": "sum_all(", "new": "sum("},
                },
            },
            {
                "id": "check",
                "depends_on": ["rename"],
                "acceptance": ["exit_code == 0"],
                "action": {
                    "kind": "shell",
                    "run": [python, "-c", "import app; assert app.total([1, 2]) == 3"],
                },
            },
        ],
    }
    plan = write_plan(tmp_path, spec)
    orch = [python, "-m", "orchestration"]
    ran = run([*orch, "run", str(plan), "--run-id", "pa", "--quiet"], tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "src" / "app.py").read_text() == "def total(xs):\n    return sum(xs)\n"
    store = Store.open(f"sqlite:///{tmp_path / '.orchestration' / 'state.db'}")
    try:
        (step,) = [e.data for e in store.events("pa") if e.kind == "step" and e.task_id == "rename"]
    finally:
        store.close()
    assert step["result"] == {"replacements": 1} and step["exit_code"] == 0
    assert step["changed_files"] == ["app.py"]

    # The same plan where orchestration runs without the plugin: refused, nothing stored.
    bare = tmp_path / "bare"
    bare.mkdir()
    bare_plan = write_plan(bare, {**spec, "workdir": "."})
    refused = run([sys.executable, "-m", "orchestration", "run", str(bare_plan)], bare)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "unknown action kind 'replace_text'" in refused.stderr
    assert f"{bare_plan}:" in refused.stderr and "action.kind" in refused.stderr
    assert not (bare / ".orchestration").exists()

    # A typo in the kind: the line, the loaded kinds and a suggestion.
    typo = write_plan(
        tmp_path / "typo",
        {**spec, "tasks": [{"id": "t", "action": {"kind": "replace_txt", "args": {}}}]},
    )
    checked = run([*orch, "validate", str(typo)], tmp_path)
    assert checked.returncode == 2
    assert "unknown action kind 'replace_txt'" in checked.stderr
    assert "replace_text" in checked.stderr and "did you mean" in checked.stderr
