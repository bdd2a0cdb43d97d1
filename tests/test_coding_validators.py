"""The coding validators `pytest`, `ruff` and `diff_size` on a real sample project, and baselines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestration.core.models import TaskSpec, ValidatorRef
from orchestration.engine import baselines
from orchestration.engine.baselines import baseline_options, take_baselines
from orchestration.extension import (
    BaselineInput,
    CheckResult,
    ProjectEnvironment,
    ValidationInput,
    Validator,
)
from orchestration.pluginhost.hooks import load_plugins
from orchestration.plugins import diff_size, pytest_tests, ruff_lint

SAMPLE = Path(__file__).parent / "sample_project"
GIT_IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.invalid")


def git(workdir: Path, *args: str) -> None:
    subprocess.run(["git", *GIT_IDENTITY, *args], cwd=workdir, check=True, capture_output=True)


@pytest.fixture(autouse=True)
def _no_plugin_autoload(monkeypatch: pytest.MonkeyPatch) -> None:
    # The sample needs no third-party pytest plugins; loading the installed ones (hypothesis,
    # benchmark) would triple the time of each suite the validator runs.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The sample project copied into tmp_path, committed in a fresh git repository."""
    workdir = tmp_path / "project"
    shutil.copytree(SAMPLE, workdir, ignore=shutil.ignore_patterns("__pycache__"))
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-q", "-m", "sample")
    return workdir


def step(
    workdir: Path,
    files: tuple[str, ...] = (),
    options: Mapping[str, Any] | None = None,
    baseline: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
) -> ValidationInput:
    spec = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    return ValidationInput(
        "r",
        spec,
        1,
        workdir,
        files,
        0,
        "",
        {},
        options or {},
        context or {},
        timeout,
        baseline or {},
    )


def start(workdir: Path, options: Mapping[str, Any] | None = None) -> BaselineInput:
    return BaselineInput("r", workdir, options or {}, 30.0)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---- registration ----------------------------------------------------------------------------


def test_the_three_validators_register_through_the_hooks() -> None:
    plugins = load_plugins()  # the package's entry points, as in any installation
    found = {name: plugins.validators[name] for name in ("pytest", "ruff", "diff_size")}
    assert {v.stage for v in found.values()} == {"testing", "quality"}
    assert found["pytest"].stage == "testing" and found["pytest"].baseline is not None
    assert found["ruff"].baseline is None and not plugins.problems


# ---- pytest ----------------------------------------------------------------------------------


def test_pytest_names_the_tests_that_regressed_since_the_baseline(project: Path) -> None:
    baseline = pytest_tests.baseline_pytest(start(project))
    assert baseline["baseline_tests_failed"] == 0 and len(baseline["passed_tests"]) == 4
    assert "tests/check_calc.py::test_subtract" in baseline["passed_tests"]
    source = project / "calc" / "__init__.py"
    source.write_text(source.read_text().replace("return a - b", "return a + b"))
    write(project / "tests" / "check_more.py", "import missing_module\n")  # no longer collects

    result = pytest_tests.check_pytest(step(project, ("calc/__init__.py",), baseline=baseline))

    assert not result.passed
    assert result.figures["tests_regressed"] == [
        "tests/check_calc.py::test_subtract",
        "tests/check_more.py::test_add_zero",
    ]
    assert result.figures["tests_passed"] == 2 and result.figures["tests_failed"] == 2
    assert result.figures["tests_errors"] == 1  # the module that no longer imports
    assert result.score == 0.5
    assert "regressed (passed at the run's start): tests/check_calc.py::test_subtract" in (
        result.message
    )
    assert not list(project.rglob("__pycache__")) and not (project / ".pytest_cache").exists()


def test_pytest_does_not_count_a_test_that_already_failed_as_a_regression(project: Path) -> None:
    write(
        project / "tests" / "check_known.py", "def test_known_bug() -> None:\n    assert 1 == 2\n"
    )
    baseline = pytest_tests.baseline_pytest(start(project))
    assert baseline["failed_tests"] == ["tests/check_known.py::test_known_bug"]

    same = pytest_tests.check_pytest(step(project, baseline=baseline))
    assert same.passed and same.figures["tests_failed"] == 1
    assert same.figures["tests_regressed"] == [] and same.figures["baseline_tests_failed"] == 1
    assert "already failed at the run's start" in same.message
    assert same.score == pytest.approx(4 / 5)

    write(project / "tests" / "check_new.py", "def test_new_feature() -> None:\n    assert False\n")
    worse = pytest_tests.check_pytest(step(project, baseline=baseline))
    assert not worse.passed and worse.figures["tests_regressed"] == []
    assert "failing: tests/check_new.py::test_new_feature" in worse.message

    no_baseline = pytest_tests.check_pytest(step(project))
    assert not no_baseline.passed and "no baseline" in no_baseline.message


