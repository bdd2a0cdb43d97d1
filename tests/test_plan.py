"""Plan loading: every bad input gives a message naming the file, line, task and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestration.core import yamlfile
from orchestration.core.errors import PlanError, PlanErrors
from orchestration.core.models import TaskSpec
from orchestration.core.yamlfile import LineMap, load_yaml_file
from orchestration.engine import plan as plan_module
from orchestration.engine.plan import load_plan, plan_from_dict, topological_order

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "bad-plans"

HEADER = """\
version: 1
name: demo
workdir: ./repo
concurrency: {max_workers: 2, pools: {agent: 1}}
tasks:
"""  # tasks start on line 6


def write_plan(tmp_path: Path, tasks: str, *, header: str = HEADER) -> Path:
    """A plan file with `tasks` (indented YAML list items) under HEADER; ./repo exists."""
    (tmp_path / "repo").mkdir(exist_ok=True)
    path = tmp_path / "plan.yaml"
    path.write_text(header + textwrap.dedent(tasks).strip("\n") + "\n", encoding="utf-8")
    return path


def write_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[PlanError]:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    error = info.value
    return error.errors if isinstance(error, PlanErrors) else [error]


def only_problem(path: Path) -> PlanError:
    found = problems(path)
    assert len(found) == 1, "\n".join(str(p) for p in found)
    return found[0]


def assert_where(
    error: PlanError, path: Path, *, line: int | None, task: str | None, field: str | None
) -> None:
    assert error.file == str(path)
    assert (error.line, error.task, error.field) == (line, task, field), str(error)
    text = str(error)
    assert text.startswith(f"{path}:{line}:" if line else f"{path}:")
    if task:
        assert f"task '{task}'" in text
    if field:
        assert f"field '{field}'" in text


# ---- good plans ----------------------------------------------------------------------------


def test_good_plan_loads_with_defaults_applied_and_paths_resolved(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("breakpoints: []\n")
    path = write_plan(
        tmp_path,
        """
        - id: write-tests
          title: Write failing tests
          action: {kind: agent, prompt: "Write tests", command: [my-agent, "{prompt}"]}
          priority: high
          risk: medium
          confidence: 0.9
          deadline: "2026-12-01T12:00:00Z"
          pool: agent
          tags: [tests]
          acceptance: ["exit_code == 0", "changed_files_count > 0"]
        - id: implement
          depends_on: [write-tests]
          trigger: all_done
          action: {kind: shell, run: [python, scripts/apply.py]}
          priority: 7
          branches:
            - when: "tests_failed > 0"
              spawn: [{id: diagnose, action: {kind: python, call: "pkg.mod:fix"}}]
        """,
        header=HEADER.replace("tasks:", "rules: [./rules.yaml]\ntasks:"),
    )
    plan = load_plan(str(path))
    assert plan.path == str(path.resolve())
    assert plan.workdir == str((tmp_path / "repo").resolve())
    assert Path(plan.workdir).is_absolute()
    assert plan.rule_files == (str((tmp_path / "rules.yaml").resolve()),)
    first, second = plan.spec.tasks
    assert (first.priority, second.priority) == (8, 7)  # names normalised to 1..10
    assert plan.retry_policy(second).max_attempts == 3
    assert plan.timeout(second) == 900.0
    assert second.risk == "low" and second.confidence == 1.0 and second.trigger == "all_done"
    assert second.branches[0].spawn[0].id == "diagnose"


def test_agent_command_may_come_from_defaults(tmp_path: Path) -> None:
    header = HEADER.replace("tasks:", "defaults: {agent_command: [my-agent, '{prompt}']}\ntasks:")
    path = write_plan(tmp_path, "- {id: a, action: {kind: agent, prompt: hi}}", header=header)
    assert load_plan(path).spec.defaults.agent_command == ["my-agent", "{prompt}"]


def test_stored_plan_round_trips_through_plan_from_dict(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: a, action: {kind: shell, run: [make]}, priority: low, deadline: 2026-12-01T12:00:00Z}
        - {id: b, depends_on: [a], action: {kind: shell, run: [make, test]}, validators: [lint]}
        """,
    )
    loaded = load_plan(path)
    stored = loaded.spec.model_dump(mode="json")
    again = plan_from_dict(stored, path=path, check_paths=False)
    assert again.spec == loaded.spec
    assert again.workdir == loaded.workdir


