"""Every figure and message a user reads says what the store holds: past tenses, counts bounded
by the plan, scores that do not round up to 1.00, filled templates, tables that fit 80 columns,
and hints that never offer to approve a step that failed first."""

from __future__ import annotations

import re
import subprocess
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestration.cli.display import clip_words
from orchestration.core.context import freeze, neutral_context
from orchestration.core.models import BreakerSettings, BreakpointRecord, TaskSpec
from orchestration.engine.review import EXPIRED_ACTOR, resolved_how
from orchestration.project.checkpoints import create_checkpoint
from orchestration.resilience.breakers import breaker_key
from orchestration.rules.rule_files import load_rules
from orchestration.store import Store
from orchestration.views.review_view import _result_text, score_text
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import orch, orch_json, shell_task, write_plan

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789abcdefghij"

REVIEW_AFTER = (
    "breakpoints:\n"
    "  - name: review_after\n"
    "    at: after\n"
    "    when: \"'review' in tags\"\n"
    "    priority: 99\n"
    "    action: pause\n"
    '    message: "{task_id} wants a look"\n'
)


def red_step_run(tmp_path: Path) -> tuple[Path, str, int]:
    """A run paused after a step whose quality gate failed (its acceptance check fails)."""
    (tmp_path / "review.yaml").write_text(REVIEW_AFTER)
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "red",
            "rules": ["review.yaml"],
            "defaults": {"validators": [], "retry": {"max_attempts": 1}},
            "tasks": [
                shell_task("red", "print('done')", tags=["review"], acceptance=["exit_code == 1"])
            ],
        },
    )
    ran = orch("run", str(plan), cwd=tmp_path)
    assert ran.returncode == 3, ran.stderr
    (bp,) = orch_json("breakpoints", "list", cwd=tmp_path)["breakpoints"]
    shown = orch_json("breakpoints", "show", str(bp["id"]), cwd=tmp_path)["breakpoint"]
    assert shown["context"]["gate_passed"] is False
    return tmp_path, bp["run"], bp["id"]


def test_a_red_step_is_never_offered_approve_first_and_approving_it_needs_a_reason(
    tmp_path: Path,
) -> None:
    workdir, run_id, bp = red_step_run(tmp_path)
    ran_again = orch("resume", run_id, cwd=workdir)  # the summary printed at the end of a run
    assert ran_again.returncode == 3
    hint = ran_again.stderr[ran_again.stderr.index("Review with:") :]
    assert f"orch breakpoints resolve {bp} --retry --answer" in hint
    assert f"orch breakpoints resolve {bp} --reject" in hint
    assert "--approve" not in hint

    shown = orch("breakpoints", "show", str(bp), cwd=workdir).stdout
    options = shown[shown.index("Options") :]
    assert "did not pass" in shown
    assert options.index("--retry") < options.index("--approve")  # approve comes last
    assert "--approve --note" in options

    refused = orch("breakpoints", "resolve", str(bp), "--approve", cwd=workdir)
    assert refused.returncode != 0
    assert "--force" in refused.stderr and "--note" in refused.stderr
    assert orch_json("status", run_id, cwd=workdir)["tasks"][0]["state"] == "blocked"
    noted = orch("breakpoints", "resolve", str(bp), "--approve", "--note", "known", cwd=workdir)
    assert noted.returncode == 0, noted.stderr
    assert orch_json("status", run_id, cwd=workdir)["tasks"][0]["outcome"] == "approved"


def test_forced_approval_of_a_red_step_goes_through(tmp_path: Path) -> None:
    workdir, _run_id, bp = red_step_run(tmp_path)
    forced = orch("breakpoints", "resolve", str(bp), "--approve", "--force", cwd=workdir)
    assert forced.returncode == 0, forced.stderr