def test_pytest_counts_a_fixed_test(project: Path) -> None:
    baseline = {"passed_tests": [], "failed_tests": ["tests/check_calc.py::test_add"]}
    result = pytest_tests.check_pytest(step(project, baseline=baseline))
    assert result.passed and result.score == 1.0
    assert result.figures["tests_fixed"] == 1 and result.figures["baseline_tests_failed"] == 1


def test_pytest_without_tests_fails_unless_allowed(tmp_path: Path) -> None:
    empty = pytest_tests.check_pytest(step(tmp_path))
    assert not empty.passed and "collected no tests" in empty.message
    allowed = pytest_tests.check_pytest(step(tmp_path, options={"allow_no_tests": True}))
    assert allowed.passed and allowed.score == 1.0


HANGING_TEST = """
import os, subprocess, sys, time

def test_hangs() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open("pids.txt", "w") as handle:
        handle.write(f"{os.getpid()} {os.getpgid(0)} {child.pid}")
    time.sleep(60)
"""


def _live_processes(pids: list[int], group: int) -> list[int]:
    """Pids still running (zombies do not count) among `pids` and in process group `group`."""
    live = []
    for process in psutil.process_iter(["pid", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            in_group = os.getpgid(process.pid) == group
        except ProcessLookupError:
            continue
        if in_group or process.pid in pids:
            live.append(process.pid)
    return live


def test_pytest_hanging_suite_is_killed_with_its_whole_process_group(project: Path) -> None:
    write(project / "tests" / "check_hang.py", HANGING_TEST)
    started = time.monotonic()
    # 15 s: time for pytest to start and reach the hanging test (writing pids.txt) when busy.
    result = pytest_tests.check_pytest(step(project, timeout=15.0))
    assert time.monotonic() - started < 50  # not the 60 s the test sleeps
    assert not result.passed and "did not finish within 13.5s" in result.message
    runner, group, child = map(int, (project / "pids.txt").read_text().split())
    assert runner == group  # pytest led its own process group
    deadline = time.monotonic() + 30.0
    while _live_processes([runner, child], group) and time.monotonic() < deadline:
        time.sleep(0.05)  # the kill is sent; the kernel may take a moment to tear down
    assert _live_processes([runner, child], group) == []


@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        ("path.write_text('<testsuites><testcase')", "JUnit report is unreadable"),
        ("path.unlink()", "pytest wrote no JUnit report"),
        ("path.write_text('<html></html>')", "not <testsuites>"),
    ],
)
def test_pytest_unusable_junit_report_is_a_failed_check(
    project: Path, spoil: str, expected: str
) -> None:
    conftest = (
        "from pathlib import Path\n\n\ndef pytest_unconfigure(config):\n"
        f"    path = Path(config.option.xmlpath)\n    {spoil}\n"
    )
    write(project / "conftest.py", conftest)
    result = pytest_tests.check_pytest(step(project))
    assert not result.passed and result.score == 0.0
    assert expected in result.message and "pytest exited 0" in result.message


def test_pytest_rejects_bad_options_and_reports_usage_errors(project: Path) -> None:
    bad = pytest_tests.check_pytest(step(project, options={"args": "-x -q", "paths": [1]}))
    assert not bad.passed and "option 'paths' must be a list of strings" in bad.message
    missing = pytest_tests.check_pytest(step(project, options={"paths": ["no_such_dir"]}))
    assert not missing.passed and "exited 4 (usage error)" in missing.message
    assert "no_such_dir" in missing.message


def test_pytest_baseline_records_an_unusable_suite_as_an_error(project: Path) -> None:
    taken = pytest_tests.baseline_pytest(start(project, {"paths": ["no_such_dir"]}))
    assert set(taken) == {"error"} and "usage error" in taken["error"]


# ---- ruff ------------------------------------------------------------------------------------


