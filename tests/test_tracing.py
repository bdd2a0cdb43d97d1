"""OpenTelemetry spans per run, task and attempt, from the store, into the SDK's in-memory
exporter (the test is skipped where the `otel` extra is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.tracing import attempt_windows, trace_run
from orchestration.store import Store
from tests.helpers import shell_task, write_plan

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
export = pytest.importorskip("opentelemetry.sdk.trace.export")


def test_a_finished_run_gives_one_span_per_run_task_and_attempt(
    sqlite_url: str, tmp_path: Path
) -> None:
    flaky = "import pathlib, sys; p = pathlib.Path('once'); sys.exit(0 if p.exists() else (p.touch() or 3))"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "traced",
            "tasks": [
                shell_task("a", "pass"),
                shell_task(
                    "b",
                    flaky,
                    depends_on=["a"],
                    retry={
                        "max_attempts": 2,
                        "backoff": "fixed",
                        "base_seconds": 0,
                        "jitter": False,
                    },
                ),
            ],
        },
    )
    loaded = load_plan(plan)
    with Store.open(sqlite_url) as store:
        orchestrator = Orchestrator.start(loaded, store, run_id="t1", engine=build_engine(loaded))
        orchestrator.engine.plugins.muted.add("console")
        assert orchestrator.run_until_stopped().state == "completed"
        exporter = memory.InMemorySpanExporter()
        provider = sdk_trace.TracerProvider()
        provider.add_span_processor(export.SimpleSpanProcessor(exporter))
        emitted = trace_run(store, "t1", provider.get_tracer("test"))
        run = store.get_run("t1")
        moves_b = store.transitions("t1", "b")
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert emitted == len(spans) == 6
    assert set(spans) == {
        "run traced",
        "task a",
        "task b",
        "attempt a#1",
        "attempt b#1",
        "attempt b#2",
    }
    root = spans["run traced"]
    assert root.parent is None and root.start_time == int(run.created_at.timestamp() * 1e9)
    assert spans["task b"].parent.span_id == root.context.span_id
    assert spans["attempt b#2"].parent.span_id == spans["task b"].context.span_id
    windows = attempt_windows(moves_b)
    assert [w[3] for w in windows] == ["retrying", "completed"]
    assert spans["attempt b#1"].attributes["orch.to"] == "retrying"
    assert spans["attempt b#2"].end_time == int(windows[1][2].timestamp() * 1e9)
