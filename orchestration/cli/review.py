"""`orch breakpoints stats|history` and `orch rules enable|disable|add|changes --run`."""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from orchestration.cli.common import (
    ActorOption,
    DbOption,
    JsonOption,
    console,
    iso,
    open_store,
    print_json,
    user,
)
from orchestration.core.durations import format_duration
from orchestration.core.errors import OrchestrationError

if TYPE_CHECKING:
    from orchestration.core.models import BreakpointRecord, RunSetting
    from orchestration.store import Store
    from orchestration.views.breakpoint_stats import RuleStats

RunOption = Annotated[str | None, typer.Option("--run", help="Only this run.")]


def register(breakpoints_app: typer.Typer, rules_app: typer.Typer) -> None:
    breakpoints_app.command("stats")(breakpoints_stats)
    breakpoints_app.command("history")(breakpoints_history)
    rules_app.command("enable")(rules_enable)
    rules_app.command("disable")(rules_disable)
    rules_app.command("add")(rules_add)
    rules_app.command("changes")(rules_changes)


# ---- analytics ----------------------------------------------------------------------------


def breakpoints_stats(
    run_id: RunOption = None, db: DbOption = None, json_output: JsonOption = False
) -> None:
    """Per breakpoint type: triggered, resolved by a human, auto-resolved, expired, open, and the
    mean and median time a human took to resolve one."""
    from orchestration.views.breakpoint_stats import breakpoint_stats, total_stats

    store = open_store(db)
    try:
        per_rule = breakpoint_stats(store.breakpoints(run_id))
    finally:
        store.close()
    total = total_stats(per_rule)
    if json_output:
        print_json(
            {"run": run_id, "stats": [s.as_dict() for s in per_rule], "total": total.as_dict()}
        )
        return
    if not per_rule:
        console.print("no breakpoints yet")
        return
    table = Table(title=f"breakpoints{f' of {run_id}' if run_id else ''}")
    for column in ("type", "triggered", "resolved", "auto", "expired", "open", "mean", "median"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for stats in [*per_rule, total]:
        table.add_row(*_stats_row(stats), end_section=stats is per_rule[-1])
    console.print(table)


def _stats_row(stats: "RuleStats") -> list[str]:
    figures = stats.as_dict()
    return [
        escape(stats.rule),
        str(stats.triggered),
        str(stats.resolved_by_human),
        str(stats.auto_resolved),
        str(stats.expired),
        str(stats.open),
        _duration(figures["mean_seconds_to_resolution"]),
        _duration(figures["median_seconds_to_resolution"]),
    ]


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def breakpoints_history(
    run_id: RunOption = None,
    task_id: Annotated[str | None, typer.Option("--task", help="Only this task.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this breakpoint type.")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """The audit trail, oldest first: every breakpoint raised and resolved (who, when, how, why)
    and every rule or budget changed for a run while it ran."""
    store = open_store(db)
    try:
        entries = _history(store, run_id, task_id, rule)
    finally:
        store.close()
    if json_output:
        print_json({"history": entries})
        return
    if not entries:
        console.print("no history")
        return
    for entry in entries:
        console.print(_history_line(entry), markup=False, highlight=False)


def _history(
    store: "Store", run_id: str | None, task_id: str | None, rule: str | None
) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for bp in store.breakpoints(run_id):
        if (task_id and bp.task_id != task_id) or (rule and bp.rule != rule):
            continue
        entries.extend(_breakpoint_entries(bp))
    if not task_id:
        runs = [run_id] if run_id else [r.id for r in store.list_runs()]
        for run in runs:
            for setting in store.run_settings(run):
                if rule and setting.name != rule:
                    continue
                entries.append(_setting_entry(setting))
    entries.sort(key=lambda e: (e["at"], e.get("breakpoint") or 0))
    return entries


def _breakpoint_entries(bp: "BreakpointRecord") -> list[dict[str, Any]]:
    raised = {
        "at": iso(bp.created_at),
        "event": "raised",
        "run": bp.run_id,
        "task": bp.task_id,
        "breakpoint": bp.id,
        "rule": bp.rule,
        "action": bp.action,
        "scope": bp.scope,
        "severity": bp.severity,
        "message": bp.message,
        "expires_at": iso(bp.expires_at),
    }
    if bp.state == "open" or bp.resolved_at is None:
        return [raised]
    resolved = {
        "at": iso(bp.resolved_at),
        "event": "resolved",
        "run": bp.run_id,
        "task": bp.task_id,
        "breakpoint": bp.id,
        "rule": bp.rule,
        "resolution": bp.resolution,
        "by": bp.resolved_by,
        "note": bp.note,
        "params": bp.params,
        "waited_seconds": round((bp.resolved_at - bp.created_at).total_seconds(), 3),
    }
    return [raised, resolved]


def _setting_entry(setting: "RunSetting") -> dict[str, Any]:
    return {
        "at": iso(setting.at),
        "event": f"{setting.kind}_changed",
        "run": setting.run_id,
        "name": setting.name,
        "value": setting.value if setting.kind != "rules_file" else "(rule file)",
        "by": setting.actor,
        "note": setting.note,
    }


def _history_line(entry: dict[str, Any]) -> str:
    at = entry["at"][:19].replace("T", " ")
    if entry["event"] == "raised":
        return (
            f"{at}  #{entry['breakpoint']} raised  {entry['run']}/{entry['task']} "
            f"{entry['rule']} ({entry['action']}, {entry['severity']}): {entry['message']}"
        )
    if entry["event"] == "resolved":
        line = (
            f"{at}  #{entry['breakpoint']} {entry['resolution']} by {entry['by']} "
            f"after {format_duration(entry['waited_seconds'])}"
        )
        if entry["params"]:
            line += " with " + ", ".join(f"{k}={v!r}" for k, v in entry["params"].items())
        return line + (f": {entry['note']}" if entry["note"] else "")
    return (
        f"{at}  {entry['event']} {entry['run']}: {entry['name']} = {entry['value']} "
        f"by {entry['by']}" + (f": {entry['note']}" if entry["note"] else "")
    )


# ---- the rules of a run, changed while it runs ------------------------------------------------

RequiredRun = Annotated[str, typer.Option("--run", help="The run to change.")]
NoteOption = Annotated[str, typer.Option("--note", help="Why; stored with the change.")]


def rules_enable(
    name: Annotated[str, typer.Argument(help="The breakpoint rule's name.")],
    run_id: RequiredRun,
    note: NoteOption = "",
    actor: ActorOption = None,
    db: DbOption = None,
) -> None:
    """Switch a breakpoint rule back on for one run (stored; a running engine applies it)."""
    _switch_rule(name, run_id, True, note, actor, db)


def rules_disable(
    name: Annotated[str, typer.Argument(help="The breakpoint rule's name.")],
    run_id: RequiredRun,
    note: NoteOption = "",
    actor: ActorOption = None,
    db: DbOption = None,
) -> None:
    """Switch a breakpoint rule off for one run (stored; a running engine applies it)."""
    _switch_rule(name, run_id, False, note, actor, db)


def _switch_rule(
    name: str, run_id: str, enabled: bool, note: str, actor: str | None, db: str | None
) -> None:
    from orchestration.core.models import RunSetting
    from orchestration.store import Batch

    store = open_store(db)
    try:
        known = _rule_names(store, run_id)
        if name not in known:
            raise OrchestrationError(
                f"run '{run_id}' has no breakpoint rule named {name!r}; its rules are: "
                + ", ".join(sorted(known))
            )
        setting = RunSetting(run_id, "rule", name, enabled, actor or user(), note, _now())
        store.commit(run_id, Batch(settings=[setting]))
    finally:
        store.close()
    state = "enabled" if enabled else "disabled"
    console.print(f"rule {name} {state} for run {run_id}", markup=False)


def rules_add(
    file: Annotated[Path, typer.Argument(help="A rule file (YAML) with breakpoints to add.")],
    run_id: RequiredRun,
    note: NoteOption = "",
    actor: ActorOption = None,
    db: DbOption = None,
) -> None:
    """Add a rule file's breakpoints to one run while it runs (checked first, then stored).

    Rules named like existing ones retune them, as in the plan's own rule files.
    """
    from orchestration.core.models import RunSetting
    from orchestration.store import Batch

    store = open_store(db)
    try:
        text = _read_rule_file(file)
        rules = _run_rules(store, run_id, extra=(str(file.resolve()), text))
        if rules.decisions != _run_rules(store, run_id).decisions:
            raise OrchestrationError(
                f"{file}: only breakpoints can be added to a running run, not decisions"
            )
        setting = RunSetting(
            run_id, "rules_file", str(file.resolve()), text, actor or user(), note, _now()
        )
        store.commit(run_id, Batch(settings=[setting]))
    finally:
        store.close()
    console.print(
        f"{file}: added to run {run_id}; {len(rules.breakpoints)} breakpoint rules in force",
        markup=False,
    )


def rules_changes(
    run_id: RequiredRun, db: DbOption = None, json_output: JsonOption = False
) -> None:
    """The rules switched and rule files added for a run, and which rules are off now."""
    store = open_store(db)
    try:
        settings = [s for s in store.run_settings(run_id) if s.kind in ("rule", "rules_file")]
        store.get_run(run_id)  # an unknown run is an error, not an empty list
    finally:
        store.close()
    latest = {s.name: bool(s.value) for s in settings if s.kind == "rule"}
    disabled = sorted(name for name, on in latest.items() if not on)
    if json_output:
        print_json(
            {"run": run_id, "disabled": disabled, "changes": [_setting_entry(s) for s in settings]}
        )
        return
    for setting in settings:
        console.print(_history_line(_setting_entry(setting)), markup=False, highlight=False)
    console.print(f"disabled now: {', '.join(disabled) or 'none'}", markup=False)


def _read_rule_file(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as error:
        raise OrchestrationError(f"{file}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise OrchestrationError(f"{file}: not UTF-8 text") from None


def _run_rules(store: "Store", run_id: str, extra: tuple[str, str] | None = None) -> Any:
    """The rule set of a stored run (its plan's files and the files added to it)."""
    from orchestration.engine.plan import plan_from_stored
    from orchestration.pluginhost.hooks import load_plugins
    from orchestration.rules.rule_files import load_rules

    plan = plan_from_stored(store.get_run(run_id))
    texts = [
        (s.name, s.value)
        for s in store.run_settings(run_id)
        if s.kind == "rules_file" and isinstance(s.value, str)
    ]
    if extra is not None:
        texts.append(extra)
    functions = load_plugins().rule_functions
    return load_rules(plan.rule_files, functions=functions, texts=texts)


def _rule_names(store: "Store", run_id: str) -> set[str]:
    return {rule.name for rule in _run_rules(store, run_id).breakpoints}


def _now() -> datetime:
    return datetime.now(UTC)
