"""`orch task pause|resume|skip|retry|cancel|rerun|inspect`, `orch runs`, `dlq`, `breakers`,
`report` and `prune`: a human's hand on a run, and keeping the store tidy."""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestration.cli.common import (
    MAX_ID,
    ActorOption,
    DbOption,
    JsonOption,
    console,
    iso,
    open_store,
    print_json,
    print_shape,
    user,
)
from orchestration.core.durations import parse_duration
from orchestration.core.errors import OrchestrationError
from orchestration.core.hints import resume_command

if TYPE_CHECKING:
    from orchestration.core.models import (
        InterventionRecord,
        RunRecord,
        TaskRecord,
    )
    from orchestration.store import Store

DEFAULT_WAIT_SECONDS = 10.0  # how long a command waits for a running engine to apply a request
INSPECT_TAIL = 10  # lines of a running attempt's output shown by `orch task inspect`

ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why; stored with the intervention.")
]
RunArg = Annotated[str, typer.Argument(help="The run.")]
TaskArg = Annotated[str, typer.Argument(help="The task.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Change a task field for the next attempt (action.prompt=..., timeout_seconds=600, "
        "retry.max_attempts=5). Repeatable; values are JSON when they parse, text otherwise.",
    ),
]
WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for the engine working on the run to apply the change.",
    ),
]


def register(app: typer.Typer, task_app: typer.Typer) -> None:
    """Mount the commands: task subcommands on `task_app`, the groups and commands on `app`."""
    task_commands: tuple[tuple[str, Callable[..., None]], ...] = (
        ("pause", task_pause),
        ("resume", task_resume),
        ("skip", task_skip),
        ("retry", task_retry),
        ("cancel", task_cancel),
        ("rerun", task_rerun),
        ("inspect", task_inspect),
    )
    for name, command in task_commands:
        task_app.command(name)(command)
    runs_app = typer.Typer(
        help="Pause, resume, cancel, retry or skip a whole run; inspect it; its history.",
        no_args_is_help=True,
    )
    run_commands: tuple[tuple[str, Callable[..., None]], ...] = (
        ("pause", runs_pause),
        ("resume", runs_resume),
        ("cancel", runs_cancel),
        ("retry", runs_retry),
        ("skip", runs_skip),
        ("inspect", runs_inspect),
        ("history", runs_history),
    )
    for name, command in run_commands:
        runs_app.command(name)(command)
    app.add_typer(runs_app, name="runs")
    dlq_app = typer.Typer(
        help="The dead letter queue: tasks that failed for good, with their whole story.",
        no_args_is_help=True,
    )
    dlq_commands: tuple[tuple[str, Callable[..., None]], ...] = (
        ("list", dlq_list),
        ("show", dlq_show),
        ("resubmit", dlq_resubmit),
        ("purge", dlq_purge),
        ("archive", dlq_archive),
        ("stats", dlq_stats),
    )
    for name, command in dlq_commands:
        dlq_app.command(name)(command)
    app.add_typer(dlq_app, name="dlq")
    breakers_app = typer.Typer(
        help="Circuit breakers: which integration points are held back, and resetting them.",
        no_args_is_help=True,
    )
    breakers_app.command("list")(breakers_list)
    breakers_app.command("reset")(breakers_reset)
    app.add_typer(breakers_app, name="breakers")
    app.command("prune")(prune)


# ---- carrying out an intervention ---------------------------------------------------------------


def _intervene(
    db: str | None,
    run_id: str,
    action: str,
    *,
    task_id: str | None = None,
    actor: str | None,
    reason: str,
    sets: list[str] | None = None,
    downstream: bool = False,
    wait: float = DEFAULT_WAIT_SECONDS,
) -> None:
    from orchestration.resilience.interventions import intervene, wait_until_applied
    from orchestration.resilience.overrides import parse_sets

    changes = parse_sets(sets or [])
    store = open_store(db)
    try:
        record = intervene(
            store,
            run_id,
            action,
            task_id=task_id,
            actor=actor or user(),
            reason=reason,
            sets=changes,
            downstream=downstream,
        )
        requested = record.state == "requested"
        if requested:
            record = wait_until_applied(store, record, wait)
        _report_intervention(store, record, requested)
    finally:
        store.close()