def test_ruff_reports_findings_in_changed_files_only(project: Path) -> None:
    write(project / "calc" / "legacy.py", "import sys\n")  # not changed by the step
    write(project / "calc" / "fresh.py", '"""New."""\n\nimport os\n')
    files = ("calc/fresh.py", "calc/legacy.txt", "calc/deleted.py")

    result = ruff_lint.check_ruff(step(project, files))

    assert not result.passed
    assert result.figures["lint_errors"] == 1
    assert result.figures["lint_findings"] == ["calc/fresh.py:3:8 F401 `os` imported but unused"]
    assert "legacy.py" not in result.message and 0.0 < result.score < 1.0
    tolerant = ruff_lint.check_ruff(step(project, files, options={"max_errors": 1}))
    assert tolerant.passed and tolerant.figures["lint_errors"] == 1
    assert not (project / ".ruff_cache").exists()


def test_ruff_passes_clean_files_and_steps_without_python(project: Path) -> None:
    clean = ruff_lint.check_ruff(step(project, ("calc/__init__.py",)))
    assert clean.passed and clean.score == 1.0 and clean.figures["lint_errors"] == 0
    none = ruff_lint.check_ruff(step(project, ("README.md",)))
    assert none.passed and "no changed Python files" in none.message


def test_ruff_uses_the_projects_own_configuration(project: Path) -> None:
    write(project / "calc" / "fresh.py", "import os\n")
    write(project / "ruff.toml", '[lint]\nignore = ["F401"]\n')
    assert ruff_lint.check_ruff(step(project, ("calc/fresh.py",))).passed
    write(project / "ruff.toml", "[lint]\nselect = 12\n")
    broken = ruff_lint.check_ruff(step(project, ("calc/fresh.py",)))
    assert not broken.passed and "ruff exited 2" in broken.message


def test_ruff_missing_or_bad_options_are_failed_checks(project: Path) -> None:
    bad = ruff_lint.check_ruff(step(project, ("calc/__init__.py",), {"max_errors": "some"}))
    assert not bad.passed and "max_errors" in bad.message
    # An environment whose PATH has no ruff: the real situation of a project without it.
    (project.parent / "empty-bin").mkdir()
    bare = ProjectEnvironment(sys.executable, env={"PATH": str(project.parent / "empty-bin")})
    missing = ruff_lint.check_ruff(replace(step(project, ("calc/__init__.py",)), environment=bare))
    assert not missing.passed and "pip install ruff" in missing.message


# ---- diff_size -------------------------------------------------------------------------------


def test_diff_size_uses_the_steps_own_count_and_names_the_limit(tmp_path: Path) -> None:
    files = tuple(f"f{i}.py" for i in range(3))
    within = diff_size.check_diff_size(step(tmp_path, files, context={"lines_changed": 40}))
    assert within.passed and within.figures == {
        "lines_changed": 40,
        "files_changed": 3,
        "max_lines": 500,
        "max_files": 20,
    }
    options = {"max_lines": 20, "max_files": 3}
    lines = diff_size.check_diff_size(step(tmp_path, files, options, context={"lines_changed": 40}))
    assert not lines.passed and "over max_lines 20" in lines.message
    assert "max_files" not in lines.message and lines.score == 0.5
    options = {"max_files": 2}
    many = diff_size.check_diff_size(step(tmp_path, files, options, context={"lines_changed": 4}))
    assert not many.passed and "3 files changed, over max_files 2" in many.message


def test_diff_size_counts_with_git_when_the_context_has_no_count(project: Path) -> None:
    source = project / "calc" / "__init__.py"
    source.write_text(source.read_text().replace("return a * b", "return b * a") + "# end\n")
    write(project / "calc" / "new.py", "A = 1\nB = 2\nC = 3\n")
    files = ("calc/__init__.py", "calc/new.py")
    result = diff_size.check_diff_size(step(project, files))
    assert result.passed and result.figures["lines_changed"] == 3 + 3  # -1 +2 tracked, 3 new
    assert "git diff HEAD" in result.message


def test_diff_size_estimates_without_git_and_rejects_bad_limits(tmp_path: Path) -> None:
    write(tmp_path / "a.py", "x = 1\ny = 2\n")
    estimate = diff_size.check_diff_size(step(tmp_path, ("a.py", "gone.py")))
    assert estimate.figures["lines_changed"] == 2 and "estimated" in estimate.message
    bad = diff_size.check_diff_size(step(tmp_path, ("a.py",), {"max_lines": -1}))
    assert not bad.passed and "option 'max_lines'" in bad.message


# ---- baselines -------------------------------------------------------------------------------


