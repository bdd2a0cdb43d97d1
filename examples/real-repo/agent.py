"""A scripted stand-in for a coding agent, for the real-repo example (deterministic, offline).

It behaves like an agent that makes a plausible mistake: asked to simplify `ordinal()`, its first
attempt drops the special case of 11, 12 and 13 (so `ordinal(11)` says "11st"); on the retry it
reads the feedback (the library's own failing tests) and puts the teens back.

    python agent.py TASK_ID FEEDBACK
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NUMBER = Path("src/humanize/number.py")
ORIGINAL = "    digit = 0 if value % 100 in (11, 12, 13) else value % 10\n"
FIRST_TRY = "    digit = value % 10\n"
FIXED = "    digit = value % 10 if value % 100 // 10 != 1 else 0  # 11th, 12th, 13th\n"


def simplify_ordinal(feedback: str) -> None:
    text = NUMBER.read_text(encoding="utf-8")
    if "ordinal" in feedback or "11st" in feedback:
        print("the tests say the teens are wrong: 11, 12 and 13 take 'th'")
        NUMBER.write_text(text.replace(FIRST_TRY, FIXED), encoding="utf-8")
    else:
        print("the suffix only depends on the last digit; simplifying")
        NUMBER.write_text(text.replace(ORIGINAL, FIRST_TRY), encoding="utf-8")


def note_milestone() -> None:
    notes = Path("docs/number.md")
    with notes.open("a", encoding="utf-8") as handle:
        handle.write("\n<!-- ordinal(): suffix logic simplified; 11th, 12th, 13th covered. -->\n")
    print("noted the change in docs/number.md")


def main() -> int:
    task, feedback = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
    print(f"agent: task {task}, attempt {os.environ.get('ORCH_ATTEMPT', '?')}")
    if task == "simplify-ordinal":
        simplify_ordinal(feedback)
    elif task == "milestone":
        note_milestone()
    else:
        print(f"agent: nothing scripted for {task}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