def test_plan_from_dict_skips_path_checks_on_request(tmp_path: Path) -> None:
    data = {
        "version": 1,
        "name": "stored",
        "workdir": "./gone",
        "tasks": [{"id": "a", "action": {"kind": "shell", "run": ["true"]}}],
    }
    plan = plan_from_dict(data, path=tmp_path / "plan.yaml", check_paths=False)
    assert plan.workdir == str((tmp_path / "gone").resolve())
    with pytest.raises(PlanErrors) as info:
        plan_from_dict(data, path=tmp_path / "plan.yaml")
    assert "workdir './gone' does not exist" in str(info.value)
    assert info.value.errors[0].line is None  # no file, no lines


def test_plan_from_dict_reports_problems_without_lines(tmp_path: Path) -> None:
    data = {
        "version": 1,
        "name": "stored",
        "tasks": [
            {"id": "a", "action": {"kind": "shell", "run": ["true"]}},
            {"id": "a", "action": {"kind": "shell", "run": ["true"]}},
        ],
    }
    with pytest.raises(PlanErrors) as info:
        plan_from_dict(data, path=tmp_path / "plan.yaml", check_paths=False)
    assert str(info.value).endswith(
        "task 'a', field 'id': duplicate task id 'a'; first at tasks[0].id"
    )


