"""Paged reads of a run: store pages and totals, `orch status` paging, the API and run page;
and the milestone flag validators see (what `select: affected` runs every test on).

A small run stands for a large one (the same queries; `python -m bench.large_runs` times them on
100,000 tasks). Every figure shown is checked against the store's full reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.large_runs import RUN, build_run
from orchestration import hookimpl
from orchestration.core.models import EventRecord
from orchestration.extension import CheckResult, ValidationInput, Validator
from orchestration.pluginhost.hooks import load_plugins
from orchestration.resilience.spending import spending_of
from orchestration.store import Batch, Store
from orchestration.views.run_pages import DEFAULT_PAGE_SIZE
from tests.helpers import orch, orch_json
from tests.test_web_api import Dashboard, login, make_client

COUNT = 40  # tasks: 20 completed, 10 running, 10 pending, one open breakpoint (build_run)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        build_run(opened, COUNT)
        yield opened


def test_pages_cover_the_run_in_order(store: Store) -> None:
    everything = store.tasks(RUN)
    pages = [store.tasks_page(RUN, offset, 7) for offset in range(0, COUNT, 7)]
    assert [t.task_id for page in pages for t in page] == [t.task_id for t in everything]
    running = [t.task_id for t in everything if t.state == "running"]
    assert [t.task_id for t in store.tasks_page(RUN, 2, 3, state="running")] == running[2:5]
    assert store.task_count(RUN) == COUNT
    assert store.task_count(RUN, "running") == len(running) == 10
    assert [t.task_id for t in store.tasks_by_id(RUN, ["t5", "t1", "nope"])] == ["t1", "t5"]


def test_moves_and_steps_of_a_page_match_the_full_reads(store: Store) -> None:
    ids = ["t3", "t21", "t35"]
    moves = store.transitions(RUN)
    assert store.transitions_of_tasks(RUN, ids) == [m for m in moves if m.task_id in ids]
    assert store.recent_transitions(RUN, 4) == moves[::-1][:4]
    steps = store.events(RUN, kinds=("step",))
    assert store.step_events_of_tasks(RUN, ids) == [e for e in steps if e.task_id in ids]


def test_run_totals_sum_what_reported_cost_reads(store: Store) -> None:
    """The database's sums skip what `budgets.reported_cost` skips: negatives, booleans,
    strings; `cost_usd` counts only without `cost`; a float of tokens counts its integer part."""
    now = datetime.now(UTC)
    odd = [
        {"cost": -3, "tokens": True},
        {"cost": "12", "tokens": "7"},
        {"cost_usd": 2.5, "tokens": 4.9},
        {"cost": False, "cost_usd": 100},
        {"cost": None, "cost_usd": 100},
        {"nothing": 1},
    ]
    events = [EventRecord(RUN, "step", "t1", {"result": r}, now) for r in odd]
    events.append(EventRecord(RUN, "step", "t2", {"result": [1, 2]}, now))
    store.commit(RUN, Batch(events=events))
    full = spending_of(store, RUN, now).run
    totals = store.run_totals(RUN)
    assert totals.cost == pytest.approx(full.cost) and totals.cost == pytest.approx(20 * 0.01 + 2.5)
    assert totals.tokens == full.tokens == 20 * 50 + 4
    assert totals.attempts == full.attempts == 30


@pytest.fixture
def sqlite_run(sqlite_url: str) -> str:
    with Store.open(sqlite_url) as opened:
        build_run(opened, COUNT)
    return sqlite_url


def test_status_summary_and_pages_match_the_store(sqlite_run: str) -> None:
    with Store.open(sqlite_run) as store:
        tasks = store.tasks(RUN)
        moves = store.transitions(RUN)
        (bp,) = store.breakpoints(RUN, state="open")
    shown = orch_json("status", RUN, "--db", sqlite_run)
    assert shown["run"]["counts"] == dict(Counter(t.state for t in tasks))
    assert [m["id"] for m in shown["recent"]] == [m.id for m in moves[::-1][:10]]
    assert [b["id"] for b in shown["breakpoints"]] == [bp.id]
    assert shown["page"] == {
        "page": 1,
        "page_size": DEFAULT_PAGE_SIZE,
        "total": COUNT,
        "pages": 1,
        "state": None,
    }
    paged = orch_json("status", RUN, "--page", "3", "--page-size", "6", "--db", sqlite_run)
    assert [t["id"] for t in paged["tasks"]] == [t.task_id for t in tasks[12:18]]
    assert paged["page"]["pages"] == 7
    assert paged["run"]["spent"]["attempts"] == sum(t.attempts for t in tasks) == 30
    text = orch("status", RUN, "--tasks", "--page", "2", "--page-size", "5", "--db", sqlite_run)
    assert text.returncode == 0, text.stderr
    assert "40 tasks: 10 running, 10 pending, 20 completed" in text.stdout
    rows = [line.split()[1] for line in text.stdout.splitlines() if line.startswith("│ t")]
    assert rows == ["t5", "t6", "t7", "t8", "t9"]
    assert "orch status large --tasks --page 3 --page-size 5" in text.stdout
    summary = orch("status", RUN, "--page-size", "5", "--db", sqlite_run)
    assert "│ t" not in summary.stdout and "open breakpoints: 1" in summary.stdout


def test_status_refuses_a_page_size_out_of_range(sqlite_run: str) -> None:
    answer = orch("status", RUN, "--page-size", "0", "--db", sqlite_run)
    assert answer.returncode != 0
    assert "--page-size must be from 1 to 1000, got 0" in answer.stderr


def test_api_and_run_page_are_paged(sqlite_run: str, tmp_path: Path) -> None:
    for client in make_client(sqlite_run):
        dash = Dashboard(client, sqlite_run)
        with Store.open(sqlite_run) as store:
            tasks = store.tasks(RUN)
        answer = dash.get(f"/api/v1/runs/{RUN}/tasks", params={"page": 2, "page_size": 15})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [t["id"] for t in body["tasks"]] == [t.task_id for t in tasks[15:30]]
        assert body["page"]["total"] == COUNT and body["page"]["pages"] == 3
        too_big = dash.get(f"/api/v1/runs/{RUN}/tasks", params={"page_size": 5000})
        assert too_big.status_code == 422
        login(client)
        page = client.get(f"/runs/{RUN}")
        assert page.status_code == 200
        assert 'data-task="t39"' in page.text  # one page of 100 holds all 40


def test_run_page_shows_a_page_with_the_tasks_it_depends_on(sqlite_url: str) -> None:
    with Store.open(sqlite_url) as store:
        build_run(store, 150)  # a chain: t100 depends on t99
    for client in make_client(sqlite_url):
        login(client)
        first = client.get(f"/runs/{RUN}")
        assert first.status_code == 200
        assert "Tasks 1\u2013100 of 150" in first.text and "?page=2" in first.text
        second = client.get(f"/runs/{RUN}", params={"page": 2})
        assert second.status_code == 200
        assert "page 2 of 2" in second.text
        assert '<tr data-task="t100">' in second.text and '<tr data-task="t99">' not in second.text
        assert 'class="node state-completed" data-task="t99"' in second.text  # the graph's
        live = client.get(f"/runs/{RUN}/live", params={"page": 2})
        assert '<tr data-task="t149">' in live.text


class MilestoneRecorder:
    """A validator that records, per task, whether the engine called it a milestone."""

    def __init__(self) -> None:
        self.seen: dict[str, bool] = {}

    @hookimpl
    def register_validators(self) -> list[Validator]:
        def check(step: ValidationInput) -> CheckResult:
            self.seen[step.task.id] = step.milestone
            return CheckResult("milestone_seen", "testing", True, 1.0)

        return [Validator("milestone_seen", "testing", check)]


def test_the_engine_tells_validators_which_tasks_are_milestones(tmp_path: Path) -> None:
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from tests.helpers import shell_task, write_plan

    tasks = [
        shell_task("step", "pass", validators=["milestone_seen"]),
        shell_task("release", "pass", validators=["milestone_seen"], tags=["milestone"]),
    ]
    plan = load_plan(write_plan(tmp_path, {"version": 1, "name": "m", "tasks": tasks}))
    recorder = MilestoneRecorder()
    plugins = load_plugins(entry_points=False, extra=[recorder])
    plugins.muted.add("console")
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        engine = build_engine(plan, plugins)
        summary = Orchestrator.start(plan, store, run_id="m", engine=engine).run_until_stopped()
        held = [(bp.task_id, bp.rule) for bp in store.breakpoints("m")]
    # a default rule holds a finished milestone for a person: after its validators ran
    assert summary.state == "paused" and held == [("release", "milestone_completion")]
    assert recorder.seen == {"step": False, "release": True}


def test_the_last_task_to_finish_is_a_milestone_so_the_run_ends_on_a_full_check(
    tmp_path: Path,
) -> None:
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from tests.helpers import shell_task, write_plan

    tasks = [
        shell_task("first", "pass", validators=["milestone_seen"]),
        shell_task("last", "pass", validators=["milestone_seen"], depends_on=["first"]),
    ]
    plan = load_plan(write_plan(tmp_path, {"version": 1, "name": "c", "tasks": tasks}))
    recorder = MilestoneRecorder()
    plugins = load_plugins(entry_points=False, extra=[recorder])
    plugins.muted.add("console")
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        engine = build_engine(plan, plugins)
        summary = Orchestrator.start(plan, store, run_id="c", engine=engine).run_until_stopped()
    assert summary.state == "completed"
    assert recorder.seen == {"first": False, "last": True}


def test_the_cli_default_page_size_is_the_shared_one() -> None:
    from orchestration.cli.root import STATUS_PAGE_SIZE

    assert STATUS_PAGE_SIZE == DEFAULT_PAGE_SIZE
