"""What a reviewer sees of a breakpoint, and resolving it through `review.resolve_breakpoint`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from orchestration.core import hints
from orchestration.core.errors import OrchestrationError
from orchestration.core.models import BreakpointRecord, RunRecord
from orchestration.engine.plan import plan_from_stored
from orchestration.engine.review_actions import Announce, resolve_and_announce
from orchestration.project.worktrees import task_worktree
from orchestration.resilience.runs import run_is_live
from orchestration.resilience.spending import RunSpending
from orchestration.rules.rule_files import RuleSet
from orchestration.store import Store, StoreConflict
from orchestration.views import run_views
from orchestration.web import schemas
from orchestration.web.diffs import working_diff
from orchestration.web.errors import ApiError

logger = logging.getLogger(__name__)

RULE_CACHE_SIZE = 16  # rule sets kept loaded, by their files
BUILT_IN_RULES = {
    "risk_gate": (
        "The engine's risk gate: a high-risk task whose planner confidence is below the plan's "
        "scheduling.risk_gate_confidence waits for a human before it runs."
    ),
    "decision:escalate": (
        "The decision table chose escalate: a human decides what happens to this attempt."
    ),
    "decision:clarify": (
        "The decision table chose clarify: the agent needs an answer before it tries again."
    ),
    "decision:checkpoint": "The decision table chose checkpoint: a human looks before going on.",
}


def run_summary(
    store: Store,
    run: RunRecord,
    now: datetime | None = None,
    db_hint: str = "",
    spending: RunSpending | None = None,
) -> schemas.RunOut:
    """`run_views.run_summary`, its tasks counted in one query."""
    counts = store.task_state_counts(run.id).get(run.id, {})
    when = now or datetime.now(UTC)
    return run_views.run_summary(store, run, when, db_hint, counts=counts, spending=spending)


def all_run_summaries(
    store: Store, db_hint: str = "", *, with_spending: bool = False
) -> list[schemas.RunOut]:
    """`run_views.all_run_summaries`, the tasks counted in one query (the runs page leaves
    out the spending, which reads each run's steps)."""
    return run_views.all_run_summaries(
        store,
        datetime.now(UTC),
        db_hint,
        counts=store.task_state_counts(),
        with_spending=with_spending,
    )


# ---- the review bundle ------------------------------------------------------------------------


def options(bp: BreakpointRecord) -> list[schemas.OptionOut]:
    """The answers to offer, best first: for a step that failed its gate, approving (accepting
    it broken, which needs a note) comes last."""
    red = bp.at == "after" and bp.context.get("gate_passed") is False
    approve = "run the task now" if bp.at == "before" else "accept the result as it is"
    if red:
        approve = "accept the step although its quality gate failed (say why in the note)"
    retry = schemas.OptionOut(
        resolution="retry",
        meaning="run the task again, with its feedback, your answer as {answer} and any "
        "changed parameters",
    )
    skip = schemas.OptionOut(resolution="skip", meaning="mark it done without running it")
    reject = schemas.OptionOut(resolution="reject", meaning="cancel the task")
    approving = schemas.OptionOut(resolution="approve", meaning=approve)
    return [retry, reject, skip, approving] if red else [approving, retry, skip, reject]


@lru_cache(maxsize=RULE_CACHE_SIZE)
def _rule_set(rule_files: tuple[str, ...]) -> RuleSet:
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.rules.rule_files import load_rules

    return load_rules(rule_files, functions=load_plugins().rule_functions)


def rule_info(run: RunRecord, name: str) -> schemas.RuleOut:
    """The rule that fired, as its file says it now (the file may have changed since)."""
    if name in BUILT_IN_RULES:
        return schemas.RuleOut(
            name=name, at=None, when=None, severity=None, doc=BUILT_IN_RULES[name], file=None
        )
    try:
        rules = _rule_set(tuple(plan_from_stored(run).rule_files))
    except (OrchestrationError, OSError, KeyError) as error:
        logger.info("cannot load the rules of run %s: %s", run.id, error)
        rules = None
    for rule in rules.breakpoints if rules is not None else ():
        if rule.name == name:
            return schemas.RuleOut(
                name=name,
                at=rule.at,
                when=rule.when.source,
                severity=rule.severity,
                doc=rule.doc,
                file=_shown_file(rule.file),
            )
    return schemas.RuleOut(
        name=name, at=None, when=None, severity=None, doc="(rule not found now)", file=None
    )


def _shown_file(path: str) -> str:
    """A default rule file by its name (its install path says nothing to a reviewer)."""
    from orchestration.rules.rule_files import default_rule_files

    defaults = {str(p) for p in default_rule_files()}
    return f"the default rules ({Path(path).name})" if path in defaults else path


def _step(store: Store, bp: BreakpointRecord) -> schemas.StepOut | None:
    if bp.at != "after":
        return None
    context: dict[str, Any] = bp.context
    attempt = context.get("attempt")
    diff_stat = str(context.get("diff_stat") or "")
    if not diff_stat:  # the step event carries the diff stat; the rule context does not
        for event in store.task_events(bp.run_id, bp.task_id, kinds=["step"]):
            if event.data.get("attempt") == attempt:
                diff_stat = str(event.data.get("diff_stat") or "")
    return schemas.StepOut(
        attempt=attempt,
        exit_code=context.get("exit_code"),
        timed_out=bool(context.get("timed_out")),
        duration_seconds=context.get("duration_seconds"),
        error_kind=context.get("error_kind"),
        changed_files=[str(f) for f in context.get("changed_files") or []],
        lines_changed=context.get("lines_changed"),
        diff_stat=diff_stat,
        output_tail=str(context.get("output_tail") or ""),
    )


def gather_review(
    store: Store, bp: BreakpointRecord, *, with_diff: bool = True
) -> schemas.ReviewOut:
    """Everything the review page and `GET /breakpoints/{id}` show, from the store (and git)."""
    run = store.get_run(bp.run_id)
    step = _step(store, bp)
    attempt = bp.context.get("attempt")
    quality = [q for q in store.quality(bp.run_id, bp.task_id) if q.attempt == attempt]
    decisions = [d for d in store.decisions(bp.run_id, bp.task_id) if d.attempt == attempt]
    diff = None
    if with_diff and step is not None and step.changed_files:
        # In worktree isolation the step's files are in the task's worktree until it merges.
        where = task_worktree(Path(run.workdir), bp.run_id, bp.task_id) or Path(run.workdir)
        found = working_diff(where, step.changed_files)
        if found is not None:
            diff = schemas.DiffOut(text=found.text, truncated=found.truncated, basis=found.basis)
    return schemas.ReviewOut(
        breakpoint=schemas.breakpoint_out(bp, with_context=True),
        run=run_summary(store, run),
        task=run_views.task_detail(store, bp.run_id, bp.task_id, datetime.now(UTC)),
        step=step,
        diff=diff,
        quality=schemas.quality_out(quality[-1]) if quality else None,
        decisions=[schemas.decision_out(d) for d in decisions],
        rule=rule_info(run, bp.rule),
        options=options(bp),
    )


# ---- resolving --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolveRequest:
    breakpoint_id: int
    resolution: str
    actor: str
    note: str = ""
    answer: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)  # `--set` values
    reject_as: str = "cancel"
    rollback: bool = False  # with reject: restore the last accepted checkpoint


