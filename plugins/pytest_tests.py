"""Validator `pytest`: runs the project's tests and compares them with the run-start baseline."""

from __future__ import annotations

import hashlib
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration import hookimpl
from orchestration.extension import (
    BaselineInput,
    CheckResult,
    PreflightInput,
    ProjectEnvironment,
    ValidationInput,
    Validator,
    run_process,
)

NAME = "pytest"
STAGE = "testing"
PROCESS_SHARE = 0.9  # of the validator's timeout; the rest is for reading the report
MAX_LISTED_TESTS = 50  # test ids kept in figures and messages
MAX_BASELINE_TESTS = 50_000  # test ids a baseline stores
FEEDBACK_CHARS = 2_000  # output tail shown in a failed check's message
EXIT_MEANINGS = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}
FAILING = frozenset({"failed", "error"})
# The report pins xunit1 so that each test case carries its file and the node id can be rebuilt.
# A module that fails to import is reported as an error; the other modules still run.
FIXED_ARGS = (
    "-q",
    "-p",
    "no:cacheprovider",
    "-o",
    "junit_family=xunit1",
    "--tb=short",
    "--continue-on-collection-errors",
    "--color=no",  # after the project's addopts, so a `--color=yes` there is overridden
)
# Asks the project's interpreter whether pytest is installed, without importing it.
HAS_PYTEST = "import importlib.util, sys; sys.exit(importlib.util.find_spec('pytest') is None)"
PREFLIGHT_SECONDS = 60.0
HAS_TESTMON = "import importlib.util, sys; sys.exit(importlib.util.find_spec('testmon') is None)"
# `select: affected`: pytest-testmon runs only the tests whose code the step changed. Its data
# (which code each test ran) lives outside the work tree, one file per run and work tree.
SELECTIONS = ("all", "affected")
TESTMON_PLUGIN = ("-p", "pytest-testmon")  # by entry point name: works with autoload off


class SuiteError(Exception):
    """The suite gave no usable report: the message says why, with the output tail."""


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """One run of the suite: each test id's outcome (passed, failed, error, skipped)."""

    exit_code: int
    outcomes: dict[str, str] = field(default_factory=dict)
    output: str = ""

    def ids(self, *kinds: str) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome in kinds}


def _string_list(options: Mapping[str, Any], key: str) -> list[str]:
    value = options.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise SuiteError(f"option '{key}' must be a list of strings")
    return list(value)


def _node_id(case: ET.Element) -> str:
    name, classname, file = (case.get(k, "") for k in ("name", "classname", "file"))
    if not file:
        return f"{classname}::{name}" if classname else name
    if not classname:
        return file  # a module that failed to collect
    module = file.removesuffix(".py").replace("/", ".")
    classes = classname.removeprefix(module).strip(".")
    return "::".join(part for part in (file, classes, name) if part)


def _outcome(case: ET.Element) -> str:
    tags = {child.tag for child in case}
    for tag, outcome in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
        if tag in tags:
            return outcome
    return "passed"


def parse_junit(path: Path) -> dict[str, str]:
    """Each test id's outcome from a JUnit XML report; SuiteError when it is missing or garbled."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise SuiteError("pytest wrote no JUnit report") from None
    except (ET.ParseError, OSError) as error:
        raise SuiteError(f"the JUnit report is unreadable ({error})") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise SuiteError(f"the JUnit report's root is <{root.tag}>, not <testsuites>")
    rank = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
    outcomes: dict[str, str] = {}
    for case in root.iter("testcase"):
        test, outcome = _node_id(case), _outcome(case)
        # A test that failed and then errored in teardown is reported twice: keep the worse.
        if rank[outcome] >= rank[outcomes.get(test, "passed")]:
            outcomes[test] = outcome
    return outcomes


def _tail(output: str) -> str:
    return output[-FEEDBACK_CHARS:].strip()


def selection(options: Mapping[str, Any]) -> str:
    """The `select` option: `all` (default) or `affected` (pytest-testmon)."""
    chosen = options.get("select", "all")
    if chosen not in SELECTIONS:
        raise SuiteError(f"option 'select' must be one of {', '.join(SELECTIONS)}, got {chosen!r}")
    return str(chosen)


def testmon_datafile(run_id: str, workdir: Path) -> Path:
    """Where pytest-testmon keeps a run's data for one work tree: in the temporary folder, never
    in the user's work tree (a missing file only means the next check runs every test)."""
    key = hashlib.sha256(f"{run_id}\0{workdir.resolve()}".encode()).hexdigest()[:24]
    folder = Path(tempfile.gettempdir()) / "orch-testmon"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{key}.testmondata"


