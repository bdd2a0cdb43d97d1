"""The errors a user can meet, each carrying the fields needed to act on it."""

from __future__ import annotations

from collections.abc import Sequence


class OrchestrationError(Exception):
    """Base of every error the engine reports to a user; the CLI turns it into one message."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        task: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.task = task
        self.field = field

    def __str__(self) -> str:
        where = self.file or ""
        if self.file and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [p for p in (where, self._subject()) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def _subject(self) -> str:
        bits = []
        if self.task:
            bits.append(f"task '{self.task}'")
        if self.field:
            bits.append(f"field '{self.field}'")
        return ", ".join(bits)


class PlanError(OrchestrationError):
    """A plan file is malformed or inconsistent."""


class PlanErrors(PlanError):
    """Several problems found in one plan file; all of them are reported at once."""

    def __init__(self, errors: Sequence[PlanError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(
            first.message, file=first.file, line=first.line, task=first.task, field=first.field
        )

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class RuleError(OrchestrationError):
    """A rule file or a rule expression is invalid, or an expression failed at evaluation."""

    def __init__(self, message: str, *, rule: str | None = None, **where: object) -> None:
        super().__init__(message, **where)  # type: ignore[arg-type]
        self.rule = rule

    def _subject(self) -> str:
        return f"rule '{self.rule}'" if self.rule else ""


class TaskStateError(OrchestrationError):
    """A trigger was fired that the task's current state does not allow."""

    exit_code = 1

    def __init__(self, task_id: str, state: str, trigger: str, legal: Sequence[str]) -> None:
        legal_text = ", ".join(legal) if legal else "none (final state)"
        super().__init__(
            f"cannot '{trigger}' task '{task_id}' in state '{state}'; legal triggers: {legal_text}",
            task=None,
        )
        self.task_id = task_id
        self.state = state
        self.trigger = trigger
        self.legal = list(legal)


class StoreError(OrchestrationError):
    """The state store cannot be opened, migrated or written."""


class NotFoundError(OrchestrationError):
    """A run, task or breakpoint named by the user does not exist."""