def resolve(
    store: Store,
    request: ResolveRequest,
    db_hint: str = "",
    on_resolved: Announce | None = None,
) -> schemas.ResolveOut:
    """Resolve one breakpoint (409 when it is resolved already) and say what happens next.

    `on_resolved` hears of it afterwards (it tells the plugins, in the background).
    """
    bp = store.breakpoint(request.breakpoint_id)
    if bp.state != "open":
        raise ApiError(
            409,
            f"breakpoint {bp.id} is already resolved ({bp.resolution} by {bp.resolved_by})",
        )
    try:
        done = resolve_and_announce(
            store,
            request.breakpoint_id,
            request.resolution,
            actor=request.actor,
            announce=on_resolved or _told_nobody,
            note=request.note,
            answer=request.answer or None,
            sets=dict(request.params) or None,
            reject_as=request.reject_as,
            rollback=request.rollback,
        )
    except StoreConflict as conflict:  # another reviewer was quicker
        raise ApiError(409, str(conflict)) from None
    _, follow = next_step(store, done.breakpoint.run_id, db_hint)
    return schemas.ResolveOut(
        breakpoint=schemas.breakpoint_out(done.breakpoint),
        task_state=done.task_state,
        run_live=done.run_live,
        next=follow,
        rolled_back=done.rolled_back,
    )


def _told_nobody(resolved: BreakpointRecord, extra: Mapping[str, Any]) -> None:
    """No plugins to tell (a caller without an announcer)."""


def next_step(store: Store, run_id: str, db_hint: str = "") -> tuple[bool, str]:
    """Whether an engine works on the run now, and what a person should do next."""
    run = store.get_run(run_id)
    if run_is_live(run, datetime.now(UTC)):
        return True, "The engine working on this run picks it up by itself."
    command = resume_command(run.id, db_hint)
    return False, f"No engine is working on this run now. Continue it with: {command}"


def resume_command(run_id: str, db_hint: str = "") -> str:
    """`orch resume RUN --db URL`, quoted for a shell (`db_hint` is quoted where it is made)."""
    return hints.resume_command(run_id, db_hint)
