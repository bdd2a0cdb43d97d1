"""`orch worker`, `orch workers` and `orch submit`: runs shared by worker processes."""

import logging
import signal
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from orchestration.cli.common import DbOption, JsonOption, console, err_console, print_json

if TYPE_CHECKING:
    from orchestration.core.models import Plan
    from orchestration.store import Store

# How long a conductor whose database went away keeps trying to take its run back.
RECONNECT_FOR_SECONDS = 600.0
RECONNECT_PAUSE_SECONDS = 1.0
WORKDIR_MODES = ("auto", "clone", "shared")  # where a worker runs attempts: see `orch worker`


def worker(
    db: Annotated[
        str, typer.Option("--db", help="The store (postgresql+psycopg://... or sqlite:///...).")
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Attempts run at once.")
    ] = 1,
    capabilities: Annotated[
        str,
        typer.Option(
            "--capabilities",
            help="Comma-separated tags this worker offers (a task tagged with one of the "
            "plan's `concurrency.capabilities` runs only on a worker that has it).",
        ),
    ] = "",
    name: Annotated[
        str | None, typer.Option("--name", help="The worker's name (default: host:pid).")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Work only for this run (default: any run).")
    ] = None,
    workdir_mode: Annotated[
        str,
        typer.Option(
            "--workdir-mode",
            help="Where attempts run: `shared`, in the plan's workdir (this machine sees it); "
            "`clone`, in a worktree of this worker's own clone of the run's git repository, "
            "the work handed back as a commit; `auto` (default): clone when the workdir's "
            "path does not exist here.",
        ),
    ] = "auto",
    clones: Annotated[
        Path | None,
        typer.Option(
            "--clones",
            help="The folder of this worker's clones (default: ~/.cache/orchestration/clones).",
        ),
    ] = None,
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt/--no-adopt",
            help="Resume a run on workers whose conductor died (`orch resume` in the "
            "background, once its claim has lapsed).",
        ),
    ] = True,
) -> None:
    """Run attempts of the store's runs until stopped (Ctrl-C / SIGTERM: finish what runs).

    Claims attempts that conductors (`orch run --workers 0`, `orch submit`) offer, holds a lease
    on each renewed by heartbeat, and reports the result. A worker paused or cut off past its
    lease has its late result refused; the attempt runs again elsewhere. It keeps trying while
    the database is away (a restart) and goes on when it is back. A run whose conductor died is
    resumed by a worker once the conductor's claim has lapsed (--no-adopt: leave it).
    """
    from orchestration.engine.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    tags = tuple(t.strip() for t in capabilities.split(",") if t.strip())
    if workdir_mode not in WORKDIR_MODES:
        expected = ", ".join(WORKDIR_MODES)
        raise typer.BadParameter(f"expected one of {expected}", param_hint="--workdir-mode")
    one = Worker(
        db,
        name=name,
        concurrency=concurrency,
        capabilities=tags,
        run_id=run_id,
        workdir_mode=workdir_mode,
        clones=clones,
        adopt=adopt,
    )
    received: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        received.append(signum)
        one.stop(now=len(received) > 1)  # a second signal stops the attempts under way

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    err_console.print(f"worker {escape(one.name)} on {escape(_masked(db))}", markup=True)
    one.run()
    err_console.print(
        f"worker {one.name} stopped: {one.reported} attempt(s) reported, "
        f"{one.refused} late result(s) refused",
        markup=False,
    )


def workers(db: DbOption = None, json_output: JsonOption = False) -> None:
    """List the worker processes: host, capabilities, attempts held now, last heartbeat,
    success rate and mean duration of the attempts each reported."""
    from orchestration.cli.common import open_store
    from orchestration.shapes.records import as_json, worker_out

    store = open_store(db)
    try:
        found = [worker_out(w) for w in store.workers()]
    finally:
        store.close()
    if json_output:
        print_json([as_json(w) for w in found])
        return
    if not found:
        console.print("no workers recorded (start one with `orch worker --db URL`)")
        return
    _print_table(found)


def _print_table(found: list[Any]) -> None:
    from rich.table import Table

    table = Table(
        "name", "host", "state", "capabilities", "current", "heartbeat", "success", "mean"
    )
    now = datetime.now(UTC)
    for w in found:
        rate = f"{w.success_rate:.0%} of {w.reported}" if w.success_rate is not None else "-"
        mean = f"{w.mean_duration_seconds:.2f}s" if w.mean_duration_seconds is not None else "-"
        table.add_row(
            escape(w.name),
            escape(w.host),
            w.state,
            escape(", ".join(w.capabilities) or "-"),
            escape(", ".join(w.current) or "-"),
            f"{(now - w.last_heartbeat).total_seconds():.0f}s ago",
            rate,
            mean,
        )
    console.print(table)


