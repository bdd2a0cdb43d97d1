"""Dead-letter retention: letters older than a period are written to a JSONL archive, then purged.

Written before deleting, with the file flushed and synced: a crash between the two leaves a
letter in both places (archived twice at worst, never lost). One file per month of the
archiving: `dead-letters-YYYY-MM.jsonl`, one letter per line (the JSON of `orch dlq show --json`).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from orchestration.core.models import DeadLetterRecord
from orchestration.store import Store

DAY_SECONDS = 86_400


def archive_path(directory: Path, now: datetime) -> Path:
    return directory / f"dead-letters-{now:%Y-%m}.jsonl"


def letters_older_than(store: Store, seconds: float, now: datetime) -> list[DeadLetterRecord]:
    """Every dead letter (open ones too) that failed longer than `seconds` before `now`."""
    cutoff = now - timedelta(seconds=seconds)
    return [letter for letter in store.dead_letters() if letter.failed_at < cutoff]


def archive_dead_letters(
    store: Store,
    directory: Path,
    older_than_seconds: float,
    now: datetime,
    *,
    dry_run: bool = False,
) -> tuple[list[DeadLetterRecord], Path]:
    """Archive and purge the letters older than the period; (the letters, the archive file)."""
    from orchestration.shapes.records import as_json, dead_letter_detail_out

    chosen = letters_older_than(store, older_than_seconds, now)
    path = archive_path(directory, now)
    if dry_run or not chosen:
        return chosen, path
    directory.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for letter in chosen:
            shape = as_json(dead_letter_detail_out(letter))
            out.write(json.dumps(shape, sort_keys=True, default=str) + "\n")
        out.flush()
        os.fsync(out.fileno())  # on disk before the rows go
    store.delete_dead_letters([letter.id for letter in chosen])
    return chosen, path
