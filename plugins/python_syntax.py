"""Validator `python_syntax`: every changed .py file must compile under the project's Python."""

from __future__ import annotations

import json

from orchestration import hookimpl
from orchestration.extension import CheckResult, ValidationInput, Validator, run_process

NAME = "python_syntax"
STAGE = "syntax"
MAX_FILE_BYTES = 5_000_000
PROCESS_SHARE = 0.9  # of the validator's timeout
FEEDBACK_CHARS = 2_000
MARKER = "orch-python-syntax:"
# Run by the project's interpreter, so that its grammar applies (a `match` statement, a newer
# f-string): compile() only, nothing executed, no bytecode written. It prints one marked line
# of JSON, so that anything else on the output (a prefix such as `uv run` talking) is ignored.
COMPILE_SCRIPT = f"""
import json, sys
errors = []
for name in sys.argv[1:]:
    try:
        with open(name, "rb") as handle:
            source = handle.read()
    except OSError as error:
        errors.append(f"{{name}}: unreadable ({{error}})")
        continue
    if len(source) > {MAX_FILE_BYTES}:
        continue  # generated or vendored; not the agent's hand-written code
    try:
        compile(source, name, "exec", dont_inherit=True)
    except SyntaxError as error:
        errors.append(f"{{error.filename}}:{{error.lineno}}: {{error.msg}}")
    except ValueError as error:  # null bytes
        errors.append(f"{{name}}: {{error}}")
print({MARKER!r} + json.dumps(errors))
"""


def _compile_errors(step: ValidationInput, files: list[str]) -> list[str] | str:
    """Each file that does not compile, as "file:line: message"; a string when it could not run."""
    environment = step.environment
    ran = run_process(
        environment.python_command("-c", COMPILE_SCRIPT, *files),
        cwd=step.workdir,
        env=environment.process_env(),
        timeout_seconds=max(0.5, step.timeout_seconds * PROCESS_SHARE),
    )
    for line in reversed(ran.output.splitlines()):
        if line.startswith(MARKER):
            errors = json.loads(line.removeprefix(MARKER))
            return [str(e) for e in errors]
    why = "timed out" if ran.timed_out else f"exited {ran.exit_code}"
    tail = ran.output[-FEEDBACK_CHARS:].strip()
    return f"the project's interpreter {environment.describe()} {why}:\n{tail}"


def check_python_syntax(step: ValidationInput) -> CheckResult:
    existing = [  # deleted files have nothing to compile
        f for f in step.changed_files if f.endswith(".py") and (step.workdir / f).is_file()
    ]
    if not existing:
        return CheckResult(NAME, STAGE, True, 1.0, "0 changed Python files compile")
    errors = _compile_errors(step, existing)
    if isinstance(errors, str):
        return CheckResult(NAME, STAGE, False, 0.0, errors)
    if errors:
        message = f"{len(errors)} of {len(existing)} changed Python files do not compile:\n"
        return CheckResult(NAME, STAGE, False, 0.0, message + "\n".join(errors))
    return CheckResult(NAME, STAGE, True, 1.0, f"{len(existing)} changed Python files compile")


@hookimpl
def register_validators() -> list[Validator]:
    return [
        Validator(
            NAME,
            STAGE,
            check_python_syntax,
            "Every changed .py file compiles under the project's own interpreter "
            "(byte-compiled in memory, nothing executed).",
        )
    ]
