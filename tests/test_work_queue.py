"""The work queue: claims, fenced leases, expiry, withdrawal, capabilities and worker figures."""

from __future__ import annotations

import threading
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from orchestration.core.models import RunRecord
from orchestration.store import Store
from orchestration.store.work_queue import WorkQueue
from tests.helpers import orch_json

T0 = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)


def _run(store: Store, run_id: str = "r1") -> str:
    run = RunRecord(run_id, "p", "/x/plan.yaml", "/x", "running", T0, T0)
    store.create_run(run, [])
    return run_id


@pytest.fixture
def queue(db_url: str) -> WorkQueue:
    with Store.open(db_url) as store:
        _run(store)
    opened = WorkQueue.open(db_url)
    yield opened
    opened.close()


def test_a_claim_is_fenced_by_its_token_and_its_lease(queue: WorkQueue) -> None:
    item = queue.offer("r1", "a", 1, {"n": 1}, lease_seconds=10)
    first = queue.claim("w1", now=T0)
    assert first is not None and first.id == item and first.token == 1
    assert queue.claim("w2", now=T0) is None  # the only item is held
    assert queue.renew(first, now=T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=15)
    # The lease ran out: the attempt is offered again and claimed by another worker.
    assert queue.expire(T0 + timedelta(seconds=16)) == [item]
    second = queue.claim("w2", now=T0 + timedelta(seconds=17))
    assert second is not None and second.token == 2
    # The first worker comes back: its renewal and its late result are refused.
    assert queue.renew(first, now=T0 + timedelta(seconds=18)) is None
    late = T0 + timedelta(seconds=18)
    assert not queue.report(first, "w1", {"late": True}, succeeded=True, now=late)
    assert queue.report(second, "w2", {"ok": True}, succeeded=True, now=late)
    collected = queue.collect("r1", [item])
    assert [(c.id, c.result, c.reported_by) for c in collected] == [(item, {"ok": True}, "w2")]
    assert queue.collect("r1", [item]) == []  # handed over once


def test_a_report_after_the_lease_expired_is_refused_even_unclaimed(queue: WorkQueue) -> None:
    queue.offer("r1", "a", 1, {}, lease_seconds=10)
    held = queue.claim("w1", now=T0)
    assert held is not None
    assert not queue.report(held, "w1", {}, succeeded=True, now=T0 + timedelta(seconds=11))


def test_a_withdrawn_attempt_refuses_its_worker(queue: WorkQueue) -> None:
    item = queue.offer("r1", "a", 1, {})
    held = queue.claim("w1")
    assert held is not None
    assert queue.withdraw([item]) == 1
    assert queue.renew(held) is None
    assert not queue.report(held, "w1", {}, succeeded=True)


def test_capabilities_decide_who_may_claim(queue: WorkQueue) -> None:
    gpu = queue.offer("r1", "a", 1, {}, requires=["gpu"])
    plain = queue.offer("r1", "b", 1, {})
    first = queue.claim("cpu-only", ["linux"])
    assert first is not None and first.id == plain  # the older item needs a gpu
    assert queue.claim("cpu-only", ["linux"]) is None
    second = queue.claim("big", ["gpu", "linux"])
    assert second is not None and second.id == gpu


def test_concurrent_claimers_never_take_one_attempt_twice(queue: WorkQueue) -> None:
    offered = {queue.offer("r1", f"t{i}", 1, {}) for i in range(60)}
    taken: list[int] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while (claim := queue.claim(name)) is not None:
            with lock:
                taken.append(claim.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(offered)


def test_orch_workers_shows_the_store_figures(db_url: str, queue: WorkQueue) -> None:
    queue.register_worker("w1", "host-a", 11, ["gpu"], 2, None)
    queue.register_worker("w2", "host-b", 12, [], 1, "r1")
    for number, passed in enumerate([True, True, False]):
        queue.offer("r1", f"t{number}", 1, {}, lease_seconds=60)
        held = queue.claim("w1", now=T0)
        assert held is not None
        done = T0 + timedelta(seconds=number + 1)  # 1, 2 and 3 seconds
        assert queue.report(held, "w1", {}, succeeded=passed, now=done)
    queue.offer("r1", "busy", 2, {})
    assert queue.claim("w2") is not None
    shown = {w["name"]: w for w in orch_json("workers", "--db", db_url)}
    assert shown["w1"]["host"] == "host-a" and shown["w1"]["capabilities"] == ["gpu"]
    assert shown["w1"]["reported"] == 3 and shown["w1"]["succeeded"] == 2
    assert shown["w1"]["success_rate"] == pytest.approx(2 / 3)
    assert shown["w1"]["mean_duration_seconds"] == pytest.approx(2.0)
    assert shown["w1"]["current"] == []
    assert shown["w2"]["current"] == ["r1/busy#2"] and shown["w2"]["run_id"] == "r1"
    assert shown["w2"]["success_rate"] is None
    stored = {w.name: w for w in queue.workers()}
    assert shown["w1"]["last_heartbeat"].startswith(stored["w1"].last_heartbeat.isoformat()[:19])


def test_the_dashboard_shows_the_workers_as_stored(sqlite_url: str) -> None:
    with warnings.catch_warnings():
        # Starlette 1.x asks for httpx2 behind its TestClient; httpx still works the same
        warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from orchestration.web.app import create_app
    from orchestration.web.config import ServerConfig

    with Store.open(sqlite_url) as store:
        _run(store)
    queue = WorkQueue.open(sqlite_url)
    queue.register_worker("w1", "host-a", 11, ["gpu"], 2, None)
    queue.offer("r1", "a", 1, {}, lease_seconds=60)
    held = queue.claim("w1", now=T0)
    assert held is not None
    assert queue.report(held, "w1", {}, succeeded=True, now=T0 + timedelta(seconds=4))
    queue.offer("r1", "b", 3, {})
    assert queue.claim("w1") is not None
    queue.close()
    token = {"Authorization": "Bearer t0ken-for-tests-only"}
    with Store.open(sqlite_url) as store:
        app = create_app(
            ServerConfig(db_url=sqlite_url, token=token["Authorization"][7:]), store=store
        )
        with TestClient(app, follow_redirects=False) as client:
            api = client.get("/api/v1/workers", headers=token).json()["workers"]
            page = client.get("/workers", headers=token).text
        stored = store.workers()
    [shown] = api
    [one] = stored
    assert shown["current"] == list(one.current) == ["r1/b#3"]
    assert shown["reported"] == one.reported == 1 and shown["success_rate"] == 1.0
    assert shown["mean_duration_seconds"] == one.mean_duration_seconds == pytest.approx(4.0)
    assert "host-a" in page and "r1/b#3" in page and "100% of 1" in page and "4.00s" in page
