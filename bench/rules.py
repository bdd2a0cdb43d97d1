"""Microseconds per rule-expression evaluation for the default rule set (`python -m bench.rules`).

Every expression of the default rules (breakpoints and decisions) is evaluated against a typical
after-step context, frozen once the way the engine freezes it (`--plain` passes the plain dict
instead, so each evaluation freezes the names it reads). Each figure is measured twice: for the
same values again (a frozen context whose values an expression has seen is answered from its
memo) and walking simpleeval's tree every time (a plain dict, never memoised). Rules calling
matches() spend most of their time in the regex search itself, which no evaluator can speed up;
they are also shown apart.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from orchestration.core.context import freeze, neutral_context
from orchestration.core.errors import RuleError
from orchestration.rules.expressions import Expression
from orchestration.rules.rule_files import load_rules


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
        output_tail="collected 120 items\n"
        + "." * 400
        + "F\nFAILED tests/test_client.py::test_retry\n"
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


Evaluate = Callable[[Expression, Mapping[str, Any]], Any]


def measure(
    expressions: list[Expression], evaluate: Evaluate, context: Mapping[str, Any], seconds: float
) -> float:
    """Mean µs per evaluation over whole passes of `expressions` for about `seconds`."""
    for expression in expressions:  # warm up (regex caches, first-call costs)
        _run(evaluate, expression, context)
    evaluations = 0
    started = time.perf_counter()
    while True:
        for expression in expressions:
            _run(evaluate, expression, context)
        evaluations += len(expressions)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return elapsed / evaluations * 1e6


def _run(evaluate: Evaluate, expression: Expression, context: Mapping[str, Any]) -> None:
    with contextlib.suppress(RuleError):  # a rule may fail on this context; its cost counts
        evaluate(expression, context)


def _calls_matches(expression: Expression) -> bool:
    return "matches(" in expression.source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args(argv)
    everything = default_expressions()
    raw = after_step_context()
    frozen = freeze(raw)
    groups = [
        ("all default rule expressions", everything),
        ("those without matches()", [e for e in everything if not _calls_matches(e)]),
        ("those with matches()", [e for e in everything if _calls_matches(e)]),
    ]
    print("µs per evaluation, typical after-step context")
    print(f"{'':40} {'same values':>12} {'tree walk':>10}")
    for label, expressions in groups:
        repeated = measure(expressions, Expression.evaluate, frozen, args.seconds)
        walked = measure(expressions, Expression.evaluate, raw, args.seconds)
        title = f"{label} ({len(expressions)})"
        print(f"{title:40} {repeated:12.2f} {walked:10.2f}")


if __name__ == "__main__":
    main()
