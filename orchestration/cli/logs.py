"""`orch logs RUN TASK [--attempt N] [-f]`: print or follow an attempt's output as it is written."""

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from orchestration.cli.common import DbOption, err_console, open_store
from orchestration.core.errors import OrchestrationError

if TYPE_CHECKING:
    from orchestration.store import Store


def logs(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    task_id: Annotated[str, typer.Argument(help="The task.")],
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", "-a", min=1, help="Which attempt (default: the latest)."),
    ] = None,
    follow_output: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep printing output as it comes until the attempt ends (or its engine stops).",
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Print an attempt's output (stdout and stderr, or an agent's events) from its log.

    Logs live in .orchestration/logs/RUN/TASK/ATTEMPT.log beside the plan, at most 10 MiB each
    (the first 9 MiB and the last 1 MiB of a longer output). Terminal control sequences in the
    output are removed before printing.
    """
    from orchestration.core.attempt_logs import follow, log_path, read_from

    store = open_store(db)
    try:
        run = store.get_run(run_id)
        task = store.task(run_id, task_id)
        number = attempt or task.attempts
        if number < 1:
            raise OrchestrationError(f"task '{task_id}' of run '{run_id}' has not run yet")
        if number > task.attempts:
            raise OrchestrationError(
                f"task '{task_id}' has made {task.attempts} attempts; there is no attempt {number}"
            )
        path = log_path(run.plan_path, run_id, task_id, number)
        if not follow_output:
            text, _ = read_from(path, 0)
            _write(text)
            if not path.exists():
                why = (
                    "a python action keeps no log: its output is in `orch task inspect`"
                    if task.spec.action.kind == "python"
                    else f"no output recorded for attempt {number} ({path})"
                )
                err_console.print(why, markup=False)
            return
        try:
            for chunk in follow(path, lambda: _over(store, run_id, task_id, number)):
                _write(chunk)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    finally:
        store.close()


def _over(store: "Store", run_id: str, task_id: str, attempt: int) -> bool:
    from orchestration.resilience.runs import attempt_over

    return attempt_over(
        store.get_run(run_id), store.task(run_id, task_id), attempt, datetime.now(UTC)
    )


def _write(text: str) -> None:
    from orchestration.core.attempt_logs import printable

    sys.stdout.write(printable(text))
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add `logs` to the `orch` application."""
    app.command("logs")(logs)
