"""`orch demo`: runs the bundled coding-session example in a scratch git repository, end to end."""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from orchestration.cli.display import RunDisplay
from orchestration.cli.task_table import task_table
from orchestration.core.errors import OrchestrationError
from orchestration.core.hints import shell_command
from orchestration.core.models import BreakpointRecord
from orchestration.core.safe_git import run_git
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.engine.review import resolve_breakpoint
from orchestration.store import Store

EXAMPLE = "coding-session"
DEMO_ACTOR = "demo-reviewer"
GIT_IDENTITY = ("-c", "user.name=orchestration demo", "-c", "user.email=demo@localhost")


def copy_example(target: Path) -> Path:
    """Copy the bundled example into `target` and return the plan file's path."""
    source = resources.files("orchestration.examples") / EXAMPLE
    with resources.as_file(source) as source_dir:
        shutil.copytree(
            source_dir,
            target,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".orchestration"),
        )
    return target / "plan.yaml"


def init_git(project: Path) -> bool:
    """Make the project a git repository with one commit, so changes are measured exactly."""
    if shutil.which("git") is None:
        return False
    for args in (["init", "-q"], ["add", "-A"], [*GIT_IDENTITY, "commit", "-q", "-m", "start"]):
        run_git(project, *args, check=True)
    return True


def _explain_and_approve(console: Console, store: Store, bp: BreakpointRecord) -> None:
    console.print(
        Panel(
            f"[bold yellow]Breakpoint {bp.id}[/]: rule [bold]{escape(bp.rule)}[/] stopped task "
            f"[cyan]{escape(bp.task_id)}[/] {bp.at} it ran.\n{escape(bp.message)}\n\n"
            "In a real session the run now exits with code 3 and waits for you:\n"
            f"  orch breakpoints show {bp.id}\n"
            f"  orch breakpoints resolve {bp.id} --approve --note 'looks right'\n"
            "  orch resume RUN\n"
            "In demo mode the reviewer approves it for you.",
            title="a human is needed",
            expand=False,
        )
    )
    resolve_breakpoint(
        store, bp.id, "approve", actor=DEMO_ACTOR, note="approved automatically by `orch demo`"
    )


def _print_decisions(console: Console, store: Store, run_id: str) -> None:
    console.print("\n[bold]Why the engine did what it did[/] (orch task history RUN TASK):")
    for decision in store.decisions(run_id):
        colour = "green" if decision.action == "proceed" else "yellow"
        console.print(
            f"  {decision.task_id} attempt {decision.attempt}: [{colour}]{decision.action}[/] "
            f"— {escape(decision.reason)}"
        )
        if decision.action == "retry":
            _print_feedback(console, store, run_id, decision.task_id, decision.attempt)


def _print_feedback(
    console: Console, store: Store, run_id: str, task_id: str, attempt: int
) -> None:
    """What the validators said, which the next attempt received as {feedback}."""
    for quality in store.quality(run_id, task_id):
        if quality.attempt != attempt:
            continue
        for check in quality.checks:
            if not check.get("passed"):
                lines = str(check.get("message", "")).strip().splitlines()
                shown = "\n      ".join(escape(line) for line in lines[:8])
                console.print(f"    [red]{escape(str(check.get('name')))}[/] said:\n      {shown}")


def _print_checkpoints(console: Console, workdir: Path, run_id: str) -> None:
    from orchestration.project.checkpoints import list_checkpoints

    try:
        checkpoints = list_checkpoints(workdir, run_id)
    except OrchestrationError:
        return  # no git: no checkpoints to show
    if not checkpoints:
        return
    console.print(
        "\n[bold]Checkpoints[/]: the work tree after each completed task, as git commits that no "
        "branch points at (orch checkpoints RUN; orch rollback RUN --to TASK restores one):"
    )
    for checkpoint in checkpoints:
        console.print(
            f"  {checkpoint.sha[:10]} {escape(checkpoint.task_id)}: "
            f"{checkpoint.files_changed} file(s), +{checkpoint.insertions} -{checkpoint.deletions}"
        )


def run_demo(console: Console, err_console: Console, directory: Path | None) -> int:
    scratch = None
    if directory is not None and directory.exists() and not directory.is_dir():
        raise OrchestrationError(f"--dir {directory} exists and is not a directory")
    if directory is None:
        scratch = tempfile.mkdtemp(prefix="orch-demo-")
        directory = Path(scratch)
    plan_path = copy_example(directory)
    has_git = init_git(directory / "project")
    console.print(
        f"[bold]orchestration demo[/]: a scripted agent works through a coding plan in {directory}"
        + ("" if has_git else " (git not found: changes measured without it)")
    )
    plan = load_plan(plan_path)
    store = Store.open(f"sqlite:///{directory / '.orchestration' / 'state.db'}")
    try:
        orchestrator = Orchestrator.start(
            plan,
            store,
            engine=build_engine(plan),
            on_breakpoint=lambda bp: _explain_and_approve(console, store, bp),
        )
        display = RunDisplay(len(orchestrator.tasks), err_console)
        orchestrator.observer = display
        orchestrator.engine.plugins.muted.add("console")
        with display:
            summary = orchestrator.run_until_stopped()
        console.print(
            task_table(store.tasks(summary.run_id), title=f"run {escape(summary.run_id)}")
        )
        _print_decisions(console, store, summary.run_id)
        _print_checkpoints(console, Path(plan.workdir), summary.run_id)
        db_url = f"sqlite:///{directory / '.orchestration/state.db'}"
        console.print(
            f"\n[bold]{summary.state}[/]. Inspect it yourself: "
            + escape(shell_command("orch", "status", summary.run_id, "--db", db_url)),
            soft_wrap=True,  # a command wrapped in two would not paste
        )
    finally:
        store.close()
    if scratch is not None:
        console.print(f"(files left in {directory} for you to look at)")
    return summary.exit_code
