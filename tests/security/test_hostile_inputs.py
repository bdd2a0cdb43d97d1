"""Inputs the engine was probed with before stay handled: rule expressions, plan files, markup.

Each hostile input ends in a clear error (RuleError, exit 2) or a bounded, harmless result: never
another exception, exit 70, a traceback, a hang, a side effect, or markup the browser runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestration.context import neutral_context
from orchestration.errors import RuleError
from orchestration.expressions import compile_expression
from orchestration.rules import evaluate_breakpoints, load_rules
from tests.helpers import orch

DATA = Path(__file__).resolve().parent.parent / "data" / "hostile"
BOUND_S = 5.0  # per input: a safety net against a hang, not a speed test
CLI_BOUND_S = 120
MAX_RESULT_CHARS = 1_000_000  # a bounded result: a rule decides, it does not build megabytes


# ---- helpers --------------------------------------------------------------------------------


def within_bound(work: Callable[[], Any], bound: float = BOUND_S) -> Any:
    """Run `work` on a thread; fail (not hang) when it takes longer than `bound` seconds."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # reported to the test below, whatever it is
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - started
    assert not thread.is_alive() and elapsed <= bound, f"still running after {elapsed:.1f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# ---- 1. rule expressions --------------------------------------------------------------------


def listed_expressions() -> list[str]:
    lines = (DATA / "expressions.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def generated_expressions() -> list[str]:
    """Inputs too long to keep on a line: deep nesting and long chains."""
    return [
        "(" * 10_000 + "1" + ")" * 10_000,
        "(" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        "(" * 90 + "1" + ")" * 90,  # within the length limit, deeper than a parser likes
        "[" * 300 + "]" * 300,
        "-" * 1900 + "1",
        "not " * 450 + "True",
        "+".join(["1"] * 900),
        " and ".join(["True"] * 300),
        "title" + "[0]" * 600,
        "'" + "a" * 1990 + "'",
        "1" * 2001,
        "f(" * 600 + ")" * 600,
        "{" * 900 + "}" * 900,
        "lambda: " * 200 + "1",
        "a if b else " * 150 + "c",
    ]


EXPRESSIONS = listed_expressions() + generated_expressions()


def hostile_context(marker: Path) -> dict[str, Any]:
    context = neutral_context()
    context.update(
        title="x" * 40,
        task_id="t",
        tags=("a", "b"),
        output_tail="a" * 34 + "!",
        result={"confidence": 0.5},
    )
    return context


def rule_file(expression: str) -> str:
    body = {"breakpoints": [{"name": "hostile", "at": "after", "when": expression}]}
    return yaml.safe_dump(body, allow_unicode=True, width=10**9, sort_keys=False)


def check_one_expression(expression: str, marker: Path) -> str:
    """Load and evaluate one expression; return 'refused', 'error' or 'value'."""
    try:
        rules = load_rules(texts=[("hostile.yaml", rule_file(expression))], include_defaults=False)
    except RuleError as error:
        assert error.file == "hostile.yaml", error
        assert error.rule == "hostile" or error.line is not None, error
        try:
            compile_expression(expression, rule="hostile")
        except RuleError as direct:
            assert direct.rule == "hostile", direct
        return "refused"
    context = hostile_context(marker)
    fired = evaluate_breakpoints(rules, "after", context)
    assert all(error is None or isinstance(error, RuleError) for _, error in fired), fired
    assert all(rule.name == "hostile" for rule, _ in fired)
    try:
        value = rules.breakpoints[0].when.evaluate(context)
    except RuleError as error:
        assert error.rule == "hostile", error
        return "error"
    assert len(repr(value)) <= MAX_RESULT_CHARS, f"a result of {len(repr(value))} characters"
    return "value"


def test_the_corpus_holds_what_it_promises() -> None:
    assert len(EXPRESSIONS) >= 120
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS), "a listed expression is repeated"


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: repr(e[:40]))
def test_a_hostile_expression_is_refused_or_bounded(expression: str, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    source = expression.replace("MARKER", str(marker))
    outcome = within_bound(lambda: check_one_expression(source, marker))
    assert outcome in {"refused", "error", "value"}
    assert not marker.exists(), "the expression had a side effect"


def test_escapes_and_bombs_never_load() -> None:
    """The worst of the corpus is refused when the rule file loads, not merely when it runs."""
    for expression in (
        "().__class__",
        "tags.__len__",
        "__import__('os')",
        "(lambda: 1)()",
        "[x for x in range(10**9)]",
        "open('/etc/passwd').read()",
        "import os",
        "undefined_name",
        "1 +",
        "True()",
        "matches(output_tail, '(a+)+$')",
    ):
        with pytest.raises(RuleError) as caught:
            within_bound(lambda e=expression: compile_expression(e, rule="hostile"))
        assert caught.value.rule == "hostile"


def test_orch_rules_check_refuses_a_sample_by_file_and_line(tmp_path: Path) -> None:
    sample = ["().__class__", "9**9**9", "'a'*10**9", "(" * 10_000, "__import__('os')"]
    for number, expression in enumerate(sample):
        path = tmp_path / f"rules{number}.yaml"
        path.write_text(rule_file(expression))
        done = orch("rules", "check", str(path), timeout=CLI_BOUND_S)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:  # loads: it must then be one a run evaluates safely
            assert check_one_expression(expression, tmp_path / "m") in {"error", "value"}
            continue
        assert done.returncode == 2, (expression[:40], done.returncode, done.stderr)
        assert f"{path}:4" in done.stderr.replace("\n", " "), done.stderr
        assert "hostile" in done.stderr, done.stderr
