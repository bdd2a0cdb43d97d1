"""Which files of a work tree changed since the last snapshot, as the OS tells it (watchdog).

A snapshot of a large repository through git costs a stat of every tracked file and a walk of
every folder (about 150 ms at 50,000 files here), twice per step. With a watch, the engine asks
git only about the paths the OS reported changed (`git update-index` of those paths, then
`write-tree` from the cached tree): the cost follows the change, not the repository.

The watch is an optimisation, never a source of truth it cannot vouch for: when it cannot say
for sure (a folder created, moved or deleted, the OS queue overflowed, the sync below timed out,
the watch could not start) `changes()` answers None and the caller takes a full snapshot.

Events arrive on the observer's thread a little after the writes. Before it answers, `changes()`
writes a marker file in the repository's git folder (inside the watched tree, never in the
work tree) and waits until that event comes back: the OS delivers one watch's events in order,
so every change made before the call has been seen by then.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SYNC_TIMEOUT_SECONDS = 2.0  # waiting for the marker's event; past it, a full snapshot is taken
_markers = itertools.count()


class TreeWatch:
    """Paths (relative to the work tree) changed since the previous `changes()` call."""

    def __init__(self, workdir: Path, git_dir: Path) -> None:
        from watchdog.observers import Observer

        self.workdir = workdir.resolve()
        self._git_dir = git_dir.resolve()
        self._marker_dir = self._git_dir / "orchestration" / "watch"
        self._marker_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._unsure = True  # nothing is known until the first full snapshot after the start
        self._waiting: dict[str, threading.Event] = {}
        self.last_tree: str | None = None
        self._observer: Any = Observer()
        self._observer.schedule(_Handler(self), str(self.workdir), recursive=True)
        self._observer.start()

    def changes(self) -> set[str] | None:
        """The changed paths since the last call (then forgotten), or None: take a full look."""
        if not self._sync():
            with self._lock:
                self._changed.clear()
                self._unsure = False
            return None
        with self._lock:
            unsure, changed = self._unsure, self._changed
            self._changed, self._unsure = set(), False
        return None if unsure else changed

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def _sync(self) -> bool:
        """Wait until every event of changes made before this call has been handled."""
        name = f"sync-{os.getpid()}-{next(_markers)}"
        seen = threading.Event()
        with self._lock:
            self._waiting[name] = seen
        marker = self._marker_dir / name
        try:
            marker.touch()
            return seen.wait(SYNC_TIMEOUT_SECONDS)
        except OSError as error:
            logger.warning("tree watch of %s cannot sync: %s", self.workdir, error)
            return False
        finally:
            with self._lock:
                self._waiting.pop(name, None)
            marker.unlink(missing_ok=True)

    def record(self, path: str, is_directory: bool) -> None:
        """One event's path, from the observer thread."""
        full = Path(path)
        if full.parent == self._marker_dir:
            with self._lock:
                waiting = self._waiting.get(full.name)
            if waiting is not None:
                waiting.set()
            return
        try:
            relative = full.relative_to(self.workdir).as_posix()
        except ValueError:
            return
        if relative == ".git" or relative.startswith((".git/", ".orchestration/")):
            return  # git's own files and the store: not the work tree's content
        with self._lock:
            if is_directory:
                self._unsure = True  # a folder came or went: its files are not listed here
            else:
                self._changed.add(relative)

    def overflowed(self) -> None:
        with self._lock:
            self._unsure = True


class _Handler:
    """watchdog's callback interface, kept to the two calls the watch needs."""

    def __init__(self, watch: TreeWatch) -> None:
        self.watch = watch

    def dispatch(self, event: Any) -> None:
        kind = getattr(event, "event_type", "")
        if kind in ("opened", "closed_no_write"):
            return  # reads change nothing
        if kind == "closed" or (kind == "modified" and event.is_directory):
            return  # a folder's own time changed: its files' events say what
        self.watch.record(str(event.src_path), bool(event.is_directory) and kind != "modified")
        destination = getattr(event, "dest_path", "")
        if destination:
            self.watch.record(str(destination), bool(event.is_directory))


def start_watch(workdir: Path, git_dir: Path) -> TreeWatch | None:
    """A watch of `workdir`, or None when the OS cannot give one (too many folders, no inotify)
    or the repository's git folder lies outside it (its sync marker must be in the one watch)."""
    if not git_dir.resolve().is_relative_to(workdir.resolve()):
        return None
    try:
        return TreeWatch(workdir, git_dir)
    except Exception as error:  # OSError (inotify limits), ImportError: snapshots stay full
        logger.info("no file watch for %s (%s): snapshots read the whole tree", workdir, error)
        return None
