"""Git checkpoints on real repositories: record, list, restore, undo, and the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestration.cli import checkpoints as cli_checkpoints
from orchestration.core.errors import NotFoundError, OrchestrationError
from orchestration.core.models import RunRecord
from orchestration.project import checkpoints
from orchestration.project.checkpoints import (
    MAX_REF_COMPONENT,
    CheckpointNotFound,
    GitError,
    create_checkpoint,
    is_git_worktree,
    last_checkpoint,
    list_checkpoints,
    ref_component,
    restore_checkpoint,
    run_refs,
)
from orchestration.store import Store

RUN = "demo-20240101-120000-abcd"
BINARY = bytes(range(256)) * 4
IGNORES = "*.log\nbuild/\n"


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config (so no user.name either), no inherited repository."""
    empty = tmp_path_factory.mktemp("gitconfig") / "config"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)


def git(repo: Path, *args: str) -> str:
    """Run git the way a user would (with an identity for the user's own commits)."""
    completed = subprocess.run(
        ["git", "-c", "user.name=User", "-c", "user.email=user@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def write(root: Path, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def files(root: Path) -> dict[str, bytes]:
    """Every file under root except .git, by relative path (symlinks as their target)."""
    found: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in names:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            found[relative] = (
                f"-> {os.readlink(path)}".encode() if path.is_symlink() else path.read_bytes()
            )
    return found


def user_state(repo: Path) -> dict[str, str]:
    """What a user sees of their repository, minus the checkpoint refs."""
    refs = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "branch": git(repo, "symbolic-ref", "HEAD"),
        "index": git(repo, "ls-files", "--stage"),
        "stash": git(repo, "stash", "list"),
        "refs": "\n".join(r for r in refs.splitlines() if "refs/orchestration/" not in r),
    }


def status(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch main: text, nested and binary files, ignores, one commit."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, ".gitignore", IGNORES)
    write(root, "a.txt", "alpha\n")
    write(root, "b.txt", "beta\n")
    write(root, "src/pkg/mod.py", "x = 1\n")
    write(root, "data.bin", BINARY)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def tree_files(repo: Path, sha: str) -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", sha).split())


# ---- recording ------------------------------------------------------------------------------


def test_checkpoint_records_tracked_and_untracked_but_not_ignored(repo: Path) -> None:
    write(repo, "a.txt", "alpha 2\n")
    (repo / "b.txt").unlink()
    write(repo, "new.txt", "new\n")
    write(repo, "src/pkg/deep/added.py", "y = 2\n")
    write(repo, "debug.log", "ignored\n")
    write(repo, "build/out.o", "ignored\n")
    write(repo, ".orchestration/state.db", "store\n")
    write(repo, "src/.orchestration/x", "nested store\n")
    write(repo, "store.sqlite", "excluded\n")

    checkpoint = create_checkpoint(
        repo, RUN, "t1", "did things", attempt=1, exclude={"store.sqlite"}
    )

    assert checkpoint is not None
    assert tree_files(repo, checkpoint.sha) == {
        ".gitignore",
        "a.txt",
        "data.bin",
        "new.txt",
        "src/pkg/mod.py",
        "src/pkg/deep/added.py",
    }
    assert git(repo, "show", f"{checkpoint.sha}:a.txt") == "alpha 2\n"
    assert checkpoint.ref == f"refs/orchestration/{RUN}/t1"
    assert git(repo, "rev-parse", checkpoint.ref).strip() == checkpoint.sha
    assert checkpoint.parent == git(repo, "rev-parse", "HEAD").strip() == checkpoint.head
    assert (checkpoint.files_changed, checkpoint.insertions, checkpoint.deletions) == (4, 3, 2)
    assert (checkpoint.message, checkpoint.attempt, checkpoint.sequence) == ("did things", 1, 1)
    author = git(repo, "log", "-1", "--format=%an <%ae>|%cn", checkpoint.sha)
    assert author.strip() == "orchestration <orchestration@localhost>|orchestration"


def test_users_head_branch_index_stash_and_status_untouched(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    write(repo, "stashed.txt", "stash me\n")
    git(repo, "add", "stashed.txt")
    git(repo, "stash", "-q")
    write(repo, "a.txt", "staged\n")
    git(repo, "add", "a.txt")
    write(repo, "a.txt", "staged, then edited\n")  # index differs from HEAD and from the file
    write(repo, "untracked.txt", "u\n")
    before, status_before = user_state(repo), status(repo)
    index_file = repo / ".git" / "index"
    index_bytes = index_file.read_bytes()

    first = create_checkpoint(repo, RUN, "t1")
    assert index_file.read_bytes() == index_bytes
    assert (user_state(repo), status(repo)) == (before, status_before)

    write(repo, "a.txt", "later\n")
    (repo / "untracked.txt").unlink()
    write(repo, "more.txt", "m\n")
    create_checkpoint(repo, RUN, "t2")
    index_bytes = index_file.read_bytes()
    list_checkpoints(repo, RUN)
    restore_checkpoint(repo, RUN, "t1")

    assert first is not None
    assert index_file.read_bytes() == index_bytes
    assert user_state(repo) == before
    assert status(repo) == status_before  # the restored files are plain working-tree changes
    assert (repo / "a.txt").read_text() == "staged, then edited\n"


def test_a_change_right_after_staging_is_recorded(repo: Path) -> None:
    # Same size and, often, the same mtime as when staged: git's racy-entry check must still
    # see the change through the private copy of the index (which keeps the index's mtime).
    for round_ in range(5):
        write(repo, "a.txt", f"aaa{round_}\n")
        git(repo, "add", "a.txt")
        write(repo, "a.txt", f"bbb{round_}\n")
        checkpoint = create_checkpoint(repo, RUN, f"t{round_}")
        assert checkpoint is not None
        assert git(repo, "show", f"{checkpoint.sha}:a.txt") == f"bbb{round_}\n"


def test_checkpoints_chain_in_creation_order_with_stats(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    write(repo, "a.txt", "alpha\nmore\n")
    one = create_checkpoint(repo, RUN, "one")
    write(repo, "c.txt", "1\n2\n3\n")
    (repo / "b.txt").unlink()
    two = create_checkpoint(repo, RUN, "two", "second")
    three = create_checkpoint(repo, RUN, "three")  # nothing changed: still a checkpoint

    listed = list_checkpoints(repo, RUN)

    assert one is not None and two is not None and three is not None
    assert [c.task_id for c in listed] == ["one", "two", "three"]
    assert [c.sequence for c in listed] == [1, 2, 3]
    assert [c.parent for c in listed] == [head, one.sha, two.sha]
    assert [(c.files_changed, c.insertions, c.deletions) for c in listed] == [
        (1, 1, 0),
        (2, 3, 1),
        (0, 0, 0),
    ]
    assert listed[1].message == "second" and listed[2].message == "checkpoint three"
    assert listed == [one, two, three]


def test_a_retried_task_moves_its_ref_and_keeps_the_earlier_attempt_as_ancestor(
    repo: Path,
) -> None:
    write(repo, "a.txt", "attempt 1\n")
    first = create_checkpoint(repo, RUN, "t1", attempt=1)
    write(repo, "a.txt", "attempt 2\n")
    second = create_checkpoint(repo, RUN, "t1", attempt=2)

    listed = list_checkpoints(repo, RUN)

    assert first is not None and second is not None
    assert [(c.task_id, c.attempt, c.sha) for c in listed] == [("t1", 2, second.sha)]
    assert second.parent == first.sha


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    write(tmp_path, "first.txt", "1\n")

    one = create_checkpoint(tmp_path, RUN, "t1")
    write(tmp_path, "second.txt", "2\n")
    two = create_checkpoint(tmp_path, RUN, "t2")
    result = restore_checkpoint(tmp_path, RUN, "t1")

    assert one is not None and two is not None
    assert (one.parent, one.head, one.files_changed) == (None, None, 1)
    assert two.parent == one.sha
    assert result.removed == ("second.txt",)
    assert files(tmp_path) == {"first.txt": b"1\n"}
    assert git(tmp_path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert subprocess.run(["git", "rev-parse", "-q", "--verify", "HEAD"], cwd=tmp_path).returncode
    assert git(tmp_path, "ls-files", "--stage") == ""


def test_works_without_identity_and_with_signing_configured(repo: Path) -> None:
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "false")  # signing would fail; checkpoints never sign
    write(repo, "a.txt", "changed\n")

    checkpoint = create_checkpoint(repo, RUN, "t1")

    assert checkpoint is not None and checkpoint.files_changed == 1


def test_not_a_git_workdir(tmp_path: Path) -> None:
    write(tmp_path, "file.txt", "x\n")

    assert not is_git_worktree(tmp_path)
    assert not is_git_worktree(tmp_path / "missing")
    assert create_checkpoint(tmp_path, RUN, "t1") is None
    assert list_checkpoints(tmp_path, RUN) == []
    assert last_checkpoint(tmp_path, RUN) is None
    with pytest.raises(OrchestrationError, match="not inside a git work tree"):
        restore_checkpoint(tmp_path, RUN, "t1")


# ---- restoring ------------------------------------------------------------------------------


def test_restore_round_trip_modified_added_deleted_untracked_nested_binary(repo: Path) -> None:
    write(repo, "a.txt", "alpha at t1\n")
    (repo / "b.txt").unlink()
    write(repo, "untracked.txt", "u\n")
    write(repo, "src/pkg/deep/added.py", "y = 2\n")
    write(repo, "data.bin", BINARY[::-1])
    write(repo, "debug.log", "log at t1\n")
    create_checkpoint(repo, RUN, "t1")
    at_t1 = files(repo)

    write(repo, "a.txt", "alpha later\n")
    write(repo, "b.txt", "beta is back\n")
    (repo / "untracked.txt").unlink()
    (repo / "src/pkg/deep/added.py").unlink()
    write(repo, "src/pkg/deep/other.py", "z\n")
    write(repo, "new/nested/dir/file.txt", "new\n")
    write(repo, "data.bin", b"\x00\xff" * 50)
    write(repo, "debug.log", "log later\n")
    write(repo, "build/out.o", "object\n")
    write(repo, ".orchestration/state.db", "store\n")
    create_checkpoint(repo, RUN, "t2")

    result = restore_checkpoint(repo, RUN, "t1")

    after = files(repo)
    kept = {"debug.log", "build/out.o", ".orchestration/state.db"}
    assert {k: v for k, v in after.items() if k not in kept} == {
        k: v for k, v in at_t1.items() if k != "debug.log"
    }
    assert after["debug.log"] == b"log later\n"  # ignored files are never touched
    assert after["build/out.o"] == b"object\n"
    assert after[".orchestration/state.db"] == b"store\n"
    assert not (repo / "new").exists()  # folders emptied by the rollback go too
    assert sorted(result.restored) == [
        "a.txt",
        "data.bin",
        "src/pkg/deep/added.py",
        "untracked.txt",
    ]
    assert sorted(result.removed) == ["b.txt", "new/nested/dir/file.txt", "src/pkg/deep/other.py"]
    assert result.checkpoint.task_id == "t1"


def test_rollback_saves_a_safety_checkpoint_that_undoes_it(repo: Path) -> None:
    write(repo, "a.txt", "t1\n")
    create_checkpoint(repo, RUN, "t1")
    write(repo, "a.txt", "work not checkpointed\n")
    write(repo, "fresh.txt", "fresh\n")
    before = files(repo)

    first = restore_checkpoint(repo, RUN, "t1")
    assert (repo / "a.txt").read_text() == "t1\n" and not (repo / "fresh.txt").exists()
    undo = restore_checkpoint(repo, RUN, first.safety.task_id)

    assert first.safety.task_id == "_before_rollback_1"
    assert first.safety.kind == "safety"
    assert first.safety.ref == f"refs/orchestration/{RUN}/_before_rollback_1"
    assert undo.safety.task_id == "_before_rollback_2"
    assert files(repo) == before
    kinds = [(c.task_id, c.kind) for c in list_checkpoints(repo, RUN)]
    assert kinds == [
        ("t1", "task"),
        ("_before_rollback_1", "safety"),
        ("_before_rollback_2", "safety"),
    ]


def test_checkpoint_after_rollback_diffs_against_the_restored_one(repo: Path) -> None:
    write(repo, "a.txt", "t1\n")
    one = create_checkpoint(repo, RUN, "t1")
    write(repo, "a.txt", "t2\n")
    create_checkpoint(repo, RUN, "t2")
    restore_checkpoint(repo, RUN, "t1")
    write(repo, "c.txt", "c\n")

    three = create_checkpoint(repo, RUN, "t3")

    assert one is not None and three is not None
    assert three.parent == one.sha
    assert three.files_changed == 1 and three.sequence == 4  # after t1, t2 and the safety one


def test_restore_file_and_folder_swaps_symlinks_and_modes(repo: Path) -> None:
    write(repo, "swap", "a file\n")
    write(repo, "tool.sh", "#!/bin/sh\n")
    (repo / "tool.sh").chmod(0o755)
    (repo / "link").symlink_to("a.txt")
    create_checkpoint(repo, RUN, "t1")

    (repo / "swap").unlink()
    write(repo, "swap/inner.txt", "now a folder\n")
    (repo / "tool.sh").chmod(0o644)
    (repo / "link").unlink()
    (repo / "link").symlink_to("b.txt")
    (repo / "src/pkg/mod.py").unlink()
    (repo / "src/pkg").rmdir()
    write(repo, "src/pkg", "a file where a folder was\n")

    restore_checkpoint(repo, RUN, "t1")

    assert (repo / "swap").read_text() == "a file\n"
    assert os.access(repo / "tool.sh", os.X_OK)
    assert os.readlink(repo / "link") == "a.txt"
    assert (repo / "src/pkg/mod.py").read_text() == "x = 1\n"


def test_subdirectory_workdir_only_restores_inside_it(repo: Path) -> None:
    workdir = repo / "src"
    write(workdir, "pkg/mod.py", "x = 2\n")
    write(workdir, "extra.py", "e\n")
    checkpoint = create_checkpoint(workdir, RUN, "t1")
    write(workdir, "pkg/mod.py", "x = 3\n")
    write(workdir, "later.py", "l\n")
    write(repo, "a.txt", "outside, changed after the checkpoint\n")
    write(repo, "outside-new.txt", "outside, new\n")

    result = restore_checkpoint(workdir, RUN, "t1")

    assert checkpoint is not None
    assert "src/extra.py" in tree_files(repo, checkpoint.sha)
    assert result.restored == ("pkg/mod.py",) and result.removed == ("later.py",)
    assert (workdir / "pkg/mod.py").read_text() == "x = 2\n"
    assert (repo / "a.txt").read_text() == "outside, changed after the checkpoint\n"
    assert (repo / "outside-new.txt").exists()


def test_unknown_checkpoint_names_the_existing_ones(repo: Path) -> None:
    create_checkpoint(repo, RUN, "build")
    create_checkpoint(repo, RUN, "test")

    with pytest.raises(CheckpointNotFound) as caught:
        restore_checkpoint(repo, RUN, "deploy")

    assert isinstance(caught.value, NotFoundError)
    assert caught.value.available == ["build", "test"]
    assert "checkpoints: build, test" in str(caught.value)


# ---- names, helpers, errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier",
    [
        "a..b",
        "x.lock",
        "trailing.",
        ".hidden",
        "_internal",
        "my plan 2024/01",
        "über-task",
        "a@{b}",
        "c:~^?*[\\",
        "100%",
        "z" * 300,
        "ü" * 150,
    ],
)
def test_unsafe_ids_make_valid_refs_and_round_trip(repo: Path, identifier: str) -> None:
    component = ref_component(identifier)
    assert len(component) <= MAX_REF_COMPONENT and not component.startswith("_")
    check = subprocess.run(["git", "check-ref-format", f"refs/x/{component}/y"], cwd=repo)
    assert check.returncode == 0, component

    write(repo, "a.txt", f"{identifier}\n")
    checkpoint = create_checkpoint(repo, identifier, identifier, attempt=3)
    write(repo, "a.txt", "later\n")
    restore_checkpoint(repo, identifier, identifier)

    assert checkpoint is not None
    assert checkpoint.ref == run_refs(identifier) + component
    listed = list_checkpoints(repo, identifier)
    assert [(c.run_id, c.task_id) for c in listed if c.kind == "task"] == [(identifier, identifier)]
    assert (repo / "a.txt").read_text() == f"{identifier}\n"


def test_ref_components_are_distinct_and_plain_ids_stay_readable() -> None:
    ids = ["a.b", "a%2Eb", "a..b", "a._b", "_a", "%5Fa", "x.lock", "x%2Elock", "build-1.2_rc"]
    assert len({ref_component(i) for i in ids}) == len(ids)
    assert ref_component("build-1.2_rc") == "build-1.2_rc"


def test_ids_with_control_characters_are_refused(repo: Path) -> None:
    with pytest.raises(OrchestrationError, match="cannot name a checkpoint"):
        create_checkpoint(repo, RUN, "bad\nid")
    with pytest.raises(OrchestrationError, match="cannot name a checkpoint"):
        create_checkpoint(repo, "run\x00", "t1")


def test_last_checkpoint_of_approved_tasks(repo: Path) -> None:
    for task in ("t1", "t2", "t3"):
        write(repo, "a.txt", f"{task}\n")
        create_checkpoint(repo, RUN, task)
    restore_checkpoint(repo, RUN, "t3")  # adds a safety checkpoint, never a rollback target

    latest = last_checkpoint(repo, RUN)
    approved = last_checkpoint(repo, RUN, approved_only={"t1", "t2"})

    assert latest is not None and latest.task_id == "t3"
    assert approved is not None and approved.task_id == "t2"
    assert last_checkpoint(repo, RUN, approved_only=set()) is None
    assert last_checkpoint(repo, "other-run") is None


def test_git_failure_names_the_command_and_what_git_said(repo: Path) -> None:
    create_checkpoint(repo, RUN, "t1")
    lock = repo / ".git" / "refs" / "orchestration" / RUN / "_tip.lock"
    lock.write_text("")  # another git process holds the run's tip

    with pytest.raises(GitError) as caught:
        create_checkpoint(repo, RUN, "t2")

    assert caught.value.command[:2] == ["update-ref", "--stdin"]
    assert "git update-ref --stdin" in str(caught.value)
    assert "lock" in caught.value.stderr
    assert [c.task_id for c in list_checkpoints(repo, RUN)] == ["t1"]  # nothing half-done


def test_many_files(repo: Path) -> None:
    for i in range(2000):
        write(repo, f"many/d{i % 40}/f{i}.txt", f"{i}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "many")
    write(repo, "many/d0/f0.txt", "changed\n")
    create_checkpoint(repo, RUN, "t1")
    for i in range(0, 2000, 100):
        write(repo, f"many/d{i % 40}/f{i}.txt", "later\n")
    write(repo, "many/new.txt", "n\n")

    result = restore_checkpoint(repo, RUN, "t1")

    assert len(result.restored) == 20 and result.removed == ("many/new.txt",)
    assert (repo / "many/d0/f0.txt").read_text() == "changed\n"


# ---- the CLI commands -----------------------------------------------------------------------


def cli_app() -> typer.Typer:
    app = typer.Typer()
    cli_checkpoints.register(app)
    return app


def test_cli_lists_checkpoints_as_json_and_table(repo: Path) -> None:
    write(repo, "a.txt", "t1\n")
    create_checkpoint(repo, RUN, "t1", "first step", attempt=1)
    runner = CliRunner()

    as_json = runner.invoke(cli_app(), ["checkpoints", RUN, "--workdir", str(repo), "--json"])
    table = runner.invoke(
        cli_app(), ["checkpoints", RUN, "--workdir", str(repo)], env={"COLUMNS": "200"}
    )
    empty = runner.invoke(cli_app(), ["checkpoints", "nothing-here", "--workdir", str(repo)])

    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["run"] == RUN and data["workdir"] == str(repo)
    [entry] = data["checkpoints"]
    assert entry["task"] == "t1" and entry["attempt"] == 1 and entry["files_changed"] == 1
    assert entry["message"] == "first step" and entry["kind"] == "task"
    assert table.exit_code == 0 and "t1" in table.stdout and "first step" in table.stdout
    assert empty.exit_code == 0 and "no checkpoints of run nothing-here" in empty.stdout


def test_cli_rollback_without_a_terminal_needs_yes_then_restores_and_tells_how_to_undo(
    repo: Path,
) -> None:
    write(repo, "a.txt", "t1\n")
    create_checkpoint(repo, RUN, "t1")
    write(repo, "a.txt", "later\n")
    runner = CliRunner()
    args = ["rollback", RUN, "--to", "t1", "--workdir", str(repo)]

    # No terminal to ask on (the runner's stdin is no tty): it says what it would do and stops.
    refused = runner.invoke(cli_app(), args, input="y\n")
    assert isinstance(refused.exception, OrchestrationError)
    assert "pass --yes" in str(refused.exception) and "checkpoint 't1'" in str(refused.exception)
    assert (repo / "a.txt").read_text() == "later\n"
    accepted = runner.invoke(cli_app(), [*args, "--yes"])
    assert accepted.exit_code == 0, accepted.output
    assert (repo / "a.txt").read_text() == "t1\n"
    assert "written 1: a.txt" in accepted.stdout
    assert f"orch rollback {RUN} --to _before_rollback_1" in accepted.stdout
    undone = runner.invoke(
        cli_app(), ["rollback", RUN, "--to", "_before_rollback_1", "--workdir", str(repo), "--yes"]
    )
    assert undone.exit_code == 0 and (repo / "a.txt").read_text() == "later\n"


def test_cli_errors_unknown_task_and_not_git(repo: Path, tmp_path: Path) -> None:
    create_checkpoint(repo, RUN, "t1")
    runner = CliRunner()

    unknown = runner.invoke(
        cli_app(), ["rollback", RUN, "--to", "nope", "--workdir", str(repo), "--yes"]
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    not_git = runner.invoke(cli_app(), ["checkpoints", RUN, "--workdir", str(plain)])

    assert isinstance(unknown.exception, CheckpointNotFound)
    assert "checkpoints: t1" in str(unknown.exception)
    assert isinstance(not_git.exception, OrchestrationError)
    assert "not inside a git work tree" in str(not_git.exception)


def store_with_run(tmp_path: Path, workdir: Path, *, state: str, age: timedelta) -> str:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    now = datetime.now(UTC) - age
    run = RunRecord(RUN, "demo", "/p/plan.yaml", str(workdir), state, now, now)
    with Store.open(url) as store:
        store.create_run(run, [])
    return url


def test_cli_finds_the_workdir_of_a_stored_run(repo: Path, tmp_path: Path) -> None:
    url = store_with_run(tmp_path, repo, state="paused", age=timedelta(hours=1))
    write(repo, "a.txt", "t1\n")
    create_checkpoint(repo, RUN, "t1")
    write(repo, "a.txt", "later\n")
    runner = CliRunner()

    listed = runner.invoke(cli_app(), ["checkpoints", RUN, "--db", url, "--json"])
    rolled = runner.invoke(cli_app(), ["rollback", RUN, "--to", "t1", "--db", url, "--yes"])
    unknown = runner.invoke(cli_app(), ["checkpoints", "no-such-run", "--db", url])

    assert listed.exit_code == 0, listed.output
    assert [c["task"] for c in json.loads(listed.stdout)["checkpoints"]] == ["t1"]
    assert rolled.exit_code == 0 and (repo / "a.txt").read_text() == "t1\n"
    assert isinstance(unknown.exception, NotFoundError)
    assert "run 'no-such-run' not found" in str(unknown.exception)


def test_cli_refuses_to_roll_back_a_run_an_engine_works_on(repo: Path, tmp_path: Path) -> None:
    url = store_with_run(tmp_path, repo, state="running", age=timedelta(seconds=0))
    create_checkpoint(repo, RUN, "t1")

    result = CliRunner().invoke(cli_app(), ["rollback", RUN, "--to", "t1", "--db", url, "--yes"])

    assert isinstance(result.exception, OrchestrationError)
    assert "being worked on by an engine" in str(result.exception)


def test_a_rollback_stopped_half_way_names_the_safety_checkpoint(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_checkpoint(repo, RUN, "t1")
    write(repo, "a.txt", "later\n")

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch, pytest.raises(OrchestrationError) as caught:
        patch.setattr(checkpoints, "_write_files", disk_full)
        restore_checkpoint(repo, RUN, "t1")
    assert "stopped half-way" in str(caught.value)
    assert "saved as checkpoint '_before_rollback_1'" in str(caught.value)
    restore_checkpoint(repo, RUN, "_before_rollback_1")

    assert (repo / "a.txt").read_text() == "later\n"


def test_a_checkpoint_takes_a_handful_of_git_calls(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_run = subprocess.run

    def counting_run(args: list[str], **kwargs: object) -> object:
        if args[1] != "config":  # safe_git's look-up of driver settings before each call
            calls.append(args[2])  # after --no-pager
        return real_run(args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(checkpoints.subprocess, "run", counting_run)
    create_checkpoint(repo, RUN, "t1")
    created = len(calls)
    calls.clear()
    list_checkpoints(repo, RUN)

    assert created <= 8
    assert calls == ["rev-parse", "for-each-ref", "log"]
