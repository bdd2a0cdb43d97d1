"""`orch schedule ...`: add, list, show, enable, disable, remove, next, tick and apply schedules."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from orchestration.cli.common import DbOption, JsonOption, console, open_store, print_shape
from orchestration.core.errors import OrchestrationError

schedule_app = typer.Typer(
    help="Start plans by cron schedule or by event: add, list, show, enable, disable, remove, "
    "next, tick. `orch daemon` runs them.",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="The schedule's name.")]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="The time to act as now (ISO 8601, e.g. 2026-03-30T02:00:00+02:00)."),
]


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")


def parse_at(at: str | None) -> datetime:
    """`--at` as an aware time (a time without zone is UTC); now when not given."""
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at)
    except ValueError:
        raise OrchestrationError(
            f"--at {at!r} is not an ISO 8601 time such as 2026-03-30T02:00:00+02:00"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@schedule_app.command("add")
def add(
    name: NameArg,
    plan: Annotated[Path, typer.Option("--plan", help="The plan file the schedule starts.")],
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="Five cron fields: minute hour day month weekday."),
    ] = None,
    tz: Annotated[str, typer.Option("--tz", help="Time zone of the cron times.")] = "UTC",
    params: Annotated[
        str | None, typer.Option("--params", help="Plan parameters as a JSON object.")
    ] = None,
    overlap: Annotated[
        str,
        typer.Option(
            "--overlap",
            help="When the previous run is still active: skip, queue or cancel_previous.",
        ),
    ] = "skip",
    catch_up: Annotated[
        float,
        typer.Option(
            "--catch-up",
            min=0,
            help="Seconds: occurrences missed while nothing ran are fired this late at most.",
        ),
    ] = 0.0,
    jitter: Annotated[
        float,
        typer.Option("--jitter", min=0, help="Seconds: each occurrence fires up to this late."),
    ] = 0.0,
    on: Annotated[
        str | None, typer.Option("--on", help="An event name that also starts the plan.")
    ] = None,
    when: Annotated[
        str | None, typer.Option("--when", help="With --on: a rule expression over the event.")
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Store it disabled.")] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store a schedule: the plan runs at each cron occurrence and/or on each matching event.

    The plan is checked now, with the parameters given. Event triggers declared in the plan
    (`on:`) are added to the schedule's own (--on/--when).
    """
    from orchestration.engine.plan_params import parse_params_json
    from orchestration.triggers.trigger_service import add_schedule, parse_spec, schedule_shape

    data: dict[str, Any] = {
        "name": name,
        "plan": str(plan),
        "cron": cron,
        "tz": tz,
        "params": parse_params_json(params) if params else {},
        "overlap": overlap,
        "catch_up_seconds": catch_up,
        "jitter_seconds": jitter,
        "enabled": not disabled,
    }
    if on is not None:
        data["on"] = [{"event": on, "when": when}]
    elif when is not None:
        raise OrchestrationError("--when needs --on: it is the condition on that event")
    spec = parse_spec(data, f"schedule '{name}'")
    now = datetime.now(UTC)
    store = open_store(db, plan.parent)
    try:
        record = add_schedule(store, spec, now)
        shape = schedule_shape(store, record, now)
    finally:
        store.close()
    if json_output:
        print_shape(shape)
        return
    when_next = f"; next: {shape.next.local}" if shape.next else ""
    console.print(f"schedule {name} added{when_next}", markup=False)


@schedule_app.command("apply")
def apply(
    file: Annotated[Path, typer.Argument(help="A YAML file with a list `schedules:`.")],
    db: DbOption = None,
) -> None:
    """Add or update every schedule of a schedule file (same fields as `add`, plus `on:`)."""
    from orchestration.core.yamlfile import load_yaml_file
    from orchestration.triggers.trigger_service import add_schedule, parse_spec

    data, _ = load_yaml_file(file)
    items = data.get("schedules") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise OrchestrationError(f"{file}: expected a mapping with a list `schedules:`")
    now = datetime.now(UTC)
    specs = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise OrchestrationError(f"{file}: schedules[{index}] must be a mapping")
        item = dict(item)
        if "plan" in item and isinstance(item["plan"], str):
            item["plan"] = str((file.parent / item["plan"]).resolve())
        specs.append(parse_spec(item, f"{file}: schedules[{index}]"))
    store = open_store(db, file.parent)
    try:
        for spec in specs:
            add_schedule(store, spec, now, replace_existing=True)
    finally:
        store.close()
    console.print(f"applied {len(specs)} schedule(s): {', '.join(s.name for s in specs)}")


@schedule_app.command("list")
def list_schedules(
    db: DbOption = None, json_output: JsonOption = False, at: AtOption = None
) -> None:
    """Every schedule with its next occurrence and its figures (runs, failures, last outcome)."""
    from rich.table import Table

    from orchestration.triggers.trigger_service import schedule_shape
    from orchestration.triggers.trigger_shapes import SchedulesOut

    now = parse_at(at)
    store = open_store(db)
    try:
        shapes = [schedule_shape(store, s, now) for s in store.triggers.schedules()]
    finally:
        store.close()
    if json_output:
        print_shape(SchedulesOut(schedules=shapes))
        return
    table = Table("name", "when", "next", "enabled", "runs", "failures", "mean s", "last")
    for s in shapes:
        when = f"{s.cron} ({s.tz})" if s.cron else ""
        when += (" + " if when else "") + ", ".join(t["event"] for t in s.on)
        mean = s.stats.mean_duration_seconds
        table.add_row(
            escape(s.name),
            escape(when),
            s.next.local if s.next else "",
            "yes" if s.enabled else "no",
            str(s.stats.runs),
            str(s.stats.failures),
            f"{mean:.1f}" if mean is not None else "",
            escape(s.stats.last_outcome or ""),
        )
    console.print(table)


