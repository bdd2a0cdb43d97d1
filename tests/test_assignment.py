"""Assignment strategies, with figures worked by hand."""

from __future__ import annotations

import math

import pytest

from orchestration.engine.assignment import AgentState, Snapshot, TaskAsk, choose, ucb_score


def agents(*states: AgentState) -> tuple[AgentState, ...]:
    return states


def test_capability_match_filters_before_any_strategy() -> None:
    fleet = agents(
        AgentState("cheap", frozenset({"python"})),
        AgentState("web", frozenset({"python", "frontend"})),
    )
    ask = TaskAsk("t", requires=frozenset({"frontend"}))
    for strategy in ("round_robin", "load_balanced", "priority_based", "confidence_based"):
        choice = choose(ask, Snapshot(fleet, strategy))
        assert choice.agent == "web"
        assert choice.capable == ("web",)
        assert choice.reason.startswith("has frontend")


def test_no_capable_agent_and_all_busy_are_told_apart() -> None:
    fleet = agents(AgentState("a", frozenset({"x"}), running=1))
    none = choose(TaskAsk("t", requires=frozenset({"y"})), Snapshot(fleet))
    assert none.agent is None and not none.waits
    busy = choose(TaskAsk("t", requires=frozenset({"x"})), Snapshot(fleet))
    assert busy.agent is None and busy.waits
    assert "a 1/1" in busy.reason


def test_round_robin_starts_after_the_turn_and_skips_busy_agents() -> None:
    fleet = agents(AgentState("a"), AgentState("b"), AgentState("c"))
    # turn 4 over 3 agents: 4 % 3 = 1, so b comes first, then c, then a
    assert choose(TaskAsk("t"), Snapshot(fleet, "round_robin", turn=4)).agent == "b"
    busy_b = agents(AgentState("a"), AgentState("b", running=1), AgentState("c"))
    assert choose(TaskAsk("t"), Snapshot(busy_b, "round_robin", turn=4)).agent == "c"
    assert choose(TaskAsk("t"), Snapshot(fleet, "round_robin", turn=0)).agent == "a"


def test_load_balanced_fewest_running_then_shortest_expected_time() -> None:
    fleet = agents(
        AgentState("a", max_concurrent=3, running=2, expected_seconds=10),
        AgentState("b", max_concurrent=3, running=1, expected_seconds=90),
        AgentState("c", max_concurrent=3, running=1, expected_seconds=30),
    )
    choice = choose(TaskAsk("t"), Snapshot(fleet, "load_balanced"))
    assert choice.agent == "c"  # b and c run 1 each; c expects 30 s against b's 90 s
    assert choice.scores == {"a": 2.0, "b": 1.0, "c": 1.0}


def test_priority_based_gives_the_strongest_agent_to_important_tasks() -> None:
    fleet = agents(
        # predicted = (s + 1) / (n + 2): 9/12 = 0.75 and 3/12 = 0.25
        AgentState("strong", cost_per_unit=5.0, attempts=10, successes=8),
        AgentState("weak", cost_per_unit=0.5, attempts=10, successes=2),
    )
    important = choose(TaskAsk("t", priority=9), Snapshot(fleet, "priority_based"))
    assert important.agent == "strong"
    assert important.predicted == 0.75
    routine = choose(TaskAsk("t", priority=5), Snapshot(fleet, "priority_based"))
    assert routine.agent == "weak"  # the cheapest: 0.5 per unit
    assert routine.scores == {"strong": 0.75, "weak": 0.25}


def test_confidence_based_explores_a_new_agent_then_exploits() -> None:
    # A: 8 of 10 succeeded, B new. N = 10, c = 0.5.
    # A: 9/12 = 0.75 + 0.5 * sqrt(ln 11 / 11) = 0.75 + 0.5 * 0.46689 = 0.98344
    # B: 1/2  = 0.5  + 0.5 * sqrt(ln 11 / 1)  = 0.5  + 0.5 * 1.54851 = 1.27426 -> B is tried
    a, b = AgentState("A", attempts=10, successes=8), AgentState("B")
    choice = choose(TaskAsk("t", kind="tests"), Snapshot((a, b), "confidence_based"))
    assert choice.agent == "B"
    assert choice.scores["A"] == pytest.approx(0.98344, abs=1e-5)
    assert choice.scores["B"] == pytest.approx(1.27426, abs=1e-5)
    # B failed twice: N = 12, ln 13 = 2.56495
    # A: 0.75 + 0.5 * sqrt(2.56495 / 11) = 0.75 + 0.5 * 0.48288 = 0.99144
    # B: 1/4 = 0.25 + 0.5 * sqrt(2.56495 / 3) = 0.25 + 0.5 * 0.92466 = 0.71233 -> back to A
    b2 = AgentState("B", attempts=2, successes=0)
    again = choose(TaskAsk("t", kind="tests"), Snapshot((a, b2), "confidence_based"))
    assert again.agent == "A"
    assert again.scores["A"] == pytest.approx(0.99144, abs=1e-5)
    assert again.scores["B"] == pytest.approx(0.71233, abs=1e-5)
    assert ucb_score(b2, 12, 0.0) == 0.25  # no exploration: the Beta mean alone
    assert math.isclose(again.predicted or 0, 0.75)


def test_retry_on_other_agent_and_same_agent() -> None:
    fleet = agents(AgentState("a"), AgentState("b"))
    other = TaskAsk("t", previous_agents=("a",), retry_on="other_agent")
    choice = choose(other, Snapshot(fleet, "round_robin", turn=0))
    assert choice.agent == "b"
    assert "another agent than a" in choice.reason
    same = TaskAsk("t", previous_agents=("b",), retry_on="same_agent")
    assert choose(same, Snapshot(fleet, "round_robin", turn=0)).agent == "b"
    # the only capable agent ran it already: it runs it again, and says so
    alone = choose(
        TaskAsk("t", previous_agents=("a",), retry_on="other_agent"),
        Snapshot((AgentState("a"),), "load_balanced"),
    )
    assert alone.agent == "a" and "no other capable agent" in alone.reason
