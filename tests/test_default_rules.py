"""The default breakpoints against labelled step contexts: stop lines pause, go lines stay quiet."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from orchestration.context import neutral_context
from orchestration.models import Scheduling
from orchestration.rules import evaluate_breakpoints, load_rules

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "judgement-dev.jsonl"
LABEL_KEYS = ("at", "label", "kind", "why")
MAX_GO_PAUSES = 2  # a careful reviewer tolerates very few needless interruptions


def pausing_rules(rules: Any, line: dict[str, Any]) -> list[str]:
    # Names the file predates (stuck and budget figures) keep their neutral values.
    context = {**neutral_context(), **{k: v for k, v in line.items() if k not in LABEL_KEYS}}
    fired = evaluate_breakpoints(rules, line["at"], context)
    errors = [f"{rule.name}: {error}" for rule, error in fired if error is not None]
    assert not errors, errors
    paused = [rule.name for rule, error in fired if rule.action == "pause"]
    # The engine's risk gate holds high-risk work below its confidence threshold before rules.
    gate = Scheduling().risk_gate_confidence
    if line["at"] == "before" and line["risk"] == "high" and line["confidence"] < gate:
        paused.append("risk_gate")
    return paused


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} is not available")
def test_default_breakpoints_pause_on_stop_lines_and_not_on_go_lines() -> None:
    rules = load_rules()
    lines = [json.loads(text) for text in DATA.read_text(encoding="utf-8").splitlines() if text]
    table: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    missed, noisy = [], []
    for line in lines:
        paused = pausing_rules(rules, line)
        row = table[(line["label"], line["kind"])]
        row[0] += 1
        row[1] += bool(paused)
        if line["label"] == "stop" and not paused:
            missed.append(f"{line['task_id']} ({line['kind']}): {line['why']}")
        if line["label"] == "go" and paused:
            noisy.append(f"{line['task_id']} ({line['kind']}) paused by {paused}")
    report = "\n".join(
        f"{label:4} {kind:28} {fired}/{count} paused"
        for (label, kind), (count, fired) in sorted(table.items())
    )
    details = "\n".join(["missed stops:", *missed, "needless pauses:", *noisy])
    assert not missed and len(noisy) <= MAX_GO_PAUSES, f"\n{report}\n{details}"
