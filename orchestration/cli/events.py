"""`orch events ...`: send an event that may start runs; list events received and what they did."""

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from orchestration.cli.common import DbOption, JsonOption, console, open_store, print_shape
from orchestration.core.errors import OrchestrationError

events_app = typer.Typer(
    help="Events: emit one for the triggers, list those received and the runs they started, "
    "or follow the event log of every state change (`orch events --follow`).",
)


@events_app.callback(invoke_without_command=True)
def _events(
    ctx: typer.Context,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Follow the event log (as `orch events follow`)."),
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run", help="With --follow: one run.")] = None,
    from_start: Annotated[
        bool, typer.Option("--from-start", help="With --follow: begin with the oldest record.")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="With --follow: read what is there, then exit.")
    ] = False,
    db: DbOption = None,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if not follow:
        console.print(ctx.get_help(), highlight=False)
        raise typer.Exit(0)
    from orchestration.cli.event_log import follow as follow_log

    follow_log(run_id=run_id, from_start=from_start, once=once, db=db)


def register(app: typer.Typer) -> None:
    from orchestration.cli import event_log as cli_event_log

    cli_event_log.register_follow(events_app)
    app.add_typer(events_app, name="events")


def _data(text: str | None) -> dict[str, Any]:
    import json

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OrchestrationError(
            f"--data is not valid JSON: {exc.msg} at column {exc.colno}"
        ) from None
    if not isinstance(value, dict):
        raise OrchestrationError("--data must be a JSON object")
    return value


@events_app.command("emit")
def emit(
    name: Annotated[str, typer.Argument(help="The event's name, as triggers' `on: {event}`.")],
    data: Annotated[
        str | None, typer.Option("--data", help="The event's data as a JSON object.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Deduplication key: an event with a key seen before is ignored."
        ),
    ] = None,
    no_dispatch: Annotated[
        bool,
        typer.Option("--no-dispatch", help="Only store it; `orch daemon` or a tick acts on it."),
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Send an event: every enabled schedule whose `on:` matches it starts its plan (or adds
    its tasks to its running run)."""
    from orchestration.triggers.trigger_service import emit_and_dispatch, launch_context
    from orchestration.triggers.trigger_shapes import EmittedOut, trigger_event_out

    values = _data(data)
    store = open_store(db)
    try:
        event, created = emit_and_dispatch(
            store,
            launch_context(store),
            name,
            values,
            source="cli",
            now=datetime.now(UTC),
            key=key,
            dispatch=not no_dispatch,
        )
        firings = [f for f in store.triggers.firings() if f.event_id == event.id]
    finally:
        store.close()
    shape = EmittedOut(event=trigger_event_out(event, firings), duplicate=not created)
    if json_output:
        print_shape(shape)
        return
    if not created:
        console.print(
            f"event {name} with key {key} was received before (event {event.id})", markup=False
        )
        return
    started = ", ".join(f"{f.schedule}: {f.outcome} {f.run_id or ''}".rstrip() for f in firings)
    console.print(f"event {event.id} {name} stored; {started or 'no trigger fired'}", markup=False)


@events_app.command("list")
def list_events(
    name: Annotated[str | None, typer.Option("--name", help="Only events of this name.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=10_000, help="Newest events shown.")
    ] = 50,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Events received (sent or read from runs), oldest first, with the firings each caused."""
    from orchestration.triggers.trigger_service import events_shape

    store = open_store(db)
    try:
        shape = events_shape(store, limit, name)
    finally:
        store.close()
    if json_output:
        print_shape(shape)
        return
    for event in shape.events:
        fired = "; ".join(
            f"{f.schedule} {f.outcome} {f.run_id or ''}".rstrip() for f in event.firings
        )
        console.print(
            f"{event.id} {event.received_at:%Y-%m-%d %H:%M:%S}Z {event.name} ({event.source})"
            f"{' -> ' + fired if fired else ''}",
            markup=False,
            highlight=False,
        )
