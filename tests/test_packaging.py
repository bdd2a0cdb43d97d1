"""A non-editable wheel install in a fresh venv finds the default rules, plugins and demo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import write_plan

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ORCH_DB", "PYTHONPATH")}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], out
    )
    assert built.returncode == 0, built.stderr
    return next(out.glob("orchestration-*.whl"))


def test_wheel_ships_rules_plugins_and_example_inside_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("orchestration-")}
    assert top_level == {"orchestration"}, top_level  # no top-level `rules` or `plugins`
    assert any(n.startswith("orchestration/default_rules/") and n.endswith(".yaml") for n in names)
    assert "orchestration/plugins/python_syntax.py" in names
    assert "orchestration/examples/coding-session/plan.yaml" in names
    assert "orchestration/store/migrations/versions/0001_initial.py" in names or any(
        n.startswith("orchestration/store/migrations/versions/0001") for n in names
    )


@pytest.mark.slow
def test_fresh_venv_runs_a_plan_with_default_rules_and_bundled_plugins(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], tmp_path).returncode == 0
    python = venv / "bin" / "python"
    installed = run([str(python), "-m", "pip", "install", "-q", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    site = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path
    )
    purelib = Path(site.stdout.strip())
    assert not (purelib / "rules").exists() and not (purelib / "plugins").exists()

    work = tmp_path / "elsewhere"  # far from the source tree: only the installed package is seen
    (work / "src").mkdir(parents=True)
    plan = write_plan(
        work,
        {
            "version": 1,
            "name": "installed",
            "workdir": "src",
            "defaults": {"validators": ["python_syntax"]},
            "tasks": [
                {
                    "id": "write",
                    "action": {
                        "kind": "shell",
                        "run": [str(python), "-c", "open('mod.py', 'w').write('x = 1\\n')"],
                    },
                },
                {
                    "id": "check",
                    "depends_on": ["write"],
                    "validators": [
                        "python_syntax",
                        {"name": "command", "run": [str(python), "-c", "import mod"]},
                    ],
                    "action": {"kind": "shell", "run": [str(python), "-c", "pass"]},
                },
            ],
        },
    )
    orch = venv / "bin" / "orch"
    validated = run([str(orch), "validate", str(plan)], work)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "python_syntax" in validated.stdout and "command" in validated.stdout
    ran = run([str(orch), "run", str(plan), "--run-id", "w1", "--quiet"], work)
    assert ran.returncode == 0, ran.stderr
    status = run([str(orch), "status", "w1", "--json"], work)
    assert '"state": "completed"' in status.stdout
    demo = run([str(orch), "demo", "--dir", str(tmp_path / "demo")], work)
    assert demo.returncode == 0, demo.stdout + demo.stderr