# ---- files that are not plans --------------------------------------------------------------


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: 1\nname: demo\ntasks: [a, b\nother: 1\n")
    error = only_problem(path)
    assert not isinstance(error, PlanErrors)
    assert error.line == 4 and error.column is not None
    assert str(error).startswith(f"{path}:4:{error.column}: invalid YAML: ")
    assert "flow sequence at line 3" in str(error)


def test_tab_indentation_gets_a_hint(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: 1\ntasks:\n\t- id: a\n")
    assert "tabs" in str(only_problem(path))


def test_billion_laughs_is_rejected_at_the_first_anchor_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    path = write_file(tmp_path, "\n".join(lines) + "\n")
    error = only_problem(path)
    assert error.line == 1
    assert "anchors (&a0) are not allowed" in str(error)


def test_alias_is_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: 1\nname: *undefined\n")
    assert "aliases (*undefined) are not allowed" in str(only_problem(path))


def test_duplicate_keys_name_the_key_and_both_lines(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [make]}
          priority: high
          priority: low
        """,
    )
    error = only_problem(path)
    assert error.line == 9
    assert "duplicate key 'priority' (first at line 8, again at 9)" in str(error)


@pytest.mark.parametrize(
    ("key", "kind"),
    [("yes", "a boolean"), ("1", "a number"), ("null", "null"), ("2024-01-01", "a date")],
)
def test_keys_must_be_text(tmp_path: Path, key: str, kind: str) -> None:
    path = write_file(tmp_path, f"version: 1\n{key}: x\n")
    error = only_problem(path)
    assert error.line == 2
    assert f"the key '{key}' is read as {kind}" in str(error)
    assert str(error).endswith("put the key in quotes")


def test_complex_keys_and_merge_keys_are_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path, "? [a, b]\n: c\n")
    assert "mapping keys must be plain text" in str(only_problem(path))
    path = write_file(tmp_path, "base: 1\n<<: {a: 1}\n")
    assert "merge keys (<<) are not supported" in str(only_problem(path))


def test_python_tags_are_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: !!python/object/apply:os.system [echo hi]\n")
    error = only_problem(path)
    assert "the tag !!python/object/apply:os.system is not supported" in str(error)


@pytest.mark.parametrize("text", ["", "   \n\n", "# just a comment\n", "---\n", "~\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write_file(tmp_path, text)
    assert str(only_problem(path)) == f"{path}: the file is empty"


def test_file_holding_a_list_is_not_a_plan(tmp_path: Path) -> None:
    path = write_file(tmp_path, "- id: a\n- id: b\n")
    error = only_problem(path)
    assert str(error) == (
        f"{path}:1: a plan must be a mapping with version, name and tasks; this file holds a list"
    )


def test_two_documents_are_rejected(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: 1\n---\nversion: 1\n")
    error = only_problem(path)
    assert error.line == 2 and "only one YAML document" in str(error)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert str(only_problem(missing)) == f"{missing}: no such file"
    assert str(only_problem(tmp_path)) == f"{tmp_path}: is a directory, not a YAML file"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    error = only_problem(path)
    assert error.line == 2 and "not UTF-8 text" in str(error)


def test_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(b"version: 1\nname: a\x00b\n")
    error = only_problem(path)
    assert error.line == 2 and "invalid YAML" in str(error)


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "a: {" * 5_000 + "}" * 5_000])
def test_deep_nesting_is_an_error_not_a_crash(tmp_path: Path, text: str) -> None:
    # Very deep input may be refused by our depth limit or, first, by the YAML parser's own (its
    # wording is the parser's): either way one error on the file's first line, never a crash.
    path = write_file(tmp_path, text)
    error = only_problem(path)
    assert error.line == 1 and str(path) in str(error)


def test_nesting_past_our_limit_names_the_limit(tmp_path: Path) -> None:
    depth = yamlfile.MAX_DEPTH + 1  # far below any parser limit: our check is the one that fires
    path = write_file(tmp_path, "[" * depth + "]" * depth)
    assert f"nested deeper than {yamlfile.MAX_DEPTH} levels" in str(only_problem(path))


def test_oversized_file_is_rejected_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(yamlfile, "MAX_FILE_BYTES", 100)
    path = write_file(tmp_path, "name: " + "x" * 200 + "\n")
    assert "the limit is" in str(only_problem(path))


def test_too_many_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "MAX_TASKS", 2)
    tasks = "\n".join(f"- {{id: t{i}, action: {{kind: shell, run: [x]}}}}" for i in range(3))
    error = only_problem(write_plan(tmp_path, tasks))
    assert "the plan has 3 tasks; the limit is 2 per plan" in str(error)
    assert error.line == 5


@pytest.mark.parametrize("version", ["2", "'1'", "true"])
def test_other_versions_are_refused_alone(tmp_path: Path, version: str) -> None:
    header = HEADER.replace("version: 1", f"version: {version}")
    path = write_plan(tmp_path, "- {id: a, action: {kind: nope}}", header=header)
    error = only_problem(path)  # the bad action is not reported: the schema is another one
    assert_where(error, path, line=1, task=None, field="version")
    assert "unsupported plan version" in str(error)
    assert "this orchestration reads version 1" in str(error)


def test_missing_version_and_name(tmp_path: Path) -> None:
    path = write_file(tmp_path, "tasks:\n  - {id: a, action: {kind: shell, run: [x]}}\n")
    messages = [str(p) for p in problems(path)]
    assert f"{path}:1: missing required field 'version'" in messages
    assert f"{path}:1: missing required field 'name'" in messages


# ---- task problems -------------------------------------------------------------------------


def test_duplicate_task_ids_name_both_lines(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [make]}
        - id: a
          action: {kind: shell, run: [make]}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=8, task="a", field="id")
    assert "duplicate task id 'a'; first at line 6" in str(error)


def test_unknown_dependency_with_suggestion(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: write-tests, action: {kind: shell, run: [make]}}
        - {id: implement, depends_on: [write-test], action: {kind: shell, run: [make]}}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=7, task="implement", field="depends_on")
    assert error.message == (
        "task 'implement' depends on unknown task 'write-test'; did you mean 'write-tests'?"
    )


def test_self_dependency(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, depends_on: [a], action: {kind: shell, run: [x]}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="depends_on")
    assert "task 'a' depends on itself (dependency cycle: a -> a)" in str(error)


def test_two_node_cycle(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: a, depends_on: [b], action: {kind: shell, run: [x]}}
        - {id: b, depends_on: [a], action: {kind: shell, run: [x]}}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="depends_on")
    assert "dependency cycle: a -> b -> a" in str(error)


def test_three_node_cycle_prints_its_path_once(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: start, action: {kind: shell, run: [x]}}
        - {id: c, depends_on: [b, start], action: {kind: shell, run: [x]}}
        - {id: a, depends_on: [c], action: {kind: shell, run: [x]}}
        - {id: b, depends_on: [a], action: {kind: shell, run: [x]}}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=7, task="c", field="depends_on")
    assert "dependency cycle: c -> b -> a -> c" in str(error)


def test_each_distinct_cycle_is_reported(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: a, depends_on: [b], action: {kind: shell, run: [x]}}
        - {id: b, depends_on: [a], action: {kind: shell, run: [x]}}
        - {id: c, depends_on: [d], action: {kind: shell, run: [x]}}
        - {id: d, depends_on: [c], action: {kind: shell, run: [x]}}
        """,
    )
    messages = [p.message for p in problems(path)]
    assert messages == [
        "dependency cycle: a -> b -> a ('->' reads 'depends on')",
        "dependency cycle: c -> d -> c ('->' reads 'depends on')",
    ]


def test_long_chain_and_long_cycle_need_no_recursion(tmp_path: Path) -> None:
    n = 5_000
    tasks = [{"id": "t0", "action": {"kind": "shell", "run": ["x"]}, "depends_on": [f"t{n - 1}"]}]
    tasks += [
        {"id": f"t{i}", "action": {"kind": "shell", "run": ["x"]}, "depends_on": [f"t{i - 1}"]}
        for i in range(1, n)
    ]
    data = {"version": 1, "name": "chain", "tasks": tasks}
    with pytest.raises(PlanErrors) as info:
        plan_from_dict(data, path=tmp_path / "p.yaml", check_paths=False)
    assert str(info.value).count("dependency cycle: t0 -> t4999 -> t4998") == 1
    tasks[0]["depends_on"] = []
    plan = plan_from_dict(data, path=tmp_path / "p.yaml", check_paths=False)
    assert topological_order(plan.spec.tasks)[:3] == ["t0", "t1", "t2"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("priority: urgent", "unknown priority 'urgent'; expected critical | high | medium | low"),
        ("priority: 11", "priority 11 is out of range; expected 1..10 or a name"),
        ("priority: 11.0", "priority 11.0 is out of range; expected 1..10 or a name"),
        ("priority: true", "expected a priority name or an integer 1..10"),
        ("risk: extreme", "unknown risk 'extreme'; expected low | medium | high"),
        ("trigger: always", "unknown trigger 'always'; expected all_success | all_done"),
        ("confidence: 1.5", "confidence 1.5 is out of range; expected a number from 0 to 1"),
        ("confidence: -0.1", "confidence -0.1 is out of range; expected a number from 0 to 1"),
        ("confidence: high", "expected a number, got the text 'high'"),
        ("timeout_seconds: 0", "timeout_seconds 0 is out of range; expected more than 0"),
        ("deadline: tomorrow", "expected a date and time such as 2026-12-01T12:00:00Z"),
        ("tags: tests", "expected a list such as [tests], got the text 'tests'"),
        ("retry: 3", "expected a mapping (key: value), got the number 3"),
    ],
)
def test_bad_field_values(tmp_path: Path, line: str, message: str) -> None:
    path = write_plan(
        tmp_path,
        f"""
        - id: implement
          action: {{kind: shell, run: [make]}}
          {line}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=8, task="implement", field=line.split(":")[0])
    assert message in error.message


@pytest.mark.parametrize(
    ("value", "hint"),
    [("NO", "the boolean false; YAML reads unquoted yes/no"), ("12:30", "the number 750; YAML")],
)
def test_yaml_11_surprises_in_text_fields_are_rejected_with_a_hint(
    tmp_path: Path, value: str, hint: str
) -> None:
    path = write_plan(
        tmp_path,
        f"""
        - id: a
          title: {value}
          action: {{kind: shell, run: [make]}}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=7, task="a", field="title")
    assert f"expected text, got {hint}" in error.message
    assert "put it in quotes" in error.message


