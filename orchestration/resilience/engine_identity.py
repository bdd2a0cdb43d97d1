"""Which engine process works on a run (host, process id, start time), and whether it lives."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

from orchestration.core.models import RunRecord

logger = logging.getLogger(__name__)

# A process's start time read twice can differ by a clock tick; a reused process id starts
# much later than the engine that held it.
START_TIME_TOLERANCE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class EngineIdentity:
    """One engine process: stored with the run when the engine takes it."""

    host: str
    pid: int
    started: float  # the process's start time, seconds since the epoch (psutil)


def this_engine() -> EngineIdentity:
    """The identity of the running process."""
    pid = os.getpid()
    return EngineIdentity(socket.gethostname(), pid, psutil.Process(pid).create_time())


def process_alive(pid: int, started: float | None) -> bool:
    """Whether the process `pid` that started at `started` still runs on this host.

    The start time tells a reused process id (another program now) from the engine itself; a
    zombie (exited, not yet reaped) counts as gone.
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. access denied: it exists, so take it as alive
        return True
    return started is None or abs(created - started) <= START_TIME_TOLERANCE_SECONDS


def owner_alive(run: RunRecord) -> bool | None:
    """Whether the engine recorded on the run still lives: True or False when it can be told
    on this host, None when it cannot (no engine recorded, or it ran on another host: there the
    heartbeat's lease decides)."""
    if run.engine_host is None or run.engine_pid is None:
        return None
    if run.engine_host != socket.gethostname():
        return None
    return process_alive(run.engine_pid, run.engine_started)


def engine_label(run: RunRecord) -> str:
    """`process 1234 on host` for messages; `unknown process` for runs stored before 0005."""
    if run.engine_pid is None:
        return "unknown process"
    return f"process {run.engine_pid} on {run.engine_host}"


@contextmanager
def beating(beat: Callable[[], object], every_seconds: float) -> Iterator[None]:
    """Call `beat` every `every_seconds` on a thread while the block runs: a long step taken
    before the loop ticks (the test baseline) must not make the run look abandoned."""
    done = threading.Event()

    def keep_beating() -> None:
        while not done.wait(every_seconds):
            try:
                beat()
            except Exception as error:  # a missed beat only makes the run look stale sooner
                logger.warning("heartbeat not stored: %s", error)

    thread = threading.Thread(target=keep_beating, name="orch-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
