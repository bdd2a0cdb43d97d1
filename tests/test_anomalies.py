"""Health score, agent figures and anomaly detectors, with figures worked by hand."""

from __future__ import annotations

import pytest

from orchestration.core.agent_specs import AnomalySettings
from orchestration.engine.anomalies import (
    after_attempt,
    coordination,
    failure_pattern,
    load_imbalance,
    outlier,
    prediction_drift,
    robust_z,
)
from orchestration.engine.fleet_health import (
    Assignment,
    AttemptFigure,
    agent_figures,
    attempt_cost,
    health,
    jain_index,
    p95,
)

WEIGHTS = {"success": 0.4, "availability": 0.2, "prediction": 0.2, "load_balance": 0.2}


def attempt(task: str, ok: bool, agent: str | None = "A", **more: object) -> AttemptFigure:
    fields: dict[str, object] = {"duration_seconds": 10.0, "cost": 0.0, "kind": "k"}
    fields.update(more)
    return AttemptFigure(task, 1, ok, agent=agent, **fields)  # type: ignore[arg-type]


def test_health_score_worked_by_hand() -> None:
    attempts = [
        attempt("t1", True, "A", predicted=0.5, duration_seconds=10.0),
        attempt("t2", False, "A", predicted=0.75, duration_seconds=30.0),
        attempt("t3", True, "B", predicted=0.5),
        attempt("t4", True, "B", predicted=0.5),
    ]
    assignments = [
        Assignment(a.task_id, 1, a.agent or "", "load_balanced", "", a.predicted, wait)
        for a, wait in zip(attempts, (0.0, 4.0, 0.0, 0.0), strict=True)
    ]
    result = health(attempts, assignments, ["A", "B", "C"], WEIGHTS)
    # success 3/4; availability 1 - 1/4; Brier (0.25 + 0.5625 + 0.25 + 0.25) / 4 = 0.328125
    # load balance: loads 2, 2, 0 -> 4^2 / (3 * 8) = 0.666667
    assert result.parts == {
        "success": 0.75,
        "availability": 0.75,
        "prediction": 0.671875,
        "load_balance": 0.666667,
    }
    # 100 * (0.4*0.75 + 0.2*0.75 + 0.2*0.671875 + 0.2*0.666667) = 71.77
    assert result.score == 71.77
    a = agent_figures("A", attempts)
    assert (a.attempts, a.succeeded, a.success_rate, a.mean_predicted) == (2, 1, 0.5, 0.625)
    assert a.calibration_error == 0.125
    assert (a.mean_duration_seconds, a.p95_duration_seconds) == (20.0, 30.0)
    # weights are configurable: success alone
    assert (
        health(attempts, assignments, ["A", "B"], {**dict.fromkeys(WEIGHTS, 0), "success": 1}).score
        == 75.0
    )


def test_empty_run_is_healthy_and_small_figures() -> None:
    assert health([], [], ["A", "B"], WEIGHTS).score == 100.0
    assert p95(list(range(1, 21))) == 19  # nearest rank: ceil(0.95 * 20) = 19
    assert p95([]) is None
    assert jain_index([7, 0]) == 0.5
    assert attempt_cost({"cost": 0.42}, 120, 3.0) == 0.42  # the turn's own cost wins
    assert attempt_cost({}, 90, 2.0) == 3.0  # 2 per minute for 1.5 minutes


def test_duration_outlier_by_median_and_mad() -> None:
    settings = AnomalySettings(outlier_min_excess_seconds=0)
    earlier = [
        attempt(f"e{i}", True, duration_seconds=d) for i, d in enumerate([10, 12, 11, 13, 9])
    ]
    # median 11; deviations 1, 1, 0, 2, 2 -> MAD 1; z(20) = 0.6745 * 9 / 1 = 6.0705
    assert robust_z(20, [10, 12, 11, 13, 9]) == pytest.approx(6.0705)
    slow = attempt("slow", True, duration_seconds=20)
    found = outlier("duration", slow, earlier, settings)
    assert found is not None and found.kind == "duration_outlier"
    assert found.figures["median"] == 11 and found.figures["z"] == pytest.approx(6.0705)
    # z(15) = 0.6745 * 4 = 2.698 < 3.5: no anomaly; a fast attempt never is one
    assert outlier("duration", attempt("x", True, duration_seconds=15), earlier, settings) is None
    assert outlier("duration", attempt("x", True, duration_seconds=1), earlier, settings) is None
    # fewer than 5 earlier attempts of the kind: not enough to judge
    assert outlier("duration", slow, earlier[:4], settings) is None
    # 9 s above the median is within the default 10 s floor
    assert outlier("duration", slow, earlier, AnomalySettings()) is None


def test_cost_outlier_falls_back_on_mean_deviation_when_mad_is_zero() -> None:
    settings = AnomalySettings()
    costs = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0]
    earlier = [attempt(f"e{i}", True, cost=c) for i, c in enumerate(costs)]
    # median 1, MAD 0; mean absolute deviation 2/6 -> z(5) = 4 / (1.2533 * 0.3333) = 9.574
    found = outlier("cost", attempt("pricey", True, cost=5.0), earlier, settings)
    assert found is not None and found.figures["z"] == pytest.approx(9.574, abs=1e-3)
    flat = [attempt(f"f{i}", True, cost=1.0) for i in range(6)]
    assert outlier("cost", attempt("x", True, cost=5.0), flat, settings) is None


def test_failure_pattern_needs_the_whole_streak() -> None:
    settings = AnomalySettings(failure_streak=3)
    runs = [attempt("a", False), attempt("b", True), attempt("c", False), attempt("d", False)]
    assert failure_pattern("A", runs, settings) is None
    runs.append(attempt("e", False))
    found = failure_pattern("A", runs, settings)
    assert found is not None and found.key == "failure_pattern:A"
    assert "c#1, d#1, e#1" in found.message


def test_prediction_drift_and_load_imbalance() -> None:
    settings = AnomalySettings(drift_window=3, imbalance_min_attempts=6)
    drifting = [
        attempt(t, ok, predicted=0.9) for t, ok in (("a", False), ("b", False), ("c", True))
    ]
    found = prediction_drift(drifting, settings)
    # predicted 0.9, actual 1/3: drift 0.5667 > 0.3
    assert found is not None and found.figures["drift"] == pytest.approx(0.566667)
    assert prediction_drift(drifting[:2], settings) is None
    six_one = [attempt(f"a{i}", True, "A") for i in range(6)] + [attempt("b", True, "B")]
    assert load_imbalance(six_one, ["A", "B"], settings) is None  # 49 / 74 = 0.662
    found = load_imbalance(six_one, ["A", "B", "C"], settings)  # 49 / 111 = 0.441
    assert found is not None and found.figures["jain_index"] == pytest.approx(0.441441)


def test_coordination_and_after_attempt() -> None:
    assert coordination({"t": "busy"}, {"A": 1, "B": 1}) is None
    found = coordination({"t2": "every capable agent is busy", "t1": "x"}, {"A": 1, "B": 0})
    assert found is not None and found.figures == {"waiting": ["t1", "t2"], "idle": ["B"]}
    settings = AnomalySettings(failure_streak=2)
    kinds = {
        a.kind for a in after_attempt([attempt("a", False), attempt("b", False)], ["A"], settings)
    }
    assert kinds == {"failure_pattern"}
