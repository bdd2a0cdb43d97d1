"""Live output: each attempt's log is written as it comes, followed by `orch logs -f`, capped,
and removed by `orch prune` with its run."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, update

from orchestration import hookimpl
from orchestration.core.attempt_logs import AttemptLog, log_path, printable, read_from, tail_lines
from orchestration.engine.loop import Orchestrator, build_engine
from orchestration.engine.plan import load_plan
from orchestration.extension import ActionInput, ActionKind, ActionResult
from orchestration.pluginhost.hooks import load_plugins
from orchestration.store import Store
from orchestration.store.schema import Run
from tests.helpers import PY, orch, orch_in_background, orch_json, shell_task, write_plan

RUN_ID = "talk"
WAIT_S = 120.0  # how long a test waits for something to happen (a busy machine is slow)
TALK_THEN_WAIT = (
    "import os, sys, time\n"
    "for i in range(3): print(f'early line {i}', flush=True)\n"
    "print('\\x1b[31mred\\x1b[0m and a \\x1b]0;title\\x07title', file=sys.stderr, flush=True)\n"
    "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
    "print('late line', flush=True)\n"
)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def talking_plan(tmp_path: Path) -> tuple[Path, Path, str]:
    release = tmp_path / "release"
    task = shell_task("talk", TALK_THEN_WAIT)
    task["action"]["run"].append(str(release))
    plan = write_plan(tmp_path / "project", {"version": 1, "name": "talk", "tasks": [task]})
    return plan, release, f"sqlite:///{plan.parent / '.orchestration' / 'state.db'}"


def lines_of(stream: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read on a thread, so a test can wait for one with a deadline."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert stream.stdout is not None
        for line in stream.stdout:
            found.put(line)

    threading.Thread(target=read, daemon=True).start()
    return found


def next_line_with(found: queue.Queue[str], text: str) -> str:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            line = found.get(timeout=1)
        except queue.Empty:
            continue
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r}")


def test_orch_logs_follows_a_running_attempt_until_it_ends(tmp_path: Path) -> None:
    plan, release, db = talking_plan(tmp_path)
    engine = orch_in_background("run", str(plan), "--run-id", RUN_ID, "--db", db)
    path = log_path(plan, RUN_ID, "talk", 1)
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    follower = None
    try:
        wait_until(lambda: "early line 2" in read_from(path, 0)[0], "the first lines")
        follower = subprocess.Popen(
            [PY, "-m", "orchestration", "logs", RUN_ID, "talk", "-f", "--db", db],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen = lines_of(follower)
        next_line_with(seen, "early line 0")
        assert "red and a title" in next_line_with(seen, "red")  # control sequences removed
        with Store.open(db) as store:
            assert store.task(RUN_ID, "talk").state == "running"
        assert follower.poll() is None  # still following: the attempt goes on

        inspected = orch_json("task", "inspect", RUN_ID, "talk", "--db", db)["running"]
        assert inspected["attempt"] == 1 and inspected["log"] == str(path)
        assert "early line 1" in inspected["tail"]

        release.touch()
        next_line_with(seen, "late line")
        assert follower.wait(timeout=WAIT_S) == 0  # the attempt ended: so does the follower
    finally:
        release.touch()
        for process in (engine, follower):
            if process is not None:
                process.communicate(timeout=WAIT_S)
    assert engine.returncode == 0
    text, _ = read_from(path, 0)
    assert [line for line in text.splitlines() if "line" in line] == [
        "early line 0",
        "early line 1",
        "early line 2",
        "late line",
    ]
    printed = orch("logs", RUN_ID, "talk", "--db", db)
    assert printed.returncode == 0
    assert "\x1b" not in printed.stdout and "late line" in printed.stdout
    assert orch("logs", RUN_ID, "talk", "--attempt", "2", "--db", db).returncode == 2


def test_prune_removes_the_logs_with_their_run(tmp_path: Path) -> None:
    plan, release, db = talking_plan(tmp_path)
    release.touch()
    assert orch("run", str(plan), "--run-id", RUN_ID, "--db", db, "-q").returncode == 0
    logs = plan.parent / ".orchestration" / "logs" / RUN_ID
    assert (logs / "talk" / "1.log").is_file()
    engine = create_engine(db)
    with engine.begin() as conn:  # finished long ago
        old = datetime.now(UTC) - timedelta(days=60)
        conn.execute(update(Run).where(Run.c.id == RUN_ID).values(finished_at=old))
    engine.dispose()

    dry = orch_json("prune", "--older-than", "30d", "--dry-run", "--db", db)
    assert dry["logs_removed"] == [RUN_ID] and logs.is_dir()
    done = orch_json("prune", "--older-than", "30d", "--db", db)
    assert done["pruned"] == [RUN_ID] and done["logs_removed"] == [RUN_ID]
    assert not logs.exists()


def test_a_log_keeps_its_head_and_tail_within_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    lines = [f"line {i:05d}\n" for i in range(2_000)]  # 11 bytes each, 22,000 in all
    with AttemptLog(path, max_bytes=2_000, tail_bytes=500) as log:
        for line in lines:
            log.write(line)
        during = path.read_text()
        assert during.startswith("".join(lines)[:1_500])
        assert "log cap reached" in during and "line 01999" not in during
    text = path.read_text()
    head, rest = text[:1_500], text[1_500:]
    assert head == "".join(lines)[:1_500]
    assert rest.endswith("".join(lines)[-500:])
    assert f"{22_000 - 1_500 - 500:,} bytes of output left out" in rest
    assert len(text.encode()) <= 2_000 + 300  # the cap, plus two short notes


def test_no_output_no_file_and_tail_lines_are_printable(tmp_path: Path) -> None:
    silent = tmp_path / "silent" / "1.log"
    AttemptLog(silent).close()
    assert not silent.exists() and tail_lines(silent) == []
    noisy = tmp_path / "noisy.log"
    with AttemptLog(noisy) as log:
        log.write("a\r\nprogress 10%\rprogress 90%\n\x1b[2Jcleared\n")
    assert tail_lines(noisy, 2) == ["progress 90%", "cleared"]
    assert printable("\x1b[1mbold\x1b[0m\x07") == "bold"


class Narrator:
    """A plugin action kind that reports its progress on `output` while it works, and one that
    only returns its output."""

    def __init__(self) -> None:
        self.go_on = threading.Event()

    @hookimpl
    def register_actions(self) -> list[ActionKind]:
        def narrate(call: ActionInput) -> ActionResult:
            assert call.output is not None
            call.output.write('{"event": "thinking"}\n')
            self.go_on.wait(WAIT_S)
            call.output.write('{"event": "done"}\n')
            return ActionResult(True, "returned text, not written again")

        def quiet(call: ActionInput) -> ActionResult:
            return ActionResult(True, "only what it returns")

        return [ActionKind("narrate", narrate), ActionKind("quiet", quiet)]


def test_a_plugin_kind_writes_its_events_to_the_live_log(tmp_path: Path) -> None:
    kinds = Narrator()
    plugins = load_plugins(entry_points=False, extra=[kinds])
    plugins.muted.add("console")
    spec = {
        "version": 1,
        "name": "narrated",
        "tasks": [
            {"id": "n", "action": {"kind": "narrate"}},
            {"id": "q", "action": {"kind": "quiet"}},
        ],
    }
    plan = load_plan(write_plan(tmp_path, spec), action_kinds=plugins.action_kinds)
    narrated, quiet = log_path(plan.path, "r", "n", 1), log_path(plan.path, "r", "q", 1)
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        orchestrator = Orchestrator.start(
            plan, store, run_id="r", engine=build_engine(plan, plugins)
        )
        worker = threading.Thread(target=orchestrator.run_until_stopped)
        worker.start()
        try:
            wait_until(lambda: "thinking" in read_from(narrated, 0)[0], "the first event")
            assert store.task("r", "n").state == "running"
        finally:
            kinds.go_on.set()
            worker.join(WAIT_S)
        assert store.task("r", "n").state == "completed"
    assert read_from(narrated, 0)[0] == '{"event": "thinking"}\n{"event": "done"}\n'
    assert read_from(quiet, 0)[0] == "only what it returns"
