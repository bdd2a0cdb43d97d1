"""Size limits of the engine's code: small functions, and a loop that only conducts its parts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "orchestration" / "engine"
MAX_FUNCTION_LINES = 60
MAX_LOOP_LINES = 400
# The engine package: the loop and its parts, and the policies it consults.
ENGINE_MODULES = sorted(path.name for path in ENGINE.glob("*.py"))


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_FUNCTION_LINES:
                found.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_the_engine_package_is_checked_whole() -> None:
    assert {"loop.py", "conclusion.py", "timer_wheel.py", "scheduler.py"} <= set(ENGINE_MODULES)


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_no_engine_function_is_longer_than_sixty_lines(module: str) -> None:
    assert long_functions(ENGINE / module) == []


def test_the_checker_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "m.py"
    path.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions(path) == [f"m.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_the_loop_module_is_at_most_four_hundred_lines() -> None:
    lines = (ENGINE / "loop.py").read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LOOP_LINES, f"loop.py has {lines} lines"