def test_histories_and_dead_letters_use_real_past_tenses(tmp_path: Path) -> None:
    workdir, run_id, bp = red_step_run(tmp_path)
    retried = orch("breakpoints", "resolve", str(bp), "--retry", cwd=workdir)
    assert retried.returncode == 0, retried.stderr
    assert orch("resume", run_id, cwd=workdir).returncode == 3
    (second,) = orch_json("breakpoints", "list", cwd=workdir)["breakpoints"]
    rejected = orch("breakpoints", "resolve", str(second["id"]), "--reject", "--fail", cwd=workdir)
    assert rejected.returncode == 0, rejected.stderr

    assert orch("resume", run_id, cwd=workdir).returncode == 1  # ends with the task failed
    history = orch("task", "history", run_id, "red", cwd=workdir).stdout
    assert f"breakpoint {bp} (review_after) retried by" in history
    assert f"breakpoint {second['id']} (review_after) rejected by" in history
    (letter,) = orch_json("dlq", "list", cwd=workdir)["dead_letters"]
    assert "rejected by" in letter["reason"]
    for text in (history, letter["reason"]):
        assert not re.search(r"\b(retryd|rejectd|skipd|approved?d)\b", text)


def test_explain_counts_distinct_dependents_and_only_failed_attempts(tmp_path: Path) -> None:
    """A diamond: root feeds a and b, both feed join, then 4 more in a chain: 7 below root
    (the join counted once, though two paths reach it)."""
    tasks = [
        shell_task("root", "pass"),
        shell_task("a", "pass", depends_on=["root"]),
        shell_task("b", "pass", depends_on=["root"]),
        shell_task("join", "pass", depends_on=["a", "b"]),
        shell_task("c1", "pass", depends_on=["join"]),
        shell_task("c2", "pass", depends_on=["c1"]),
        shell_task("c3", "pass", depends_on=["c2"]),
        shell_task("c4", "pass", depends_on=["c3"]),
    ]
    plan = write_plan(
        tmp_path, {"version": 1, "name": "diamond", "defaults": {"validators": []}, "tasks": tasks}
    )
    assert orch("run", str(plan), cwd=tmp_path).returncode == 0
    status = orch_json("status", cwd=tmp_path)
    run_id = status["run"]["id"]
    assert [t["attempts"] for t in status["tasks"]] == [1] * len(tasks)

    explained = orch_json("explain", run_id, "root", cwd=tmp_path)["priority"]
    assert explained["dependents"] == len(tasks) - 1 == 7
    assert explained["failed_attempts"] == 0 and explained["retry_penalty"] == 0
    joined = orch_json("explain", run_id, "join", cwd=tmp_path)["priority"]
    assert joined["dependents"] == 4
    text = orch("explain", run_id, "root", cwd=tmp_path).stdout
    assert re.search(r"blocks\s+7 tasks", text)
    assert re.search(r"failed attempts\s+0\s", text)


