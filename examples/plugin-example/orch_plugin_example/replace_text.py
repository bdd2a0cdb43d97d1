"""Action kind `replace_text`: a deterministic edit of one file in the workdir (a codemod step).

A plan names it as `action: {kind: replace_text, args: {path, old, new, count}}`: `path` is
relative to the workdir (it may not leave it), `old` must occur in the file, and `count` (default:
every occurrence) limits how many are replaced. The result carries `replacements`, which rules
read as `result.replacements`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestration.extension import ActionInput, ActionKind, ActionResult

NAME = "replace_text"


def _target(workdir: Path, relative: Any) -> Path | str:
    """The file to edit, or why the argument is unusable."""
    if not isinstance(relative, str) or not relative:
        return "args.path must be a file path relative to the workdir"
    root = workdir.resolve()
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        return f"args.path {relative!r} leaves the workdir"
    if not path.is_file():
        return f"args.path {relative!r}: no such file in {root}"
    return path


def replace_text(call: ActionInput) -> ActionResult:
    """Replace `old` by `new` in the file; a bad argument is a permanent failure (no retry)."""
    args = call.args
    old, new, count = args.get("old"), args.get("new", ""), args.get("count", -1)
    if not isinstance(old, str) or not old or not isinstance(new, str):
        return ActionResult(
            False,
            "args.old (non-empty text) and args.new (text) are needed",
            error_kind="permanent",
        )
    if not isinstance(count, int) or isinstance(count, bool) or count == 0 or count < -1:
        return ActionResult(
            False, "args.count must be a positive whole number", error_kind="permanent"
        )
    path = _target(call.workdir, args.get("path"))
    if isinstance(path, str):
        return ActionResult(False, path, error_kind="permanent")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ActionResult(False, f"{args['path']}: not UTF-8 text", error_kind="permanent")
    found = text.count(old)
    if found == 0:
        return ActionResult(False, f"{args['path']}: {old!r} not found", error_kind="permanent")
    replaced = found if count == -1 else min(count, found)
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return ActionResult(
        True,
        f"{args['path']}: replaced {replaced} of {found} occurrence(s)",
        {"replacements": replaced},
    )


ACTION = ActionKind(
    NAME, replace_text, "replace text in one file of the workdir (args: path, old, new, count)"
)