@schedule_app.command("show")
def show(
    name: NameArg,
    db: DbOption = None,
    json_output: JsonOption = False,
    at: AtOption = None,
    last: Annotated[int, typer.Option("--last", min=1, help="Firings shown.")] = 10,
) -> None:
    """A schedule, its figures and its latest firings (what each one started)."""
    from orchestration.triggers.trigger_service import schedule_shape
    from orchestration.triggers.trigger_shapes import firing_out

    now = parse_at(at)
    store = open_store(db)
    try:
        shape = schedule_shape(store, store.triggers.schedule(name), now)
        firings = [firing_out(f) for f in store.triggers.firings(name, limit=last)]
    finally:
        store.close()
    if json_output:
        from orchestration.shapes.records import as_json
        from orchestration.triggers.trigger_shapes import FiringsOut

        data = as_json(shape) | as_json(FiringsOut(firings=firings))
        from orchestration.cli.common import print_json

        print_json(data)
        return
    for line in _describe(shape):
        console.print(line, markup=False, highlight=False)
    for f in firings:
        what = f.run_id or ""
        console.print(
            f"  {f.fired_at:%Y-%m-%d %H:%M:%S}Z {f.kind} {f.outcome} {what} {f.reason}".rstrip(),
            markup=False,
            highlight=False,
        )


def _describe(shape: Any) -> list[str]:
    stats = shape.stats
    mean = stats.mean_duration_seconds
    return [
        f"schedule {shape.name} ({'enabled' if shape.enabled else 'disabled'})",
        f"  plan: {shape.plan}",
        f"  cron: {shape.cron or '-'} ({shape.tz}); overlap {shape.overlap}; catch-up "
        f"{shape.catch_up_seconds:g}s; jitter {shape.jitter_seconds:g}s",
        f"  params: {shape.params}",
        f"  on: {shape.on or '-'}",
        f"  next: {shape.next.local if shape.next else '-'}",
        f"  runs {stats.runs}, failures {stats.failures}, mean duration "
        f"{f'{mean:.1f}s' if mean is not None else '-'}, last {stats.last_outcome or '-'}",
    ]


@schedule_app.command("enable")
def enable(name: NameArg, db: DbOption = None) -> None:
    """Fire the schedule again (occurrences missed meanwhile fire only inside the catch-up)."""
    _set_enabled(name, True, db)


@schedule_app.command("disable")
def disable(name: NameArg, db: DbOption = None) -> None:
    """Stop firing the schedule; runs it started go on."""
    _set_enabled(name, False, db)


def _set_enabled(name: str, enabled: bool, db: str | None) -> None:
    store = open_store(db)
    try:
        store.triggers.set_enabled(name, enabled, datetime.now(UTC))
    finally:
        store.close()
    console.print(f"schedule {name} {'enabled' if enabled else 'disabled'}", markup=False)


@schedule_app.command("remove")
def remove(name: NameArg, db: DbOption = None) -> None:
    """Delete the schedule; its firings stay in the history, its runs go on."""
    store = open_store(db)
    try:
        store.triggers.remove_schedule(name)
    finally:
        store.close()
    console.print(f"schedule {name} removed", markup=False)


@schedule_app.command("next")
def next_times(
    name: NameArg,
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1000)] = 5,
    at: AtOption = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """The next occurrences (in the schedule's time zone, with the jitter each one gets)."""
    from orchestration.triggers.schedules import next_occurrences
    from orchestration.triggers.trigger_shapes import OccurrencesOut, occurrence_out

    store = open_store(db)
    try:
        schedule = store.triggers.schedule(name)
    finally:
        store.close()
    found = next_occurrences(schedule, parse_at(at), count)
    shape = OccurrencesOut(
        schedule=name, occurrences=[occurrence_out(o, schedule.tz) for o in found]
    )
    if json_output:
        print_shape(shape)
        return
    if not found:
        console.print(f"schedule {name} has no cron: it fires on events only", markup=False)
    for o in shape.occurrences:
        console.print(f"{o.local}  (UTC {o.at:%Y-%m-%d %H:%M:%S})", markup=False)


@schedule_app.command("tick")
def tick_command(
    at: AtOption = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fire what is due at --at (default now): cron occurrences, events, queued firings.

    For tests, and for driving schedules from your own cron (`* * * * * orch schedule tick`)
    instead of running `orch daemon`. Each occurrence fires once, however often this runs.
    """
    from orchestration.triggers.trigger_service import launch_context, tick
    from orchestration.triggers.trigger_shapes import FiringsOut, firing_out

    store = open_store(db)
    try:
        result = tick(store, launch_context(store), parse_at(at))
        fired = [
            firing_out(f)
            for f in store.triggers.firings()
            if f.id in {x.id for x in result.firings}
        ]
    finally:
        store.close()
    if json_output:
        print_shape(FiringsOut(firings=fired))
        return
    for f in fired:
        console.print(
            f"{f.schedule}: {f.kind} {f.outcome} {f.run_id or ''} {f.reason}".rstrip(), markup=False
        )
    if not fired:
        console.print("nothing due", markup=False)