def test_numbers_in_argv_must_be_quoted(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: shell, run: [sleep, 1.10]}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action.run[1]")
    assert "expected text, got the number 1.1" in error.message


def test_unknown_action_kind(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: foo, run: [x]}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action.kind")
    assert error.message == "unknown action kind 'foo'; expected one of shell, agent, python"


def test_an_action_kind_that_is_not_text(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: 5, run: [x]}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action")
    assert error.message == (
        "the action's kind must be text, one of shell, agent, python; got the number 5"
    )


def test_a_plugin_kind_loads_when_a_plugin_provides_it(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: http, args: {url: 'x'}}}")
    plan = load_plan(path, action_kinds=("shell", "agent", "python", "http"))
    action = plan.spec.tasks[0].action
    assert (action.kind, action.args) == ("http", {"url": "x"})


def test_an_unknown_plugin_kind_names_the_loaded_ones_and_hides_its_field_errors(
    tmp_path: Path,
) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: htp, url: x}
        """,
    )
    with pytest.raises(PlanErrors) as caught:
        load_plan(path, action_kinds=("shell", "agent", "python", "http", "deploy"))
    [error] = caught.value.errors
    assert_where(error, path, line=7, task="a", field="action.kind")
    assert error.message == (
        "unknown action kind 'htp'; expected one of shell, agent, python, deploy, http"
        "; did you mean 'http'?"
    )


def test_a_plugin_action_keeps_its_options_under_args(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: http, url: x}}")
    with pytest.raises(PlanErrors) as caught:
        load_plan(path, action_kinds=("http",))
    [error] = caught.value.errors
    assert_where(error, path, line=6, task="a", field="action")
    assert error.message.startswith("unknown field 'url'")


def test_action_without_kind(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {run: [x]}}")
    assert only_problem(path).message == (
        "the action has no 'kind'; expected one of shell, agent, python"
    )


def test_action_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: make test}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action")
    assert "expected an action: a mapping such as {kind: shell, run: [...]}" in error.message


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("{kind: shell}", "action kind 'shell' needs field 'run' (an argv list"),
        ("{kind: agent, command: [x]}", "action kind 'agent' needs field 'prompt'"),
        ("{kind: python}", "action kind 'python' needs field 'call'"),
    ],
)
def test_action_missing_fields(tmp_path: Path, action: str, message: str) -> None:
    path = write_plan(tmp_path, f"- id: a\n  action: {action}\n")
    error = only_problem(path)
    assert_where(error, path, line=7, task="a", field="action")
    assert message in error.message


def test_shell_run_given_as_a_string(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- id: a\n  action: {kind: shell, run: make test}\n")
    error = only_problem(path)
    assert_where(error, path, line=7, task="a", field="action.run")
    assert error.message == (
        "'run' must be an argv list such as [make, test], not a string: "
        "commands never run through a shell"
    )


def test_python_call_format(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: python, call: os.system}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action.call")
    assert "'package.module:function'" in error.message


def test_unknown_field_with_suggestion(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [x]}
        - id: b
          depend_on: [a]
          action: {kind: shell, run: [x], timeout: 5}
        """,
    )
    first, second = problems(path)
    assert_where(first, path, line=9, task="b", field=None)
    assert first.message == "unknown field 'depend_on'; did you mean 'depends_on'?"
    assert_where(second, path, line=10, task="b", field="action")
    assert second.message == "unknown field 'timeout'; did you mean 'timeout_seconds'?"