def _report_intervention(store: "Store", record: "InterventionRecord", requested: bool) -> None:
    subject = f"task {record.task_id}" if record.task_id else f"run {record.run_id}"
    if record.state == "refused":
        raise OrchestrationError(
            f"intervention {record.id} ({record.action} {subject}) refused by the engine: "
            f"{record.note}"
        )
    if record.state == "requested":
        console.print(
            f"intervention {record.id}: {record.action} {subject} requested; the engine working "
            "on the run applies it at its next check",
            markup=False,
        )
        return
    what = record.note or f"{record.action} {subject}"
    console.print(f"intervention {record.id}: {what}", markup=False)
    if requested:
        console.print("applied by the engine working on the run", markup=False)
        return
    run = store.get_run(record.run_id) if record.run_id else None
    finished = run is None or run.state in ("completed", "failed", "cancelled")
    if run is not None and not finished and record.action != "pause":
        console.print(f"continue with: {resume_command(run.id)}", markup=False, soft_wrap=True)


# ---- task interventions -------------------------------------------------------------------------


def task_pause(
    run_id: RunArg,
    task_id: TaskArg,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Hold a task (it becomes blocked) until `orch task resume`.

    A pending, ready or retrying task does not start; a running one has its attempt stopped
    first.
    """
    _intervene(db, run_id, "pause", task_id=task_id, actor=actor, reason=reason, wait=wait)


def task_resume(
    run_id: RunArg,
    task_id: TaskArg,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Let a paused task go on (it becomes ready).

    A task held at a breakpoint is answered with `orch breakpoints resolve` instead.
    """
    _intervene(db, run_id, "resume", task_id=task_id, actor=actor, reason=reason, wait=wait)


def task_skip(
    run_id: RunArg,
    task_id: TaskArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (required).")],
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Mark a task done without running it (outcome `skipped`); its dependents go on."""
    _intervene(db, run_id, "skip", task_id=task_id, actor=actor, reason=reason, wait=wait)


def task_retry(
    run_id: RunArg,
    task_id: TaskArg,
    sets: SetOption = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Run a failed, blocked or retrying task again now, optionally with changed fields.

    A failed task gets as many attempts again as the plan first gave it; its dependents that
    were cancelled because it failed wait for it again; its dead letter is marked resubmitted.
    """
    _intervene(
        db, run_id, "retry", task_id=task_id, actor=actor, reason=reason, sets=sets, wait=wait
    )


def task_cancel(
    run_id: RunArg,
    task_id: TaskArg,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Cancel a task (a running one has its attempt stopped first).

    Its dependents follow their trigger rules, as when an upstream task fails.
    """
    _intervene(db, run_id, "cancel", task_id=task_id, actor=actor, reason=reason, wait=wait)


def task_rerun(
    run_id: RunArg,
    task_id: TaskArg,
    downstream: Annotated[
        bool,
        typer.Option("--downstream", help="Also run again every task that depends on it."),
    ] = False,
    sets: SetOption = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Run a finished task (completed, failed or cancelled) again.

    Earlier attempts stay in its history and the attempt numbers go on counting. A failed task
    gets as many attempts again as the plan first gave it.
    """
    _intervene(
        db,
        run_id,
        "rerun",
        task_id=task_id,
        actor=actor,
        reason=reason,
        sets=sets,
        downstream=downstream,
        wait=wait,
    )


def task_inspect(
    run_id: RunArg, task_id: TaskArg, db: DbOption = None, json_output: JsonOption = False
) -> None:
    """Everything about one task: state, spec, attempts, decisions, interventions, breaker.

    Also its breakpoints, dead letters and the output tail of every attempt.
    """
    from orchestration.core.durations import format_duration
    from orchestration.resilience.spending import money_text

    store = open_store(db)
    try:
        data = _inspect_task(store, run_id, task_id)
    finally:
        store.close()
    if json_output:
        print_json(data)
        return
    task = data["task"]
    lines = [
        f"task {task['id']} of run {run_id}: {task['state']}"
        + (f" ({task['outcome']})" if task["outcome"] else ""),
        f"  attempts {task['attempts']}, priority {task['priority']}, last error "
        f"{task['last_error_kind']}, depends on {', '.join(task['depends_on']) or 'nothing'}",
    ]
    spent = data["task"]["spent"]
    lines.append(
        f"  spent: cost {money_text(spent['cost'])}, tokens {spent['tokens']:,}, "
        f"attempt time {format_duration(spent['seconds'])}"
    )
    if data["breaker"]["key"]:
        lines.append(f"  circuit breaker {data['breaker']['key']}: {data['breaker']['state']}")
    running = data["running"]
    if running is not None:
        number, path = running["attempt"], running["log"]
        lines.append(f"  attempt {number} running; its output so far ({path}):")
        lines.extend(f"    | {line}" for line in running["tail"] or ["(nothing yet)"])
        lines.append(f"    follow it with: orch logs {run_id} {task['id']} -f")
    for attempt in data["attempts"]:
        tail = attempt["output_tail"].strip().splitlines()[-3:]
        lines.append(
            f"  attempt {attempt['attempt']}: exit {attempt.get('exit_code')}, "
            f"{attempt.get('error_kind', 'stopped')}, {attempt.get('duration_seconds')}s"
        )
        lines.extend(f"    | {line}" for line in tail)
    lines.extend(
        f"  decision (attempt {d['attempt']}): {d['decision']} by {d['rule']}: {d['reason']}"
        for d in data["decisions"]
    )
    lines.extend(
        f"  intervention {i['id']}: {i['action']} by {i['actor']} ({i['state']})"
        + (f": {i['reason']}" if i["reason"] else "")
        for i in data["interventions"]
    )
    lines.extend(
        f"  dead letter {d['id']} ({d['state']}): {d['reason']}" for d in data["dead_letters"]
    )
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _inspect_task(store: "Store", run_id: str, task_id: str) -> dict[str, Any]:
    from orchestration.resilience.breakers import breaker_key, stored_settings
    from orchestration.resilience.dead_letters import ATTEMPT_EVENTS, attempt_entry
    from orchestration.shapes import records as shapes
    from orchestration.views.run_views import task_detail

    task = store.task(run_id, task_id)
    run = store.get_run(run_id)
    settings, agent_command = stored_settings(run.plan_json)
    key = breaker_key(task.spec, settings, agent_command)
    stored = store.breaker(key) if key else None
    shaped = shapes.as_json
    return {
        "run": run_id,
        "task": shaped(task_detail(store, run_id, task_id, datetime.now(UTC))),
        "spec": task.spec.model_dump(mode="json"),
        "attempts": [attempt_entry(e) for e in store.task_events(run_id, task_id, ATTEMPT_EVENTS)],
        "decisions": [shaped(shapes.decision_out(d)) for d in store.decisions(run_id, task_id)],
        "transitions": [
            shaped(shapes.transition_out(m)) for m in store.transitions(run_id, task_id)
        ],
        "breakpoints": [
            shaped(shapes.breakpoint_out(bp))
            for bp in store.breakpoints(run_id)
            if bp.task_id == task_id
        ],
        "dead_letters": [
            shaped(shapes.dead_letter_out(d)) for d in store.dead_letters(run_id, task_id)
        ],
        "interventions": [
            shaped(shapes.intervention_out(i)) for i in store.interventions(run_id, task_id=task_id)
        ],
        "breaker": {"key": key, "state": stored.state if stored else ("closed" if key else None)},
        "running": _running_attempt(run, task),
    }


def _running_attempt(run: "RunRecord", task: "TaskRecord") -> dict[str, Any] | None:
    """The attempt under way: its log and the log's last lines (printable), as written now."""
    from orchestration.core.attempt_logs import log_path, tail_lines

    if task.state != "running" or task.attempts < 1:
        return None
    path = log_path(run.plan_path, run.id, task.task_id, task.attempts)
    return {"attempt": task.attempts, "log": str(path), "tail": tail_lines(path, INSPECT_TAIL)}


# ---- run interventions --------------------------------------------------------------------------


def runs_pause(
    run_id: RunArg, reason: ReasonOption = "", actor: ActorOption = None, db: DbOption = None
) -> None:
    """Pause a run: running actions finish, nothing new starts, until `orch runs resume`."""
    _intervene(db, run_id, "pause", actor=actor, reason=reason)


def runs_resume(
    run_id: RunArg, reason: ReasonOption = "", actor: ActorOption = None, db: DbOption = None
) -> None:
    """Lift a human's pause of a run.

    An engine working on the run goes on where it stopped; otherwise continue with
    `orch resume RUN`.
    """
    _intervene(db, run_id, "resume", actor=actor, reason=reason)


def runs_cancel(
    run_id: RunArg,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Cancel every unfinished task of a run; the run ends cancelled.

    Running attempts are stopped first.
    """
    _intervene(db, run_id, "cancel", actor=actor, reason=reason, wait=wait)


def runs_retry(
    run_id: RunArg,
    sets: SetOption = None,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Retry every failed task of a run (each with the `--set` changes)."""
    _intervene(db, run_id, "retry", actor=actor, reason=reason, sets=sets, wait=wait)


def runs_skip(
    run_id: RunArg,
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (required).")],
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Skip every task of a run that has not finished (and every failed one): the run can end."""
    _intervene(db, run_id, "skip", actor=actor, reason=reason, wait=wait)


def runs_inspect(run_id: RunArg, db: DbOption = None, json_output: JsonOption = False) -> None:
    """A run at a glance: state, task counts, attempts, breakpoints, dead letters, pauses."""
    report(run_id, interventions=False, db=db, json_output=json_output)


def runs_history(run_id: RunArg, db: DbOption = None, json_output: JsonOption = False) -> None:
    """Every state change of every task and every intervention of the run, oldest first."""
    from orchestration.shapes.records import as_json, intervention_out, transition_out

    store = open_store(db)
    try:
        store.get_run(run_id)
        entries = [
            {"event": "transition", **as_json(transition_out(m))} for m in store.transitions(run_id)
        ]
        entries += [
            {"event": "intervention", **as_json(intervention_out(i))}
            for i in store.interventions(run_id)
        ]
    finally:
        store.close()
    entries.sort(key=lambda e: (e["at"], e["event"] == "transition"))
    if json_output:
        print_json({"run": run_id, "history": entries})
        return
    for e in entries:
        at = str(e["at"])[:19].replace("T", " ")
        if e["event"] == "transition":
            line = f"{at}  {e['task']}: {e['from']} -> {e['to']} ({e['trigger']}) by {e['actor']}"
            line += f": {e['reason']}" if e["reason"] else ""
        else:
            target = f"task {e['task']}" if e["task"] else "run"
            line = f"{at}  #{e['id']} {e['action']} {target} by {e['actor']} ({e['state']})"
            line += f": {e['reason']}" if e["reason"] else ""
        console.print(line, markup=False, highlight=False)


# ---- report -------------------------------------------------------------------------------------


def report(
    run_id: RunArg,
    interventions: Annotated[
        bool, typer.Option("--interventions", help="Only the interventions: who did what, why.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Report on a run; with --interventions, every human intervention with who and why."""
    from orchestration.resilience.interventions import human_pause
    from orchestration.resilience.spending import budget_text, spending_of
    from orchestration.shapes.records import as_json, dead_letter_out, intervention_out

    store = open_store(db)
    try:
        run = store.get_run(run_id)
        done = [as_json(intervention_out(i)) for i in store.interventions(run_id)]
        if interventions:
            if json_output:
                print_json({"run": run_id, "interventions": done})
                return
            _print_interventions(done)
            return
        tasks = store.tasks(run_id)
        letters = store.dead_letters(run_id)
        bps = store.breakpoints(run_id)
        pause = human_pause(store, run_id)
        spending = spending_of(store, run_id, datetime.now(UTC))
    finally:
        store.close()
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    open_bps = sum(1 for bp in bps if bp.state == "open")
    data = {
        "run": {
            "id": run.id,
            "plan": run.plan_name,
            "state": run.state,
            "started_at": iso(run.created_at),
            "finished_at": iso(run.finished_at),
            "paused_by": (
                {"actor": pause.actor, "reason": pause.note, "at": iso(pause.at)} if pause else None
            ),
        },
        "counts": counts,
        "attempts": sum(t.attempts for t in tasks),
        "spent": spending.as_dict(),
        "tasks": {task_id: spent.as_dict() for task_id, spent in spending.tasks.items()},
        "breakpoints": {"open": open_bps, "resolved": len(bps) - open_bps},
        "dead_letters": [as_json(dead_letter_out(d)) for d in letters],
        "interventions": done,
    }
    if json_output:
        print_json(data)
        return
    lines = [
        f"run {run.id} ({run.plan_name}): {run.state}",
        "  tasks: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        f"  attempts: {data['attempts']}; breakpoints: {open_bps} open, "
        f"{len(bps) - open_bps} resolved",
        "  " + budget_text(spending),
    ]
    if pause is not None:
        lines.append(f"  paused by {pause.actor}" + (f": {pause.note}" if pause.note else ""))
    open_letters = [d for d in letters if d.state == "open"]
    lines.append(f"  dead letters: {len(letters)} ({len(open_letters)} open)")
    lines.extend(f"    #{d.id} {d.task_id} [{d.error_kind}]: {d.reason}" for d in open_letters)
    lines.append(f"  interventions: {len(done)}")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def _print_interventions(entries: list[dict[str, Any]]) -> None:
    if not entries:
        console.print("no interventions")
        return
    for e in entries:
        at = (e["at"] or "")[:19].replace("T", " ")
        target = f"task {e['task']}" if e["task"] else "run"
        line = f"{at}  #{e['id']} {e['action']} {target} by {e['actor']} ({e['state']})"
        if e["reason"]:
            line += f": {e['reason']}"
        sets = (e["params"] or {}).get("sets")
        if sets:
            line += " with " + ", ".join(f"{k}={v!r}" for k, v in sets.items())
        if e["note"]:
            line += f" -> {e['note']}"
        console.print(line, markup=False, highlight=False)


# ---- dead letter queue --------------------------------------------------------------------------

DeadLetterArg = Annotated[int, typer.Argument(help="The dead letter's id.", min=1, max=MAX_ID)]


def dlq_list(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    task_id: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    state: Annotated[
        str, typer.Option("--state", help="open, resubmitted, closed or all.")
    ] = "open",
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List dead letters (open ones by default)."""
    from orchestration.resilience.dead_letters import STATES

    if state not in (*STATES, "all"):
        raise OrchestrationError(f"unknown state '{state}'; expected {', '.join(STATES)} or all")
    store = open_store(db)
    try:
        letters = store.dead_letters(run_id, task_id, None if state == "all" else state)
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import DeadLettersOut, dead_letter_out

        print_shape(DeadLettersOut(dead_letters=[dead_letter_out(d) for d in letters]))
        return
    if not letters:
        console.print("no dead letters" if state == "all" else f"no {state} dead letters")
        return
    for d in letters:
        console.print(
            f"#{d.id} {d.run_id}/{d.task_id} {d.state} [{d.error_kind}] "
            f"{d.failed_at:%Y-%m-%d %H:%M}Z, {len(d.attempts)} attempt(s): {d.reason}",
            markup=False,
            highlight=False,
        )


def dlq_show(
    dead_letter_id: DeadLetterArg, db: DbOption = None, json_output: JsonOption = False
) -> None:
    """A dead letter in full: spec, attempts with output tails, validators, decisions.

    Also the breakpoints raised on the task and how they were answered.
    """
    store = open_store(db)
    try:
        letter = store.dead_letter(dead_letter_id)
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import DeadLetterOneOut, dead_letter_detail_out

        print_shape(DeadLetterOneOut(dead_letter=dead_letter_detail_out(letter)))
        return
    lines = [
        f"dead letter #{letter.id}: task {letter.task_id} of run {letter.run_id} ({letter.state})",
        f"  failed {letter.failed_at:%Y-%m-%d %H:%M:%S}Z, error kind {letter.error_kind}: "
        f"{letter.reason}",
        f"  action: {letter.spec.get('action')}",
    ]
    for attempt in letter.attempts:
        lines.append(
            f"  attempt {attempt.get('attempt')}: exit {attempt.get('exit_code')}, "
            f"{attempt.get('error_kind', attempt.get('stopped_by'))}, "
            f"{attempt.get('duration_seconds')}s"
        )
        lines.extend(f"    | {line}" for line in attempt["output_tail"].splitlines()[-10:])
    for q in letter.quality:
        failed = [c.get("name") for c in q.get("checks", []) if not c.get("passed", True)]
        lines.append(
            f"  quality (attempt {q['attempt']}): score {q['score']:.2f}, gate "
            f"{'passed' if q['gate_passed'] else 'failed'}"
            + (f"; failed checks: {', '.join(map(str, failed))}" if failed else "")
        )
    lines.extend(
        f"  decision (attempt {d['attempt']}): {d['decision']} ({d['rule']}): {d['reason']}"
        for d in letter.decisions
    )
    lines.extend(
        f"  breakpoint {b['id']} {b['rule']}: {b['resolution'] or b['state']}"
        + (f" by {b['resolved_by']}" if b["resolved_by"] else "")
        for b in letter.breakpoints
    )
    if letter.state != "open":
        lines.append(f"  {letter.state} by {letter.resolved_by}: {letter.note} {letter.params}")
    else:
        lines.append(f"  resubmit with: orch dlq resubmit {letter.id} [--set key=value]")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def dlq_resubmit(
    dead_letter_id: DeadLetterArg,
    sets: SetOption = None,
    new_run: Annotated[
        bool,
        typer.Option("--new-run", help="Run the task alone in a new run of the same plan."),
    ] = False,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    wait: WaitOption = DEFAULT_WAIT_SECONDS,
    db: DbOption = None,
) -> None:
    """Run a dead letter's task again, in its run or (--new-run) in a run of its own.

    In its run, the dependents that were cancelled because it failed wait for it again.
    """
    from orchestration.resilience.dead_letters import resubmit
    from orchestration.resilience.interventions import wait_until_applied
    from orchestration.resilience.overrides import parse_sets

    changes = parse_sets(sets or [])
    store = open_store(db)
    try:
        done = resubmit(
            store,
            dead_letter_id,
            actor=actor or user(),
            sets=changes,
            new_run=new_run,
            note=reason,
        )
        if done.new_run_id is not None:
            console.print(
                f"dead letter {dead_letter_id} resubmitted as run {done.new_run_id}; start it "
                f"with: {resume_command(done.new_run_id)}",
                markup=False,
            )
            return
        assert done.intervention is not None
        record = done.intervention
        requested = record.state == "requested"
        if requested:
            record = wait_until_applied(store, record, wait)
        _report_intervention(store, record, requested)
    finally:
        store.close()


def dlq_purge(
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only dead letters that failed longer ago (30d, 12h)."),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    include_open: Annotated[
        bool, typer.Option("--include-open", help="Open dead letters too (default: kept).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, delete nothing.")] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete dead letters that were dealt with (resubmitted or closed)."""
    from orchestration.resilience.dead_letters import purge

    seconds = _duration_option("--older-than", older_than)
    store = open_store(db)
    try:
        gone = purge(
            store,
            older_than_seconds=seconds,
            run_id=run_id,
            include_open=include_open,
            dry_run=dry_run,
        )
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import as_json, dead_letter_out

        shown = [as_json(dead_letter_out(d)) for d in gone]
        print_json({"dry_run": dry_run, "dead_letters": shown})
        return
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {len(gone)} dead letter(s)", markup=False)
    for d in gone if dry_run else []:
        console.print(f"  #{d.id} {d.run_id}/{d.task_id} ({d.state})", markup=False)


def dlq_archive(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Dead letters that failed longer ago (30d, 12h)."),
    ],
    to: Annotated[
        Path,
        typer.Option("--to", help="The directory of the archive (dead-letters-YYYY-MM.jsonl)."),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, move nothing.")] = False,
    db: DbOption = None,
) -> None:
    """Write dead letters older than a period to a JSONL archive, then delete them.

    Every letter (open ones too) with its whole story, one JSON object per line, as `orch dlq
    show --json` prints it. A plan's `retention.dead_letter_days` makes its engine do this itself.
    """
    from orchestration.engine.dead_letter_archive import archive_dead_letters

    seconds = _duration_option("--older-than", older_than)
    assert seconds is not None  # the option is required
    store = open_store(db)
    try:
        gone, path = archive_dead_letters(store, to, seconds, datetime.now(UTC), dry_run=dry_run)
    finally:
        store.close()
    verb = "would archive" if dry_run else "archived"
    console.print(f"{verb} {len(gone)} dead letter(s) to {path}", markup=False, soft_wrap=True)


def dlq_stats(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """How many dead letters, by state, error kind, task and run."""
    from orchestration.resilience.dead_letters import stats

    store = open_store(db)
    try:
        figures = stats(store.dead_letters(run_id))
    finally:
        store.close()
    if json_output:
        print_json({"run": run_id, "stats": figures})
        return
    console.print(
        f"{figures['total']} dead letter(s): "
        + ", ".join(f"{n} {s}" for s, n in figures["by_state"].items()),
        markup=False,
    )
    for title, key in (("error kind", "by_error_kind"), ("task", "by_task"), ("run", "by_run")):
        if figures[key]:
            ranked = ", ".join(f"{e['name']} {e['count']}" for e in figures[key][:10])
            console.print(f"  by {title}: {ranked}", markup=False, highlight=False)


# ---- circuit breakers ---------------------------------------------------------------------------


def breakers_list(db: DbOption = None, json_output: JsonOption = False) -> None:
    """Every circuit breaker: closed (work flows), open (work waits), half_open (probing)."""
    from orchestration.shapes.records import BreakersOut, breaker_out

    store = open_store(db)
    try:
        found = store.breakers()
        resets = {i.params.get("key"): i for i in store.interventions(store_wide=True)}
    finally:
        store.close()
    shown = [breaker_out(b, resets.get(b.key)) for b in found]
    if json_output:
        print_shape(BreakersOut(breakers=shown))
        return
    if not found:
        console.print("no circuit breakers yet")
        return
    for b in shown:
        since = f" since {b.opened_at:%Y-%m-%d %H:%M:%S}Z" if b.opened_at else ""
        console.print(
            f"{b.key}: {b.state}{since}; {b.failures} of {b.calls} recent "
            f"attempts failed" + (f"; {b.reason}" if b.reason else ""),
            markup=False,
            highlight=False,
        )


def breakers_reset(
    keys: Annotated[list[str] | None, typer.Argument(help="The breakers' keys.")] = None,
    all_breakers: Annotated[bool, typer.Option("--all", help="Every breaker.")] = False,
    reason: ReasonOption = "",
    actor: ActorOption = None,
    db: DbOption = None,
) -> None:
    """Close circuit breakers by hand (recorded as interventions): waiting work goes on."""
    from orchestration.resilience.breakers import reset_breakers

    if bool(keys) == all_breakers:
        raise OrchestrationError("name the breakers to reset, or give --all (not both)")
    store = open_store(db)
    try:
        done = reset_breakers(
            store, None if all_breakers else list(keys or []), actor=actor or user(), reason=reason
        )
    finally:
        store.close()
    console.print(f"reset {len(done)} breaker(s): {', '.join(done) or 'none stored'}", markup=False)


# ---- retention ----------------------------------------------------------------------------------


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Delete finished runs that finished longer ago (30d, 12h); a plan's own "
            "`retention.keep_days` wins for its runs.",
        ),
    ] = None,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Keep runs that failed.")
    ] = False,
    ignore_plan_retention: Annotated[
        bool,
        typer.Option("--ignore-plan-retention", help="Apply --older-than to every run."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would go; delete nothing.")
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete finished runs with all their rows and attempt logs; never a run that is running
    or paused.

    Finished: completed, failed or cancelled. A plan's `retention: {keep_days, keep_failed}`
    applies to its runs.
    """
    from orchestration.resilience.retention import choose
    from orchestration.resilience.retention import prune as prune_runs

    seconds = _duration_option("--older-than", older_than)
    if ignore_plan_retention and seconds is None:
        raise OrchestrationError("--ignore-plan-retention needs --older-than")
    store = open_store(db)
    try:
        choices = choose(
            store.list_runs(),
            older_than_seconds=seconds,
            keep_failed=keep_failed,
            now=datetime.now(UTC),
            ignore_plan_retention=ignore_plan_retention,
        )

        def progress(choice: Any, rows: dict[str, int]) -> None:
            if not json_output:
                verb = "would delete" if dry_run else "deleted"
                console.print(
                    f"{verb} run {choice.run.id} ({choice.run.state}, {choice.why}): "
                    f"{sum(rows.values())} rows",
                    markup=False,
                    highlight=False,
                )

        result = prune_runs(store, choices, dry_run=dry_run, progress=progress)
    finally:
        store.close()
    kept = [c for c in choices if not c.prune]
    if json_output:
        print_json(
            {
                "dry_run": dry_run,
                "pruned": result.pruned,
                "rows": dict(sorted(result.rows.items())),
                "kept": [{"run": c.run.id, "state": c.run.state, "why": c.why} for c in kept],
                "changed_meanwhile": result.changed,
                "logs_removed": result.logs,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    rows = ", ".join(f"{table} {n}" for table, n in sorted(result.rows.items()) if n)
    console.print(
        f"{verb} {len(result.pruned)} run(s)"
        + (f"; rows: {rows}" if rows else "")
        + (f"; the logs of {len(result.logs)}" if result.logs else ""),
        markup=False,
    )
    if result.changed:
        console.print(f"left alone (resumed meanwhile): {', '.join(result.changed)}", markup=False)
    if kept:
        console.print(f"kept {len(kept)} run(s)", markup=False)


def _duration_option(option: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise OrchestrationError(f"{option}: {error}") from None
