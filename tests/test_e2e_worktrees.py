"""Tasks running at once in worktrees of their own, merged into the run's integration branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, write_plan
from tests.test_web_api import login, make_client

RUN = "iso"
BRANCH = f"orchestration/{RUN}"

# Each task notes that it started, waits until its partner has started too (so both are
# running at once, each in its own tree), then edits `path`. A bounded wait, not a sleep race.
EDIT = """
import pathlib, sys, time
control, me, partner, path, text = sys.argv[1:]
pathlib.Path(control, me).touch()
deadline = time.monotonic() + 120
while not pathlib.Path(control, partner).exists():
    if time.monotonic() > deadline:
        sys.exit('partner never started')
    time.sleep(0.02)
lines = pathlib.Path(path).read_text().splitlines()
lines[0] = text
pathlib.Path(path).write_text('\\n'.join(lines) + '\\n')
"""


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-c", "user.name=User", "-c", "user.email=user@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def user_state(repo: Path) -> tuple[str, str, str, str, str]:
    """The user's HEAD, branch, status, staged diff and work tree file: never the engine's."""
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
        (repo / "shared.txt").read_text() + (repo / "a.txt").read_text(),
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name in ("a.txt", "b.txt", "shared.txt"):
        (root / name).write_text(f"{name} line one\nline two\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    # The user's own unfinished work: staged, unstaged and untracked.
    (root / "b.txt").write_text("b.txt staged by the user\nline two\n")
    git(root, "add", "b.txt")
    (root / "a.txt").write_text("a.txt edited by the user\nline two\n")
    (root / "mine.txt").write_text("untracked\n")
    return root


def plan_of(tmp_path: Path, edits: dict[str, tuple[str, str]], **extra: object) -> Path:
    """Two tasks at once, each editing (file, new first line) in its own worktree."""
    control = tmp_path / "control"
    control.mkdir()
    first, second = edits
    partner = {first: second, second: first}
    tasks = [
        {
            "id": task_id,
            "action": {
                "kind": "shell",
                "run": [PY, "-c", EDIT, str(control), task_id, partner[task_id], path, text],
            },
        }
        for task_id, (path, text) in edits.items()
    ]
    plan = {
        "version": 1,
        "name": "isolated",
        "workdir": str(tmp_path / "repo"),
        "concurrency": {"max_workers": 2},
        "defaults": {"validators": []},
        "tasks": tasks,
        **extra,
    }
    return write_plan(tmp_path / "plans", plan)


def db_args(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'state.db'}"]


def test_two_tasks_at_once_merge_into_the_integration_branch(tmp_path: Path, repo: Path) -> None:
    before = user_state(repo)
    plan = plan_of(tmp_path, {"one": ("a.txt", "task one was here"), "two": ("b.txt", "two")})
    done = orch("run", str(plan), "--run-id", RUN, *db_args(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    assert f"git merge {BRANCH}" in done.stdout + done.stderr
    # Both tasks' work is on the integration branch, on top of the user's HEAD commit.
    assert git(repo, "show", f"{BRANCH}:a.txt") == "task one was here\nline two\n"
    assert git(repo, "show", f"{BRANCH}:b.txt") == "two\nline two\n"
    assert git(repo, "merge-base", BRANCH, "HEAD") == before[0]
    # The user's branch, index and work tree are as they were.
    assert user_state(repo) == before
    # The worktrees are gone once merged; the events name what was merged.
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1
    with Store.open(db_args(tmp_path)[1]) as store:
        events = store.events(RUN)
    assert {e.task_id for e in events if e.kind == "merged"} == {"one", "two"}
    (branch,) = [e.data for e in events if e.kind == "integration_branch"]
    assert branch["tip"] == git(repo, "rev-parse", BRANCH).strip()
    assert branch["unmerged"] == []
    # Checkpoints record the integration branch's files after each task, for `orch rollback`.
    found = orch_json("checkpoints", RUN, *db_args(tmp_path))["checkpoints"]
    assert {c["task"] for c in found} == {"one", "two"}
    last_tree = git(repo, "rev-parse", f"{found[-1]['sha']}^{{tree}}")
    assert last_tree == git(repo, "rev-parse", f"{BRANCH}^{{tree}}")


def conflicting_run(tmp_path: Path) -> dict[str, object]:
    """Two tasks change the same line at once: the second to finish meets a conflict."""
    plan = plan_of(
        tmp_path, {"one": ("shared.txt", "one's version"), "two": ("shared.txt", "two's version")}
    )
    done = orch("run", str(plan), "--run-id", RUN, *db_args(tmp_path))
    assert done.returncode == 3, done.stderr + done.stdout
    (bp,) = orch_json("breakpoints", "list", *db_args(tmp_path))["breakpoints"]
    return dict(bp)


def test_same_lines_raise_a_merge_conflict_showing_both_sides(tmp_path: Path, repo: Path) -> None:
    before = user_state(repo)
    listed = conflicting_run(tmp_path)
    assert listed["rule"] == "merge_conflict"
    loser = str(listed["task"])
    winner = {"one": "two", "two": "one"}[loser]
    with Store.open(db_args(tmp_path)[1]) as store:
        (bp,) = [b for b in store.breakpoints(RUN) if b.rule == "merge_conflict"]
    (conflict,) = bp.context["merge_conflicts"]
    assert conflict["path"] == "shared.txt"
    assert f"+{winner}'s version" in conflict["integration_diff"]
    assert f"+{loser}'s version" in conflict["task_diff"]
    assert "-shared.txt line one" in conflict["task_diff"]
    # The terminal review and the review page show both sides of the conflicting file.
    shown = orch("breakpoints", "show", str(bp.id), *db_args(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert f"{winner}'s version" in shown.stdout and f"{loser}'s version" in shown.stdout
    for client in make_client(db_args(tmp_path)[1]):
        login(client)
        page = client.get(f"/breakpoints/{bp.id}").text
        assert 'class="conflict-sides"' in page and "shared.txt" in page
        assert f"+{winner}&#39;s version" in page and f"+{loser}&#39;s version" in page
        # The step's own diff is read from the task's worktree, where its work waits.
        step_diff = page.split("<h3>Diff</h3>", 1)[1].split("<h3>Merge into", 1)[0]
        assert f"+{loser}&#39;s version" in step_diff
        assert f"{winner}&#39;s version" not in step_diff
    # The winner is merged; the loser's work waits in its worktree; the user saw nothing.
    assert git(repo, "show", f"{BRANCH}:shared.txt").startswith(f"{winner}'s version")
    with Store.open(db_args(tmp_path)[1]) as store:
        (branch,) = [e.data for e in store.events(RUN) if e.kind == "integration_branch"]
    assert branch["unmerged"] == [bp.context["merge_worktree"]]
    assert Path(bp.context["merge_worktree"], "shared.txt").read_text().startswith(loser)
    assert user_state(repo) == before


def test_approve_takes_the_resolution_made_in_the_worktree(tmp_path: Path, repo: Path) -> None:
    before = user_state(repo)
    conflicting_run(tmp_path)
    with Store.open(db_args(tmp_path)[1]) as store:
        (bp,) = store.breakpoints(RUN)
    Path(bp.context["merge_worktree"], "shared.txt").write_text("both versions\nline two\n")
    resolved = orch("breakpoints", "resolve", str(bp.id), "--approve", *db_args(tmp_path))
    assert resolved.returncode == 0, resolved.stderr
    resumed = orch("resume", RUN, *db_args(tmp_path))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert git(repo, "show", f"{BRANCH}:shared.txt") == "both versions\nline two\n"
    assert user_state(repo) == before


def test_retry_starts_the_task_again_from_the_merged_work(tmp_path: Path, repo: Path) -> None:
    listed = conflicting_run(tmp_path)
    loser = str(listed["task"])
    resolved = orch("breakpoints", "resolve", str(listed["id"]), "--retry", *db_args(tmp_path))
    assert resolved.returncode == 0, resolved.stderr
    resumed = orch("resume", RUN, *db_args(tmp_path))
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    # The retried attempt edited the merged file, so its version merges cleanly on top.
    assert git(repo, "show", f"{BRANCH}:shared.txt") == f"{loser}'s version\nline two\n"
    # Its commit sits on the winner's: the branch's history is the order work was accepted.
    winner = {"one": "two", "two": "one"}[loser]
    assert git(repo, "log", "--format=%s", BRANCH) == f"{loser}\n{winner}\nstart\n"
    tasks = {t["id"]: t for t in orch_json("status", RUN, *db_args(tmp_path))["tasks"]}
    assert tasks[loser]["state"] == "completed" and tasks[loser]["attempts"] == 2


# Passes on either task's work alone, fails once both are merged: a conflict no line shows.
BOTH_CHANGED = (
    "import pathlib, sys; a = pathlib.Path('a.txt').read_text(); "
    "b = pathlib.Path('b.txt').read_text(); "
    "sys.exit(1 if a.startswith('A') and b.startswith('B') else 0)"
)


def test_validate_after_merge_stops_a_merge_whose_result_fails(tmp_path: Path, repo: Path) -> None:
    before = user_state(repo)
    validator = {"name": "command", "run": [PY, "-c", BOTH_CHANGED], "stage": "testing"}
    plan = plan_of(
        tmp_path,
        {"one": ("a.txt", "A"), "two": ("b.txt", "B")},
        validate_after_merge=True,
        defaults={"validators": [validator]},
    )
    done = orch("run", str(plan), "--run-id", RUN, *db_args(tmp_path))
    assert done.returncode == 3, done.stderr + done.stdout
    with Store.open(db_args(tmp_path)[1]) as store:
        (bp,) = store.breakpoints(RUN)
    assert bp.rule == "merge_conflict" and bp.context["merge_conflicts"] == []
    assert "command" in bp.context["merge_check"]
    # The first task's work is merged, the second's is not: the branch passes its validator.
    first = {"one": "a.txt", "two": "b.txt"}[{"one": "two", "two": "one"}[bp.task_id]]
    second = {"a.txt": "b.txt", "b.txt": "a.txt"}[first]
    assert git(repo, "show", f"{BRANCH}:{first}")[0] in "AB"
    assert git(repo, "show", f"{BRANCH}:{second}").startswith(second)
    assert user_state(repo) == before


def test_worktree_isolation_outside_git_is_a_plan_error(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "no-git",
            "workdir": "plain",
            "isolation": "worktree",
            "tasks": [{"id": "a", "action": {"kind": "shell", "run": [PY, "-c", "pass"]}}],
        },
    )
    done = orch("run", str(plan), *db_args(tmp_path))
    assert done.returncode == 2
    assert "isolation" in done.stderr and str(plan) in done.stderr
    with Store.open(db_args(tmp_path)[1]) as store:
        assert store.list_runs() == []


def test_shared_isolation_edits_the_workdir_itself(tmp_path: Path, repo: Path) -> None:
    plan = plan_of(
        tmp_path, {"one": ("a.txt", "one here"), "two": ("b.txt", "two here")}, isolation="shared"
    )
    done = orch("run", str(plan), "--run-id", RUN, *db_args(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    assert (repo / "a.txt").read_text() == "one here\nline two\n"
    assert (repo / "b.txt").read_text() == "two here\nline two\n"
    assert "orchestration/" not in git(repo, "branch", "--list", "orchestration/*")


def test_a_workdir_below_the_repository_top_works_there_in_its_worktree(
    tmp_path: Path, repo: Path
) -> None:
    (repo / "sub").mkdir()
    (repo / "sub" / "keep.txt").write_text("kept\n")
    git(repo, "add", "sub/keep.txt")
    git(repo, "commit", "-qm", "sub")
    before = user_state(repo)
    write = (
        "import pathlib; pathlib.Path('made.txt').write_text(pathlib.Path('keep.txt').read_text())"
    )
    plan = write_plan(
        tmp_path / "plans",
        {
            "version": 1,
            "name": "below",
            "workdir": str(repo / "sub"),
            "isolation": "worktree",
            "defaults": {"validators": []},
            "tasks": [{"id": "a", "action": {"kind": "shell", "run": [PY, "-c", write]}}],
        },
    )
    done = orch("run", str(plan), "--run-id", RUN, *db_args(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    assert git(repo, "show", f"{BRANCH}:sub/made.txt") == "kept\n"
    assert git(repo, "show", f"{BRANCH}:a.txt") == "a.txt line one\nline two\n"
    assert not (repo / "sub" / "made.txt").exists()
    assert user_state(repo) == before
