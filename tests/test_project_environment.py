"""Validators run in the project's own environment (not orchestration's) and never change its tree.

The project is a tiny library (tests/data/envlib) whose tests import `tinydep`, a module that
only a virtual environment made by the test has (through a .pth file): orchestration's own
interpreter cannot run that suite.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sysconfig
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.models import EnvironmentSpec, TaskSpec
from orchestration.extension import ProjectEnvironment, ValidationInput
from orchestration.plugins.python_syntax import check_python_syntax
from orchestration.project.environment import resolve_environment
from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, write_plan

DATA = Path(__file__).resolve().parent / "data"
LIBRARY = DATA / "envlib"
DEPENDENCY = DATA / "envdep"
WRITING_PLUGIN = DATA / "writing_validator"
GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
FAST = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the library needs no third-party plugins
BROKEN = '"""Broken."""\n\nfrom tinydep import double\n\n\ndef quadruple(x: int) -> int:\n    return double(x)\n'
UNUSED_IMPORT = "import os\n\n\ndef triple(x: int) -> int:\n    return 3 * x\n"


def git(workdir: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=workdir, check=True, capture_output=True, text=True
    )
    return done.stdout


def make_venv(where: Path, *, with_pytest: bool = True) -> Path:
    """A virtual environment with `tinydep` (and pytest, seen from ours) on its path; its python."""
    subprocess.run([PY, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    paths = [str(DEPENDENCY)]
    if with_pytest:  # pytest and ruff as installed for this suite, without a download
        paths.append(sysconfig.get_paths()["purelib"])
    Path(site, "project-deps.pth").write_text("\n".join(paths) + "\n")
    return python


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """The library copied into tmp_path and committed in a fresh git repository."""
    workdir = tmp_path / "library"
    shutil.copytree(LIBRARY, workdir, ignore=shutil.ignore_patterns("__pycache__", ".ruff_cache"))
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "library")
    return workdir


def write_file(path: str, text: str) -> list[str]:
    return [PY, "-c", f"import pathlib; pathlib.Path({path!r}).write_text({text!r})"]


def plan(workdir: Path, tasks: list[dict[str, Any]], **extra: Any) -> Path:
    spec = {"version": 1, "name": "env", "defaults": {"retry": {"max_attempts": 1}}, **extra}
    return write_plan(workdir, {**spec, "tasks": tasks})


def quality(workdir: Path, run_id: str, task: str) -> dict[str, dict[str, Any]]:
    """Each check of the task's last attempt, by validator name, as the store holds it."""
    store = Store.open(f"sqlite:///{workdir / '.orchestration' / 'state.db'}")
    try:
        records = store.quality(run_id, task)
    finally:
        store.close()
    return {check["name"]: check for check in records[-1].checks}


def test_orchestrations_own_interpreter_lacks_the_librarys_dependency() -> None:
    # What makes the tests below mean something: run in our interpreter, the suite cannot pass.
    assert importlib.util.find_spec("tinydep") is None


def test_the_librarys_suite_runs_in_the_plans_environment_with_pass_and_fail_in_the_figures(
    library: Path, tmp_path: Path
) -> None:
    python = make_venv(tmp_path / "project-env")
    plan_file = plan(
        library,
        [
            {"id": "feature", "action": {"kind": "shell", "run": write_file("extra.txt", "x\n")}},
            {
                "id": "regress",
                "depends_on": ["feature"],
                "action": {"kind": "shell", "run": write_file("envlib/__init__.py", BROKEN)},
            },
        ],
        environment={"python": "../project-env/bin/python"},
        defaults={
            "retry": {"max_attempts": 1},
            "validators": [{"name": "pytest", "timeout_seconds": 120}],
        },
    )
    shown = orch_json("validate", str(plan_file), cwd=library)
    assert shown["environment"]["python"] == str(python)
    assert shown["environment"]["source"] == "the plan's environment.python"

    ran = orch("run", str(plan_file), env=FAST, cwd=library)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # the regression pauses the run
    run_id = orch_json("status", cwd=library)["run"]["id"]
    passed = quality(library, run_id, "feature")["pytest"]
    assert passed["passed"], passed["message"]
    assert (passed["figures"]["tests_passed"], passed["figures"]["tests_failed"]) == (2, 0)
    failed = quality(library, run_id, "regress")["pytest"]
    assert not failed["passed"]
    assert (failed["figures"]["tests_passed"], failed["figures"]["tests_failed"]) == (1, 1)
    assert failed["figures"]["tests_regressed"] == ["tests/check_envlib.py::test_quadruple"]
    assert "\x1b" not in failed["message"]  # the project's `--color=yes` is overridden
    (bp,) = orch_json("breakpoints", "list", cwd=library)["breakpoints"]
    context = orch_json("breakpoints", "show", str(bp["id"]), cwd=library)["breakpoint"]["context"]
    assert (context["tests_passed"], context["tests_failed"]) == (1, 1)