def test_unknown_top_level_field(tmp_path: Path) -> None:
    header = HEADER.replace("concurrency:", "concurency:")
    path = write_plan(tmp_path, "- {id: a, action: {kind: shell, run: [x]}}", header=header)
    error = only_problem(path)
    assert_where(error, path, line=4, task=None, field=None)
    assert error.message == "unknown field 'concurency'; did you mean 'concurrency'?"


def test_bad_task_id_and_missing_id(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - {id: "has space", action: {kind: shell, run: [x]}}
        - {action: {kind: shell, run: [x]}}
        - just text
        """,
    )
    bad_id, missing, text = problems(path)
    assert_where(bad_id, path, line=6, task="has space", field="id")
    assert "invalid task id 'has space'" in bad_id.message
    assert_where(missing, path, line=7, task=None, field="tasks[1]")
    assert missing.message == "missing required field 'id'"
    assert_where(text, path, line=8, task=None, field="tasks[2]")
    assert "expected a task: a mapping with id, action" in text.message


def test_plan_without_tasks(tmp_path: Path) -> None:
    path = write_file(tmp_path, "version: 1\nname: demo\ntasks: []\n")
    error = only_problem(path)
    assert_where(error, path, line=3, task=None, field="tasks")
    assert error.message == "a plan needs at least one task"


def test_unknown_pool(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, pool: agnt, action: {kind: shell, run: [x]}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="pool")
    assert error.message == (
        "pool 'agnt' is not declared in concurrency.pools; did you mean 'agent'?"
    )


def test_agent_action_without_any_command(tmp_path: Path) -> None:
    path = write_plan(tmp_path, "- {id: a, action: {kind: agent, prompt: hi}}")
    error = only_problem(path)
    assert_where(error, path, line=6, task="a", field="action.command")
    assert "defaults.agent_command is not set" in error.message


def test_missing_workdir(tmp_path: Path) -> None:
    header = HEADER.replace("./repo", "./elsewhere")
    path = write_plan(tmp_path, "- {id: a, action: {kind: shell, run: [x]}}", header=header)
    error = only_problem(path)
    assert_where(error, path, line=3, task=None, field="workdir")
    assert error.message.startswith("workdir './elsewhere' does not exist (resolved to /")


def test_workdir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    header = HEADER.replace("./repo", "afile")
    path = write_plan(tmp_path, "- {id: a, action: {kind: shell, run: [x]}}", header=header)
    assert "workdir 'afile' is not a directory" in only_problem(path).message


def test_missing_rule_file(tmp_path: Path) -> None:
    header = HEADER.replace("tasks:", "rules: [./my-breakpoints.yaml]\ntasks:")
    path = write_plan(tmp_path, "- {id: a, action: {kind: shell, run: [x]}}", header=header)
    error = only_problem(path)
    assert_where(error, path, line=5, task=None, field="rules[0]")
    assert "rule file './my-breakpoints.yaml' does not exist" in error.message


def test_branch_spawn_ids_must_not_collide(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [x]}
        - id: b
          action: {kind: shell, run: [x]}
          branches:
            - when: "tests_failed > 0"
              spawn:
                - {id: a, action: {kind: shell, run: [x]}}
                - {id: fix, action: {kind: shell, run: [x]}}
            - when: "lint_errors > 0"
              spawn: [{id: fix, action: {kind: shell, run: [x]}, depends_on: [nowhere]}]
        """,
    )
    clash, twice, unknown = problems(path)
    assert_where(clash, path, line=13, task="a", field="id")
    assert "branch task id 'a' is already the id of a plan task (line 6)" in clash.message
    assert_where(twice, path, line=16, task="fix", field="id")
    assert "branch task id 'fix' is also spawned at line 14" in twice.message
    assert_where(unknown, path, line=16, task="fix", field="depends_on")


