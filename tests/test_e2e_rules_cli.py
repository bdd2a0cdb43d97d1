"""`orch rules check | eval | test`: rule files and step contexts from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import orch, shell_task, write_plan


def test_rules_check_accepts_a_good_file_and_names_the_problem_in_a_bad_one(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "breakpoints:\n  - {name: big, at: after, when: 'lines_changed > 500', action: pause}\n"
    )
    checked = orch("rules", "check", str(good))
    assert checked.returncode == 0 and "1 breakpoint rules" in checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "breakpoints:\n  - {name: typo, at: after, when: 'lines_chnged > 500', action: pause}\n"
    )
    refused = orch("rules", "check", str(bad))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        str(bad) in refused.stderr and "typo" in refused.stderr and "lines_chnged" in refused.stderr
    )


def test_rules_eval_prints_the_value(tmp_path: Path) -> None:
    context = tmp_path / "ctx.json"
    context.write_text(json.dumps({"tests_failed": 3, "result": {"confidence": 0.4}}))
    value = orch(
        "rules",
        "eval",
        "tests_failed > 0 and get(result, 'confidence', 1) < 0.5",
        "--context",
        str(context),
    )
    assert value.returncode == 0 and json.loads(value.stdout) is True
    hostile = orch("rules", "eval", "().__class__")
    assert hostile.returncode == 2 and "Traceback" not in hostile.stderr


def test_rules_test_reports_what_fires_per_context(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "breakpoints:\n  - {name: big, at: after, when: 'lines_changed > 500', action: pause}\n"
    )
    contexts = tmp_path / "steps.jsonl"
    contexts.write_text(
        json.dumps({"task_id": "a", "at": "after", "lines_changed": 900, "label": "stop"})
        + "\n"
        + json.dumps({"task_id": "b", "at": "after", "lines_changed": 10, "label": "go"})
        + "\n"
        + json.dumps({"task_id": "c", "at": "before", "risk": "high", "confidence": 0.3})
        + "\n"
    )
    done = orch(
        "rules",
        "test",
        "--rules",
        str(rules),
        "--no-defaults",
        "--contexts",
        str(contexts),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [r["stop"] for r in report["results"]] == [True, False, True]
    assert report["results"][0]["fired"] == [{"rule": "big", "action": "pause"}]
    assert report["results"][2]["fired"] == [{"rule": "risk_gate", "action": "pause"}]
    assert (
        report["summary"]["labelled_stop_caught"] == 1
        and report["summary"]["labelled_go_stopped"] == 0
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"task_id": "a"}\n{"tests_faild": 1}\n')
    refused = orch("rules", "test", "--contexts", str(broken))
    assert refused.returncode == 2 and ":2" in refused.stderr and "tests_faild" in refused.stderr


def test_backtest_replays_a_stored_run_against_new_rules(tmp_path: Path) -> None:
    db = ["--db", f"sqlite:///{tmp_path / 'state.db'}"]
    noisy = tmp_path / "noisy.yaml"
    noisy.write_text(
        "breakpoints:\n  - {name: wordy, at: after, when: \"contains(output_tail, 'hello')\", action: notify}\n"
    )
    plan = write_plan(
        tmp_path,
        {
            "version": 1,
            "name": "bt",
            "rules": ["noisy.yaml"],
            "tasks": [shell_task("a", "print('hello')"), shell_task("b", "print('bye')")],
        },
    )
    assert orch("run", str(plan), "--run-id", "bt", "--quiet", *db).returncode == 0
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(
        "breakpoints:\n  - {name: says_bye, at: after, when: \"contains(output_tail, 'bye')\", action: pause}\n"
    )
    done = orch("rules", "backtest", "bt", "--rules", str(stricter), "--no-defaults", "--json", *db)
    assert done.returncode == 0, done.stderr
    steps = {s["task"]: s for s in json.loads(done.stdout)["steps"]}
    assert steps["a"]["fired_then"] == ["wordy"] and steps["a"]["removed"] == ["wordy"]
    assert steps["b"]["added"] == ["says_bye"] and steps["b"]["fired_now"] == [
        {"rule": "says_bye", "action": "pause"}
    ]
    text = orch("rules", "backtest", "bt", "--rules", str(stricter), "--no-defaults", *db)
    assert "2 steps replayed, 2 would differ" in text.stdout
