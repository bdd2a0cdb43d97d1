"""Crash recovery, proven: `orch run` killed with SIGKILL again and again, `orch resume` each time.

The plan's actions are real subprocesses that append `<task id> <attempt>` to a log (one O_APPEND
write per line), sleep a little, so most kills land while actions run, and append
`<task id> <attempt> end` when done. The engine alone is killed, never its actions: they outlive it
as orphans, as they would after `kill -9` of the engine. An action that finds itself orphaned
works on for half a minute, as a long agent call would, so the next `orch resume` must end it
before it retries the task; an orphan left alive would write its `end` line after its retry began.

The kill moments are counted from when the engine has taken the run (the store names its process),
not from the start of its process: on a busy machine `orch` needs seconds to start, and kills timed
from the process start would all land before it has done anything. A few kills still land at a
random moment of the start-up; one that comes before `orch run` stored the run leaves nothing, and
the next engine is started with `orch run` again. Every resume is a plain `orch resume`: a killed
engine on this host is noticed at once, so no `--force` is needed.

After each kill the store is frozen (no engine writes to it), so a snapshot taken then is exactly
what the dead engine had committed. At the end the store and the log are checked against every
snapshot. Set ORCH_CRASH_SEED to replay the kill times of a failing run (the seed is in the message).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestration.core.errors import NotFoundError
from orchestration.resilience.runs import run_is_live
from orchestration.store import Store
from tests.helpers import PY, is_legal_path, write_plan

SEED_ENV = "ORCH_CRASH_SEED"
RUN_ID = "crash"
LAYER_WIDTH = 20  # tasks per layer; each task depends on one or two of the layer before
WORKERS = 4
SLEEP_RANGE_S = (0.05, 0.15)  # what an action sleeps after writing its line
ORPHAN_WORK_S = 30.0  # how long an orphaned action works on: longer than any resume takes to start
# An engine is killed at a random moment, of one of three kinds (in a random order, in fixed
# proportions, so that every run has each kind whatever the machine's speed):
# - START_UP: a random time after its process started, whatever it does then (mostly starting up;
#   a kill before `orch run` stored the run leaves nothing).
# - TAKEN: a random time after it has taken the run (`orch run` stored it, `orch resume` recorded
#   itself on it, just before its recovery): during recovery, or while attempts run and end.
# - ATTEMPTS: once it has started a random number of new attempts: just after an attempt began.
# Every kill also comes once a random number of new attempts have started, at most 1.5 times a
# fair share of the tasks left, which keeps the run from finishing before its last kill.
START_UP, TAKEN, ATTEMPTS = "start-up", "taken", "attempts"
KILL_IN_START_UP_S = (0.0, 1.0)
KILL_AFTER_TAKEN_S = (0.0, 1.5)
TAKE_TIMEOUT_S = 120.0  # an engine that has neither taken the run nor worked by then is broken
FAIR_SHARE_FACTOR = 1.5
POLL_S = 0.005  # how often the log is read while waiting for the moment to kill
FINAL_TIMEOUT_S = 120.0  # the last resume, which runs the rest of the plan to the end
RECORD_ATTEMPT = (
    "import os, sys, time\n"
    "engine = os.getppid()\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "line = f\"{os.environ['ORCH_TASK_ID']} {os.environ['ORCH_ATTEMPT']}\"\n"
    "os.write(fd, f'{line}\\n'.encode())  # one write per line: concurrent lines never mix\n"
    "time.sleep(float(sys.argv[2]))\n"
    "if os.getppid() != engine:  # orphaned: the engine was killed\n"
    f"    time.sleep({ORPHAN_WORK_S})\n"
    "os.write(fd, f'{line} end\\n'.encode())\n"
)


@dataclass(frozen=True)
class Snapshot:
    """What the store held when an engine had just been killed, and how long the log was then."""

    kill: int
    command: str  # run | resume
    seconds: float  # how long the engine had been running
    kind: str  # START_UP, TAKEN or ATTEMPTS
    taken_after: float | None  # when it had taken the run (None: killed before)
    new_attempts: int  # how many attempts it had started (lines in the log)
    states: dict[str, tuple[str, int]]  # task id -> (state, attempts); empty if no run stored
    log_lines: int

    def with_state(self, state: str) -> dict[str, int]:
        return {t: attempts for t, (s, attempts) in self.states.items() if s == state}


@dataclass
class Crashes:
    """The whole scenario: every snapshot, the log, and what the store holds at the end."""

    seed: int
    snapshots: list[Snapshot] = field(default_factory=list)
    log: list[Entry] = field(default_factory=list)  # in the order the lines were written

    def cut(self, index: int) -> set[tuple[str, int]]:
        """Attempts under way at kill `index` that the killed engine itself had started."""
        before = self.snapshots[index - 1].with_state("running") if index else {}
        now = self.snapshots[index].with_state("running")
        return {(t, a) for t, a in now.items() if before.get(t) != a}

    def kills_that_cut_attempts(self) -> int:
        return sum(bool(self.cut(i)) for i in range(len(self.snapshots)))

    def describe(self) -> str:
        lines = [f"seed {self.seed} (replay with {SEED_ENV}={self.seed})"]
        for index, s in enumerate(self.snapshots):
            counts: dict[str, int] = defaultdict(int)
            for state, _ in s.states.values():
                counts[state] += 1
            figures = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            taken = "not taken" if s.taken_after is None else f"taken at {s.taken_after:.2f}s"
            lines.append(
                f"  kill {s.kill} ({s.kind}) of `{s.command}` after {s.seconds:.2f}s ({taken}), "
                f"{s.new_attempts} attempts started: "
                f"{figures or 'no run stored yet'}; cut {len(self.cut(index))} new attempts; "
                f"log {s.log_lines} lines"
            )
        return "\n".join(lines)


def layered_plan(directory: Path, log: Path, count: int, rng: random.Random) -> Path:
    tasks = []
    for i in range(count):
        layer = i // LAYER_WIDTH
        previous = range((layer - 1) * LAYER_WIDTH, layer * LAYER_WIDTH)
        deps = sorted({f"t{j}" for j in rng.sample(previous, k=rng.randint(1, 2))}) if layer else []
        sleep = f"{rng.uniform(*SLEEP_RANGE_S):.3f}"
        run = [PY, "-I", "-S", "-c", RECORD_ATTEMPT, str(log), sleep]
        tasks.append({"id": f"t{i}", "action": {"kind": "shell", "run": run}, "depends_on": deps})
    plan = {
        "version": 1,
        "name": "crash-recovery",
        "concurrency": {"max_workers": WORKERS},
        "tasks": tasks,
    }
    return write_plan(directory, plan)


def start_orch(args: list[str], stderr: Path) -> subprocess.Popen[bytes]:
    """`orch ARGS` in its own process group, its messages kept in a file for a failure report."""
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [PY, "-m", "orchestration", *args],
            env={**env, "NO_COLOR": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )


@dataclass(frozen=True)
class Entry:
    """One line of the log: an attempt started, or (`end`) ran to its end."""

    task_id: str
    attempt: int
    end: bool


def read_log(log: Path) -> list[Entry]:
    if not log.exists():
        return []
    entries = []
    for line in log.read_text().splitlines():
        task_id, attempt, *rest = line.split(" ")
        assert rest in ([], ["end"]), f"a torn or mixed line in the log: {line!r}"
        entries.append(Entry(task_id, int(attempt), bool(rest)))
    return entries


@dataclass(frozen=True)
class Moment:
    """How an engine's kill went: whether it ended by itself first, when it had taken the run
    (seconds after its start), and how many attempts it had started."""

    finished: bool
    taken_after: float | None
    new_attempts: int


def snapshot(
    store: Store, kill: int, command: str, kind: str, seconds: float, moment: Moment, log: Path
) -> Snapshot:
    try:
        run = store.get_run(RUN_ID)
    except NotFoundError:  # killed before `orch run` stored the run
        tasks = []
    else:
        # What a user sees at once after kill -9 on the engine's host: the run is not live.
        assert not run_is_live(run, datetime.now(UTC)), f"run still looks live after kill {kill}"
        tasks = store.tasks(run.id)
    # The log after the store: a line of a task completed in this snapshot that lies beyond
    # this length was written after the task was completed.
    return Snapshot(
        kill,
        command,
        seconds,
        kind,
        moment.taken_after,
        moment.new_attempts,
        {t.task_id: (t.state, t.attempts) for t in tasks},
        len(read_log(log)),
    )


def crash_again_and_again(
    tmp_path: Path, db_url: str, *, tasks: int, kills: int, seed: int
) -> tuple[Crashes, list[str]]:
    """Run the plan, kill the engine `kills` times at random moments, resume until it is done."""
    rng = random.Random(seed)
    log = tmp_path / "attempts.log"
    plan = layered_plan(tmp_path / "plan", log, tasks, rng)
    crashes = Crashes(seed)
    db = ["--db", db_url, "--quiet"]
    task_ids = [f"t{i}" for i in range(tasks)]
    kinds = kill_kinds(kills, rng)
    # The test watches the store while engines work on it; it creates the schema first, as a
    # user who ran `orch` on this store before would have, so no engine upgrades it under it.
    with Store.open(db_url) as store:
        for kill in range(1, kills + 1):
            run_stored = bool(crashes.snapshots and crashes.snapshots[-1].states)
            command = "resume" if run_stored else "run"
            args = _next_engine(run_stored, plan, db)
            left = (
                tasks - len(crashes.snapshots[-1].with_state("completed")) if run_stored else tasks
            )
            fair_share = left / (kills - kill + 2)  # the final resume gets a share too
            max_attempts = rng.randint(1, max(1, int(FAIR_SHARE_FACTOR * fair_share)))
            kind = kinds[kill - 1]
            times = KILL_IN_START_UP_S if kind == START_UP else KILL_AFTER_TAKEN_S
            max_seconds = rng.uniform(*times)
            # An action the killed engine had just started may write its start line late: only
            # attempts beyond those the store held at the kill are this engine's.
            already = len(read_log(log))
            known = (
                {t: n for t, (_, n) in crashes.snapshots[-1].states.items()} if run_stored else {}
            )
            process = start_orch(args, tmp_path / f"orch-{kill}.err")
            started = time.monotonic()
            try:
                moment = _wait(
                    process, store, log, (already, known), max_seconds, max_attempts, kind
                )
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)  # the engine only: its actions live on
                process.wait()
            seconds = time.monotonic() - started
            assert not moment.finished, (
                f"`orch {command}` ended by itself (exit {process.returncode}) before kill "
                f"{kill}: the plan is too short for {kills} kills\n{crashes.describe()}"
                f"\n{(tmp_path / f'orch-{kill}.err').read_text()}"
            )
            assert process.returncode == -signal.SIGKILL
            crashes.snapshots.append(snapshot(store, kill, command, kind, seconds, moment, log))
    run_stored = bool(crashes.snapshots[-1].states)
    final = _run_to_completion(_next_engine(run_stored, plan, db), tmp_path / "orch-final.err")
    assert final.returncode == 0, f"{final.stderr}\n{crashes.describe()}"
    crashes.log = read_log(log)
    return crashes, task_ids


def kill_kinds(kills: int, rng: random.Random) -> list[str]:
    """A fifth of the kills in start-up, half once attempts started, the rest after the take."""
    start_up, attempts = round(kills / 5), (kills + 1) // 2
    kinds = [START_UP] * start_up + [ATTEMPTS] * attempts
    kinds += [TAKEN] * (kills - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _next_engine(run_stored: bool, plan: Path, db: list[str]) -> list[str]:
    """`orch run` again if the killed engine had not stored the run yet, else a plain `orch
    resume`: the killed engine ran on this host, so it is known gone and no --force is needed."""
    return ["resume", RUN_ID, *db] if run_stored else ["run", str(plan), "--run-id", RUN_ID, *db]


def _wait(
    process: subprocess.Popen[bytes],
    store: Store,
    log: Path,
    before: tuple[int, dict[str, int]],
    seconds: float,
    attempts: int,
    kind: str,
) -> Moment:
    """Wait for the moment to kill the engine: once it has started `attempts` attempts (the log's
    start lines after the first `before[0]` lines, of attempts beyond the `before[1]` the store
    held at the last kill), or (START_UP, TAKEN) `seconds` after its start or
    after it has taken the run, whichever comes first."""
    started = time.monotonic()
    taken_after = None
    deadline = started + seconds if kind == START_UP else None
    new = 0
    while new < attempts:
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        if process.poll() is not None:
            return Moment(True, taken_after, new)
        if taken_after is None and _taken(store, process.pid):
            taken_after = time.monotonic() - started
            if kind == TAKEN:
                deadline = time.monotonic() + seconds
        assert now - started < TAKE_TIMEOUT_S, (
            f"the engine neither took the run nor started {attempts} attempts "
            f"in {TAKE_TIMEOUT_S:.0f}s"
        )
        skip, known = before
        new = sum(not e.end and e.attempt > known.get(e.task_id, 0) for e in read_log(log)[skip:])
        time.sleep(POLL_S)
    return Moment(False, taken_after, new)


def _taken(store: Store, pid: int) -> bool:
    """Whether the engine process `pid` works on the run: `orch run` stored the run with it,
    `orch resume` recorded it on the run (just before it recovers the interrupted attempts)."""
    try:
        return store.get_run(RUN_ID).engine_pid == pid
    except NotFoundError:
        return False


def _run_to_completion(
    args: list[str], stderr: Path | None, timeout: float = FINAL_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORCH_DB"}
    done = subprocess.run(
        [PY, "-m", "orchestration", *args],
        env={**env, "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if stderr is not None:
        stderr.write_text(done.stderr)
    return done


def check_recovery(crashes: Crashes, db_url: str, task_ids: list[str]) -> None:
    """Every promise of crash recovery, checked against the final store, the log and snapshots."""
    about = crashes.describe()
    with Store.open(db_url) as store:
        run = store.get_run(RUN_ID)
        final = {t.task_id: t for t in store.tasks(RUN_ID)}
        history = defaultdict(list)
        for move in store.transitions(RUN_ID):
            history[move.task_id].append(move)
        assert store.integrity_ok(), about
    assert run.state == "completed", about
    assert sorted(final) == sorted(task_ids), about

    # Every task completed exactly once, along a legal path.
    for task_id, task in final.items():
        moves = history[task_id]
        assert task.state == "completed", f"{task_id} is {task.state}\n{about}"
        path = [(m.source, m.dest, m.trigger) for m in moves]
        assert is_legal_path(path), f"illegal history of {task_id}: {path}\n{about}"
        assert [m.dest for m in moves].count("completed") == 1, f"{task_id}: {path}\n{about}"
        assert moves[-1].trigger == "succeed", f"{task_id}: {path}\n{about}"
        starts = [m.trigger for m in moves].count("start")
        assert starts == task.attempts, (
            f"{task_id} started {starts} times but counts {task.attempts} attempts\n{about}"
        )

    # The log: attempts started in increasing order, each at most once; an attempt never
    # overlapped the next one (an orphan was ended before its retry began); and the last attempt,
    # the one the store completed, ran to its end.
    started: dict[str, list[int]] = defaultdict(list)
    ended: dict[str, list[int]] = defaultdict(list)
    for line, entry in enumerate(crashes.log, 1):
        task_id, attempt = entry.task_id, entry.attempt
        assert task_id in final, f"unknown task {task_id} in the log\n{about}"
        latest = started[task_id][-1] if started[task_id] else 0
        if entry.end:
            assert attempt == latest, (
                f"log line {line}: {task_id} attempt {attempt} ended after attempt {latest} "
                f"had started: two attempts ran at once\n{about}"
            )
            ended[task_id].append(attempt)
        else:
            assert attempt > latest, (
                f"log line {line}: {task_id} attempt {attempt} started after attempt {latest}"
                f"\n{about}"
            )
            started[task_id].append(attempt)
    for task_id, task in final.items():
        assert started[task_id] and started[task_id][-1] == task.attempts, (
            f"{task_id}: the store says {task.attempts} attempts, the log {started[task_id]}"
            f"\n{about}"
        )
        assert task.attempts in ended[task_id], f"{task_id}'s last attempt never ended\n{about}"

    interrupted: set[tuple[str, int]] = set()
    for snap in crashes.snapshots:
        # No task the store had recorded as completed ever ran again.
        completed = snap.with_state("completed")
        for line, entry in enumerate(crashes.log[snap.log_lines :], snap.log_lines + 1):
            assert entry.task_id not in completed, (
                f"{entry.task_id} ran again (attempt {entry.attempt}, log line {line}) after "
                f"kill {snap.kill}, which found it completed after {completed[entry.task_id]} "
                f"attempts\n{about}"
            )
        for task_id, attempts in completed.items():
            assert final[task_id].attempts == attempts, f"{task_id} after kill {snap.kill}\n{about}"
        # A task that was running at the kill ran again, with a higher attempt number.
        for task_id, attempts in snap.with_state("running").items():
            interrupted.add((task_id, attempts))
            later = [
                e.attempt
                for e in crashes.log[snap.log_lines :]
                if e.task_id == task_id and not e.end
            ]
            assert final[task_id].attempts > attempts and any(a > attempts for a in later), (
                f"{task_id} was running attempt {attempts} at kill {snap.kill}; afterwards the "
                f"log has attempts {later} and the store {final[task_id].attempts}\n{about}"
            )

    # Nothing else was retried: the actions never fail, so each earlier attempt was cut by a kill.
    for task_id, task in final.items():
        for attempt in range(1, task.attempts):
            assert (task_id, attempt) in interrupted, (
                f"{task_id} attempt {attempt} was repeated though no kill cut it\n{about}"
            )


def _seed() -> int:
    explicit = os.environ.get(SEED_ENV)
    return int(explicit) if explicit else random.SystemRandom().randrange(2**32)


@pytest.mark.slow
def test_200_tasks_survive_20_kills_of_the_engine_on_sqlite(tmp_path: Path) -> None:
    seed = _seed()
    db_url = f"sqlite:///{tmp_path / 'state.db'}"
    started = time.monotonic()
    crashes, task_ids = crash_again_and_again(tmp_path, db_url, tasks=200, kills=20, seed=seed)
    check_recovery(crashes, db_url, task_ids)
    assert len(crashes.snapshots) == 20
    # Most kills cut attempts that engine had started, not only engines still starting up.
    assert crashes.kills_that_cut_attempts() >= 5, crashes.describe()
    print(f"\n{crashes.describe()}\n{time.monotonic() - started:.1f}s")


@pytest.mark.slow
@pytest.mark.postgres
def test_60_tasks_survive_5_kills_of_the_engine_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    seed = _seed()
    started = time.monotonic()
    crashes, task_ids = crash_again_and_again(tmp_path, pg_url, tasks=60, kills=5, seed=seed)
    check_recovery(crashes, pg_url, task_ids)
    assert len(crashes.snapshots) == 5
    print(f"\n{crashes.describe()}\n{time.monotonic() - started:.1f}s")
