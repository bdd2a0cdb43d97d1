"""The `orch` command line: run, resume, inspect and review plans (typer + rich)."""

import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from orchestration import __version__
from orchestration.cli import checkpoints as cli_checkpoints
from orchestration.cli import daemon as cli_daemon
from orchestration.cli import events as cli_events
from orchestration.cli import fleet as cli_fleet
from orchestration.cli import logs as cli_logs
from orchestration.cli import plugins as cli_plugins
from orchestration.cli import report as cli_report
from orchestration.cli import resilience as cli_resilience
from orchestration.cli import review as cli_review
from orchestration.cli import schedule as cli_schedule
from orchestration.cli import serve as cli_serve
from orchestration.cli import workers as cli_workers
from orchestration.cli.common import (
    EXIT_BAD_INPUT,
    MAX_ID,
    DbOption,
    JsonOption,
    console,
    err_console,
    iso,
    open_store,
    print_json,
    print_shape,
    read_and_exit,
    user,
)
from orchestration.core.errors import OrchestrationError
from orchestration.core.hints import db_hint, resume_command, shell_command
from orchestration.core.terminal_text import TerminalLogFormatter

logger = logging.getLogger("orchestration")

app = typer.Typer(
    name="orch",
    help=(
        "Run long autonomous coding sessions safely: a plan of tasks is scheduled, run, "
        "validated and decided on, and the run stops at breakpoints where a human must review.\n\n"
        "Exit codes: 0 all tasks completed, 1 finished with failures, 2 bad input, "
        "3 paused waiting for a human, 130 / 143 stopped by Ctrl-C / SIGTERM (resume continues)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)
breakpoints_app = typer.Typer(help="List, inspect and resolve breakpoints.", no_args_is_help=True)
task_app = typer.Typer(help="Add tasks to a run, or inspect one.", no_args_is_help=True)
app.add_typer(breakpoints_app, name="breakpoints")
app.add_typer(task_app, name="task")
rules_app = typer.Typer(
    help="Check rule files, evaluate an expression, test rules against step contexts.",
    no_args_is_help=True,
)
app.add_typer(rules_app, name="rules")
cli_review.register(breakpoints_app, rules_app)
cli_checkpoints.register(app)
cli_serve.register(app)
cli_plugins.register(app)
cli_report.register(app)
cli_logs.register(app)
cli_resilience.register(app, task_app)
cli_schedule.register(app)
cli_events.register(app)
cli_daemon.register(app)
cli_workers.register(app)
cli_fleet.register(app)


# ---- validate -------------------------------------------------------------------------------


@app.command()
def validate(
    plan: Annotated[Path, typer.Argument(help="The plan file (plan.yaml).")],
    json_output: JsonOption = False,
) -> None:
    """Check a plan file, its rule files and its validators without running anything.

    Also checks that each agent preset's program (claude, codex, gemini, aider, opencode) is
    installed on this machine's PATH, says which environment the validators will run in (the
    plan's `environment`, else the workdir's .venv or venv, else the python3 on PATH) and checks
    that the programs they need are there. Exits 0 when the plan is good, 2 with one line per
    problem when it is not.
    """
    from orchestration.core.errors import PlanErrors
    from orchestration.engine.plan import load_plan
    from orchestration.engine.policy import build_engine
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.project.environment import plan_environment, preflight_problems

    try:
        plugins = load_plugins()  # first: a plan may name the action kinds plugins provide
        loaded = load_plan(plan, action_kinds=plugins.action_kinds, check_programs=True)
        engine = build_engine(loaded, plugins)
        environment = plan_environment(loaded)
        missing = preflight_problems(loaded, engine.plugins.validators, environment)
        if missing:
            raise PlanErrors(missing)
    except OrchestrationError as error:
        problems = error.errors if isinstance(error, PlanErrors) else [error]
        if json_output:
            print_json({"valid": False, "problems": [_problem(p) for p in problems]})
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise
    if json_output:
        print_json(
            {
                "valid": True,
                "plan": loaded.name,
                "tasks": len(loaded.spec.tasks),
                "rules": len(engine.rules.breakpoints),
                "environment": {
                    "python": environment.python,
                    "command_prefix": list(environment.command_prefix),
                    "source": environment.source,
                },
                "workers": cli_workers.worker_reach(loaded),
            }
        )
        return
    console.print(
        f"[green]✓[/] {escape(str(plan))}: plan '{escape(loaded.name)}' is valid: "
        f"{len(loaded.spec.tasks)} tasks, "
        f"{len(engine.rules.breakpoints)} breakpoint rules, "
        f"validators {', '.join(sorted(engine.plugins.validators))} available"
    )
    console.print(f"validators run with {escape(environment.describe())}")
    note = cli_workers.worker_note(loaded)
    if note:
        console.print(escape(note))


def _problem(error: OrchestrationError) -> dict[str, Any]:
    return {
        "message": error.message,
        "file": error.file,
        "line": error.line,
        "task": error.task,
        "field": error.field,
        "text": str(error),
    }


# ---- run / resume ---------------------------------------------------------------------------


GraceOption = Annotated[
    float | None,
    typer.Option(
        "--grace",
        min=0,
        help="On Ctrl-C or SIGTERM, seconds the running actions get to finish before they are "
        "stopped (default: the plan's concurrency.shutdown_grace_seconds, 30).",
    ),
]


def _display(total: int, quiet: bool) -> Any:
    """The run's console display; made before the run starts, so that set-up steps (the test
    baseline, recovery) are shown too. None with --quiet."""
    from orchestration.cli.display import RunDisplay

    return None if quiet else RunDisplay(total, err_console)


def _run_loop(
    orchestrator: Any, quiet: bool, grace: float | None = None, display: Any = None
) -> int:
    from orchestration.cli.display import RunDisplay

    total = len(orchestrator.tasks)
    if display is None:
        display = RunDisplay(total, err_console, live=False if quiet else None)
    display.total = total  # tasks added while the run was stopped count too
    if not quiet:
        display.follow_logs(orchestrator.plan.path, orchestrator.run.id)
        orchestrator.observer = display
        orchestrator.engine.plugins.muted.add("console")  # the display shows breakpoints already
    received: list[int] = []

    if grace is None:
        grace = orchestrator.plan.spec.concurrency.shutdown_grace_seconds

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt  # a second signal: stop at once; the store stays consistent
        running = orchestrator.running_count
        if running:
            err_console.print(
                f"[yellow]stopping: no new work starts; {running} running action(s) get up to "
                f"{grace:g}s to finish, then they are stopped and retried on resume. "
                "Press Ctrl-C again to stop at once.[/]"
            )
        else:
            err_console.print("[yellow]stopping: no new work starts.[/]")
        orchestrator.stop(grace)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with display:
            summary = orchestrator.run_until_stopped()
    except KeyboardInterrupt:
        err_console.print(
            "stopped at once: attempts under way will be retried. "
            f"Continue with: {resume_command(orchestrator.run.id)}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _print_summary(orchestrator, summary)
    if summary.state == "stopped":
        err_console.print(
            f"stopped. Continue with: {resume_command(summary.run_id)}",
            style="yellow",
            markup=False,
            soft_wrap=True,
        )
        return 128 + (received[0] if received else signal.SIGINT)
    return summary.exit_code


def _print_summary(orchestrator: Any, summary: Any) -> None:
    from orchestration.cli.task_table import task_table

    store = orchestrator.store
    tasks = store.tasks(summary.run_id)
    if len(tasks) <= 60:
        err_console.print(task_table(tasks, title=f"run {escape(summary.run_id)}"))
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts.items()))
    colour = {"completed": "green", "paused": "yellow"}.get(summary.state, "red")
    err_console.print(f"[bold {colour}]run {escape(summary.run_id)}: {summary.state}[/] ({counts})")
    hint = db_hint(store.display_url) if "ORCH_DB" not in os.environ else ""
    for bp in summary.open_breakpoints:
        err_console.print(
            f"[yellow]⏸ breakpoint {bp.id}[/] on task {escape(bp.task_id)} "
            f"{escape(f'[{bp.rule}]')}: {escape(bp.message)}"
        )
    if summary.open_breakpoints:
        err_console.print(
            _next_step_hint(store, summary.open_breakpoints[0], summary.run_id, hint),
            markup=False,
            highlight=False,
            soft_wrap=True,  # a command wrapped in two would not paste
        )
    if summary.stuck:
        err_console.print("[red]stalled: these tasks can never start:[/]")
    if summary.waiting and len(summary.waiting) <= 30:
        for task_id, deps in summary.waiting.items():
            waits = ", ".join(deps) or "nothing that can still finish"
            err_console.print(f"  {task_id} waits for {waits}", markup=False, highlight=False)
    elif summary.waiting:
        err_console.print(f"  {len(summary.waiting)} tasks wait for unfinished dependencies")


def _next_step_hint(store: Any, bp: Any, run_id: str, store_hint: str) -> str:
    """What to do about the first open breakpoint: never "approve" first for a red step."""
    from orchestration.engine.review import failed_gate

    # Every id and the store URL are quoted: a pasted hint runs exactly this (hints)
    resume = f"&& {resume_command(run_id, store_hint)}"
    resolve = shell_command("orch", "breakpoints", "resolve", bp.id)
    lines = [f"Review with: {shell_command('orch', 'breakpoints', 'show', bp.id)}{store_hint}"]
    failed = failed_gate(store, bp)
    if failed is None:
        lines.append(f"Then: {resolve} --approve --note '...'{store_hint} {resume}")
    else:
        lines += [
            f"The step did not pass ({failed}). Then either:",
            f"  {resolve} --retry --answer '...'{store_hint} {resume}",
            f"  {resolve} --reject --rollback{store_hint}",
        ]
    return "\n".join(lines)


@app.command()
def run(
    plan: Annotated[Path, typer.Argument(help="The plan file (plan.yaml).")],
    db: DbOption = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run (default: plan name + time).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    grace: GraceOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run low and medium risk tasks; record high-risk ones as dry-run results "
            "without executing them.",
        ),
    ] = False,
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            help='Values of the plan\'s parameters as a JSON object, e.g. \'{"branch": "main"}\'.',
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            max=0,
            help="0: execute nothing here; worker processes (`orch worker`) run the attempts "
            "and this process conducts the run (as `orch submit`).",
        ),
    ] = None,
) -> None:
    """Start a new run of a plan and work until it completes or waits for a human (exit 3)."""
    from orchestration.engine.plan_params import parse_params_json

    values = parse_params_json(params) if params is not None else {}
    if workers == 0:
        raise typer.Exit(cli_workers.conduct(plan, db, run_id, quiet, params=values))
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from orchestration.pluginhost.hooks import load_plugins

    plugins = load_plugins()  # first: a plan may name the action kinds plugins provide
    loaded = load_plan(plan, action_kinds=plugins.action_kinds, params=values)
    engine = build_engine(loaded, plugins)
    store = open_store(db, Path(loaded.path).parent)
    display = _display(len(loaded.spec.tasks), quiet)
    try:
        orchestrator = Orchestrator.start(
            loaded, store, run_id=run_id, engine=engine, dry_run=dry_run, observer=display
        )
        err_console.print(
            f"run [bold]{escape(orchestrator.run.id)}[/] of {escape(str(plan))} "
            f"(store: {escape(store.display_url)})"
        )
        code = _run_loop(orchestrator, quiet, grace, display)
    finally:
        store.close()
    raise typer.Exit(code)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    grace: GraceOption = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Take the run even though another engine holds it. Needed only for an engine "
            "on another host that you know is gone (on the engine's own host a killed engine is "
            "noticed at once); if it is not gone, it stops at its next commit.",
        ),
    ] = False,
) -> None:
    """Continue a stopped, crashed or paused run from the store; nothing done is done again.

    Refused while another engine works on the run: one whose heartbeat is fresh (15 s), unless
    it ran on this host and its process is gone, in which case the run is taken over at once.
    """
    from orchestration.engine.loop import Orchestrator
    from orchestration.resilience.interventions import human_pause, pause_run

    store = open_store(db)
    try:
        pause = human_pause(store, run_id)
        if pause is not None:  # asking to continue a run a human paused lifts the pause
            pause_run(store, run_id, actor=user(), reason="orch resume", paused=False)
            err_console.print(f"lifted the pause {pause.actor} put on run {run_id}", markup=False)
        display = _display(store.task_count(run_id), quiet)
        orchestrator = Orchestrator.resume(store, run_id, force=force, observer=display)
        err_console.print(
            f"resuming run [bold]{escape(run_id)}[/] (store: {escape(store.display_url)})"
        )
        code = _run_loop(orchestrator, quiet, grace, display)
    finally:
        store.close()
    raise typer.Exit(code)


