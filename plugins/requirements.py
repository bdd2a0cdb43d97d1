"""Validator `requirements`: the action succeeded and each of the task's `acceptance` holds."""

from __future__ import annotations

import functools

from orchestration import hookimpl
from orchestration.extension import (
    CheckResult,
    Expression,
    RuleError,
    ValidationInput,
    Validator,
    acceptance_check,
    compile_expression,
)

NAME = "requirements"
STAGE = "requirements"
COMPILED_CACHE_SIZE = 4_096  # distinct acceptance expressions kept compiled


@functools.lru_cache(maxsize=COMPILED_CACHE_SIZE)
def compiled(source: str) -> Expression | str:
    """The expression compiled once per source text, or why it does not compile.

    Compiled with the built-in functions only, as the plan loader checks acceptance expressions.
    """
    try:
        return compile_expression(source)
    except RuleError as error:
        return error.message


def check_requirements(step: ValidationInput) -> CheckResult:
    """Passes when the action exited 0 in time and every acceptance expression is true for the
    step's rule context (`ValidationInput.context`). Score: the share of those that hold, the
    action's own success counted as one."""
    expressions: list[Expression] = []
    refused: list[str] = []
    for index, source in enumerate(step.task.acceptance):
        found = compiled(source)
        if isinstance(found, str):
            refused.append(f"acceptance[{index}] {source!r} does not compile: {found}")
        else:
            expressions.append(found)
    if refused:
        return CheckResult(NAME, STAGE, False, 0.0, "; ".join(refused))
    action_ok = step.exit_code == 0 and not step.context.get("timed_out", False)
    return acceptance_check(expressions, step.context, action_ok, step.exit_code)


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            NAME,
            STAGE,
            check_requirements,
            "The action exited 0 and every `acceptance` expression of the task is true.",
        )
    ]
