"""What `select: affected` saves per attempt: `python -m bench.testmon_savings --project DIR`.

DIR is a Python library with its tests (e.g. an unpacked sdist: `pip download --no-binary :all:
--no-deps toolz`). It is copied to a temporary folder; the pytest validator takes its baseline
with `select: affected` (every test, recording what each runs). Then each of `--attempts`
attempts changes one function of the library (a statement added at the top of its body), and the
validator checks it twice: with `select: all` (every test) and `select: affected` (the tests
pytest-testmon finds reach the change). Prints seconds per attempt for each, and the saving.
Needs pytest and pytest-testmon in this interpreter (`pip install 'orchestration[testmon]'`).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from orchestration.core.models import TaskSpec
from orchestration.extension import BaselineInput, ProjectEnvironment, ValidationInput
from orchestration.plugins import pytest_tests

MARK = "_orch_bench_touch = None  # added by bench.testmon_savings"


def functions(source: Path) -> list[tuple[Path, int, int]]:
    """(file, line, column) where a statement can go at the top of each function's body."""
    found = []
    for path in sorted(source.rglob("*.py")):
        if "tests" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
                first = node.body[0]
                docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                after = first.end_lineno if docstring else first.lineno - 1
                if after is not None and (len(node.body) > 1 or not docstring):
                    found.append((path, after, node.body[-1].col_offset))
    return found


def touch(path: Path, after: int, column: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(after, " " * column + MARK + "\n")
    path.write_text("".join(lines))


def step(
    workdir: Path, select: str, paths: list[str], run_id: str, extra: list[str]
) -> ValidationInput:
    spec = TaskSpec(id="t", action={"kind": "shell", "run": ["true"]})
    here = ProjectEnvironment(sys.executable, source="this interpreter")
    options = {"select": select, "paths": paths, "args": extra}
    return ValidationInput(
        run_id, spec, 1, workdir, (), 0, "", {}, options, {}, 600.0, environment=here
    )


def timed_check(check: ValidationInput) -> tuple[float, int]:
    started = time.perf_counter()
    result = pytest_tests.check_pytest(check)
    return time.perf_counter() - started, int(result.figures.get("tests_total", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", type=Path, required=True, help="a library with its tests")
    parser.add_argument("--package", required=True, help="its source folder inside --project")
    parser.add_argument("--tests", nargs="+", required=True, help="its test paths")
    parser.add_argument(
        "--arg", dest="args", action="append", default=[], help="a pytest argument (repeat it)"
    )
    parser.add_argument("--attempts", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins the validator asks for
    with tempfile.TemporaryDirectory(prefix="orch-testmon-") as tmp:
        workdir = Path(tmp) / "project"
        shutil.copytree(args.project, workdir, ignore=shutil.ignore_patterns("__pycache__"))
        run_id = f"bench-{os.getpid()}"
        here = ProjectEnvironment(sys.executable, source="this interpreter")
        options = {"select": "affected", "paths": args.tests, "args": args.args}
        started = time.perf_counter()
        baseline = pytest_tests.baseline_pytest(
            BaselineInput(run_id, workdir, options, 600.0, here)
        )
        print(
            f"baseline (every test, recorded): {time.perf_counter() - started:.2f} s, "
            f"{baseline.get('tests_total')} tests"
        )
        spots = functions(workdir / args.package)
        chosen = random.Random(args.seed).sample(spots, min(args.attempts, len(spots)))
        full_times, affected_times, selected = [], [], []
        for path, after, column in chosen:
            touch(path, after, column)
            full = step(workdir, "all", args.tests, run_id, args.args)
            full_seconds, _ = timed_check(replace(full, baseline=baseline))
            affected = step(workdir, "affected", args.tests, run_id, args.args)
            seconds, count = timed_check(replace(affected, baseline=baseline))
            full_times.append(full_seconds)
            affected_times.append(seconds)
            selected.append(count)
        pytest_tests.testmon_datafile(run_id, workdir).unlink(missing_ok=True)
    full_s, affected_s = statistics.median(full_times), statistics.median(affected_times)
    print(f"attempts: {len(chosen)}, each changing one function of {args.package}")
    print(f"select: all       median {full_s:.2f} s per attempt")
    print(
        f"select: affected  median {affected_s:.2f} s per attempt, "
        f"median {statistics.median(selected):.0f} tests run"
    )
    print(f"saved: {full_s - affected_s:.2f} s per attempt ({1 - affected_s / full_s:.0%})")


if __name__ == "__main__":
    main()