def _without_cache_plugin(args: Sequence[str]) -> tuple[str, ...]:
    """`args` without `-p no:cacheprovider`."""
    kept: list[str] = []
    for arg in args:
        if arg == "no:cacheprovider" and kept and kept[-1] == "-p":
            kept.pop()
            continue
        kept.append(arg)
    return tuple(kept)


def run_suite(
    workdir: Path,
    options: Mapping[str, Any],
    timeout_seconds: float,
    environment: ProjectEnvironment,
    testmon: tuple[str, Path] | None = None,
) -> SuiteRun:
    """Run pytest with the project's interpreter, in its own process group, with a JUnit report.

    SuiteError when it gave none. The environment's variables leave no __pycache__ behind.
    `testmon`: (`--testmon` to run the affected tests, or `--testmon-noselect` to run all and
    record what each ran; its data file).
    """
    extra = _string_list(options, "args") + _string_list(options, "paths")
    budget = max(0.5, timeout_seconds * PROCESS_SHARE)
    with tempfile.TemporaryDirectory(prefix="orch-pytest-") as tmp:
        report = Path(tmp) / "junit.xml"
        fixed: tuple[str, ...] = FIXED_ARGS
        if testmon:
            # testmon reads the cache plugin's options (--lf): keep the plugin, its cache here
            cache = ("-o", f"cache_dir={Path(tmp) / 'cache'}")
            fixed = (*cache, *_without_cache_plugin(FIXED_ARGS), *TESTMON_PLUGIN, testmon[0])
        argv = environment.python_command("-m", "pytest", *fixed, f"--junitxml={report}", *extra)
        env = environment.process_env()
        if testmon:
            env = {**env, "TESTMON_DATAFILE": str(testmon[1])}
        ran = run_process(argv, cwd=workdir, env=env, timeout_seconds=budget)
        if ran.timed_out:
            raise SuiteError(
                f"pytest did not finish within {budget:g}s; its process group was killed:\n"
                + _tail(ran.output)
            )
        if ran.exit_code is None:
            raise SuiteError(f"pytest could not start: {_tail(ran.output)}")
        if ran.exit_code in (3, 4):
            meaning = EXIT_MEANINGS[ran.exit_code]
            raise SuiteError(f"pytest exited {ran.exit_code} ({meaning}):\n{_tail(ran.output)}")
        try:
            outcomes = parse_junit(report)
        except SuiteError as error:
            raise SuiteError(
                f"{error}; pytest exited {ran.exit_code}:\n{_tail(ran.output)}"
            ) from None
    return SuiteRun(ran.exit_code, outcomes, ran.output)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The current run against the baseline: what regressed, what is new, what got fixed."""

    has_baseline: bool
    baseline_failed: set[str]
    regressed: list[str]
    new_failures: list[str]
    fixed: list[str]
    new_tests_failing: int = 0  # failing tests the baseline did not know (a TDD step's tests)
    removed: int = 0  # tests the baseline ran that this run no longer collects
    newly_skipped: int = 0  # tests that passed at the baseline and are skipped or xfailed now


def compare(run: SuiteRun, baseline: Mapping[str, Any], *, selected: bool = False) -> Comparison:
    """Regressed: passed at run start, failing now (or its module no longer collects).
    `selected`: only the affected tests ran, so the others are not counted as removed."""
    failing = run.ids(*FAILING)
    passed_before = baseline.get("passed_tests")
    if "error" in baseline or not isinstance(passed_before, list | tuple):
        return Comparison(False, set(), [], sorted(failing), [])
    failed_before = {str(t) for t in baseline.get("failed_tests") or ()}
    broken_modules = {t for t in failing if "::" not in t}
    regressed = [
        str(t) for t in passed_before if t in failing or str(t).split("::", 1)[0] in broken_modules
    ]
    fixed = sorted(failed_before & run.ids("passed"))
    known = {str(t) for t in passed_before} | failed_before
    collected = set(run.outcomes)
    # a module that no longer imports reports one error instead of its tests: not "removed"
    still_there = {t for t in known - collected if t.split("::", 1)[0] in broken_modules}
    return Comparison(
        True,
        failed_before,
        sorted(regressed),
        sorted(failing - failed_before),
        fixed,
        new_tests_failing=sum(1 for t in failing if t not in known and "::" in t),
        removed=0 if selected else len(known - collected - still_there),
        newly_skipped=len({str(t) for t in passed_before} & run.ids("skipped")),
    )


def _listed(tests: Sequence[str]) -> str:
    shown = ", ".join(tests[:MAX_LISTED_TESTS])
    more = len(tests) - MAX_LISTED_TESTS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _figures(run: SuiteRun, comparison: Comparison) -> dict[str, Any]:
    failing = sorted(run.ids(*FAILING))
    return {
        "tests_passed": len(run.ids("passed")),
        "tests_failed": len(failing),
        "tests_errors": len(run.ids("error")),
        "tests_skipped": len(run.ids("skipped")),
        "tests_total": len(run.outcomes),
        "failed_tests": failing[:MAX_LISTED_TESTS],
        "baseline_tests_failed": len(comparison.baseline_failed),
        "tests_regressed": comparison.regressed[:MAX_LISTED_TESTS],
        "tests_regressed_count": len(comparison.regressed),
        "tests_fixed": len(comparison.fixed),
        "tests_new_failing": comparison.new_tests_failing,
        "tests_removed": comparison.removed,
        "tests_skipped_new": comparison.newly_skipped,
        "pytest_exit_code": run.exit_code,
    }


def _verdict(run: SuiteRun, comparison: Comparison, figures: Mapping[str, Any]) -> tuple[bool, str]:
    counts = f"{figures['tests_passed']} passed, {figures['tests_failed']} failed"
    counts += f", {figures['tests_skipped']} skipped"
    if not figures["tests_failed"]:
        return True, counts
    if comparison.has_baseline and not comparison.new_failures:
        return True, f"{counts}; every failing test already failed at the run's start"
    lines = [counts]
    if comparison.regressed:
        lines.append(f"regressed (passed at the run's start): {_listed(comparison.regressed)}")
    others = [t for t in comparison.new_failures if t not in set(comparison.regressed)]
    if others:
        lines.append(f"failing: {_listed(others)}")
    return False, "\n".join([*lines, _tail(run.output)])


def _step_suite(step: ValidationInput) -> tuple[SuiteRun, bool]:
    """Run the suite for a step: with `select: affected`, the affected tests only, except at a
    milestone (every test, which also refreshes testmon's data). True: a selection ran."""
    if selection(step.options) == "all":
        return run_suite(step.workdir, step.options, step.timeout_seconds, step.environment), False
    mode = "--testmon-noselect" if step.milestone else "--testmon"
    data = testmon_datafile(step.run_id, step.workdir)
    run = run_suite(
        step.workdir, step.options, step.timeout_seconds, step.environment, (mode, data)
    )
    return run, not step.milestone


def check_pytest(step: ValidationInput) -> CheckResult:
    """Passes when no test fails, or when every failing test already failed at run start."""
    try:
        run, selected = _step_suite(step)
    except SuiteError as error:
        return CheckResult(NAME, STAGE, False, 0.0, str(error))
    comparison = compare(run, step.baseline, selected=selected)
    figures = _figures(run, comparison)
    figures["tests_selection"] = "affected" if selected else "all"
    if selected and not run.outcomes and run.exit_code == 5:
        message = "no test is affected by this step's changes (pytest-testmon)"
        return CheckResult(NAME, STAGE, True, 1.0, message, figures)
    if run.exit_code == 5 or not run.outcomes:
        allowed = bool(step.options.get("allow_no_tests"))
        message = "pytest collected no tests" + ("" if allowed else " (allow_no_tests is off)")
        return CheckResult(NAME, STAGE, allowed, 1.0 if allowed else 0.0, message, figures)
    passed, message = _verdict(run, comparison, figures)
    executed = figures["tests_passed"] + figures["tests_failed"]
    score = figures["tests_passed"] / executed if executed else float(passed)
    if not comparison.has_baseline:
        message += "\n(no baseline from the run's start: every failing test counts)"
    return CheckResult(NAME, STAGE, passed, score, message, figures)


def baseline_pytest(start: BaselineInput) -> dict[str, Any]:
    """Run the suite at run start: which tests pass and which already fail."""
    try:
        testmon = None
        if selection(start.options) == "affected":  # every test, recording what each runs
            testmon = ("--testmon-noselect", testmon_datafile(start.run_id, start.workdir))
        run = run_suite(
            start.workdir, start.options, start.timeout_seconds, start.environment, testmon
        )
    except SuiteError as error:
        return {"error": str(error)}
    failing = sorted(run.ids(*FAILING))
    return {
        "passed_tests": sorted(run.ids("passed"))[:MAX_BASELINE_TESTS],
        "failed_tests": failing[:MAX_BASELINE_TESTS],
        "baseline_tests_failed": len(failing),
        "tests_total": len(run.outcomes),
    }


def preflight_pytest(start: PreflightInput) -> str | None:
    """A problem when the project's interpreter cannot start or has no pytest installed."""
    environment = start.environment
    argv = environment.python_command("-c", HAS_PYTEST)
    ran = run_process(
        argv, cwd=start.workdir, env=environment.process_env(), timeout_seconds=PREFLIGHT_SECONDS
    )
    if ran.exit_code == 0:
        return _testmon_problem(start)
    where = environment.describe()
    if ran.exit_code == 1:
        install = (
            "add it to the project's development dependencies (with uv: `uv add --dev pytest`)"
            if environment.command_prefix
            else f"`{environment.python} -m pip install pytest`"
        )
        return (
            f"pytest is not installed in the project's environment {where}; install it: {install}"
        )
    return f"the project's interpreter {where} did not run: {ran.output[-FEEDBACK_CHARS:].strip()}"


def _testmon_problem(start: PreflightInput) -> str | None:
    """With `select: affected`, a problem when the project lacks pytest-testmon."""
    try:
        if selection(start.options) == "all":
            return None
    except SuiteError as error:
        return str(error)
    environment = start.environment
    argv = environment.python_command("-c", HAS_TESTMON)
    ran = run_process(
        argv, cwd=start.workdir, env=environment.process_env(), timeout_seconds=PREFLIGHT_SECONDS
    )
    if ran.exit_code == 0:
        return None
    return (
        f"option select: affected needs pytest-testmon in the project's environment "
        f"{environment.describe()}; install it (`pip install pytest-testmon`)"
    )


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            NAME,
            STAGE,
            check_pytest,
            "Runs the project's tests with pytest; fails on tests that passed at the run's start "
            "and fail now, or on new failing tests.",
            baseline=baseline_pytest,
            preflight=preflight_pytest,
        )
    ]
