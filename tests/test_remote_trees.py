"""Work trees across machines: a worker in its own clone hands its work back as a commit, which
the conductor checks (parent = the offered base, no unreported file) and merges."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from orchestration.project.remote_trees import (
    WORK_REFS,
    RefusedWork,
    TreePublisher,
    attempt_ref,
    clone_wanted,
    take_work,
)
from orchestration.project.worktrees import RunWorktrees
from orchestration.store import Store
from tests.helpers import PY, orch, orch_json, write_plan

WAIT_LIMIT_S = 300
RUN = "r"
BRANCH = f"orchestration/{RUN}"


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    completed = subprocess.run(
        ["git", "-c", "user.name=User", "-c", "user.email=user@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        input=stdin,
    )
    return completed.stdout.strip()


def user_state(repo: Path) -> tuple[str, ...]:
    """The user's HEAD, branch, status, staged diff and files: never written by the run."""
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
        *((repo / name).read_text() for name in ("a.txt", "b.txt")),
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name in ("a.txt", "b.txt"):
        (root / name).write_text(f"{name} line one\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    (root / "a.txt").write_text("a.txt edited by the user, not committed\n")  # the user's work
    return root


@pytest.mark.parametrize("bare", [True, False], ids=["bare-repository", "workdir-repository"])
def test_workers_in_their_clones_hand_back_commits_that_merge(
    tmp_path: Path, repo: Path, bare: bool
) -> None:
    # The repository every worker reaches: a bare one, or the workdir's own.
    shared = tmp_path / "shared.git" if bare else repo
    if bare:
        git(tmp_path, "clone", "-q", "--bare", str(repo), str(shared))
    before = user_state(repo)
    tasks = [
        {"id": f"t{i}", "action": {"kind": "shell", "run": ["sh", "-c", f"echo {i} > f{i}.txt"]}}
        for i in (1, 2, 3)
    ]
    settings = {"executor": "workers", "max_workers": 3}
    settings.update({"repository": str(shared)} if bare else {})
    plan_dir = tmp_path / "plans"
    plan = {"version": 1, "name": "remote", "workdir": str(repo), "concurrency": settings}
    # The validator runs where the action did, and says where that was.
    where = tmp_path / "validated"
    check = f"ls f*.txt > /dev/null && pwd >> {where}"
    validator = {"name": "command", "run": ["sh", "-c", check], "stage": "testing"}
    plan_file = write_plan(
        plan_dir, {**plan, "defaults": {"validators": [validator]}, "tasks": tasks}
    )
    note = orch("validate", str(plan_file)).stdout
    assert "workers on other machines can clone it from" in note and str(shared) in note
    assert ("concurrency.repository" in note) is not bare

    url = f"sqlite:///{tmp_path / 'state.db'}"
    clones = tmp_path / "clones"
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [PY, "-m", "orchestration", "worker", "--db", url, "--name", "far"]
    argv += ["--workdir-mode", "clone", "--clones", str(clones), "-c", "2"]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        done = orch("submit", str(plan_file), "--db", url, "-q", "--run-id", RUN)
    finally:
        worker.terminate()
        worker.wait(timeout=WAIT_LIMIT_S)
    assert done.returncode == 0, done.stderr + (tmp_path / "worker.log").read_text()
    with Store.open(url) as store:
        assert {t.state for t in store.tasks(RUN)} == {"completed"}
        merged = {e.task_id: e.data["commit"] for e in store.events(RUN) if e.kind == "merged"}
    # Each task's work is the commit its worker pushed, on the integration branch.
    assert set(merged) == {"t1", "t2", "t3"}
    for i in (1, 2, 3):
        assert git(repo, "show", f"{BRANCH}:f{i}.txt") == str(i)
        pushed = git(shared, "rev-parse", attempt_ref(WORK_REFS, RUN, f"t{i}", 1))
        assert merged[f"t{i}"] == pushed
        git(repo, "merge-base", "--is-ancestor", pushed, BRANCH)
        assert git(repo, "log", "-1", "--format=%an|%cn", pushed) == (
            f"t{i} (attempt 1)|orchestration worker far"
        )
    ran = where.read_text().split()
    assert len(ran) == 3 and all(Path(line).is_relative_to(clones) for line in ran)
    # The worker ran in its clone: the user's branch, index and files are as they were, and
    # the worker's own worktrees are gone.
    assert user_state(repo) == before
    assert not (repo / "f1.txt").exists()
    (clone,) = clones.glob("*.git")
    assert git(clone, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_a_worker_sharing_the_git_workdir_works_in_a_task_worktree(
    tmp_path: Path, repo: Path
) -> None:
    before = user_state(repo)
    tasks = [{"id": "t1", "action": {"kind": "shell", "run": ["sh", "-c", "echo 1 > f1.txt"]}}]
    plan = {"version": 1, "name": "local", "workdir": str(repo), "tasks": tasks}
    plan_file = write_plan(tmp_path / "plans", {**plan, "concurrency": {"executor": "workers"}})
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [PY, "-m", "orchestration", "worker", "--db", url, "--clones", str(tmp_path / "c")]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=log)  # auto: the path is here
    try:
        done = orch("submit", str(plan_file), "--db", url, "-q", "--run-id", RUN)
    finally:
        worker.terminate()
        worker.wait(timeout=WAIT_LIMIT_S)
    assert done.returncode == 0, done.stderr + (tmp_path / "worker.log").read_text()
    assert git(repo, "show", f"{BRANCH}:f1.txt") == "1"
    assert user_state(repo) == before
    assert not (tmp_path / "c").exists()  # no clone was needed
    assert git(repo, "for-each-ref", "refs/orchestration/_base") == ""  # bases dropped


def test_a_worker_clones_when_the_workdir_is_not_on_its_machine(tmp_path: Path) -> None:
    assert clone_wanted("auto", tmp_path / "elsewhere")
    assert not clone_wanted("auto", tmp_path)
    assert clone_wanted("clone", tmp_path)
    assert not clone_wanted("shared", tmp_path / "elsewhere")


def _handed(repo: Path, parent: str, name: str) -> str:
    """A commit adding `name` on `parent`, as a worker would push it."""
    scratch = repo.parent / f"scratch-{name}"
    git(repo, "worktree", "add", "-q", "--detach", str(scratch), parent)
    (scratch / name).write_text("work\n")
    git(scratch, "add", name)
    git(scratch, "commit", "-qm", f"add {name}")
    commit = git(scratch, "rev-parse", "HEAD")
    git(repo, "worktree", "remove", "--force", str(scratch))
    return commit


def test_the_conductor_refuses_a_commit_not_on_the_offered_base(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    worktrees = RunWorktrees.open(repo, RUN)
    assert worktrees is not None
    offer = TreePublisher(worktrees, None).offer("t", 1)
    assert offer.base == first and offer.repository == str(repo)
    # Not on the base: its parent is another commit.
    elsewhere = _handed(repo, _handed(repo, first, "other.txt"), "x.txt")
    git(repo, "update-ref", offer.work_ref, elsewhere)
    with pytest.raises(RefusedWork, match="not the base"):
        take_work(worktrees, "t", offer, elsewhere, ["x.txt"])
    # The ref holds another commit than the one reported.
    good = _handed(repo, first, "x.txt")
    with pytest.raises(RefusedWork, match="not the reported"):
        take_work(worktrees, "t", offer, good, ["x.txt"])
    # A file the worker did not report as changed (its validators never saw it).
    git(repo, "update-ref", offer.work_ref, good)
    with pytest.raises(RefusedWork, match=r"did not report: x\.txt"):
        take_work(worktrees, "t", offer, good, [])
    assert not worktrees.has_worktree("t")
    # On the base and as reported: it becomes the task's worktree and merges as itself.
    take_work(worktrees, "t", offer, good, ["x.txt"])
    outcome = worktrees.merge("t", "task t")
    assert outcome.merged and outcome.task_commit == good
    assert git(repo, "rev-parse", BRANCH) == good
    assert (repo / "a.txt").read_text() == "a.txt edited by the user, not committed\n"


def test_validate_notes_where_workers_may_run(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    settings = {"executor": "workers"}
    plan = {"version": 1, "name": "w", "workdir": "work", "concurrency": settings}
    task = {"id": "a", "action": {"kind": "shell", "run": ["true"]}}
    plan_file = write_plan(tmp_path, {**plan, "tasks": [task]})
    shown = orch("validate", str(plan_file)).stdout
    assert "is not a git repository" in shown and "this machine only" in shown
    git(tmp_path / "work", "init", "-q")
    shown = orch("validate", str(plan_file)).stdout
    assert "workers on other machines can clone it" in shown
    assert "concurrency.repository" in shown
    assert orch_json("validate", str(plan_file))["workers"] == "any"


def _edit(repo: Path, parent: str, name: str, text: str) -> str:
    """A commit on `parent` setting `name` to `text`."""
    scratch = repo.parent / "scratch-edit"
    git(repo, "worktree", "add", "-q", "--detach", str(scratch), parent)
    (scratch / name).write_text(text)
    git(scratch, "commit", "-qam", f"edit {name}")
    commit = git(scratch, "rev-parse", "HEAD")
    git(repo, "worktree", "remove", "--force", str(scratch))
    return commit


def test_a_handed_commit_that_conflicts_is_checked_out_for_the_human(repo: Path) -> None:
    worktrees = RunWorktrees.open(repo, RUN)
    assert worktrees is not None
    publisher = TreePublisher(worktrees, None)
    first, second = publisher.offer("u", 1), publisher.offer("v", 1)
    assert first.base == second.base
    for offer, text in ((first, "u's b\n"), (second, "v's b\n")):
        commit = _edit(repo, offer.base, "b.txt", text)
        git(repo, "update-ref", offer.work_ref, commit)
        publisher.take(offer.work_ref.rsplit("/", 2)[1], offer, commit, ["b.txt"])
    # Nothing was checked out for either: both merge from their commits.
    assert worktrees.has_worktree("u") and not worktrees.path_of("u").exists()
    assert worktrees.merge("v", "task v").merged
    conflicted = worktrees.merge("u", "task u")
    assert not conflicted.merged and [c.path for c in conflicted.conflicts] == ["b.txt"]
    # The human resolves it in the task's worktree, made now, and approves.
    resolved = worktrees.path_of("u") / "b.txt"
    assert resolved.read_text() == "u's b\n"
    resolved.write_text("both\n")
    assert worktrees.merge("u", "task u", task_wins=True).merged
    assert git(repo, "show", f"{BRANCH}:b.txt") == "both"
    publisher.close()
    assert git(repo, "for-each-ref", "refs/orchestration/_base") == ""


def test_a_relative_repository_is_refused_naming_the_field(tmp_path: Path) -> None:
    settings = {"executor": "workers", "repository": "../shared.git"}
    task = {"id": "a", "action": {"kind": "shell", "run": ["true"]}}
    plan = {"version": 1, "name": "w", "workdir": ".", "concurrency": settings, "tasks": [task]}
    done = orch("validate", str(write_plan(tmp_path, plan)))
    assert done.returncode != 0
    shown = done.stdout + done.stderr
    assert "repository" in shown and "relative path '../shared.git'" in shown


def test_a_file_name_git_quotes_counts_as_reported(repo: Path) -> None:
    worktrees = RunWorktrees.open(repo, RUN)
    assert worktrees is not None
    offer = TreePublisher(worktrees, None).offer("t", 1)
    commit = _handed(repo, offer.base, "\u00e9t\u00e9.txt")
    git(repo, "update-ref", offer.work_ref, commit)
    # As the worker's snapshot reports it: git's diff output quotes the name.
    shown = (
        subprocess.run(
            ["git", "diff", "--numstat", offer.base, commit],
            cwd=repo,
            capture_output=True,
            text=True,
        )
        .stdout.split("\t")[-1]
        .strip()
    )
    assert shown.startswith('"')
    take_work(worktrees, "t", offer, commit, [shown])
    assert worktrees.merge("t", "task t").task_commit == commit


def test_a_workdir_below_the_top_works_there_in_the_workers_clone(
    tmp_path: Path, repo: Path
) -> None:
    sub = repo / "pkg"
    sub.mkdir()
    (sub / "keep.txt").write_text("kept\n")
    git(repo, "add", "pkg/keep.txt")
    git(repo, "commit", "-qm", "pkg")
    before = user_state(repo)
    task = {"id": "t", "action": {"kind": "shell", "run": ["sh", "-c", "echo é > été.txt"]}}
    plan = {"version": 1, "name": "sub", "workdir": str(sub), "tasks": [task]}
    plan_file = write_plan(tmp_path / "plans", {**plan, "concurrency": {"executor": "workers"}})
    url = f"sqlite:///{tmp_path / 'state.db'}"
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    argv = [PY, "-m", "orchestration", "worker", "--db", url, "--workdir-mode", "clone"]
    argv += ["--clones", str(tmp_path / "clones")]
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
    try:
        done = orch("submit", str(plan_file), "--db", url, "-q", "--run-id", RUN)
    finally:
        worker.terminate()
        worker.wait(timeout=WAIT_LIMIT_S)
    assert done.returncode == 0, done.stderr + (tmp_path / "worker.log").read_text()
    assert git(repo, "show", f"{BRANCH}:pkg/été.txt") == "é"
    assert git(repo, "show", f"{BRANCH}:pkg/keep.txt") == "kept"
    assert user_state(repo) == before
