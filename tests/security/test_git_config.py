"""A repository's own git config, attributes and hooks run nothing when the engine uses git.

The work tree, `.git/config` and `.git/hooks` included, is the agent's to write. Here every
program git could be told to run from there writes a marker file; a run with snapshots and
checkpoints, the review API's diff and a rollback must leave no marker.
"""

from __future__ import annotations

import json
import stat
import subprocess
import warnings
from pathlib import Path

from orchestration.core.safe_git import run_git
from orchestration.store import Store
from orchestration.web.app import create_app
from orchestration.web.config import ServerConfig
from tests.helpers import orch, shell_task, write_plan

with warnings.catch_warnings():
    # Starlette asks for httpx2 behind its TestClient; httpx still works the same
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

TOKEN = "test-token-0123456789abcdefghij"
REVIEW_RULES = (
    "breakpoints:\n"
    "  - name: look_at_it\n"
    "    at: after\n"
    "    when: \"'review-me' in tags\"\n"
    "    priority: 99\n"
    "    action: pause\n"
    "    message: review {task_id}\n"
)
HOOKS = (
    "post-checkout",
    "pre-commit",
    "post-index-change",
    "reference-transaction",
    "post-commit",
)


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def script(path: Path, marker: Path, then: str = "") -> str:
    path.write_text(f"#!/bin/sh\ntouch '{marker}'\n{then}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def booby_trapped_repository(work: Path, markers: Path, bin_dir: Path) -> None:
    """A committed repository, then every program slot git offers, each leaving a marker."""
    work.mkdir()
    (work / "notes.txt").write_text("first\n")
    git(work, "init", "-q")
    git(work, "add", "-A")
    git(work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    bin_dir.mkdir()
    markers.mkdir()
    config = {
        "core.fsmonitor": script(bin_dir / "fsmonitor", markers / "fsmonitor", "exit 1"),
        "diff.external": script(bin_dir / "external", markers / "diff.external"),
        "diff.evil.textconv": script(bin_dir / "textconv", markers / "textconv", 'cat "$1"'),
        "filter.evil.clean": script(bin_dir / "clean", markers / "filter.clean", "cat"),
        "filter.evil.smudge": script(bin_dir / "smudge", markers / "filter.smudge", "cat"),
        "filter.evil.required": "true",
        "commit.gpgSign": "true",
        "gpg.program": script(bin_dir / "gpg", markers / "gpg", "exit 1"),
    }
    for key, value in config.items():
        git(work, "config", key, value)
    (work / ".git" / "info").mkdir(exist_ok=True)
    (work / ".git" / "info" / "attributes").write_text("*.txt diff=evil filter=evil\n")
    hooks = work / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in HOOKS:
        script(hooks / hook, markers / f"hook.{hook}")


def test_snapshots_checkpoints_review_diff_and_rollback_run_no_repository_program(
    tmp_path: Path,
) -> None:
    work, markers = tmp_path / "work", tmp_path / "markers"
    booby_trapped_repository(work, markers, tmp_path / "bin")
    (tmp_path / "review.yaml").write_text(REVIEW_RULES)
    append = "open('notes.txt', 'a').write({!r})"
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "trapped",
            "workdir": "work",
            "rules": ["review.yaml"],
            "defaults": {"validators": ["diff_size"]},
            "tasks": [
                shell_task("one", append.format("second\n")),
                shell_task("two", append.format("third\n"), depends_on=["one"], tags=["review-me"]),
            ],
        },
    )
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    ran = orch("run", str(plan), "--run-id", "trap-1", "--db", db_url, "--quiet")
    assert ran.returncode == 3, ran.stderr  # paused after `two` for review

    listed = orch("checkpoints", "trap-1", "--workdir", str(work), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [c["task"] for c in json.loads(listed.stdout)["checkpoints"]] == ["one"]

    with Store.open(db_url) as store:
        app = create_app(ServerConfig(db_url=db_url, token=TOKEN), store=store)
        with TestClient(app, follow_redirects=False) as client:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            (bp,) = client.get("/api/v1/breakpoints", headers=auth).json()["breakpoints"]
            review = client.get(f"/api/v1/breakpoints/{bp['id']}?diff=true", headers=auth).json()
    assert "+third" in review["diff"]["text"]  # the real diff, not a textconv's version

    rolled = orch("rollback", "trap-1", "--to", "one", "--workdir", str(work), "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert (work / "notes.txt").read_text() == "first\nsecond\n"

    assert sorted(p.name for p in markers.iterdir()) == []


def test_a_driver_name_with_an_equals_sign_is_still_emptied(tmp_path: Path) -> None:
    """`-c key=value` would split `filter.a=b.clean` at the `=`; the override must not."""
    work, markers = tmp_path / "work", tmp_path / "markers"
    work.mkdir()
    markers.mkdir()
    git(work, "init", "-q")
    clean = script(tmp_path / "clean", markers / "odd-driver", "cat")
    git(work, "config", "filter.a=b.clean", clean)
    (work / ".gitattributes").write_text("*.txt filter=a=b\n")
    (work / "x.txt").write_text("x\n")
    added = run_git(work, "add", "-A")
    assert added.returncode == 0, added.stderr
    assert list(markers.iterdir()) == []
