"""The expression sandbox: what rules may compute, and hostile input that must end in RuleError."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.core.context import CONTEXT_NAME_SET, FrozenMap, freeze, neutral_context
from orchestration.core.errors import RuleError
from orchestration.rules import expressions
from orchestration.rules.expressions import MAX_EXPRESSION_CHARS, Expression, compile_expression


def context(**values: Any) -> dict[str, Any]:
    base = neutral_context()
    base.update(values)
    return base


def evaluate(source: str, **values: Any) -> Any:
    return compile_expression(source, rule="r").evaluate(context(**values))


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        (
            "exit_code == 75 or contains(lower(output_tail), 'rate limit')",
            {"exit_code": 1, "output_tail": "Rate Limit"},
            True,
        ),
        ("result['confidence'] < 0.5", {"result": {"confidence": 0.3}}, True),
        ("get(result, 'cost_usd', 0) > 1", {"result": {}}, False),
        ("get(result, 'cost_usd', 0) > 1", {"result": {"cost_usd": 2}}, True),
        ("get(tags, 0)", {"tags": ["a", "b"]}, "a"),
        ("get(tags, 5, 'none')", {"tags": ["a"]}, "none"),
        ("'milestone' in tags", {"tags": ["milestone"]}, True),
        ("risk in ['high', 'medium']", {"risk": "medium"}, True),
        ("contains(None, 'x')", {}, False),
        ("contains(result, 'k')", {"result": {"k": 1}}, True),
        ("contains(tags, 3)", {"tags": ["3"]}, False),
        ("contains(output_tail, 3)", {"output_tail": "3"}, False),
        ("matches(output_tail, r'(?i)\\b429\\b')", {"output_tail": "HTTP 429 too many"}, True),
        (
            "matches(changed_files, r'(^|/)migrations/')",
            {"changed_files": ["a.py", "db/migrations/1.py"]},
            True,
        ),
        ("matches(exit_code, 'x')", {"exit_code": None}, False),
        (
            "len(changed_files) == changed_files_count",
            {"changed_files": ["a"], "changed_files_count": 1},
            True,
        ),
        ("len(None)", {}, 0),
        ("upper(lower(title))", {"title": "Ab"}, "AB"),
        ("lower(None)", {}, ""),
        ("any(tags) and all([1, 2])", {"tags": ["", "x"]}, True),
        ("min(1, 2) + max([3, 4]) + abs(-1)", {}, 6),
        ("round(confidence, 1)", {"confidence": 0.44}, 0.4),
        (
            "stage_scores['testing'] if gate_passed else -1",
            {"gate_passed": True, "stage_scores": {"testing": 0.5}},
            0.5,
        ),
        ("2 ** 10 + 7 // 2 - 7 % 3", {}, 1024 + 3 - 1),
        ("output_tail[-3:]", {"output_tail": "abcdef"}, "def"),
        ("not timed_out and exit_code is None", {}, True),
    ],
)
def test_expressions_compute_what_rules_need(
    source: str, values: dict[str, Any], expected: Any
) -> None:
    assert evaluate(source, **values) == expected


def test_names_and_source_are_exposed() -> None:
    expression = compile_expression("len(tags) > attempt and lower(title) == 'x'")
    assert expression.names == frozenset({"tags", "attempt", "title"})
    assert expression.source == "len(tags) > attempt and lower(title) == 'x'"


def test_custom_names_and_plugin_functions() -> None:
    double = compile_expression(
        "twice(n) == 4", names=frozenset({"n"}), functions={"twice": lambda v: v * 2}
    )
    assert double.evaluate({"n": 2}) is True
    listing = compile_expression(
        "as_list(n)", names=frozenset({"n"}), functions={"as_list": lambda v: [v, [v]]}
    )
    assert listing.evaluate({"n": 1}) == (1, (1,))  # plugin results are frozen too
    with pytest.raises(RuleError, match="unknown name 'attempt'"):
        compile_expression("attempt > 1", names=frozenset({"n"}))


def test_plugin_function_failure_is_a_rule_error() -> None:
    def broken(value: Any) -> Any:
        raise ValueError("bad input")

    expression = compile_expression("broken(1)", functions={"broken": broken}, rule="p")
    with pytest.raises(RuleError, match="bad input"):
        expression.evaluate(context())


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("attempt >", "syntax error", 10),
        ("attemtp > 1", "did you mean 'attempt'", 1),
        ("exit_code == 0 and reslt", "did you mean 'result'", 20),
        ("title.lower()", "attribute access", 1),
        ("title.x", "attribute access", 1),
        ("foo(1)", "unknown function 'foo'", 1),
        ("len", "must be called", 1),
        ("round(x=1)", "keyword arguments", 1),
        ("matches(title, '(a+)+$')", "nested quantifiers", 16),
        ("matches(title, '(a)\\\\1')", "backreferences", 16),
        ("'\\d' in title", "raw strings", 1),
    ],
)
def test_load_errors_name_the_problem_and_column(
    source: str, message: str, column: int | None
) -> None:
    with pytest.raises(RuleError, match=message) as caught:
        compile_expression(source, file="rules.yaml", rule="my_rule", line=7)
    error = caught.value
    assert (error.file, error.rule, error.line, error.column) == (
        "rules.yaml",
        "my_rule",
        7,
        column,
    )
    assert "rules.yaml:7" in str(error) and "rule 'my_rule'" in str(error)


def test_missing_result_key_is_a_rule_error_that_suggests_get() -> None:
    with pytest.raises(RuleError, match=r"no key 'confidence'.*get\(mapping, key, default\)"):
        evaluate("result['confidence'] > 0.5", result={})


def test_missing_context_name_is_a_rule_error() -> None:
    with pytest.raises(RuleError, match="no value for 'attempt'"):
        compile_expression("attempt > 1", rule="r").evaluate({})


# Each of these must end in RuleError, at load or at evaluation, fast, with the process intact.
HOSTILE: list[str] = [
    "9**9**9",
    "10**10**10",
    "2**100000",
    "(-3)**99999",
    "'a'*10**9",
    "'ab'*60000",
    "[1]*10**8",
    "[output_tail]*100000",
    "(1,)*10001",
    "'a'*99999 + 'b'*99999",
    "output_tail*100000",
    "'%0999999999d' % 1",
    "'%s' % title",
    "(" * 5000 + "1" + ")" * 5000,
    "-(" * 120 + "1" + ")" * 120,
    "-" * 1999 + "1",
    "not " * 400 + "True",
    "[" * 60 + "]" * 60,
    "1 + " * 600 + "1",
    "x" * (MAX_EXPRESSION_CHARS + 1),
    "().__class__.__bases__[0].__subclasses__()",
    "title.__class__",
    "'{0.__class__}'.format(1)",
    "f'{title!r:>999999999}'",
    "format(1, '>999999999')",
    "__import__('os').system('echo hi')",
    "import os",
    "getattr(title, '__class__')",
    "eval('1')",
    "exec('x=1')",
    "open('/etc/passwd')",
    "lambda: 1",
    "(lambda: 1)()",
    "[x for x in range(10**9)]",
    "[[x for x in tags] for y in tags]",
    "{x: 1 for x in tags}",
    "(x := 1)",
    "len(*tags)",
    "title()",
    "tags[0](1)",
    "len()()",
    "result['missing']",
    "1/0",
    "1 % 0",
    "tags[99]",
    "min([])",
    "round(1, 10**9)",
    "lower(1)",
    "matches('a'*50 + '!', '(a+)+$')",
    "matches(output_tail, '(a|aa)+$')",
    "matches(output_tail, '(x*)*y')",
    "matches(output_tail, '(a)\\\\1')",
    "matches(output_tail, 'a' * 500)",
    "matches(output_tail, '[')",
    "matches(output_tail, title)",  # a pattern from the data is checked at evaluation
    "'a' < 1",
    "{'a': 1}",
    "1j",
    "...",
    "b'x'",
    "yield 1",
    "await x",
    "attempt\x00",
    "",
    "   ",
    # Repetition nesting small tuples inside each other: one comparison would walk 10**12 values.
    "((((1,)*100,)*100,)*100,)*100 == ((((1,)*100,)*100,)*100,)*100",
    "min(((1,)*10000,)*10000, ((1,)*10000,)*10000)",
    "(((1,)*1000,)*1000,)*1000 == (((1,)*1000,)*1000,)*1000",
    "((1,)*5000,) + ((1,)*5000,)",
    "(output_tail,) * 10001",
]


@pytest.mark.parametrize("source", HOSTILE, ids=lambda s: repr(s[:40]))
def test_hostile_expressions_end_in_rule_error_quickly(source: str) -> None:
    values = context(output_tail="a" * 20_000 + "!", title="(a+)+$", tags=["x"])
    # A full collection of what earlier tests left behind would land in this window and be
    # counted against the expression; it is not the expression's work.
    gc.collect()
    started = time.perf_counter()
    with pytest.raises(RuleError) as caught:
        compile_expression(source, rule="hostile", file="f.yaml", line=1).evaluate(values)
    elapsed = time.perf_counter() - started
    assert caught.value.rule == "hostile"
    assert elapsed < 0.1, f"{source[:40]!r} took {elapsed:.3f}s"


def test_hostile_list_is_long_enough() -> None:
    assert len(HOSTILE) >= 30


def test_catastrophic_regex_from_the_context_is_cut_off() -> None:
    # The pattern passes the static check (no nested quantifier) but still backtracks a lot:
    # the regex time limit ends it.
    expression = compile_expression("matches(output_tail, '.*a.*b.*c.*d')", rule="slow")
    gc.collect()  # as above: earlier tests' garbage is not this expression's time
    started = time.perf_counter()
    with pytest.raises(RuleError, match="took over"):
        expression.evaluate(context(output_tail="a" * 20_000))
    assert time.perf_counter() - started < 0.1


def test_evaluation_never_mutates_or_exposes_the_context() -> None:
    values = context(result={"k": [1, 2]}, tags=["a"])
    value = compile_expression("result").evaluate(values)
    assert isinstance(value, FrozenMap)
    assert isinstance(value["k"], tuple)
    assert values["result"] == {"k": [1, 2]}


def test_freeze_rejects_cycles_depth_size_and_objects() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="cyclic"):
        freeze(cyclic)
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="deeper"):
        freeze(deep)
    with pytest.raises(ValueError, match="too large"):
        freeze(list(range(200_000)))
    with pytest.raises(TypeError, match="object"):
        freeze(object())
    assert freeze({"a": [1, {"b": {2, 3}}]}) == {"a": (1, {"b": frozenset({2, 3})})}


def test_cyclic_context_is_a_rule_error() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(RuleError, match="cyclic"):
        evaluate("len(result) > 0", result=cyclic)


def test_one_expression_evaluates_correctly_from_many_threads() -> None:
    expression = compile_expression("attempt * 2 + len(tags)")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(200):
                assert expression.evaluate(context(attempt=n, tags=["a"] * n)) == 3 * n
        except BaseException as error:  # collected and re-raised in the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors


TOKENS = [*"()[]{}'\"+-*/%<>=!.,:_ abcrt019\\", "**", "tags", "result", "len(", "matches("]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_arbitrary_text_either_works_or_is_a_rule_error(source: str) -> None:
    try:
        expression = compile_expression(source)
        expression.evaluate(context(result={"a": 1}, tags=["x"]))
    except RuleError:
        pass


def test_expression_is_immutable_in_use() -> None:
    expression = compile_expression("attempt > 1")
    assert isinstance(expression, Expression)
    assert expression == compile_expression("attempt > 1")
    assert expression.names <= CONTEXT_NAME_SET


# ---- evaluation from the parsed tree ---------------------------------------------------------


def test_frozen_context_values_pass_through_without_a_copy() -> None:
    frozen = freeze(context(result={"k": [1]}))
    assert compile_expression("result").evaluate(frozen) is frozen["result"]


@pytest.mark.parametrize("frozen", [False, True])
def test_every_name_must_be_present_even_when_not_reached(frozen: bool) -> None:
    values: Any = {"exit_code": 0}
    expression = compile_expression("exit_code == 0 or attempt > 1", rule="r")
    with pytest.raises(RuleError, match="no value for 'attempt'"):
        expression.evaluate(FrozenMap(values) if frozen else values)


def test_constant_arithmetic_is_folded_but_its_errors_stay_evaluation_errors() -> None:
    assert evaluate("task_elapsed_seconds >= 2 * 3600", task_elapsed_seconds=7200.0) is True
    lazy = compile_expression("1 / 0 if attempt > 5 else -2 ** 2", rule="r")  # loads fine
    assert lazy.evaluate(context(attempt=1)) == -4
    with pytest.raises(RuleError, match="ZeroDivisionError: division by zero"):
        lazy.evaluate(context(attempt=6))
    with pytest.raises(RuleError, match="power result larger"):
        compile_expression("2 ** 5000 > attempt").evaluate(context())


class _Clock:
    """A thread clock that advances 30 ms every time it is read."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.03
        return self.now


@pytest.mark.parametrize(
    "source",
    [
        "len(title) + len(title) + len(title)",  # function calls
        "'x' in tags or 'y' in tags or 'z' in tags",  # comparisons that walk a sequence
        "title[1:] + title[2:] + title[3:]",  # slices
    ],
)
def test_the_time_budget_is_checked_during_evaluation(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(expressions, "_thread_time", clock)
    expression = compile_expression(source, rule="slow")
    for values in (context(), freeze(context())):
        with pytest.raises(RuleError, match="took longer than 50 ms"):
            expression.evaluate(values)


def test_bounded_work_does_not_read_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(expressions, "_thread_time", clock)
    expression = compile_expression("attempt >= 3 and not gate_passed or exit_code is None")
    assert expression.evaluate(freeze(context(attempt=3))) is True
    assert clock.now == 0.0