def test_problems_inside_branch_tasks_name_the_branch_task(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [x]}
          branches:
            - when: "tests_failed > 0"
              spawn:
                - id: diagnose
                  priority: urgent
                  action: {kind: shell, run: [x]}
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=12, task="diagnose", field="priority")


def test_invalid_acceptance_expression_becomes_a_plan_error(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [x]}
          acceptance:
            - "exit_code == 0"
            - "no_such_name > 1"
        """,
    )
    error = only_problem(path)
    assert type(error) is PlanError
    assert_where(error, path, line=10, task="a", field="acceptance[1]")
    assert "invalid expression 'no_such_name > 1'" in error.message
    assert "no_such_name" in error.message.split(":", 1)[1]


def test_invalid_branch_condition_becomes_a_plan_error(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          action: {kind: shell, run: [x]}
          branches:
            - when: "tests_failed >"
              spawn: [{id: b, action: {kind: shell, run: [x]}}]
        """,
    )
    error = only_problem(path)
    assert_where(error, path, line=9, task="a", field="branches[0].when")
    assert "invalid expression 'tests_failed >'" in error.message


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        """
        - id: a
          priority: urgent
          depends_on: [ghost]
          action: {kind: shell, run: make}
        - id: b
          risk: extreme
          pool: gpu
          action: {kind: shell, run: [x]}
        """,
    )
    with pytest.raises(PlanErrors) as info:
        load_plan(path)
    lines = str(info.value).splitlines()
    assert [e.line for e in info.value.errors] == [7, 8, 9, 11, 12]
    assert len(lines) == 5
    assert all(line.startswith(f"{path}:") for line in lines)


