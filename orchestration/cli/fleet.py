"""`orch plan waves` and `orch health`: a plan's waves and assignment, a run's health."""

from pathlib import Path
from typing import Annotated

import typer

from orchestration.cli.common import DbOption, JsonOption, console, open_store, print_shape

plan_app = typer.Typer(help="Look at a plan before running it.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(plan_app, name="plan")
    app.command("health")(health)


@plan_app.command("waves")
def waves(
    plan_file: Annotated[Path, typer.Argument(help="The plan file.")],
    json_output: JsonOption = False,
) -> None:
    """The plan's topological waves, the agent its strategy would give each task, and the
    load-balance score of that assignment (Jain's index of each agent's expected seconds per
    slot, 0-100: 100 is even)."""
    from orchestration.engine.plan import load_plan
    from orchestration.engine.waves import planned_waves
    from orchestration.shapes.fleet import PlannedWavesOut

    plan = load_plan(plan_file)
    planned = planned_waves(plan)
    shape = PlannedWavesOut(
        plan=plan.name,
        strategy=plan.spec.assignment.strategy,
        waves=planned.waves,
        assignment=planned.assignment,
        loads=planned.loads,
        load_balance=planned.load_balance,
    )
    if json_output:
        print_shape(shape)
        return
    for number, wave in enumerate(planned.waves, start=1):
        shown = ", ".join(
            f"{t} -> {planned.assignment[t]}" if planned.assignment.get(t) else t for t in wave
        )
        console.print(f"wave {number} ({len(wave)} tasks): {shown}", markup=False)
    if planned.loads:
        loads = ", ".join(f"{name} {load:g}s" for name, load in planned.loads.items())
        console.print(f"strategy {shape.strategy}; load per slot: {loads}", markup=False)
        console.print(f"load balance {planned.load_balance:g}/100", markup=False)


def health(
    run_id: Annotated[str | None, typer.Argument(help="The run (default: the latest).")] = None,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """A run's health score (0-100) and its parts, per-agent figures, waves and anomalies.

    Parts: success (attempts that passed), availability (assignments made without waiting for
    a free agent), prediction (1 - Brier score of the predicted success), load balance (Jain's
    index of attempts per agent). Weights: the plan's `health.weights` (default 40/20/20/20).
    """
    from orchestration.engine.fleet_health import run_health

    store = open_store(db)
    try:
        if run_id is None:
            latest = store.latest_run()
            if latest is None:
                raise typer.BadParameter("the store holds no run", param_hint="RUN")
            run_id = latest.id
        report = run_health(store, run_id)
    finally:
        store.close()
    if json_output:
        print_shape(report)
        return
    p = report.parts
    console.print(
        f"run {report.run}: health {report.score:g}/100 (success {p.success:.2f}, availability "
        f"{p.availability:.2f}, prediction {p.prediction:.2f}, load balance {p.load_balance:.2f})",
        markup=False,
    )
    for a in report.agents:
        rate = "-" if a.success_rate is None else f"{a.success_rate:.0%}"
        console.print(
            f"  {a.agent}: {a.succeeded}/{a.attempts} ({rate}), calibration error "
            f"{a.calibration_error if a.calibration_error is not None else '-'}, mean "
            f"{a.mean_duration_seconds or 0:g}s, p95 {a.p95_duration_seconds or 0:g}s, "
            f"cost {a.cost:g}",
            markup=False,
        )
    for w in report.waves:
        console.print(f"  wave {w.wave}: health {w.score:g} ({len(w.tasks)} tasks)", markup=False)
    for anomaly in report.anomalies:
        console.print(f"  anomaly {anomaly.kind}: {anomaly.message}", markup=False)
