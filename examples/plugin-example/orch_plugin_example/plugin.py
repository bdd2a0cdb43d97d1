"""The hook implementations that the entry point `example` names; pluggy finds them here."""

from __future__ import annotations

import os

from orchestration import hookimpl
from orchestration.extension import ActionKind, Notifier, Validator

from . import jsonl_file, replace_text, todo_comments


@hookimpl
def register_actions() -> list[ActionKind]:
    return [replace_text.ACTION]


@hookimpl
def register_validators() -> list[Validator]:
    return [todo_comments.VALIDATOR]


@hookimpl
def register_notifiers() -> list[Notifier]:
    return jsonl_file.notifiers_from_env(os.environ)
