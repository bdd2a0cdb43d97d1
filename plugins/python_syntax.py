"""Validator `python_syntax`: every changed .py file must compile."""

from __future__ import annotations

from pathlib import Path

from orchestration import hookimpl
from orchestration.extension import CheckResult, ValidationInput, Validator

MAX_FILE_BYTES = 5_000_000


def _syntax_error(path: Path) -> str | None:
    try:
        source = path.read_bytes()
    except OSError as error:
        return f"{path.name}: unreadable ({error})"
    if len(source) > MAX_FILE_BYTES:
        return None  # generated or vendored; not the agent's hand-written code
    try:
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as error:
        return f"{error.filename}:{error.lineno}: {error.msg}"
    except ValueError as error:  # null bytes
        return f"{path}: {error}"
    return None


def check_python_syntax(step: ValidationInput) -> CheckResult:
    files = [step.workdir / f for f in step.changed_files if f.endswith(".py")]
    existing = [f for f in files if f.is_file()]  # deleted files have nothing to compile
    errors = [e for e in map(_syntax_error, existing) if e]
    if errors:
        message = f"{len(errors)} of {len(existing)} changed Python files do not compile:\n"
        return CheckResult("python_syntax", "syntax", False, 0.0, message + "\n".join(errors))
    return CheckResult(
        "python_syntax", "syntax", True, 1.0, f"{len(existing)} changed Python files compile"
    )


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            "python_syntax",
            "syntax",
            check_python_syntax,
            "Every changed .py file compiles (byte-compiled, nothing executed).",
        )
    ]
