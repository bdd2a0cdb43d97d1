"""Cost of a scheduler tick with many schedules and nothing due: `python -m bench.triggers`."""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from orchestration.core.trigger_records import ScheduleRecord
from orchestration.store import Store
from orchestration.triggers.launches import LaunchContext
from orchestration.triggers.trigger_service import tick

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def measure(schedules: int, ticks: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'state.db'}"
        with Store.open(url) as store:
            for i in range(schedules):
                store.triggers.add_schedule(
                    ScheduleRecord(
                        name=f"s{i}",
                        plan_path="/nowhere/plan.yaml",
                        cron=f"{i % 60} 3 * * *",  # 03:xx: nothing is due at noon
                        tz="Europe/Berlin",
                        params={},
                        overlap="skip",
                        catch_up_seconds=3600.0,
                        jitter_seconds=60.0,
                        triggers=[],
                        enabled=True,
                        created_at=CREATED,
                        updated_at=CREATED,
                    )
                )
            ctx = LaunchContext(url, Path(folder) / "logs")
            noon = datetime(2026, 6, 1, 12, tzinfo=UTC)
            tick(store, ctx, noon)  # sets the run-event cursors
            started = time.perf_counter()
            for n in range(ticks):
                assert tick(store, ctx, noon + timedelta(seconds=n)).firings == []
            elapsed = time.perf_counter() - started
    return {"schedules": schedules, "ms_per_tick": elapsed / ticks * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--schedules", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    print(measure(args.schedules, args.ticks))


if __name__ == "__main__":
    main()