def _validator(name: str, baseline: Any) -> Validator:
    def check(_: ValidationInput) -> CheckResult:
        return CheckResult(name, "testing", True, 1.0)

    return Validator(name, "testing", check, "", baseline)


def test_take_baselines_guards_each_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(baselines, "GRACE_SECONDS", 0.0)

    def boom(_: BaselineInput) -> dict[str, Any]:
        raise RuntimeError("boom")

    def hang(start: BaselineInput) -> dict[str, Any]:
        time.sleep(start.timeout_seconds + 2.0)
        return {}

    seen: list[BaselineInput] = []

    def good(start: BaselineInput) -> dict[str, Any]:
        seen.append(start)
        return {"passed_tests": ("a", "b")}

    validators = {
        "raises": _validator("raises", boom),
        "hangs": _validator("hangs", hang),
        "garbage": _validator("garbage", lambda _: ["not", "a", "mapping"]),
        "good": _validator("good", good),
        "without": _validator("without", None),
    }
    names = ["raises", "hangs", "garbage", "good", "good", "without", "unknown"]
    options: dict[str, dict[str, Any]] = {
        "hangs": {"timeout_seconds": 0.2},
        "good": {"paths": ["tests"]},
    }

    taken = take_baselines(validators, names, "r", tmp_path, 10.0, options)

    assert taken["raises"] == {"error": "baseline raised RuntimeError: boom"}
    assert taken["hangs"] == {"error": "baseline did not finish within 0.2s"}
    assert taken["garbage"] == {"error": "baseline returned list, not a mapping"}
    assert taken["good"] == {"passed_tests": ["a", "b"]}
    assert set(taken) == {"raises", "hangs", "garbage", "good"}
    assert len(seen) == 1 and seen[0].options == {"paths": ["tests"]}
    assert seen[0].timeout_seconds == 10.0 and seen[0].workdir == tmp_path


def test_baseline_options_keep_each_names_first_options() -> None:
    refs = [
        ValidatorRef.model_validate({"name": "pytest", "args": ["-x"]}),
        ValidatorRef.model_validate("ruff"),
        ValidatorRef.model_validate({"name": "pytest", "args": ["-k", "other"]}),
    ]
    assert baseline_options(refs) == {"pytest": {"args": ["-x"]}, "ruff": {}}


# ---- pytest with `select: affected` (pytest-testmon) ----------------------------------------

AFFECTED = {"select": "affected"}


def test_pytest_affected_runs_only_the_tests_a_change_reaches(project: Path) -> None:
    """The baseline runs every test and records what each runs; a step then runs only the tests
    that reach the changed code, a milestone every test again."""
    here = ProjectEnvironment(sys.executable, source="this interpreter")
    run_id = f"testmon-{time.monotonic_ns()}"
    begin = replace(start(project, AFFECTED), run_id=run_id, environment=here)
    baseline = pytest_tests.baseline_pytest(begin)
    assert len(baseline["passed_tests"]) == 4 and baseline["baseline_tests_failed"] == 0
    data = pytest_tests.testmon_datafile(run_id, project)
    assert data.exists() and not project.joinpath(".testmondata").exists()
    source = project / "calc" / "__init__.py"
    source.write_text(source.read_text().replace("return a - b", "return a + b"))

    changed = step(project, ("calc/__init__.py",), options=AFFECTED, baseline=baseline)
    result = pytest_tests.check_pytest(replace(changed, run_id=run_id, environment=here))

    assert not result.passed, result.message
    assert "tests_selection" in result.figures, result.message
    assert result.figures["tests_selection"] == "affected"
    assert result.figures["tests_total"] == 1  # test_subtract alone reaches subtract()
    assert result.figures["tests_regressed"] == ["tests/check_calc.py::test_subtract"]
    assert result.figures["tests_removed"] == 0  # the others were not selected, not removed

    milestone = replace(changed, run_id=run_id, environment=here, milestone=True)
    full = pytest_tests.check_pytest(milestone)
    assert full.figures["tests_selection"] == "all" and full.figures["tests_total"] == 4
    assert full.figures["tests_regressed"] == ["tests/check_calc.py::test_subtract"]
    data.unlink()


def test_pytest_select_must_name_a_known_selection(project: Path) -> None:
    result = pytest_tests.check_pytest(step(project, options={"select": "some"}))
    assert not result.passed
    assert result.message == "option 'select' must be one of all, affected, got 'some'"
