"""Plan parameters: defaults, `--params`, `{name}` in prompts and argv, clear errors; `on:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration.core.errors import PlanError, PlanErrors
from orchestration.engine.plan import load_plan
from orchestration.store import Store
from tests.helpers import PY, orch

PLAN = """\
version: 1
name: greet
params:
  who: world
  times: 2
  loud: false
  ticket: null
on:
  event: issue_labelled
  when: "data['label'] == 'agent'"
  params: {ticket: "data['number']"}
tasks:
  - id: write
    action:
      kind: shell
      run: [PY, -c, "import pathlib; pathlib.Path('out.txt').write_text('{who} x{times} {loud} #{ticket} {unknown}')"]
  - id: ask
    depends_on: [write]
    action: {kind: agent, command: [echo, "{prompt}"], prompt: "Fix ticket {ticket} for {who}"}
"""


def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("PY", PY))
    return path


def test_values_and_defaults_fill_prompts_and_argv(tmp_path: Path) -> None:
    plan = load_plan(plan_file(tmp_path), params={"who": "Ada", "ticket": 42})
    write, ask = plan.spec.tasks
    assert write.action.run[-1].endswith("write_text('Ada x2 false #42 {unknown}')")  # type: ignore[union-attr]
    assert ask.action.prompt == "Fix ticket 42 for Ada"  # type: ignore[union-attr]
    assert ask.action.command == ["echo", "{prompt}"]  # type: ignore[union-attr]
    assert plan.spec.params == {"who": "Ada", "times": 2, "loud": False, "ticket": 42}
    assert plan.spec.on[0].event == "issue_labelled"  # the `on:` key reads as text


def test_checking_a_plan_leaves_required_parameters_unfilled(tmp_path: Path) -> None:
    plan = load_plan(plan_file(tmp_path))  # as `orch validate` does
    assert plan.spec.tasks[1].action.prompt == "Fix ticket {ticket} for world"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("given", "field", "says"),
    [
        (
            {"whom": "x"},
            "params",
            "unknown parameter 'whom'; the plan declares: loud, ticket, times, who",
        ),
        ({"ticket": 1, "times": "many"}, "params.times", "expected a number like its default 2"),
        ({"ticket": 1, "loud": "yes"}, "params.loud", "expected true or false"),
        ({"ticket": [1]}, "params.ticket", "text, a number or true/false"),
        ({}, "params.ticket", "has no default and no value was given"),
    ],
)
def test_bad_values_name_the_file_and_field(
    tmp_path: Path, given: dict[str, object], field: str, says: str
) -> None:
    path = plan_file(tmp_path)
    with pytest.raises(PlanError) as caught:
        load_plan(path, params=given)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert says in str(caught.value)


def test_a_bad_parameter_name_or_trigger_is_a_plan_error(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        PLAN.replace("PY", PY).replace("  who: world", "  2who: world").replace("event: ", "evnt: ")
    )
    with pytest.raises(PlanErrors) as caught:
        load_plan(path)
    text = str(caught.value)
    assert "2who" in text and "evnt" in text


def test_orch_run_params_reach_the_command(tmp_path: Path) -> None:
    path = plan_file(tmp_path)
    db = f"sqlite:///{tmp_path / 'state.db'}"
    done = orch("run", str(path), "--db", db, "--quiet", "--params", '{"who": "Bob", "ticket": 7}')
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.txt").read_text() == "Bob x2 false #7 {unknown}"
    with Store.open(db) as store:
        [run] = store.list_runs()
        assert run.plan_json["spec"]["params"]["who"] == "Bob"  # the values used are stored


def test_orch_run_refuses_unknown_params_naming_the_plan(tmp_path: Path) -> None:
    path = plan_file(tmp_path)
    done = orch("run", str(path), "--db", f"sqlite:///{tmp_path / 's.db'}", "--params", '{"x": 1}')
    assert done.returncode == 2
    assert "plan.yaml" in done.stderr and "unknown parameter 'x'" in done.stderr
    done = orch("run", str(path), "--params", "[1]")
    assert done.returncode == 2 and "--params must be a JSON object" in done.stderr