def test_the_number_of_listed_problems_is_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plan_module, "MAX_REPORTED", 3)
    task = "- {{id: t{}, risk: bad, action: {{kind: shell, run: [x]}}}}"
    tasks = "\n".join(task.format(i) for i in range(5))
    found = problems(write_plan(tmp_path, tasks))
    assert len(found) == 4
    assert str(found[-1]) == f"{tmp_path / 'plan.yaml'}: 2 more problems not shown"


# ---- examples, line map, order, scale ------------------------------------------------------


@pytest.mark.parametrize("name", ["cycle", "unknown-dependency", "bad-priority", "malformed"])
def test_bad_plan_examples_fail_as_documented(name: str) -> None:
    path = EXAMPLES / f"{name}.yaml"
    readme = (EXAMPLES / "README.md").read_text()
    found = problems(path)
    assert found
    assert f"{name}.yaml" in readme
    for problem in found:
        if name == "malformed":  # the wording comes from libyaml, or PyYAML without it
            assert problem.line == 6 and problem.message.startswith("invalid YAML: ")
        else:
            assert problem.message in readme


def test_line_map_falls_back_to_the_closest_parent(tmp_path: Path) -> None:
    path = write_file(tmp_path, "a: 1\ntasks:\n  - id: x\n    env:\n      K: v\n  - [1, 2]\n")
    data, lines = load_yaml_file(path)
    assert data["tasks"][0]["env"] == {"K": "v"}
    assert lines.line_of(("tasks", 0, "env", "K")) == 5
    assert lines.line_of(("tasks", 0, "priority")) == 3
    assert lines.line_of(("tasks", 1, 1)) == 6
    assert lines.line_of(("tasks", 9, "id")) == 2
    assert lines.line_of(("a", "deeper")) == 1
    assert lines.line_of(()) == 1
    assert LineMap().line_of(("tasks",)) is None


def test_topological_order_is_stable_by_plan_order() -> None:
    def task(task_id: str, *deps: str) -> TaskSpec:
        return TaskSpec(id=task_id, action={"kind": "shell", "run": ["x"]}, depends_on=list(deps))

    tasks = [task("d", "b"), task("a"), task("b", "a", "a"), task("c"), task("e", "outside")]
    assert topological_order(tasks) == ["a", "b", "d", "c", "e"]
    with pytest.raises(PlanError, match="dependency cycle among tasks: x, y"):
        topological_order([task("x", "y"), task("y", "x"), task("z")])


def test_ten_thousand_tasks_load(tmp_path: Path) -> None:
    lines = [HEADER.rstrip("\n")]
    for i in range(10_000):
        deps = f", depends_on: [t{i - 1}, t{i // 2}]" if i > 1 else ""
        lines.append(
            f"  - {{id: t{i}, title: Task {i}, action: {{kind: shell, run: [make, t{i}]}},"
            f" priority: high, tags: [a], acceptance: ['exit_code == 0']{deps}}}"
        )
    (tmp_path / "repo").mkdir()
    path = tmp_path / "plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    plan = load_plan(path)  # `python -m bench.throughput` reports load time
    assert len(plan.spec.tasks) == 10_000
    assert topological_order(plan.spec.tasks)[-1] == "t9999"
