"""The labelled judgement corpus and the default rules measured on it (docs/rules.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestration.core.context import neutral_context
from orchestration.rules.rule_files import load_rules
from orchestration.rules.rule_tests import LabelFigures, verdicts
from tests.helpers import orch_json

CORPUS = Path(__file__).resolve().parent / "data" / "judgement"
TUNE, HOLDOUT = CORPUS / "tune.jsonl", CORPUS / "holdout.jsonl"
GOAL_RECALL = 0.95
GOAL_FALSE_STOPS = 0.10
# Signals that are not neutral somewhere in the corpus: each must be exercised.
SIGNALS = (
    "tests_new_failing", "tests_removed", "secrets_added", "destructive_operations",
    "api_breaking_changes", "auth_failure", "change_budget", "tests_regressed",
)  # fmt: skip


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def test_the_corpus_is_large_varied_and_split_by_project() -> None:
    tune, holdout = rows(TUNE), rows(HOLDOUT)
    everything = tune + holdout
    assert len(everything) >= 300
    assert len({r["project"] for r in everything}) >= 10
    assert not {r["project"] for r in tune} & {r["project"] for r in holdout}
    assert sum(r["borderline"] for r in everything) >= len(everything) / 3
    for row in everything:
        assert row["label"] in ("stop", "go") and row["why"].strip(), row["task_id"]
    neutral = neutral_context()
    for name in SIGNALS:
        assert any(r.get(name, neutral[name]) != neutral[name] for r in everything), name


def test_every_default_breakpoint_fires_on_some_labelled_stop() -> None:
    rules = load_rules()
    fired: Counter[str] = Counter()
    for path in (TUNE, HOLDOUT):
        for verdict, row in zip(verdicts(rules, path), rows(path), strict=True):
            if row["label"] == "stop":
                fired.update(name for name, action in verdict.fired if action == "pause")
    pausing = {r.name for r in rules.breakpoints if r.action == "pause" and r.at != "during"}
    # a twin fires where its main rule's situation arises before a step; one of each is enough
    missing = {n for n in pausing if not fired[n] and not fired[n.removesuffix("_before")]}
    missing -= {"budget_exceeded_before", "time_threshold_exceeded_before"}
    assert not missing, f"no labelled stop exercises {sorted(missing)}"


def test_the_files_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_corpus"] = module  # dataclasses look their module up while building
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["make_corpus"]
    tune, holdout = module.build()
    assert json.loads(json.dumps(tune)) == rows(TUNE)
    assert json.loads(json.dumps(holdout)) == rows(HOLDOUT)


@pytest.mark.parametrize("path", [TUNE, HOLDOUT], ids=["tune", "holdout"])
def test_default_rules_reach_the_goal(path: Path) -> None:
    figures = LabelFigures.of(verdicts(load_rules(), path))
    assert figures.recall is not None and figures.recall >= GOAL_RECALL, figures
    assert figures.false_stop_rate is not None, figures
    assert figures.false_stop_rate <= GOAL_FALSE_STOPS, figures


def test_rules_test_prints_recall_and_false_stop_rate_of_the_holdout() -> None:
    report = orch_json("rules", "test", "--contexts", str(HOLDOUT))
    summary = report["summary"]
    stops = [r for r in report["results"] if r["label"] == "stop"]
    goes = [r for r in report["results"] if r["label"] == "go"]
    assert summary["recall"] == round(sum(r["stop"] for r in stops) / len(stops), 4)
    assert summary["false_stop_rate"] == round(sum(r["stop"] for r in goes) / len(goes), 4)
    assert summary["recall"] >= GOAL_RECALL and summary["false_stop_rate"] <= GOAL_FALSE_STOPS
