"""Kept threads: calls bounded like `call_in_thread`, on threads reused from call to call."""

from __future__ import annotations

import threading

from orchestration.core.kept_threads import KeptThreads


def test_a_call_returns_its_value_and_the_next_call_reuses_the_thread() -> None:
    threads = KeptThreads()
    first = threads.call(threading.get_ident, name="one", timeout=5)
    second = threads.call(threading.get_ident, name="two", timeout=5)
    assert first.returned and second.returned
    assert first.value == second.value != threading.get_ident()


def test_what_a_call_raises_is_returned_with_its_traceback() -> None:
    def fails() -> None:
        raise ValueError("broken action")

    call = KeptThreads().call(fails, name="fails", timeout=5)
    assert not call.returned
    assert isinstance(call.error, ValueError)
    assert "broken action" in call.traceback


def test_an_overrunning_call_is_abandoned_and_its_thread_serves_again_once_it_returns() -> None:
    threads = KeptThreads()
    release = threading.Event()
    call = threads.call(release.wait, name="hangs", timeout=0.05)
    assert call.timed_out and not call.returned and call.value is None
    other = threads.call(threading.get_ident, name="beside", timeout=5)
    assert other.returned  # a new thread took it: the first one is still busy
    release.set()
    idents = {threads.call(threading.get_ident, name="after", timeout=5).value for _ in range(20)}
    assert len(idents) <= 2  # no new thread per call once both wait again


def test_a_stop_interrupts_the_wait_and_tells_the_callee() -> None:
    threads = KeptThreads()
    stop, told = threading.Event(), threading.Event()
    started = threading.Event()

    def watches() -> str:
        started.set()
        told.wait(30)
        return "stopped"

    def stop_once_started() -> None:
        started.wait(30)
        stop.set()

    threading.Thread(target=stop_once_started, daemon=True).start()
    call = threads.call(watches, name="watched", timeout=60, stop=stop, tell_to_stop=told, grace=30)
    assert call.interrupted and not call.timed_out
    assert told.is_set() and call.value == "stopped"


def test_calls_at_once_each_get_a_thread() -> None:
    threads = KeptThreads(max_idle=1)
    both_in = threading.Barrier(3)
    results: list[bool] = []

    def meet() -> bool:
        both_in.wait(30)
        return True

    callers = [
        threading.Thread(
            target=lambda: results.append(threads.call(meet, name="m", timeout=30).value)
        )
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    both_in.wait(30)  # both calls ran at the same time, on two threads
    for caller in callers:
        caller.join(30)
    assert results == [True, True]
