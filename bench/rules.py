"""Microseconds per rule-expression evaluation for the default rule set (`python -m bench.rules`).

Every expression of the default rules (breakpoints and decisions) is evaluated against a typical
after-step context, frozen once the way the engine freezes it (`--plain` passes the plain dict
instead, so each evaluation freezes the names it reads).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from orchestration.context import freeze, neutral_context
from orchestration.expressions import Expression
from orchestration.rules import load_rules


def after_step_context() -> dict[str, Any]:
    """A failed second attempt that touched a few files: most rules read most of their names."""
    context = neutral_context()
    context.update(
        task_id="t42",
        title="Add retry to the HTTP client",
        tags=("backend", "http"),
        priority="high",
        risk="medium",
        confidence=0.72,
        attempt=2,
        max_attempts=3,
        exit_code=1,
        duration_seconds=41.5,
        output_tail="collected 120 items\n" + "." * 400 + "F\nFAILED tests/test_client.py::test_retry\n"
        "1 failed, 119 passed in 3.21s\n",
        error_kind="transient",
        changed_files=("src/client.py", "tests/test_client.py", "docs/client.md"),
        changed_files_count=3,
        lines_changed=87,
        tests_passed=119,
        tests_failed=1,
        baseline_tests_failed=0,
        tests_regressed=("tests/test_client.py::test_retry",),
        lint_errors=2,
        stage_scores={"syntax": 1.0, "requirements": 0.5, "quality": 0.8, "testing": 0.6},
        quality_score=0.71,
        gate_passed=False,
        decision="retry",
        consecutive_failures=1,
        run_failures=2,
        completed_count=17,
        total_count=40,
        run_elapsed_seconds=1830.0,
        task_elapsed_seconds=95.0,
        result={"confidence": 0.72, "alternatives": ["a"]},
        now_hour=14,
    )
    return context


def default_expressions() -> list[Expression]:
    rules = load_rules()
    expressions = [rule.when for rule in rules.breakpoints]
    expressions += [rule.when for rule in rules.decisions if rule.when is not None]
    return expressions


def measure(
    expressions: list[Expression], context: Mapping[str, Any], seconds: float
) -> tuple[float, int]:
    """Mean µs per evaluation over whole passes of `expressions`, and how many evaluations ran."""
    for expression in expressions:  # warm up (regex caches, first-call costs)
        _evaluate(expression, context)
    evaluations = 0
    started = time.perf_counter()
    while True:
        for expression in expressions:
            _evaluate(expression, context)
        evaluations += len(expressions)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return elapsed / evaluations * 1e6, evaluations


def _evaluate(expression: Expression, context: Mapping[str, Any]) -> None:
    try:
        expression.evaluate(context)
    except Exception:  # a rule may legitimately fail on this context; its cost still counts
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time to measure for")
    parser.add_argument(
        "--plain", action="store_true", help="pass a plain dict (freeze per evaluation)"
    )
    args = parser.parse_args(argv)
    expressions = default_expressions()
    raw = after_step_context()
    context: Mapping[str, Any] = raw if args.plain else freeze(raw)
    per_evaluation, count = measure(expressions, context, args.seconds)
    shape = "plain dict" if args.plain else "frozen context"
    print(
        f"{len(expressions)} default rule expressions, {shape}: "
        f"{per_evaluation:.2f} µs per evaluation ({count:,} evaluations)"
    )


if __name__ == "__main__":
    main()
