"""Inputs the engine was probed with before stay handled: rule expressions, plan files, markup.

Each hostile input ends in a clear error (RuleError, exit 2) or a bounded, harmless result: never
another exception, exit 70, a traceback, a hang, a side effect, or markup the browser runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestration.core.context import neutral_context
from orchestration.core.errors import PlanError, RuleError
from orchestration.engine import plan as plan_module
from orchestration.engine.plan import load_plan
from orchestration.rules.expressions import compile_expression
from orchestration.rules.rule_files import evaluate_breakpoints, load_rules
from tests.helpers import orch, shell_task, write_plan
from tests.test_web_api import run_plan, start_server, stop_server

DATA = Path(__file__).resolve().parent.parent / "data" / "hostile"
BOUND_S = 5.0  # per input: a safety net against a hang, not a speed test
CLI_BOUND_S = 120
MAX_RESULT_CHARS = 1_000_000  # a bounded result: a rule decides, it does not build megabytes


# ---- helpers --------------------------------------------------------------------------------


def within_bound(work: Callable[[], Any], bound: float = BOUND_S) -> Any:
    """Run `work` on a thread; fail (not hang) when it takes longer than `bound` seconds."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # reported to the test below, whatever it is
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(bound)
    elapsed = time.monotonic() - started
    assert not thread.is_alive() and elapsed <= bound, f"still running after {elapsed:.1f} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# ---- 1. rule expressions --------------------------------------------------------------------


def listed_expressions() -> list[str]:
    lines = (DATA / "expressions.txt").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def generated_expressions() -> list[str]:
    """Inputs too long to keep on a line: deep nesting and long chains."""
    return [
        "(" * 10_000 + "1" + ")" * 10_000,
        "(" * 10_000,
        "[" * 10_000 + "]" * 10_000,
        "(" * 90 + "1" + ")" * 90,  # within the length limit, deeper than a parser likes
        "[" * 300 + "]" * 300,
        "-" * 1900 + "1",
        "not " * 450 + "True",
        "+".join(["1"] * 900),
        " and ".join(["True"] * 300),
        "title" + "[0]" * 600,
        "'" + "a" * 1990 + "'",
        "1" * 2001,
        "f(" * 600 + ")" * 600,
        "{" * 900 + "}" * 900,
        "lambda: " * 200 + "1",
        "a if b else " * 150 + "c",
    ]


EXPRESSIONS = listed_expressions() + generated_expressions()


def hostile_context() -> dict[str, Any]:
    context = neutral_context()
    context.update(
        title="x" * 40,
        task_id="t",
        tags=("a", "b"),
        output_tail="a" * 34 + "!",
        result={"confidence": 0.5},
    )
    return context


def rule_file(expression: str) -> str:
    body = {"breakpoints": [{"name": "hostile", "at": "after", "when": expression}]}
    return yaml.safe_dump(body, allow_unicode=True, width=10**9, sort_keys=False)


def check_one_expression(expression: str) -> str:
    """Load and evaluate one expression; return 'refused', 'error' or 'value'."""
    try:
        rules = load_rules(texts=[("hostile.yaml", rule_file(expression))], include_defaults=False)
    except RuleError as error:
        assert error.file == "hostile.yaml", error
        assert error.rule == "hostile" or error.line is not None, error
        try:
            compile_expression(expression, rule="hostile")
        except RuleError as direct:
            assert direct.rule == "hostile", direct
        return "refused"
    context = hostile_context()
    fired = evaluate_breakpoints(rules, "after", context)
    assert all(error is None or isinstance(error, RuleError) for _, error in fired), fired
    assert all(rule.name == "hostile" for rule, _ in fired)
    try:
        value = rules.breakpoints[0].when.evaluate(context)
    except RuleError as error:
        assert error.rule == "hostile", error
        return "error"
    assert len(repr(value)) <= MAX_RESULT_CHARS, f"a result of {len(repr(value))} characters"
    return "value"


