"""Commands printed for a person to paste into a shell: every argument quoted for a POSIX shell.

A run id, a path or a store URL may hold spaces or `$(...)`; printed bare, a pasted hint would
break or run what is inside. Every `orch ...` line the CLI, the API's `next` texts and the
dashboard show is built here.
"""

from __future__ import annotations

import shlex


def shell_command(*argv: str | int) -> str:
    """`argv` as one line a shell splits back into exactly these arguments."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def db_hint(url: str | None) -> str:
    """` --db URL` (quoted) to add to a command, or nothing when the store is found alone."""
    return " " + shell_command("--db", url) if url else ""


def resume_command(run_id: str, hint: str = "") -> str:
    """`orch resume RUN` plus the `db_hint` of the store."""
    return shell_command("orch", "resume", run_id) + hint