def submit(
    plan: Annotated[Path, typer.Argument(help="The plan file (plan.yaml).")],
    db: DbOption = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Name the run (default: plan name + time).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Start a run whose attempts worker processes run (`orch worker`); conduct it here.

    The same as `orch run PLAN --workers 0`: this process schedules, decides and holds
    breakpoints; it executes nothing. If the database goes away it waits and takes the run
    back; if this process dies, `orch resume RUN` on any machine takes it over.
    """
    raise typer.Exit(conduct(plan, db, run_id, quiet))


def with_workers(plan: "Plan") -> "Plan":
    """The plan with its attempts executed by worker processes (stored with the run)."""
    concurrency = plan.spec.concurrency.model_copy(update={"executor": "workers"})
    return replace(plan, spec=plan.spec.model_copy(update={"concurrency": concurrency}))


def conduct(
    plan_file: Path,
    db: str | None,
    run_id: str | None,
    quiet: bool,
    params: dict[str, Any] | None = None,
) -> int:
    """Start the run in worker mode and conduct it, taking it back after a database outage."""
    from orchestration.cli.common import open_store
    from orchestration.engine.loop import Orchestrator, build_engine
    from orchestration.engine.plan import load_plan
    from orchestration.pluginhost.hooks import load_plugins

    plugins = load_plugins()
    loaded = with_workers(
        load_plan(plan_file, action_kinds=plugins.action_kinds, params=params or {})
    )
    engine = build_engine(loaded, plugins)
    store = open_store(db, Path(loaded.path).parent)
    try:
        orchestrator = Orchestrator.start(loaded, store, run_id=run_id, engine=engine)
        err_console.print(
            f"run {orchestrator.run.id} of {plan_file} on worker processes "
            f"(store: {store.display_url})",
            markup=False,
        )
        return _conduct_until_done(store, orchestrator, quiet)
    finally:
        store.close()


def _conduct_until_done(store: "Store", orchestrator: Any, quiet: bool) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from orchestration.cli.root import _display, _run_loop
    from orchestration.core.errors import StoreError
    from orchestration.store.claims import ClaimLost

    while True:
        try:
            return _run_loop(orchestrator, quiet, None, _display(len(orchestrator.tasks), quiet))
        except ClaimLost:
            raise
        except (StoreError, SQLAlchemyError) as error:
            err_console.print(
                f"the store went away ({error}); taking the run back when it returns",
                style="yellow",
                markup=False,
            )
            orchestrator = _take_back(store, orchestrator.run.id, orchestrator.run.owner)


def _take_back(store: "Store", run_id: str, owner: str | None) -> Any:
    """Resume the run once the database answers again: this conductor's own claim is taken
    back at once; a run another conductor took in the meantime is left to it."""
    from sqlalchemy.exc import SQLAlchemyError

    from orchestration.core.errors import StoreError
    from orchestration.engine.loop import Orchestrator

    deadline = time.monotonic() + RECONNECT_FOR_SECONDS
    while True:
        try:
            held_by_me = store.get_run(run_id).owner == owner
            return Orchestrator.resume(store, run_id, force=held_by_me)
        except (StoreError, SQLAlchemyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(RECONNECT_PAUSE_SECONDS)


def worker_reach(plan: "Plan") -> str:
    """Where worker processes may run the plan's attempts: `any` machine (its workdir is a git
    repository they can clone) or `local` (this machine's workers only, sharing the workdir)."""
    from orchestration.project.checkpoints import is_git_worktree

    return "any" if is_git_worktree(Path(plan.workdir)) else "local"


def worker_note(plan: "Plan") -> str | None:
    """What `orch validate` says about where a plan for worker processes runs."""
    concurrency = plan.spec.concurrency
    if concurrency.executor != "workers":
        return None
    if worker_reach(plan) == "any":
        source = concurrency.repository or plan.workdir
        return (
            f"workdir {plan.workdir} is a git repository: workers on other machines can clone "
            f"it from {source} and hand their work back as commits"
            + (
                ""
                if concurrency.repository
                else " (set concurrency.repository to a URL "
                "they reach, e.g. a bare repository or ssh://...)"
            )
        )
    return (
        f"workdir {plan.workdir} is not a git repository: its attempts run on worker processes "
        "of this machine only (a worker elsewhere could not get its work tree)"
    )


def _masked(url: str) -> str:
    from orchestration.store.db import masked_url

    return masked_url(url)


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("workers")(workers)
    app.command("submit")(submit)
