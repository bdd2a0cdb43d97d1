"""Step snapshots through a kept private index, on real git repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestration.project.workspace import (
    changes_between,
    discard_snapshot_index,
    snapshot,
    snapshot_index,
)


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


def user_state(repo: Path) -> tuple[str, str, str, str, bytes]:
    """Everything of the user's a snapshot must leave alone."""
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "diff", "--cached"),
        (repo / ".git" / "index").read_bytes(),
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    for name in ("a.py", "b.py", "gone.py"):
        (root / name).write_text(f"{name} = 1\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    # The user has work of their own: one change staged, one not, one untracked file.
    (root / "a.py").write_text("a = 2\n")
    git(root, "add", "a.py")
    (root / "b.py").write_text("b = 2\n")
    (root / "notes.txt").write_text("mine\n")
    return root


def test_kept_index_sees_each_change_and_leaves_the_user_alone(repo: Path) -> None:
    before_user = user_state(repo)
    index = snapshot_index(repo, "run-1")
    assert index is not None and index.parent == repo / ".git" / "orchestration"
    first = snapshot(repo, index=index)
    assert index.is_file()
    # Seeded from the user's index and brought to the work tree: the same tree a fresh one sees.
    assert first.tree == snapshot(repo).tree

    (repo / "b.py").write_text("b = 3\nmore = 1\n")
    (repo / "new.py").write_text("new = 1\n")
    (repo / "gone.py").unlink()
    second = snapshot(repo, index=index)
    changes = changes_between(repo, first, second)
    assert sorted(changes.files) == ["b.py", "gone.py", "new.py"]
    assert second.tree == snapshot(repo).tree

    unchanged = snapshot(repo, index=index)
    assert unchanged.tree == second.tree
    assert changes_between(repo, second, unchanged).files == ()
    # The step's edits show in `git status`, nothing else does: the user's index file is byte
    # for byte what it was, the staged change is still staged, HEAD and branch did not move.
    after_user = user_state(repo)
    assert " M a.py" not in after_user[2] and "M  a.py" in after_user[2]
    assert after_user[0] == before_user[0] and after_user[1] == before_user[1]
    assert after_user[3] == before_user[3] and after_user[4] == before_user[4]
    discard_snapshot_index(index)
    assert not index.exists()


def test_ignored_files_and_the_engine_folder_stay_out_of_the_kept_index(repo: Path) -> None:
    index = snapshot_index(repo, "run-2")
    first = snapshot(repo, frozenset({"state.db"}), index=index)
    (repo / "state.db").write_bytes(b"store")
    (repo / ".orchestration").mkdir()
    (repo / ".orchestration" / "log").write_text("engine\n")
    second = snapshot(repo, frozenset({"state.db"}), index=index)
    assert changes_between(repo, first, second).files == ()


def test_a_damaged_kept_index_is_started_again(repo: Path) -> None:
    index = snapshot_index(repo, "run-3")
    assert index is not None
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"not an index")
    assert snapshot(repo, index=index).tree == snapshot(repo).tree


def test_no_kept_index_outside_git(tmp_path: Path) -> None:
    assert snapshot_index(tmp_path, "run-4") is None


# ---- a file watch narrows a snapshot to what changed -----------------------------------------


@pytest.fixture
def watched_repo(tmp_path: Path):  # type: ignore[no-untyped-def]
    from orchestration.project.tree_watch import start_watch

    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    for number in range(20):
        (repo / "src" / f"m{number}.py").write_text(f"V = {number}\n")
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "start")
    index = snapshot_index(repo, "watched")
    assert index is not None
    watch = start_watch(repo, index.parent.parent)
    assert watch is not None
    yield repo, index, watch
    watch.stop()


def test_a_watched_snapshot_equals_a_full_one_after_every_kind_of_change(watched_repo) -> None:  # type: ignore[no-untyped-def]
    repo, index, watch = watched_repo
    state = user_state(repo)
    take = lambda: snapshot(repo, index=index, watch=watch).tree  # noqa: E731
    full = lambda: snapshot(repo).tree  # noqa: E731
    assert take() == full()  # the first look is a full one
    edits = [
        lambda: (repo / "src" / "m1.py").write_text("V = 'changed'\n"),
        lambda: (repo / "src" / "m2.py").unlink(),
        lambda: (repo / "src" / "new.py").write_text("NEW = 1\n"),
        lambda: (repo / "src" / "debug.log").write_text("ignored by .gitignore\n"),
        lambda: (repo / "src" / "m3.py").rename(repo / "src" / "m3_renamed.py"),
        lambda: (repo / "pkg").mkdir(),  # a new folder: the watch cannot vouch, a full look
        lambda: (repo / "pkg" / "inner.py").write_text("X = 1\n"),
    ]
    for edit in edits:
        edit()
        assert take() == full()
    assert take() == full()  # nothing changed since: the last tree, at no cost
    after = user_state(repo)  # the work tree's status changed by the edits, nothing else did
    assert (after[0], after[1], after[3], after[4]) == (state[0], state[1], state[3], state[4])


def test_an_unchanged_tree_costs_no_git_call_under_a_watch(watched_repo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import orchestration.project.workspace as workspace

    repo, index, watch = watched_repo
    first = snapshot(repo, index=index, watch=watch)
    calls: list[tuple[str, ...]] = []
    real = workspace._git
    monkeypatch.setattr(
        workspace, "_git", lambda *args, **kw: calls.append(args) or real(*args, **kw)
    )
    assert snapshot(repo, index=index, watch=watch) == first
    assert calls == []
    (repo / "src" / "m5.py").write_text("V = 'again'\n")
    changed = snapshot(repo, index=index, watch=watch)
    assert changed != first and changes_between(repo, first, changed).files == ("src/m5.py",)


def test_no_watch_when_the_git_folder_is_outside_the_workdir(tmp_path: Path) -> None:
    from orchestration.project.tree_watch import start_watch

    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q")
    assert start_watch(repo / "sub", repo / ".git") is None  # its sync marker would go unseen
