"""`orch status` on a terminal prints its figures from the store's records without building the
JSON shapes: every line is checked here against the store, and against `--json`."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.large_runs import RUN, build_run
from orchestration.store import Store
from tests.helpers import orch, orch_json

COUNT = 30  # tasks: 10 completed, 10 running, 10 pending, one open breakpoint (build_run)


@pytest.fixture
def sqlite_run(sqlite_url: str) -> str:
    with Store.open(sqlite_url) as opened:
        build_run(opened, COUNT)
    return sqlite_url


def _section(lines: list[str], title: str) -> list[str]:
    """The indented lines under `title` (`open breakpoints: 1`, `recent activity:`)."""
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("  ") or line.startswith("   "):  # the table's centred title
            break
        block.append(line.strip())
    return block


def test_the_summary_lines_match_the_store_and_the_json(sqlite_run: str) -> None:
    with Store.open(sqlite_run) as store:
        run = store.get_run(RUN)
        tasks = store.tasks(RUN)
        moves = store.transitions(RUN)[::-1][:10]
        (bp,) = store.breakpoints(RUN, state="open")
    shown = orch_json("status", RUN, "--db", sqlite_run)
    text = orch("status", RUN, "--db", sqlite_run)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"run {RUN} ({shown['run']['state']}) {run.plan_name}"
    counts = Counter(t.state for t in tasks)
    assert shown["run"]["counts"] == dict(counts)
    parts = [f"{counts[s]} {s}" for s in ("running", "pending", "completed") if counts[s]]
    assert lines[1] == f"{len(tasks)} tasks: " + ", ".join(parts)
    attempts = sum(t.attempts for t in tasks)
    assert shown["run"]["spent"]["attempts"] == attempts
    spent = shown["run"]["spent"]
    assert lines[2].startswith(
        f"spent: cost {spent['cost']:g}, tokens {spent['tokens']:,}, attempts {attempts}, "
    )
    assert "open breakpoints: 1" in lines
    assert _section(lines, "open breakpoints:") == [
        f"{bp.id} {bp.task_id} {bp.rule} ({bp.severity}): {bp.message}"
    ]
    recent = _section(lines, "recent activity:")
    expected = [f"{m.at:%H:%M:%S} {m.task_id}: {m.source} → {m.dest}" for m in moves]
    assert recent == expected
    assert [f"{m['task']}: {m['from']} → {m['to']}" for m in shown["recent"]] == [
        r.split(" ", 1)[1] for r in recent
    ]


def test_the_task_rows_match_the_store(sqlite_run: str) -> None:
    with Store.open(sqlite_run) as store:
        tasks = store.tasks(RUN)
    text = orch("status", RUN, "--db", sqlite_run)  # one page: the tasks are listed
    assert text.returncode == 0, text.stderr
    rows = [line.split("│")[1:-1] for line in text.stdout.splitlines() if line.startswith("│ t")]
    cells = [[cell.strip() for cell in row] for row in rows]
    assert [(c[0], c[1], int(c[2])) for c in cells] == [
        (t.task_id, t.state, t.attempts) for t in tasks
    ]
    assert [c[-1] for c in cells] == [", ".join(t.depends_on) for t in tasks]