# ---- status ---------------------------------------------------------------------------------


STATUS_PAGE_SIZE = 100  # run_pages.DEFAULT_PAGE_SIZE, without importing it at start-up


def _db_hint(db: str | None) -> str:
    """` --db URL` (quoted) in commands printed to the user, when they named the store that way."""
    return db_hint(db)


@app.command()
def status(
    run_id: Annotated[str | None, typer.Argument(help="A run id; default: the latest run.")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
    all_runs: Annotated[bool, typer.Option("--all", help="List every run instead.")] = False,
    show_tasks: Annotated[
        bool, typer.Option("--tasks", help="List a page of the run's tasks after the summary.")
    ] = False,
    page: Annotated[int, typer.Option("--page", help="Which page of tasks, from 1.")] = 1,
    page_size: Annotated[
        int, typer.Option("--page-size", help="Tasks per page (1 to 1000).")
    ] = STATUS_PAGE_SIZE,
    state_filter: Annotated[
        str | None, typer.Option("--state", help="Only tasks in this state (e.g. failed).")
    ] = None,
) -> None:
    """Show a run's summary: its tasks counted by state, what it spent (cost and tokens the
    actions reported, attempts, time) against the plan's budget, its open breakpoints and its
    most recent state changes. A run whose tasks fit on one page also lists them; otherwise
    `--tasks` lists one page (`--page N --page-size N`, `--state S`), so a 100,000-task run
    answers at once. `--json` prints the same summary with that page of tasks. With `--all`,
    every run in the store.

    A run whose engine stopped without finishing it (killed, crashed, machine gone) shows as
    `interrupted`, with how long ago and the command that continues it.
    """
    with read_and_exit():
        from orchestration.cli.status_view import print_summary, print_task_page
        from orchestration.resilience.runs import interruption_note
        from orchestration.views.run_pages import check_page, run_detail, run_detail_out, task_page

        check_page(page, page_size)
        store = open_store(db)
        try:
            if all_runs:
                _print_all_runs(store, json_output, db)
                return
            run_record = store.get_run(run_id) if run_id else store.latest_run()
            if run_record is None:
                raise OrchestrationError(f"no runs in the store {store.url}")
            now = datetime.now(UTC)
            found = task_page(store, run_record, now, page, page_size, state_filter)
            detail = run_detail(store, run_record, now, _db_hint(db), found)
            if json_output:
                print_shape(run_detail_out(detail))
                return
            print_summary(console, detail)
            if show_tasks or found.page.pages == 1:
                print_task_page(console, detail)
            if detail.state == "interrupted":
                console.print(interruption_note(run_record, now, _db_hint(db)), markup=False)
        finally:
            store.close()


def _print_all_runs(store: Any, json_output: bool, db: str | None) -> None:
    """`orch status --all`: every run in the store, newest first."""
    from orchestration.resilience.runs import shown_state

    if json_output:
        from orchestration.shapes.records import RunsOut
        from orchestration.views.run_views import all_run_summaries

        summaries = all_run_summaries(store, datetime.now(UTC), _db_hint(db))
        print_shape(RunsOut(runs=summaries))
        return
    for r in store.list_runs():
        state = shown_state(r, datetime.now(UTC))
        line = f"{r.id}  {state:11} {r.plan_name}  {iso(r.created_at)}"
        console.print(line, markup=False)


# ---- breakpoints ----------------------------------------------------------------------------


@breakpoints_app.command("list")
def breakpoints_list(
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Resolved ones too.")] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """List open breakpoints (all of them with --all)."""
    from orchestration.engine.review import resolution_text

    store = open_store(db)
    try:
        found = store.breakpoints(run_id, state=None if show_all else "open")
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import BreakpointsOut, breakpoint_out

        print_shape(BreakpointsOut(breakpoints=[breakpoint_out(bp) for bp in found]))
        return
    if not found:
        console.print("no open breakpoints" if not show_all else "no breakpoints")
        return
    for bp in found:
        state = bp.state if bp.state == "open" else resolution_text(bp)
        console.print(
            f"[bold]{bp.id}[/] {escape(bp.run_id)} [cyan]{escape(bp.task_id)}[/] {bp.at} "
            f"[yellow]{escape(bp.rule)}[/] ({bp.severity}, {escape(state)}): {escape(bp.message)}"
        )


@breakpoints_app.command("show")
def breakpoints_show(
    breakpoint_id: Annotated[int, typer.Argument(help="The breakpoint id.", min=1, max=MAX_ID)],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Everything a reviewer needs: what the step did, changes, validators, decision, options."""
    from orchestration.views.review_view import render_breakpoint

    store = open_store(db)
    try:
        bp = store.breakpoint(breakpoint_id)
        if json_output:
            from orchestration.shapes.records import as_json, breakpoint_out

            print_json({"breakpoint": as_json(breakpoint_out(bp, with_context=True))})
            return
        render_breakpoint(console, store, bp)
    finally:
        store.close()


@breakpoints_app.command("resolve")
def breakpoints_resolve(
    breakpoint_id: Annotated[int, typer.Argument(help="The breakpoint id.", min=1, max=MAX_ID)],
    approve: Annotated[
        bool, typer.Option("--approve", help="Before a step: run it. After: accept it as it is.")
    ] = False,
    reject: Annotated[
        bool, typer.Option("--reject", help="Cancel the task (with --fail: mark it failed).")
    ] = False,
    fail: Annotated[
        bool, typer.Option("--fail", help="With --reject: the task ends failed, not cancelled.")
    ] = False,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="With --reject: restore the work tree to the last approved git checkpoint "
            "(the current files are saved first, so it can be undone).",
        ),
    ] = False,
    retry: Annotated[bool, typer.Option("--retry", help="Run the task again.")] = False,
    skip: Annotated[bool, typer.Option("--skip", help="Mark it done without running it.")] = False,
    note: Annotated[str, typer.Option("--note", help="Why; stored with the resolution.")] = "",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --approve: accept a step whose quality gate failed without a --note.",
        ),
    ] = False,
    answer: Annotated[
        str | None, typer.Option("--answer", help="An answer passed to the agent as {answer}.")
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Change a task field for the retry (action.prompt=..., timeout_seconds=600, "
            "retry.max_attempts=5) or the run's budget (budget.max_cost=20). Repeatable; "
            "values are JSON when they parse, text otherwise.",
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who resolves it (default: your user name).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Resolve an open breakpoint; then `orch resume RUN` continues the run.

    A run that an engine is still working on picks the answer up by itself.
    """
    from functools import partial

    from orchestration.engine.review import announce_resolution
    from orchestration.engine.review_actions import resolve_and_announce
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.resilience.overrides import parse_sets

    chosen = [
        name
        for name, flag in (
            ("approve", approve),
            ("reject", reject),
            ("retry", retry),
            ("skip", skip),
        )
        if flag
    ]
    if len(chosen) != 1:
        raise OrchestrationError("choose exactly one of --approve, --reject, --retry, --skip")
    if (fail or rollback) and not reject:
        raise OrchestrationError("--fail and --rollback go with --reject")
    changes = parse_sets(sets or [])
    plugins = load_plugins()
    plugins.muted.add("console")  # this command prints the resolution itself
    store = open_store(db)
    try:
        done = resolve_and_announce(
            store,
            breakpoint_id,
            chosen[0],
            actor=actor or user(),
            announce=partial(announce_resolution, plugins),
            note=note,
            answer=answer,
            sets=changes,
            reject_as="fail" if fail else "cancel",
            rollback=rollback,
            force=force,
        )
    finally:
        store.close()
    if done.rolled_back is not None:
        console.print(done.rolled_back, markup=False)
    bp = done.breakpoint
    message = (
        f"breakpoint {bp.id} resolved: {bp.resolution} by {bp.resolved_by}; task {bp.task_id} "
        f"is now {done.task_state}."
    )
    if done.run_live:
        message += " The engine working on this run picks it up by itself."
    else:
        message += f" Continue with: {resume_command(bp.run_id)}"
    console.print(message, markup=False, soft_wrap=True)


def _now() -> datetime:
    return datetime.now(UTC)


# ---- task -----------------------------------------------------------------------------------


@task_app.command("add")
def task_add(
    run_id: Annotated[str, typer.Argument(help="The run to add tasks to.")],
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            help="A YAML or JSON file with one task, or a list of tasks, in the plan's format.",
        ),
    ],
    db: DbOption = None,
) -> None:
    """Add tasks to a run, even while it works; they are validated like plan tasks.

    A task whose id is taken gets a suffix (-2, -3...). Dependencies must name tasks of the run
    or of the file; a cycle or an unknown dependency refuses the whole file.
    """
    from orchestration.core.errors import PlanError
    from orchestration.core.yamlfile import load_yaml_file
    from orchestration.engine.task_adding import add_tasks
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.resilience.runs import run_is_live

    data, _ = load_yaml_file(file, error=PlanError)
    items = data if isinstance(data, list) else [data]
    store = open_store(db)
    try:
        kinds = load_plugins().action_kinds  # the kinds an engine here could run
        now = datetime.now(UTC)
        source = f"orch task add --file {file}"
        records = add_tasks(
            store, run_id, items, source=source, where=str(file), action_kinds=kinds, now=now
        )
        live = run_is_live(store.get_run(run_id), now)
    finally:
        store.close()
    ids = ", ".join(r.task_id for r in records)
    follow = (
        "the engine working on the run picks them up by itself"
        if live
        else f"run them with: {resume_command(run_id)}"
    )
    console.print(f"added {ids} to run {run_id}; {follow}", markup=False, soft_wrap=True)


@task_app.command("history")
def task_history(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    task_id: Annotated[str, typer.Argument(help="The task.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every state change of a task: from, to, trigger, reason, actor, time."""
    store = open_store(db)
    try:
        store.task(run_id, task_id)
        moves = store.transitions(run_id, task_id)
        decisions = store.decisions(run_id, task_id)
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import HistoryOut, decision_out, transition_out

        history = HistoryOut(
            transitions=[transition_out(m) for m in moves],
            decisions=[decision_out(d) for d in decisions],
        )
        print_shape(history)
        return
    for m in moves:
        console.print(
            f"{iso(m.at)}  {m.source:>9} → {m.dest:<9} [bold]{m.trigger}[/] "
            f"by {escape(m.actor)}: {escape(m.reason)}"
        )
    for d in decisions:
        console.print(
            f"attempt {d.attempt}: [bold]{d.action}[/] ({escape(d.rule)}) {escape(d.reason)}"
        )


# ---- rules ----------------------------------------------------------------------------------

RulesOption = Annotated[
    list[Path] | None,
    typer.Option("--rules", help="A rule file added to the default set (repeatable)."),
]
NoDefaultsOption = Annotated[
    bool, typer.Option("--no-defaults", help="Leave the default rule set out.")
]


def _load_rule_set(files: list[Path] | None, no_defaults: bool) -> Any:
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.rules.rule_files import load_rules

    for path in files or []:
        if not path.exists():
            raise OrchestrationError(f"rule file {path} does not exist")
    functions = load_plugins().rule_functions
    return load_rules(files or [], include_defaults=not no_defaults, functions=functions)


@rules_app.command("check")
def rules_check(
    files: Annotated[list[Path], typer.Argument(help="Rule files to check.")],
    json_output: JsonOption = False,
) -> None:
    """Check rule files: schema, expressions, names (exit 2 with file, line, rule and column)."""
    rules = _load_rule_set(files, no_defaults=True)
    if json_output:
        print_json(
            {
                "valid": True,
                "breakpoints": [r.name for r in rules.breakpoints],
                "decisions": [r.name for r in rules.decisions],
            }
        )
        return
    console.print(
        f"[green]✓[/] {len(rules.breakpoints)} breakpoint rules, {len(rules.decisions)} "
        f"decision rules in {', '.join(str(f) for f in files)}"
    )


@rules_app.command("eval")
def rules_eval(
    expression: Annotated[str, typer.Argument(help="A rule expression.")],
    context_file: Annotated[
        Path | None,
        typer.Option("--context", help="A JSON object with context values (others neutral)."),
    ] = None,
) -> None:
    """Evaluate one expression against a context and print the value as JSON."""
    from orchestration.core.context import neutral_context
    from orchestration.core.inputfiles import MAX_CONTEXT_FILE_BYTES, load_json, read_capped
    from orchestration.rules.expressions import compile_expression

    context = neutral_context()
    if context_file is not None:
        raw = read_capped(context_file, MAX_CONTEXT_FILE_BYTES)  # no FIFO, no /dev/zero
        values = load_json(raw, file=str(context_file))  # too deep or malformed: a clear error
        if not isinstance(values, dict):
            raise OrchestrationError(f"{context_file}: expected a JSON object")
        context.update(values)
    value = compile_expression(expression, rule="eval").evaluate(context)
    print_json(value)


@rules_app.command("test")
def rules_test(
    contexts: Annotated[
        Path,
        typer.Option(
            "--contexts",
            help="Step contexts, one JSON object per line (the rule context names, plus `at`: "
            "before | after; `label`: stop | go is compared when present).",
        ),
    ],
    files: RulesOption = None,
    no_defaults: NoDefaultsOption = False,
    json_output: JsonOption = False,
) -> None:
    """Which breakpoints fire for each step context, and whether the engine would stop.

    The engine's risk gate (high risk, confidence below 0.7, before a step) counts as a stop.
    """
    from orchestration.rules.rule_tests import LabelFigures, verdicts

    results = verdicts(_load_rule_set(files, no_defaults), contexts)
    figures = LabelFigures.of(results)
    summary = {
        "contexts": len(results),
        "stops": sum(r.stops for r in results),
        "labelled_stop_caught": figures.stops_caught,
        "labelled_stop": figures.stop_lines,
        "labelled_go_stopped": figures.go_stopped,
        "labelled_go": figures.go_lines,
        "recall": figures.recall,
        "false_stop_rate": figures.false_stop_rate,
    }
    if json_output:
        print_json(
            {
                "results": [
                    {
                        "line": r.line,
                        "task": r.task_id,
                        "at": r.at,
                        "stop": r.stops,
                        "fired": [{"rule": n, "action": a} for n, a in r.fired],
                        "errors": r.errors,
                        "label": r.label,
                    }
                    for r in results
                ],
                "summary": summary,
            }
        )
        return
    for r in results:
        fired = ", ".join(f"{n} ({a})" for n, a in r.fired) or "nothing fires"
        verdict = "STOP" if r.stops else "go"
        label = f" [labelled {r.label}]" if r.label else ""
        console.print(f"{r.line:>4} {r.task_id} {r.at}: {verdict}{label} — {fired}", markup=False)
        for error in r.errors:
            console.print(f"       rule error: {error}", markup=False)
    if figures.stop_lines or figures.go_lines:
        recall = "n/a" if figures.recall is None else f"{figures.recall:.3f}"
        false_stops = "n/a" if figures.false_stop_rate is None else f"{figures.false_stop_rate:.3f}"
        console.print(
            f"stop lines that stop: {figures.stops_caught}/{figures.stop_lines} "
            f"(recall {recall}); go lines that stop: {figures.go_stopped}/{figures.go_lines} "
            f"(false-stop rate {false_stops})",
            markup=False,
        )


@rules_app.command("backtest")
def rules_backtest(
    run_id: Annotated[str, typer.Argument(help="A run whose steps are stored.")],
    files: RulesOption = None,
    no_defaults: NoDefaultsOption = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Replay a run's stored after-step contexts against a rule set, and show what would differ.

    Tune a policy before enabling it: for every attempt of the run, which breakpoints would fire
    now, and which fired then but would not.
    """
    from orchestration.rules.rule_tests import backtest

    rules = _load_rule_set(files, no_defaults)
    store = open_store(db)
    try:
        store.get_run(run_id)
        rows = backtest(store, run_id, rules)
    finally:
        store.close()
    if json_output:
        print_json(
            {
                "steps": [
                    {
                        "task": r.task_id,
                        "attempt": r.attempt,
                        "fired_then": r.fired_then,
                        "fired_now": [{"rule": n, "action": a} for n, a in r.fired_now],
                        "added": r.added,
                        "removed": r.removed,
                        "errors": r.errors,
                    }
                    for r in rows
                ]
            }
        )
        return
    changed = [r for r in rows if r.added or r.removed]
    for r in rows:
        now = ", ".join(f"{n} ({a})" for n, a in r.fired_now) or "nothing"
        diff = ""
        if r.added or r.removed:
            diff = f"   [+{', '.join(r.added) or '-'} / -{', '.join(r.removed) or '-'}]"
        console.print(f"{r.task_id} attempt {r.attempt}: {now}{diff}", markup=False)
    console.print(f"{len(rows)} steps replayed, {len(changed)} would differ", markup=False)


# ---- explain --------------------------------------------------------------------------------


@app.command()
def explain(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    task_id: Annotated[str, typer.Argument(help="The task.")],
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Why a task runs when it does: its effective priority, and every decision taken on it.

    Each decision shows the rule that chose it, the figures it saw, the weighted score with its
    parts (score rules), and why each other action was not chosen.
    """
    from orchestration.engine.decisions import explanation_lines
    from orchestration.views.run_views import explain_task

    store = open_store(db)
    try:
        explained = explain_task(store, run_id, task_id, datetime.now(UTC))
    finally:
        store.close()
    if json_output:
        print_shape(explained.shape)
        return
    state = explained.shape.state
    console.print(f"[bold]{escape(task_id)}[/] ({state}), run {escape(run_id)}")
    waited = "while it waited in the ready queue" if state == "ready" else "(not queued now)"
    console.print(f"Effective priority {waited}:")
    for line in explained.parts.lines():
        console.print(f"  {line}", markup=False)
    if explained.shape.decisions:
        console.print("Decisions:")
    for d in explained.shape.decisions:
        figures = ", ".join(f"{k}={v}" for k, v in d.figures.items())
        lines = [
            f"  attempt {d.attempt}: {d.decision} (rule {d.rule}) {d.reason}"
            + (f" [saw {figures}]" if figures else "")
        ]
        lines += [f"    {line}" for line in explanation_lines(d.explanation)]
        console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    for a in explained.shape.assignments:  # agents declared by the plan (fleet.py)
        console.print(f"  attempt {a.attempt}: why this agent: {a.agent}, {a.reason}", markup=False)


# ---- demo -----------------------------------------------------------------------------------


@app.command()
def demo(
    keep: Annotated[
        Path | None,
        typer.Option("--dir", help="Work in this directory (kept) instead of a temporary one."),
    ] = None,
) -> None:
    """Run the bundled coding-session example end to end, approving its breakpoint for you."""
    from orchestration.cli.demo import run_demo

    raise typer.Exit(run_demo(console, err_console, keep))


def _print_version(value: bool) -> None:
    # Eager, so it runs while the options are parsed: before typer converts the others, which
    # would import pydantic (`orch --version` stays fast).
    if value:
        console.print(f"orch {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Show the version.", is_eager=True, callback=_print_version),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    handler = logging.StreamHandler()  # log lines quote agents' output: cleaned for the terminal
    handler.setFormatter(TerminalLogFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def main() -> None:
    """Run the CLI; an error becomes one clear message and an exit code, never a traceback.

    Typer handles usage errors itself (exit 2) and exits with each command's code.
    """
    try:
        app()
    except OrchestrationError as error:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as error:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("ORCH_DEBUG"):
            raise
        from sqlalchemy.exc import SQLAlchemyError

        # Only an error outside the database can promise that the database is intact.
        intact = "" if isinstance(error, SQLAlchemyError) else "Nothing stored was lost. "
        err_console.print(
            f"[bold red]internal error:[/] {escape(f'{type(error).__name__}: {error}')}\n"
            f"{intact}Run with ORCH_DEBUG=1 to see the traceback."
        )
        sys.exit(70)
