"""Each attempt's output, written as it comes to `.orchestration/logs/<run>/<task>/<attempt>.log`.

The logs sit beside the default store (`.orchestration/` next to the plan). A log is capped: the
first `LOG_MAX_BYTES - LOG_TAIL_BYTES` bytes are written as they come; beyond that only the last
`LOG_TAIL_BYTES` are kept and written when the attempt ends, after a line saying how much was
left out. `orch logs` prints or follows a log; the dashboard streams it.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

logger = logging.getLogger(__name__)

LOG_MAX_BYTES = 10 * 1024 * 1024  # one attempt's log at most (plus one line of note)
LOG_TAIL_BYTES = 1024 * 1024  # of that, the end of the output kept once the cap is reached
TAIL_READ_BYTES = 64 * 1024  # how far back from the end a tail of a few lines is looked for
FOLLOW_POLL_SECONDS = 0.2  # how often a follower looks for new output
STORE_DIR = ".orchestration"

# ANSI escape sequences (CSI, OSC, and two-character escapes) and C0/C1 controls other than
# newline and tab: output printed to a terminal or a page must not move the cursor, retitle the
# window, or hide text.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-Z\\-_]"  # two-character escapes
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


class OutputWriter(Protocol):
    """Where an attempt's output goes as it comes. Action kinds (e.g. agent presets) may write
    their events here as text lines; `write` is safe to call from any thread."""

    def write(self, text: str) -> None: ...


def logs_root(plan_path: str | Path) -> Path:
    """`.orchestration/logs` beside the plan, where the default store lives too."""
    return Path(plan_path).parent / STORE_DIR / "logs"


def run_logs_dir(plan_path: str | Path, run_id: str) -> Path:
    return logs_root(plan_path) / run_id


def log_path(plan_path: str | Path, run_id: str, task_id: str, attempt: int) -> Path:
    """The log of one attempt (task ids are file-name safe: models.TASK_ID_PATTERN)."""
    return run_logs_dir(plan_path, run_id) / task_id / f"{attempt}.log"


def remove_run_logs(plan_path: str | Path, run_id: str) -> bool:
    """Delete a run's logs; True when there were any."""
    directory = run_logs_dir(plan_path, run_id)
    if not directory.is_dir():
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def printable(text: str) -> str:
    """Text safe to print on a terminal: escape sequences and control characters removed, a
    carriage return (progress bars) shown as a new line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _ESCAPES.sub("", text)


class AttemptLog:
    """The writer of one attempt's log: every write reaches the file at once (followers see it),
    and the file never grows past the cap."""

    def __init__(
        self, path: Path, *, max_bytes: int = LOG_MAX_BYTES, tail_bytes: int = LOG_TAIL_BYTES
    ) -> None:
        self.path = path
        self.head_bytes = max(0, max_bytes - tail_bytes)
        self.tail_bytes = tail_bytes
        self.written = 0
        self.left_out = 0  # bytes past the head that are not (or no longer) kept
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None  # opened by the first write: no output, no file
        self._closed = False

    def write(self, text: str) -> None:
        """Append `text`. A failing disk ends the log (logged once), never the attempt."""
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            if self._closed or not data:
                return
            try:
                self._append(data)
            except OSError as error:
                logger.warning("attempt log %s stopped: %s", self.path, error)
                self._closed = True

    def _append(self, data: bytes) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("wb")
        room = self.head_bytes - self.written
        if room > 0:
            self._file.write(data[:room])
            self._file.flush()
            self.written += min(room, len(data))
            data = data[room:]
            if data:
                self._file.write(self._held_back_note().encode())
                self._file.flush()
        if data:
            self._tail += data
            excess = len(self._tail) - self.tail_bytes
            if excess > 0:
                del self._tail[:excess]
                self.left_out += excess

    def _held_back_note(self) -> str:
        return (
            f"\n[orchestration] log cap reached ({self.head_bytes:,} bytes): the last "
            f"{self.tail_bytes:,} bytes of the output follow when the attempt ends\n"
        )

    def close(self) -> None:
        """Write the kept end of the output (if the cap was reached) and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._file is None:
                return
            try:
                if self.left_out:
                    note = f"[orchestration] {self.left_out:,} bytes of output left out here\n"
                    self._file.write(note.encode())
                self._file.write(bytes(self._tail))
            except OSError as error:
                logger.warning("attempt log %s not completed: %s", self.path, error)
            finally:
                self._file.close()

    def __enter__(self) -> AttemptLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def read_from(path: Path, offset: int, limit: int = -1) -> tuple[str, int]:
    """The log's text from byte `offset` on (at most `limit` bytes), and the offset after it."""
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read(limit)
    except FileNotFoundError:
        return "", offset
    # A multi-byte character may be cut at the end: leave its bytes for the next read.
    cut = _complete_utf8(data)
    return data[:cut].decode("utf-8", errors="replace"), offset + cut


def _complete_utf8(data: bytes) -> int:
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return len(data)
        if byte >= 0xC0:  # a lead byte: is its character complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return len(data) if back >= needed else len(data) - back
    return len(data)


def tail_lines(path: Path, lines: int = 20) -> list[str]:
    """The log's last `lines` non-empty lines, printable; [] when there is no log."""
    try:
        with path.open("rb") as file:
            file.seek(0, 2)
            size = file.tell()
            file.seek(max(0, size - TAIL_READ_BYTES))
            data = file.read()
    except FileNotFoundError:
        return []
    text = printable(data.decode("utf-8", errors="replace"))
    return [line for line in text.splitlines() if line.strip()][-lines:]


def tail_text(path: Path, max_bytes: int = TAIL_READ_BYTES) -> tuple[str, int]:
    """The log's end (whole lines, at most `max_bytes`), printable, and the offset after it:
    where a follower goes on from."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "", 0
    start = max(0, size - max_bytes)
    text, end = read_from(path, start, max_bytes)
    if start and "\n" in text:
        text = text.split("\n", 1)[1]  # the first line is cut: leave it out
    return printable(text), end


def last_line(path: Path) -> str:
    found = tail_lines(path, 1)
    return found[0] if found else ""


def follow(
    path: Path,
    finished: Callable[[], bool],
    *,
    offset: int = 0,
    poll_seconds: float = FOLLOW_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """Yield the log's text as it grows, until `finished()` says the attempt is over (then what
    is left is read once more, so nothing written before the end is missed)."""
    while True:
        done = finished()  # asked before reading: output written before the end is read after
        text, offset = read_from(path, offset)
        if text:
            yield text
        if done:
            return
        sleep(poll_seconds)