def test_the_corpus_holds_what_it_promises() -> None:
    assert len(EXPRESSIONS) >= 120
    assert len(set(EXPRESSIONS)) == len(EXPRESSIONS), "a listed expression is repeated"


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: repr(e[:40]))
def test_a_hostile_expression_is_refused_or_bounded(expression: str, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    source = expression.replace("MARKER", str(marker))
    outcome = within_bound(lambda: check_one_expression(source))
    assert outcome in {"refused", "error", "value"}
    assert not marker.exists(), "the expression had a side effect"


def test_escapes_and_bombs_never_load() -> None:
    """The worst of the corpus is refused when the rule file loads, not merely when it runs."""
    for expression in (
        "().__class__",
        "tags.__len__",
        "__import__('os')",
        "(lambda: 1)()",
        "[x for x in range(10**9)]",
        "open('/etc/passwd').read()",
        "import os",
        "undefined_name",
        "1 +",
        "True()",
        "matches(output_tail, '(a+)+$')",
    ):
        with pytest.raises(RuleError) as caught:
            within_bound(lambda e=expression: compile_expression(e, rule="hostile"))
        assert caught.value.rule == "hostile"


def test_orch_rules_check_refuses_a_sample_by_file_and_line(tmp_path: Path) -> None:
    sample = ["().__class__", "9**9**9", "'a'*10**9", "(" * 10_000, "__import__('os')"]
    for number, expression in enumerate(sample):
        path = tmp_path / f"rules{number}.yaml"
        path.write_text(rule_file(expression))
        done = orch("rules", "check", str(path), timeout=CLI_BOUND_S)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode == 0:  # loads: it must then be one a run evaluates safely
            assert check_one_expression(expression) in {"error", "value"}
            continue
        assert done.returncode == 2, (expression[:40], done.returncode, done.stderr)
        assert f"{path}:4" in done.stderr.replace("\n", " "), done.stderr
        assert "hostile" in done.stderr, done.stderr


# ---- 2. plan files --------------------------------------------------------------------------

HEAD = "version: 1\nname: hostile\ntasks:\n"
SHELL = "{kind: shell, run: ['true']}"


def task(task_id: str = "a", extra: str = "") -> str:
    return f"  - id: {task_id}\n    action: {SHELL}\n{extra}"


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for level in range(1, levels):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    return "\n".join(lines) + f"\n{HEAD}{task()}    tags: *a{levels - 1}\n"


# (label, file content, exit code `orch validate` owes, line the error names or None)
PLANS: list[tuple[str, str | bytes, int, int | None]] = [
    ("valid", HEAD + task(), 0, None),
    ("alias bomb in tags", alias_bomb(9), 2, 1),
    ("alias bomb at top", alias_bomb(6).replace("    tags: *a5\n", "") + "x: *a5\n", 2, 1),
    (
        "anchor on a task reused",
        HEAD + "  - &t\n    id: a\n    action: " + SHELL + "\n  - *t\n",
        2,
        4,
    ),
    ("recursive alias", "&a [*a]\n", 2, 1),
    ("merge key bomb", HEAD + "  - <<: {id: a, action: " + SHELL + "}\n    <<: {id: b}\n", 2, 4),
    ("duplicate top key", HEAD + task() + "name: again\n", 2, 6),
    ("duplicate task key", HEAD + "  - id: a\n    id: b\n    action: " + SHELL + "\n", 2, 5),
    ("duplicate task ids", HEAD + task() + task(), 2, 6),
    ("tasks is a string", "version: 1\nname: p\ntasks: nope\n", 2, 3),
    ("tasks is a mapping", "version: 1\nname: p\ntasks: {a: 1}\n", 2, 3),
    ("task is a string", HEAD + "  - just text\n", 2, 4),
    ("name is a list", "version: 1\nname: [a]\ntasks:\n" + task(), 2, 2),
    ("priority NO", HEAD + task(extra="    priority: NO\n"), 2, 6),
    ("priority 1.10", HEAD + task(extra="    priority: 1.10\n"), 2, 6),
    ("timeout 12:30", HEAD + task(extra="    timeout_seconds: 12:30\n"), 0, None),
    ("title NO", HEAD + task(extra="    title: NO\n"), 2, 6),
    ("tags yes/no/on", HEAD + task(extra="    tags: [yes, no, on, off, 1.10, 12:30]\n"), 2, 6),
    ("risk yes", HEAD + task(extra="    risk: yes\n"), 2, 6),
    ("confidence ~", HEAD + task(extra="    confidence: ~\n"), 2, 6),
    ("unknown task field", HEAD + task(extra="    colour: red\n"), 2, 6),
    ("unknown top field", "version: 1\nname: p\nhacks: 1\ntasks:\n" + task(), 2, 3),
    ("unknown action kind", HEAD + "  - id: a\n    action: {kind: teleport}\n", 2, 5),
    ("action without kind", HEAD + "  - id: a\n    action: {run: ['true']}\n", 2, 5),
    (
        "cycle",
        HEAD + task("a", "    depends_on: [b]\n") + task("b", "    depends_on: [a]\n"),
        2,
        6,
    ),
    ("self dependency", HEAD + task("a", "    depends_on: [a]\n"), 2, 6),
    ("missing dependency", HEAD + task("a", "    depends_on: [ghost]\n"), 2, 6),
    ("depends_on a number", HEAD + task("a", "    depends_on: 7\n"), 2, 6),
    ("id too long", HEAD + task("a" * 5000), 2, 4),
    ("id with slash", HEAD + task("a/b"), 2, 4),
    ("id ..", HEAD + task("'..'"), 2, 4),
    ("id ../../etc", HEAD + task("'../../etc/passwd'"), 2, 4),
    ("id with space", HEAD + task("'a b'"), 2, 4),
    ("id with newline", HEAD + task('"a\\nb"'), 2, 4),
    ("id with NUL escape", HEAD + task('"a\\0b"'), 2, 4),
    ("id with ESC", HEAD + task('"a\\e[2Jb"'), 2, 4),
    ("id empty", HEAD + task("''"), 2, 4),
    ("id a number", HEAD + task("12"), 2, 4),
    ("id null", HEAD + task("~"), 2, 4),
    ("id unicode", HEAD + task("\uff41"), 2, 4),  # a fullwidth a
    (
        "non-UTF-8 bytes",
        HEAD.encode() + b"  - id: \xff\xfe\n    action: " + SHELL.encode() + b"\n",
        2,
        4,
    ),
    (
        "Latin-1 title",
        HEAD.encode() + task(extra="    title: caf\xe9\n").encode("latin-1"),
        2,
        6,
    ),
    ("NUL byte", (HEAD + task(extra="    title: a\0b\n")).encode(), 2, 6),
    ("BOM", b"\xef\xbb\xbf" + (HEAD + task()).encode(), 0, None),
    ("UTF-16", (HEAD + task()).encode("utf-16"), 2, 1),
    ("tab indentation", HEAD + "\t- id: a\n\t  action: " + SHELL + "\n", 2, 4),
    ("empty file", "", 2, None),
    ("only a comment", "# nothing\n", 2, None),
    ("only null", "~\n", 2, None),
    ("a list", "- version: 1\n- name: p\n", 2, 1),
    ("a scalar", "hello\n", 2, 1),
    ("version 2", "version: 2\nname: p\ntasks:\n" + task(), 2, 1),
    ("version '1'", "version: '1'\nname: p\ntasks:\n" + task(), 2, 1),
    ("version huge", f"version: {'9' * 5000}\nname: p\ntasks:\n" + task(), 2, 1),
    ("priority huge", HEAD + task(extra=f"    priority: {'9' * 5000}\n"), 2, 6),
    ("priority 10**30", HEAD + task(extra=f"    priority: 1{'0' * 30}\n"), 2, 6),
    ("line_budget huge", HEAD + task(extra=f"    line_budget: 1{'0' * 40}\n"), 2, 6),
    ("confidence .nan", HEAD + task(extra="    confidence: .nan\n"), 2, 6),
    ("confidence .inf", HEAD + task(extra="    confidence: .inf\n"), 2, 6),
    ("timeout .inf", HEAD + task(extra="    timeout_seconds: .inf\n"), 2, 6),
    ("timeout -.inf", HEAD + task(extra="    timeout_seconds: -.inf\n"), 2, 6),
    ("timeout 1e400", HEAD + task(extra="    timeout_seconds: 1e400\n"), 2, 6),
    ("budget .nan", "version: 1\nname: p\nbudget: {max_cost: .nan}\ntasks:\n" + task(), 2, 3),
    (
        "pattern does not compile",
        "version: 1\nname: p\ndefaults:\n  errors:\n    permanent_patterns: ['(']\ntasks:\n"
        + task(),
        2,
        5,
    ),
    (
        "pattern a number list",
        "version: 1\nname: p\ndefaults:\n  errors:\n    transient_patterns: [[1]]\ntasks:\n"
        + task(),
        2,
        5,
    ),
    (
        "shell metacharacters in argv",
        HEAD
        + "  - id: a\n    action: {kind: shell, run: ['echo', '$(touch x); rm -rf / | `id` && >f']}\n",
        0,
        None,
    ),
    ("argv empty", HEAD + "  - id: a\n    action: {kind: shell, run: []}\n", 2, 5),
    ("argv a string", HEAD + "  - id: a\n    action: {kind: shell, run: 'true; rm -rf /'}\n", 2, 5),
    ("argv with NUL", HEAD + '  - id: a\n    action: {kind: shell, run: ["a\\0b"]}\n', 2, 5),
    ("deadline garbage", HEAD + task(extra="    deadline: tomorrow-ish\n"), 2, 6),
    ("deadline year 99999", HEAD + task(extra="    deadline: 99999-01-01\n"), 2, 6),
    (
        "python tag",
        HEAD + task(extra="    title: !!python/object/apply:os.system ['touch x']\n"),
        2,
        6,
    ),
    ("binary tag", HEAD + task(extra="    title: !!binary aGk=\n"), 2, 6),
    ("unknown tag", HEAD + task(extra="    title: !wat x\n"), 2, 6),
    ("set tag", HEAD + task(extra="    tags: !!set {a, b}\n"), 2, 6),
    (
        "deep flow nesting",
        HEAD + task(extra="    tags: " + "[" * 5000 + "]" * 5000 + "\n"),
        2,
        6,
    ),
    ("unterminated flow", HEAD + task(extra="    tags: [a, b\n"), 2, 7),
    ("unterminated quote", HEAD + task(extra="    title: 'open\n"), 2, 7),
    (
        "complex key",
        HEAD + "  - ? [a, b]\n    : 1\n    id: a\n    action: " + SHELL + "\n",
        2,
        4,
    ),
    ("rules file missing", "version: 1\nname: p\nrules: [nope.yaml]\ntasks:\n" + task(), 2, 3),
    ("rules path escapes", "version: 1\nname: p\nrules: ['/dev/zero']\ntasks:\n" + task(), 2, 3),
    ("no tasks", "version: 1\nname: p\ntasks: []\n", 2, 3),
    ("no name", "version: 1\ntasks:\n" + task(), 2, 1),
    (
        "name with markup",
        "version: 1\nname: '<script>alert(1)</script>'\ntasks:\n" + task(),
        0,
        None,
    ),
    ("very long title", HEAD + task(extra="    title: " + "x" * 100_000 + "\n"), 0, None),
]
PLAN_IDS = [label for label, *_ in PLANS]


def test_the_plan_corpus_holds_what_it_promises() -> None:
    assert len(PLANS) + 1 >= 60  # +1: the plan over the task limit below
    assert len(set(PLAN_IDS)) == len(PLAN_IDS)


def write_bytes(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


@pytest.mark.parametrize(("label", "content", "code", "line"), PLANS, ids=PLAN_IDS)
def test_a_hostile_plan_loads_or_is_a_clear_error(
    label: str, content: str | bytes, code: int, line: int | None, tmp_path: Path
) -> None:
    path = write_bytes(tmp_path / "plan.yaml", content)
    if code == 0:
        within_bound(lambda: load_plan(path))
        return
    with pytest.raises(PlanError) as caught:
        within_bound(lambda: load_plan(path))
    error = caught.value
    assert error.file is not None and Path(error.file).name == "plan.yaml", error
    if line is not None:
        lines = [e.line for e in getattr(error, "errors", [error])]
        assert line in lines, (label, str(error))


def test_a_plan_over_the_task_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "MAX_TASKS", 10_000)
    tasks = "".join(f"  - {{id: t{n}, action: {SHELL}}}\n" for n in range(10_001))
    path = write_bytes(tmp_path / "plan.yaml", HEAD + tasks)
    with pytest.raises(PlanError, match="10,001 tasks") as caught:
        within_bound(lambda: load_plan(path), bound=60)
    assert caught.value.file is not None


CLI_SAMPLE = [
    "valid",
    "alias bomb in tags",
    "duplicate task key",
    "priority NO",
    "cycle",
    "id ../../etc",
    "non-UTF-8 bytes",
    "NUL byte",
    "empty file",
    "version 2",
    "confidence .nan",
    "pattern does not compile",
    "shell metacharacters in argv",
    "python tag",
]


def test_orch_validate_answers_a_sample_with_exit_2_and_the_line(tmp_path: Path) -> None:
    by_label = {label: (content, code, line) for label, content, code, line in PLANS}
    for number, label in enumerate(CLI_SAMPLE):
        content, code, line = by_label[label]
        path = write_bytes(tmp_path / f"plan{number}.yaml", content)
        done = orch("validate", str(path), cwd=tmp_path, timeout=CLI_BOUND_S)
        assert "Traceback" not in done.stderr, (label, done.stderr)
        assert done.returncode == code, (label, done.returncode, done.stderr)
        if code == 2:
            assert str(path) in done.stderr.replace("\n", ""), (label, done.stderr)
        if line is not None:
            assert f"{path}:{line}" in done.stderr.replace("\n", ""), (label, done.stderr)
    assert not (tmp_path / "x").exists()  # the python tag and the argv ran nothing


# ---- 3. markup in what the dashboard shows --------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(2)>'
LINK = "javascript:alert(3)"
PAYLOAD = f"{SCRIPT} {IMAGE} {LINK}"
MARKUP_RULES = (
    "breakpoints:\n"
    "  - name: look_at_it\n"
    "    at: after\n"
    "    when: \"'xss' in tags\"\n"
    "    priority: 99\n"
    "    action: pause\n"
    f"    message: {json.dumps('{title} said ' + PAYLOAD)}\n"
)


def markup_run(directory: Path, url: str) -> None:
    """A run whose name, titles, output, breakpoint and dead letter all carry the payload."""
    (directory / "markup.yaml").write_text(MARKUP_RULES)
    printing = f"import sys; print({PAYLOAD!r}); print({PAYLOAD!r}, file=sys.stderr)"
    plan = write_plan(
        directory,
        {
            "version": 1,
            "name": f"xss {PAYLOAD}",
            "rules": ["markup.yaml"],
            "tasks": [
                shell_task(
                    "fails",
                    printing + "; sys.exit(127)",
                    title=f"bad {PAYLOAD}",
                    priority=10,
                    when_exhausted="fail",
                ),
                shell_task("shows", printing, title=f"t {PAYLOAD}", tags=["xss"], priority=1),
            ],
        },
    )
    run_plan(plan, url, "xss", expect="paused")


def assert_escaped(page: httpx.Response, path: str, *, shown: bool = True) -> None:
    assert page.status_code == 200, (path, page.status_code)
    html = page.text
    assert "<script>alert" not in html, path
    assert "<img src=x onerror" not in html and "onerror=alert(2)>" not in html, path
    assert 'href="javascript:' not in html and "href='javascript:" not in html, path
    assert ("&lt;script&gt;alert(1)&lt;/script&gt;" in html) == shown, path


def test_the_dashboard_shows_markup_as_text(tmp_path: Path, sqlite_url: str) -> None:
    markup_run(tmp_path, sqlite_url)
    server = start_server(sqlite_url, tmp_path / "token")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}

        def get(path: str) -> httpx.Response:
            return httpx.get(f"{server.base}{path}", headers=headers, timeout=30)

        (breakpoint,) = get("/api/v1/breakpoints?run=xss").json()["breakpoints"]
        letters = get("/api/v1/dead-letters").json()["dead_letters"]
        assert [letter["task"] for letter in letters] == ["fails"]
        pages = [
            "/runs",
            "/runs/xss",
            "/runs/xss/tasks/shows",
            "/runs/xss/tasks/fails",
            "/breakpoints",
            f"/breakpoints/{breakpoint['id']}",
            f"/dead-letters/{letters[0]['id']}",
            "/runs/xss/live",
        ]
        for path in pages:
            assert_escaped(get(path), path)
        for path in ("/dead-letters", "/runs/xss/interventions"):
            assert_escaped(get(path), path, shown=False)  # pages that show none of the texts
    finally:
        stop_server(server)
