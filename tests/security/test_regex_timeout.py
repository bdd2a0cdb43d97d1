"""A plan's error patterns cannot hang the engine: every user pattern has the rules' time limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestration.core.bounded_regex import MATCH_TIMEOUT_SECONDS
from orchestration.core.models import ErrorRules
from orchestration.engine.actions import ActionOutcome, classify_error_noting
from orchestration.rules.expression_limits import FunctionLimitError, fn_matches
from tests.helpers import orch, shell_task, write_plan

# 34 `a`s then `!`: `(a+)+$` backtracks through 2**34 ways with `re` (the engine sat at 99% CPU
# and ignored Ctrl-C); `(a|aa)+$` is slow even for the `regex` engine, so its timeout must fire.
HOSTILE_OUTPUT = "import sys; print('a' * 34 + '!'); sys.exit(1)"
NESTED = "(a+)+$"
SLOW_EVEN_FOR_REGEX = "(a|aa)+$"


def test_a_catastrophic_error_pattern_ends_in_a_named_timeout_not_a_hang(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "redos",
            "defaults": {
                "retry": {"max_attempts": 1},
                "errors": {"permanent_patterns": [NESTED, SLOW_EVEN_FOR_REGEX]},
            },
            "tasks": [shell_task("noisy", HOSTILE_OUTPUT)],
        },
    )
    # Without the time limit this run never ends; the subprocess timeout is the test's backstop.
    done = orch("run", str(plan), "--run-id", "redos-1", *db, "--quiet", timeout=240)
    assert done.returncode in (1, 3), done.stderr  # finished: failed, or paused for a human

    shown = orch("breakpoints", "show", "1", *db, "--json")
    assert shown.returncode == 0, shown.stderr
    tail = json.loads(shown.stdout)["breakpoint"]["context"]["output_tail"]
    assert "a" * 34 + "!" in tail
    assert f"permanent_patterns pattern {SLOW_EVEN_FOR_REGEX!r} took over" in tail
    # A stopped pattern counts as not found: the failure stays transient, not permanent.
    assert json.loads(shown.stdout)["breakpoint"]["context"]["error_kind"] == "transient"


def test_error_patterns_and_rule_matches_share_one_time_limit() -> None:
    text = "a" * 34 + "!"
    outcome = ActionOutcome(1, False, 0.1, text, error_kind="transient")
    kind, notes = classify_error_noting(
        outcome, ErrorRules(transient_patterns=[SLOW_EVEN_FOR_REGEX])
    )
    assert kind == "transient"  # exit code 1 with no pattern found
    assert len(notes) == 1 and SLOW_EVEN_FOR_REGEX in notes[0]
    limit = f"{MATCH_TIMEOUT_SECONDS * 1000:g} ms"
    assert limit in notes[0]
    # A nested pattern that the `regex` engine searches quickly is answered, not refused.
    assert classify_error_noting(outcome, ErrorRules(permanent_patterns=[NESTED]))[0] == "transient"


def test_rule_matches_stops_at_the_same_limit_and_names_the_pattern() -> None:
    # Polynomial backtracking that passes matches()' static checks (no nested quantifier).
    slow = ".*a.*a.*a.*a.*c"
    with pytest.raises(FunctionLimitError) as raised:
        fn_matches("a" * 20_000, slow)
    assert repr(slow) in str(raised.value)
    assert f"{MATCH_TIMEOUT_SECONDS * 1000:g} ms" in str(raised.value)
