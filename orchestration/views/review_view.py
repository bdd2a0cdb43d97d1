"""One screen for the reviewer of a breakpoint: the step, its changes, checks, decision, options."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from orchestration.core.hints import resume_command
from orchestration.core.models import BreakpointRecord
from orchestration.engine.review import failed_gate, resolution_text
from orchestration.store import Store

OUTPUT_LINES = 15


def score_text(score: Any) -> str:
    """A 0..1 score with two decimals, cut rather than rounded: 0.996 shows as 0.99, so a score
    short of full marks never reads 1.00."""
    if not isinstance(score, int | float) or isinstance(score, bool):
        return "-"
    return f"{math.floor(float(score) * 100) / 100:.2f}"


def _result_text(check: dict[str, Any]) -> str:
    verdict = "[green]pass[/]" if check.get("passed") else "[red]fail[/]"
    figures = check.get("figures") or {}
    counts = [
        f"{figures[name]} {label}"
        for name, label in (("tests_passed", "passed"), ("tests_failed", "failed"))
        if isinstance(figures.get(name), int)
    ]
    return verdict + (f" ({', '.join(counts)})" if counts else "")


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("validator", "stage", "result", "score", "message"):
        table.add_column(column)
    for check in checks:
        message = str(check.get("message", "")).splitlines()
        table.add_row(
            escape(str(check.get("name"))),
            str(check.get("stage")),
            _result_text(check),
            score_text(check.get("score")),
            escape(message[0][:100] if message else ""),
        )
    return table


def _options(bp: BreakpointRecord, failed: str | None) -> str:
    resolve = f"  orch breakpoints resolve {bp.id}"
    retry = f"{resolve} --retry --answer '...'   run it again, with your answer and its feedback"
    reject = f"{resolve} --reject    cancel the task (--rollback: restore the last accepted files)"
    skip = f"{resolve} --skip      mark it done without running it"
    if failed is not None:  # a red step: accepting it is the last option, and needs a reason
        lines = [retry, reject, skip, f"{resolve} --approve --note 'why'   accept it broken"]
    else:
        approve = "run the task now" if bp.at == "before" else "accept the result as it is"
        if bp.context.get("merge_worktree"):
            approve = "merge it; where files conflict, the task's worktree wins"
        lines = [f"{resolve} --approve   {approve}", retry, skip, reject]
    then = f"  add --note '...' to say why; then: {resume_command(bp.run_id)}"
    return "\n".join([*lines, then])


def _merge_parts(context: dict[str, Any]) -> list[Any]:
    """A merge conflict: each conflicting file with what each side did to it."""
    parts: list[Any] = [
        f"[bold]Merge into {escape(str(context.get('integration_branch')))}[/]: the task's "
        f"work is in {escape(str(context.get('merge_worktree')))}"
    ]
    if context.get("merge_check"):
        parts.append(f"validators on the merged result: {escape(str(context['merge_check']))}")
    for conflict in context.get("merge_conflicts") or []:
        sides = Table(show_header=True, box=None, pad_edge=False, title=conflict.get("path"))
        sides.add_column("merged meanwhile")
        sides.add_column("this task")
        sides.add_row(
            escape(str(conflict.get("integration_diff", ""))),
            escape(str(conflict.get("task_diff", ""))),
        )
        parts.append(sides)
    return parts


def render_breakpoint(console: Console, store: Store, bp: BreakpointRecord) -> None:
    context = bp.context
    task = store.task(bp.run_id, bp.task_id)
    header = (
        f"[bold]breakpoint {bp.id}[/] · run {escape(bp.run_id)} · "
        f"task [cyan]{escape(bp.task_id)}[/]"
        f" ({escape(task.spec.title)})\nrule [yellow]{escape(bp.rule)}[/] {bp.at} the step · "
        f"severity {bp.severity} · {bp.state}"
        + (f" ({escape(resolution_text(bp))}: {escape(bp.note)})" if bp.resolution else "")
        + f"\n[bold]{escape(bp.message)}[/]"
    )
    parts: list[Any] = [header]
    if bp.at == "after":
        files = context.get("changed_files") or []
        parts.append(
            f"\n[bold]What the step did[/] (attempt {context.get('attempt')}, exit code "
            f"{context.get('exit_code')}, {context.get('duration_seconds')}s): "
            f"{len(files)} files changed, {context.get('lines_changed')} lines"
        )
        if context.get("diff_stat"):
            parts.append(escape(str(context["diff_stat"])))
        elif files:
            parts.append(escape("\n".join(f"  {f}" for f in files[:30])))
        if context.get("merge_worktree"):
            parts.extend(_merge_parts(context))
        tail = str(context.get("output_tail") or "").strip().splitlines()[-OUTPUT_LINES:]
        if tail:
            parts.append("[bold]Output (last lines)[/]\n" + escape("\n".join(tail)))
        attempt = context.get("attempt")
        quality = [q for q in store.quality(bp.run_id, bp.task_id) if q.attempt == attempt]
        if quality:
            q = quality[-1]
            gate = "[green]passed[/]" if q.gate_passed else "[red]failed[/]"
            parts.append(f"[bold]Validators[/] score {score_text(q.score)}, gate {gate}")
            parts.append(_checks_table(q.checks))
        decisions = [d for d in store.decisions(bp.run_id, bp.task_id) if d.attempt == attempt]
        for d in decisions:
            parts.append(
                f"[bold]Decision[/] {d.action} (rule {escape(d.rule)}): {escape(d.reason)}"
            )
    else:
        parts.append(
            f"\nThe step has not run yet: attempt {context.get('attempt')}, risk "
            f"{context.get('risk')}, confidence {context.get('confidence')}, tags "
            f"{', '.join(context.get('tags') or [])}"
        )
    if bp.state == "open":
        failed = failed_gate(store, bp)
        if failed is not None:
            parts.append(f"[bold red]The step did not pass: {escape(failed)}[/]")
        parts.append("[bold]Options[/]\n" + escape(_options(bp, failed)))
    console.print(Panel(Group(*parts), title="review", expand=False))