def test_checkpoints_table_keeps_every_column_at_80_columns_without_a_terminal(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    identity = ["-c", "user.name=u", "-c", "user.email=u@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run(["git", *identity, "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", *identity, "commit", "-qm", "i"], cwd=repo, check=True)
    (repo / "a.txt").write_text("two\nthree\n")
    (repo / "b.txt").write_text("new\n")
    run_id = "library-trial-20261204-101010-abcd"
    made = create_checkpoint(repo, run_id, "docstring-audit", "Audit docstrings: ok", attempt=2)
    assert made is not None

    listed = orch("checkpoints", run_id, "--workdir", str(repo), env={"COLUMNS": "80"})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.lstrip().startswith("#"))
    assert header.split() == [
        "#",
        "task",
        "attempt",
        "commit",
        "created",
        "files",
        "+",
        "-",
        "message",
    ]
    row = next(line for line in lines if line.lstrip().startswith("1 "))
    cells = row.split()
    assert cells[0] == "1" and made.sha[:8] in cells
    # attempt, files, insertions, deletions: each figure is shown, as the store has it
    figures = [made.files_changed, made.insertions, made.deletions]
    assert cells[2] == "2" and [int(c) for c in cells[6:9]] == figures
    assert made.files_changed == 2 and made.deletions == 1


def test_rule_messages_show_mappings_and_empty_lists_as_words() -> None:
    rules = {rule.name: rule for rule in load_rules().breakpoints}
    context = neutral_context()
    context.update(
        task_id="t",
        title="",
        quality_score=0.82,
        stage_scores={"syntax": 1.0, "testing": 0.25},
        stage_conflicts=(),
    )
    disagree = rules["validators_disagree"].message_for(freeze(context))
    assert "FrozenMap" not in disagree and "{" not in disagree
    assert "stage scores: syntax 1, testing 0.25" in disagree
    assert "conflict: none" in disagree
    milestone = rules["milestone_completion"].message_for(freeze(context))
    assert milestone == "t: milestone reached; review before the run goes on"


def test_breaker_key_of_a_python_placeholder_command_names_python() -> None:
    spec = TaskSpec.model_validate(
        {"id": "t", "action": {"kind": "agent", "prompt": "p", "command": ["{python}", "a.py"]}}
    )
    assert breaker_key(spec, BreakerSettings()) == "agent:python"


def test_scores_are_cut_not_rounded_and_test_counts_are_shown() -> None:
    assert score_text(721 / 724) == "0.99"
    assert score_text(1.0) == "1.00" and score_text(0.5) == "0.50"
    check: dict[str, Any] = {
        "passed": False,
        "score": 721 / 724,
        "figures": {"tests_passed": 721, "tests_failed": 3},
    }
    assert _result_text(check) == "[red]fail[/] (721 passed, 3 failed)"


def test_an_expired_breakpoint_is_not_said_to_be_resolved_by_a_human() -> None:
    now = datetime.now(UTC)
    expired = BreakpointRecord(
        4, "r", "t", "rule", "after", "low", "pause", "m", "resolved", now,
        resolution="approve", resolved_by=EXPIRED_ACTOR,
    )  # fmt: skip
    human = BreakpointRecord(
        5, "r", "t", "rule", "after", "low", "pause", "m", "resolved", now,
        resolution="retry", resolved_by="alice",
    )  # fmt: skip
    assert resolved_how(expired) == ("breakpoint 4 expired: approved by default, no human answered")
    assert resolved_how(human) == "breakpoint 5 retried by alice"


def test_progress_details_are_cut_at_a_word() -> None:
    text = "validators of the same stage disagree " * 10
    clipped = clip_words(text, 60)
    assert len(clipped) <= 60 and clipped.endswith(" …")
    assert text.startswith(clipped[:-2]) and text[len(clipped) - 2] == " "
    assert clip_words("short", 60) == "short"


def test_the_dashboard_offers_approve_last_for_a_red_step_and_wants_a_note(tmp_path: Path) -> None:
    workdir, _run_id, bp = red_step_run(tmp_path)
    url = f"sqlite:///{workdir / '.orchestration' / 'state.db'}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with Store.open(url) as store:
        app = create_app(ServerConfig(db_url=url, token=TOKEN), store=store)
        with TestClient(app, follow_redirects=False) as client:
            bundle = client.get(f"/api/v1/breakpoints/{bp}", headers=auth).json()
            path = f"/api/v1/breakpoints/{bp}/resolve"
            bare = client.post(path, json={"resolution": "approve"}, headers=auth)
            noted = client.post(path, json={"resolution": "approve", "note": "ok"}, headers=auth)
    order = [o["resolution"] for o in bundle["options"]]
    assert order == ["retry", "reject", "skip", "approve"]
    assert bare.status_code >= 400 and "note" in bare.json()["error"]["message"]
    assert noted.status_code == 200, noted.text


def test_no_default_rule_message_leaves_a_template_unfilled() -> None:
    """Every default breakpoint message, filled from a full rule context, reads as words."""
    context = neutral_context()
    context.update(task_id="t", title="", stage_scores={"syntax": 1.0}, stage_conflicts=())
    frozen = freeze(context)
    for rule in load_rules().breakpoints:
        message = rule.message_for(frozen)
        assert "{" not in message and "}" not in message, (rule.name, message)
        assert "FrozenMap" not in message and "''" not in message, (rule.name, message)
