"""Retention: which finished runs `orch prune` deletes, and deleting them safely."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import ValidationError

from orchestration.core.attempt_logs import remove_run_logs, run_logs_dir
from orchestration.core.durations import format_duration
from orchestration.core.models import Retention, RunRecord
from orchestration.store import Store

logger = logging.getLogger(__name__)

FINISHED_STATES = frozenset({"completed", "failed", "cancelled"})
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class PruneChoice:
    """Whether one run goes, and why (shown by `orch prune --dry-run`)."""

    run: RunRecord
    prune: bool
    why: str
    finished_before: datetime | None = None  # the cutoff its finish time must be older than


@dataclass
class PruneResult:
    pruned: list[str] = field(default_factory=list)
    rows: Counter[str] = field(default_factory=Counter)  # rows deleted (or to delete) per table
    changed: list[str] = field(default_factory=list)  # resumed meanwhile: left alone
    logs: list[str] = field(default_factory=list)  # runs whose logs went (or would go)


def plan_retention(run: RunRecord) -> Retention:
    """The retention the run's plan set (`retention:`), or none."""
    spec = run.plan_json.get("spec", {}) if isinstance(run.plan_json, dict) else {}
    raw = spec.get("retention") if isinstance(spec, dict) else None
    if raw is None:
        return Retention()
    try:
        return Retention.model_validate(raw)
    except ValidationError:
        logger.warning("run %s: ignoring an invalid stored retention %r", run.id, raw)
        return Retention()


def choose(
    runs: Iterable[RunRecord],
    *,
    older_than_seconds: float | None,
    keep_failed: bool,
    now: datetime,
    ignore_plan_retention: bool = False,
) -> list[PruneChoice]:
    """Decide for each run. A run goes when it is finished (completed, failed, cancelled) and
    finished longer ago than its plan's `retention.keep_days`, or, for a plan that sets none
    (or with `ignore_plan_retention`), than `older_than_seconds`. Runs that are running or
    paused, and failed ones under `keep_failed` (or the plan's own), always stay."""
    choices = []
    for run in runs:
        if run.state not in FINISHED_STATES or run.finished_at is None:
            choices.append(PruneChoice(run, False, f"not finished ({run.state})"))
            continue
        own = Retention() if ignore_plan_retention else plan_retention(run)
        if run.state == "failed" and (keep_failed or own.keep_failed):
            source = "--keep-failed" if keep_failed else "its plan's retention.keep_failed"
            choices.append(PruneChoice(run, False, f"failed, kept ({source})"))
            continue
        if own.keep_days is not None:
            limit, source = own.keep_days * DAY_SECONDS, "its plan's retention.keep_days"
        elif older_than_seconds is not None:
            limit, source = older_than_seconds, "--older-than"
        else:
            choices.append(PruneChoice(run, False, "no retention: no --older-than, none in plan"))
            continue
        age = (now - run.finished_at).total_seconds()
        within = f"finished {format_duration(max(age, 0))} ago"
        if age < limit:
            choices.append(
                PruneChoice(run, False, f"{within}, within {format_duration(limit)} ({source})")
            )
            continue
        cutoff = now - timedelta(seconds=limit)
        choices.append(
            PruneChoice(run, True, f"{within}, past {format_duration(limit)} ({source})", cutoff)
        )
    return choices


def prune(
    store: Store,
    choices: Iterable[PruneChoice],
    *,
    dry_run: bool = False,
    progress: Callable[[PruneChoice, dict[str, int]], None] | None = None,
) -> PruneResult:
    """Delete the chosen runs, each in its own transaction with every row it has (its tasks,
    history, breakpoints, decisions, quality results, events, settings, dead letters and
    interventions), then its attempt logs (.orchestration/logs/RUN beside its plan). A run
    resumed since it was chosen is left alone. `dry_run`: count only."""
    result = PruneResult()
    for choice in choices:
        if not choice.prune or choice.finished_before is None:
            continue
        if dry_run:
            rows: dict[str, int] | None = store.run_row_counts(choice.run.id)
        else:
            rows = store.prune_run(choice.run.id, choice.finished_before)
        if rows is None:
            result.changed.append(choice.run.id)
            continue
        result.pruned.append(choice.run.id)
        result.rows.update(rows)
        logs = run_logs_dir(choice.run.plan_path, choice.run.id)
        if logs.is_dir() and (dry_run or remove_run_logs(choice.run.plan_path, choice.run.id)):
            result.logs.append(choice.run.id)
        if progress is not None:
            progress(choice, rows)
    return result
