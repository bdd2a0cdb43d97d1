"""Stored runs seen from outside an engine: their ids, their plans, and whether one is alive."""

from __future__ import annotations

import os
import re
import unicodedata
from datetime import datetime
from typing import Any

from orchestration.core import hints
from orchestration.core.durations import format_duration
from orchestration.core.errors import OrchestrationError
from orchestration.core.lifecycle import TaskState
from orchestration.core.models import Plan, RunRecord, TaskRecord
from orchestration.resilience.engine_identity import owner_alive

HEARTBEAT_SECONDS = 2.0  # how often a working engine marks its run as alive
STALE_RUN_SECONDS = 15.0  # a `running` run not heard from for this long has lost its engine


def run_is_live(run: RunRecord, now: datetime) -> bool:
    """Whether an engine is working on the run: one holds it (or it is `running`), its heartbeat
    is fresh and, when the engine ran on this host, its process still exists. Only a read, for
    display and advice: taking a run is `Store.claim_run`."""
    age = (now - run.updated_at).total_seconds()
    if not (run.state == "running" or run.owner is not None) or age >= STALE_RUN_SECONDS:
        return False
    return owner_alive(run) is not False


def shown_state(run: RunRecord, now: datetime) -> str:
    """The run's state as users see it: a `running` run whose engine stopped is `interrupted`."""
    return "interrupted" if run.state == "running" and not run_is_live(run, now) else run.state


def interruption(run: RunRecord, now: datetime, db_hint: str = "") -> dict[str, Any] | None:
    """An interrupted run's facts for `--json` and the API: when its engine was last heard
    from, how long ago, and the command that continues it; None for any other run."""
    if shown_state(run, now) != "interrupted":
        return None
    return {
        "last_heartbeat": run.updated_at.isoformat(),
        "seconds_ago": round(max(0.0, (now - run.updated_at).total_seconds()), 1),
        "resume": hints.resume_command(run.id, db_hint),
    }


def interruption_note(run: RunRecord, now: datetime, db_hint: str = "") -> str:
    """How long ago an interrupted run's engine was last heard from, and what continues it."""
    ago = format_duration(max(0.0, (now - run.updated_at).total_seconds()))
    return f"its engine stopped {ago} ago; continue with: {hints.resume_command(run.id, db_hint)}"


RUN_ID_SLUG_CHARS = 40  # of the plan's name; the time and a random suffix follow
MAX_RUN_ID_CHARS = 128
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_]+")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def name_slug(name: str) -> str:
    """A plan's name reduced to letters, digits, `_` and single `-`: safe in a path, a URL, a
    shell, a git ref and rich markup. `Fix [/login] redirect` -> `Fix-login-redirect`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_name).strip("-")[:RUN_ID_SLUG_CHARS].rstrip("-")
    return slug or "run"


def run_id_for(name: str, now: datetime) -> str:
    """The id of a new run of the plan called `name`: its slug, the time, a random suffix.

    The one place run ids are made (new runs, dead letters resubmitted in a new run); the
    plan's own name is stored beside it for display.
    """
    return f"{name_slug(name)}-{now:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}"


def new_run_id(plan: Plan, now: datetime) -> str:
    return run_id_for(plan.name, now)


def check_run_id(run_id: str) -> str:
    """A run id a person chose (`orch run --run-id`): refused unless it is as safe as a made one.

    Letters, digits, `.`, `_` and `-`, starting with a letter or digit, no `..`: it names a
    directory under .orchestration/ and git refs, and appears in URLs and shell hints.
    """
    if len(run_id) > MAX_RUN_ID_CHARS or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise OrchestrationError(
            f"run id '{run_id[:MAX_RUN_ID_CHARS]}' is not allowed: use up to {MAX_RUN_ID_CHARS} "
            "letters, digits, '.', '_' and '-', starting with a letter or digit, without '..'"
        )
    return run_id


def attempt_over(run: RunRecord, task: TaskRecord, attempt: int, now: datetime) -> bool:
    """Whether the task's `attempt` can write no more output: a later attempt began, the task
    left `running`, or no engine works on the run any more."""
    if task.attempts != attempt or task.state != TaskState.RUNNING:
        return True
    return not run_is_live(run, now)