def test_a_venv_in_the_workdir_is_picked_when_the_plan_names_no_environment(
    library: Path,
) -> None:
    python = make_venv(library / ".venv")
    plan_file = plan(
        library,
        [{"id": "feature", "action": {"kind": "shell", "run": write_file("extra.txt", "x\n")}}],
        defaults={"validators": [{"name": "pytest", "timeout_seconds": 120}]},
    )
    shown = orch_json("validate", str(plan_file), cwd=library)
    assert shown["environment"]["python"] == str(python)
    assert ".venv" in shown["environment"]["source"]
    text = orch("validate", str(plan_file), cwd=library)
    assert str(python) in text.stdout

    ran = orch("run", str(plan_file), env=FAST, cwd=library)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = orch_json("status", cwd=library)["run"]["id"]
    check = quality(library, run_id, "feature")["pytest"]
    assert check["passed"] and check["figures"]["tests_passed"] == 2, check["message"]


def problems_of(plan_file: Path, cwd: Path, env: dict[str, str] | None = None) -> list[dict]:
    done = orch("validate", str(plan_file), "--json", cwd=cwd, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    return json.loads(done.stdout)["problems"]


def test_a_missing_interpreter_is_a_clear_validate_error(library: Path) -> None:
    plan_file = plan(
        library,
        [{"id": "a", "action": {"kind": "shell", "run": ["true"]}}],
        environment={"python": "missing/python"},
    )
    (problem,) = problems_of(plan_file, library)
    assert problem["file"] == str(plan_file)
    assert problem["field"] == "environment.python"
    assert "missing/python" in problem["message"] and "expected" in problem["message"]
    human = orch("validate", str(plan_file), cwd=library)
    assert human.returncode == 2 and "environment.python" in human.stdout + human.stderr


def test_validate_names_the_task_and_the_program_a_validator_lacks(
    library: Path, tmp_path: Path
) -> None:
    bare = make_venv(tmp_path / "bare-env", with_pytest=False)
    plan_file = plan(
        library,
        [
            {
                "id": "tool",
                "action": {"kind": "shell", "run": ["true"]},
                "validators": [{"name": "command", "run": ["nosuchtool", "--check"]}],
            },
            {
                "id": "tests",
                "action": {"kind": "shell", "run": ["true"]},
                "validators": ["pytest", "ruff"],
            },
        ],
        environment={"python": str(bare)},
    )
    # A PATH with git but without this suite's venv, where ruff is installed.
    path = {"PATH": str(Path(shutil.which("git") or "/usr/bin/git").parent)}
    problems = {
        (p["task"], p["message"].split(":")[0]): p for p in problems_of(plan_file, library, path)
    }
    assert set(problems) == {
        ("tool", "validator 'command' cannot run"),
        ("tests", "validator 'pytest' cannot run"),
        ("tests", "validator 'ruff' cannot run"),
    }
    assert "'nosuchtool'" in problems["tool", "validator 'command' cannot run"]["message"]
    pytest_problem = problems["tests", "validator 'pytest' cannot run"]["message"]
    assert "pytest is not installed" in pytest_problem and "pip install pytest" in pytest_problem
    assert "pip install ruff" in problems["tests", "validator 'ruff' cannot run"]["message"]
    assert all(p["field"] == "validators" for p in problems.values())


def test_ruff_with_fix_true_in_the_projects_config_never_rewrites_the_agents_code(
    library: Path,
) -> None:
    plan_file = plan(
        library,
        [
            {
                "id": "lint",
                "action": {"kind": "shell", "run": write_file("envlib/more.py", UNUSED_IMPORT)},
            }
        ],
        defaults={"retry": {"max_attempts": 1}, "validators": ["ruff"]},
    )
    orch("run", str(plan_file), env=FAST, cwd=library)
    assert (library / "envlib" / "more.py").read_text() == UNUSED_IMPORT
    run_id = orch_json("status", cwd=library)["run"]["id"]
    checks = quality(library, run_id, "lint")
    assert checks["ruff"]["figures"]["lint_errors"] == 1
    assert "validator_modified_tree" not in checks


def writing_run(workdir: Path) -> tuple[str, Path]:
    plan_file = plan(
        workdir,
        [{"id": "edit", "action": {"kind": "shell", "run": write_file("notes.py", "X = 1\n")}}],
        defaults={"retry": {"max_attempts": 2}, "validators": ["rewriter"]},
    )
    ran = orch("run", str(plan_file), env={"PYTHONPATH": str(WRITING_PLUGIN)}, cwd=workdir)
    assert ran.returncode == 3, ran.stdout + ran.stderr  # escalated: a human fixes the setup
    return orch_json("status", cwd=workdir)["run"]["id"], plan_file


@pytest.mark.parametrize("with_git", [True, False], ids=["git", "plain-directory"])
def test_a_validator_that_writes_fails_the_attempt_and_the_agents_version_is_restored(
    library: Path, tmp_path: Path, with_git: bool
) -> None:
    workdir = library
    if not with_git:
        workdir = tmp_path / "plain"
        shutil.copytree(library, workdir, ignore=shutil.ignore_patterns(".git"))
    else:
        index = (library / ".git" / "index").read_bytes()
        head = git(library, "rev-parse", "HEAD")
    run_id, _ = writing_run(workdir)
    assert (workdir / "notes.py").read_text() == "X = 1\n"  # the agent's version
    assert not (workdir / "validator-was-here.txt").exists()
    check = quality(workdir, run_id, "edit")["validator_modified_tree"]
    assert not check["passed"]
    assert sorted(check["figures"]["validator_modified_tree"]) == [
        "notes.py",
        "validator-was-here.txt",
    ]
    assert "\x1b" not in quality(workdir, run_id, "edit")["rewriter"]["message"]
    (bp,) = orch_json("breakpoints", "list", cwd=workdir)["breakpoints"]
    shown = orch_json("breakpoints", "show", str(bp["id"]), cwd=workdir)["breakpoint"]
    assert (
        shown["context"]["validator_modified_tree"] == check["figures"]["validator_modified_tree"]
    )
    text = orch("breakpoints", "show", str(bp["id"]), cwd=workdir).stdout
    assert "validator_modified_tree" in text
    if with_git:  # the user's index and branch were never touched
        assert (library / ".git" / "index").read_bytes() == index
        assert git(library, "rev-parse", "HEAD") == head


def test_a_command_prefix_and_the_plans_variables_reach_every_validator_command(
    library: Path,
) -> None:
    # `env` is a real prefix program, as `uv run` would be: it sets a variable, then runs the rest.
    check = "import os, sys; sys.exit(os.environ.get('VIA_PREFIX') != '1' or os.environ.get('PLAN_VAR') != 'x')"
    plan_file = plan(
        library,
        [{"id": "a", "action": {"kind": "shell", "run": write_file("extra.txt", "x\n")}}],
        environment={"run": ["env", "VIA_PREFIX=1"], "python": "python3", "env": {"PLAN_VAR": "x"}},
        defaults={
            "retry": {"max_attempts": 1},
            "validators": [{"name": "command", "run": ["{python}", "-c", check]}],
        },
    )
    shown = orch_json("validate", str(plan_file), cwd=library)["environment"]
    assert shown["command_prefix"] == ["env", "VIA_PREFIX=1"] and shown["python"] == "python3"
    ran = orch("run", str(plan_file), cwd=library)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = orch_json("status", cwd=library)["run"]["id"]
    assert quality(library, run_id, "a")["command"]["passed"]


def test_without_a_venv_the_python3_on_path_is_used_not_orchestrations_interpreter(
    tmp_path: Path,
) -> None:
    chosen = resolve_environment(None, tmp_path)
    assert chosen.python == shutil.which("python3") and chosen.command_prefix == ()
    python = make_venv(tmp_path / "venv", with_pytest=False)
    assert resolve_environment(None, tmp_path).python == str(python)  # a `venv` counts too
    assert resolve_environment(EnvironmentSpec(run=["uv", "run"]), tmp_path).python == "python"


def test_python_syntax_compiles_with_the_projects_interpreter(library: Path) -> None:
    spec = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    (library / "bad.py").write_text("def broken(:\n")
    base = ValidationInput("r", spec, 1, library, ("bad.py",), 0, "", {}, {}, {}, 30.0)
    found = check_python_syntax(base)
    assert not found.passed and "bad.py:1:" in found.message
    # An interpreter that cannot start is the project's problem to fix, not a silent pass: the
    # files are never compiled in orchestration's own process.
    gone = ProjectEnvironment(str(library / "no-such-python"))
    failed = check_python_syntax(
        replace(base, changed_files=("envlib/__init__.py",), environment=gone)
    )
    assert not failed.passed and "no-such-python" in failed.message
