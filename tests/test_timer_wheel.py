"""The timer wheel: one heap of due times, handed back earliest first, whatever their kind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestration.engine.timer_wheel import TimerWheel

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_nothing_is_due_before_its_time() -> None:
    wheel = TimerWheel()
    wheel.schedule(at(5), "retry", "a")
    assert wheel.pop_due(at(4.999)) == []
    assert len(wheel) == 1 and wheel.next_due() == at(5)


def test_every_kind_comes_due_in_time_order_on_one_heap() -> None:
    wheel = TimerWheel()
    wheel.schedule(at(3), "expiry", 7)
    wheel.schedule(at(1), "retry", "a")
    wheel.schedule(at(2), "heartbeat")
    wheel.schedule(at(9), "deadline", "b")
    assert wheel.pop_due(at(3)) == [
        (at(1), "retry", "a"),
        (at(2), "heartbeat", None),
        (at(3), "expiry", 7),
    ]
    assert wheel.next_due() == at(9) and len(wheel) == 1


def test_equal_times_keep_the_order_they_were_scheduled_in() -> None:
    wheel = TimerWheel()
    # keys of different types at one time: never compared with each other
    wheel.schedule(at(1), "expiry", 3)
    wheel.schedule(at(1), "retry", "a")
    wheel.schedule(at(1), "settings")
    assert [kind for _, kind, _ in wheel.pop_due(at(1))] == ["expiry", "retry", "settings"]


def test_the_next_due_time_of_some_kinds_and_whether_a_kind_waits() -> None:
    wheel = TimerWheel()
    assert wheel.next_due() is None and not wheel.has("expiry")
    wheel.schedule(at(1), "heartbeat")
    wheel.schedule(at(4), "expiry", 1)
    assert wheel.has("expiry") and wheel.next_due(frozenset({"expiry"})) == at(4)
    wheel.pop_due(at(4))
    assert not wheel.has("expiry") and wheel.next_due(frozenset({"expiry"})) is None
