"""A deterministic stand-in for a coding agent: it edits the demo project for one plan task."""

from __future__ import annotations

import difflib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EXIT_MISSING_INPUT = 1
EXIT_USAGE = 2
USAGE = (
    "usage: scripted_agent.py --task ID [--prompt TEXT] [--feedback TEXT] [--answer TEXT]\n"
    "       (run with the demo project as the working directory)"
)
FLAGS = ("--task", "--prompt", "--feedback", "--answer")
PROJECT_MARKER = "inventory/stock.py"
USD_PER_TOKEN = 0.000003
ADR_NAME = "0001-reorder-rules-in-a-json-file.md"

# ---- the text this "agent" writes, step by step ------------------------------------------------

TEST_REORDER = '''\
"""Tests of the reorder report: which SKUs to reorder, and how many units."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest

from inventory import Inventory
from inventory.policy import ReorderRule, load_rules
from inventory.reorder import ReorderLine, reorder_report


class ReorderRuleTests(unittest.TestCase):
    def test_target_level_must_exceed_reorder_point(self) -> None:
        with self.assertRaises(ValueError):
            ReorderRule("bolt-m6", reorder_point=10, target_level=10)

    def test_negative_reorder_point_is_rejected(self) -> None:
        with self.assertRaises(ValueError):
            ReorderRule("bolt-m6", reorder_point=-1, target_level=10)

    def test_sku_is_normalised_like_the_inventory(self) -> None:
        self.assertEqual(ReorderRule(" bolt-m6 ", 5, 20).sku, "BOLT-M6")


class LoadRulesTests(unittest.TestCase):
    def write(self, document: object) -> str:
        directory = tempfile.mkdtemp(prefix="reorder-rules-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "rules.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        return path

    def test_loads_rules_from_a_json_file(self) -> None:
        rule = {"sku": "nut-m6", "reorder_point": 5, "target_level": 50}
        path = self.write({"version": 1, "rules": [rule]})
        self.assertEqual(load_rules(path), [ReorderRule("NUT-M6", 5, 50)])

    def test_duplicate_sku_is_rejected(self) -> None:
        rule = {"sku": "nut-m6", "reorder_point": 5, "target_level": 50}
        path = self.write({"version": 1, "rules": [rule, rule]})
        with self.assertRaisesRegex(ValueError, "NUT-M6"):
            load_rules(path)

    def test_unknown_format_version_is_rejected(self) -> None:
        path = self.write({"version": 2, "rules": []})
        with self.assertRaisesRegex(ValueError, "version"):
            load_rules(path)


class ReorderReportTests(unittest.TestCase):
    def setUp(self) -> None:
        self.rules = [ReorderRule("bolt-m6", reorder_point=10, target_level=50)]

    def test_sku_below_reorder_point_is_reordered(self) -> None:
        report = reorder_report(Inventory({"bolt-m6": 4}), self.rules)
        expected = ReorderLine("BOLT-M6", on_hand=4, reorder_point=10, order_quantity=46)
        self.assertEqual(report, [expected])

    def test_sku_above_reorder_point_is_not_reordered(self) -> None:
        self.assertEqual(reorder_report(Inventory({"bolt-m6": 11}), self.rules), [])

    def test_sku_at_reorder_point_is_reordered(self) -> None:
        report = reorder_report(Inventory({"bolt-m6": 10}), self.rules)
        expected = ReorderLine("BOLT-M6", on_hand=10, reorder_point=10, order_quantity=40)
        self.assertEqual(report, [expected])

    def test_sku_never_received_counts_as_zero_on_hand(self) -> None:
        report = reorder_report(Inventory(), self.rules)
        self.assertEqual([line.order_quantity for line in report], [50])

    def test_report_is_sorted_by_sku(self) -> None:
        rules = [ReorderRule("washer", 5, 20), ReorderRule("anchor", 5, 20)]
        report = reorder_report(Inventory({"washer": 1}), rules)
        self.assertEqual([line.sku for line in report], ["ANCHOR", "WASHER"])


if __name__ == "__main__":
    unittest.main()
'''

ADR = """# 1. Reorder rules live in a versioned JSON file, apart from the stock counts

Status: accepted (approved by a human at the architecture breakpoint)

## Context

The reorder report needs two figures per SKU: the reorder point (reorder when the count on hand
falls to it) and the target level (order enough to come back up to it). `Inventory` holds counts
that change with every pick; the reorder figures are set by purchasing and change rarely. Nothing
in the package is persisted yet, and the package uses the standard library only.

## Options

1. Fields on `Inventory`: one object, but policy and counts change for different reasons and
   every caller that only counts stock would carry reorder figures around.
2. A SQLite table: queries for free, but a schema and migrations for a few hundred rows.
3. A versioned JSON file, loaded into frozen `ReorderRule` values that are validated on load.

## Decision

Option 3. `inventory/policy.py` defines `ReorderRule(sku, reorder_point, target_level)` and
`load_rules(path)`; the file looks like `data/reorder-rules.json`:
`{"version": 1, "rules": [{"sku": ..., "reorder_point": ..., "target_level": ...}]}`.
A rule with a negative reorder point, a target level not above its reorder point, a duplicate
SKU or an unknown format version is refused with a message naming the SKU or the file.
`inventory/reorder.py` computes the report from an `Inventory` and the rules; it stores nothing.

## Consequences

- Purchasing reviews rule changes as ordinary diffs; no database to run or migrate.
- SKUs are normalised exactly as `Inventory` normalises them (trimmed, upper-case).
- Should the rules outgrow one file, only `load_rules` changes: the report takes plain values.
"""

SAMPLE_RULES = """{
  "version": 1,
  "rules": [
    {"sku": "BOLT-M6", "reorder_point": 10, "target_level": 50},
    {"sku": "NUT-M6", "reorder_point": 20, "target_level": 100},
    {"sku": "WASHER-M6", "reorder_point": 20, "target_level": 100}
  ]
}
"""

POLICY_HEAD = '''\
"""Reorder rules: when to reorder a SKU and up to which level, read from a JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RULES_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReorderRule:
    """Reorder a SKU when its count falls to `reorder_point`; order up to `target_level`."""

    sku: str
    reorder_point: int
    target_level: int

    def __post_init__(self) -> None:
        sku = self.sku.strip().upper()
        if not sku:
            raise ValueError("a reorder rule needs a SKU")
        if self.reorder_point < 0:
            raise ValueError(f"{sku}: reorder_point must not be negative, got {self.reorder_point}")
        if self.target_level <= self.reorder_point:
            raise ValueError(
                f"{sku}: target_level {self.target_level} must exceed "
                f"reorder_point {self.reorder_point}"
            )
        object.__setattr__(self, "sku", sku)
'''

POLICY_RULE_METHODS = '''
    def needs_reorder(self, on_hand: int) -> bool:
        """True when the count on hand has fallen to the reorder point or below."""
        return on_hand <= self.reorder_point

    def order_quantity(self, on_hand: int) -> int:
        """Units to order so that the count on hand comes back up to the target level."""
        return self.target_level - on_hand
'''

POLICY_LOAD = '''

def load_rules(path: str | Path) -> list[ReorderRule]:
    """Read a rules file: {"version": 1, "rules": [{sku, reorder_point, target_level}, ...]}."""
    document: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("version") != RULES_FORMAT_VERSION:
        raise ValueError(f"{path}: not a reorder rules file of version {RULES_FORMAT_VERSION}")
    rules: list[ReorderRule] = []
    seen: set[str] = set()
    for entry in document.get("rules", []):
        rule = ReorderRule(
            str(entry["sku"]), int(entry["reorder_point"]), int(entry["target_level"])
        )
        if rule.sku in seen:
            raise ValueError(f"{path}: SKU {rule.sku} has more than one reorder rule")
        seen.add(rule.sku)
        rules.append(rule)
    return rules
'''

POLICY_LOAD_REFACTORED = '''

def _rule_from_entry(entry: dict[str, Any]) -> ReorderRule:
    return ReorderRule(str(entry["sku"]), int(entry["reorder_point"]), int(entry["target_level"]))


def load_rules(path: str | Path) -> list[ReorderRule]:
    """Read a rules file: {"version": 1, "rules": [{sku, reorder_point, target_level}, ...]}."""
    document: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, dict) or document.get("version") != RULES_FORMAT_VERSION:
        raise ValueError(f"{path}: not a reorder rules file of version {RULES_FORMAT_VERSION}")
    rules = [_rule_from_entry(entry) for entry in document.get("rules", [])]
    seen: set[str] = set()
    for rule in rules:
        if rule.sku in seen:
            raise ValueError(f"{path}: SKU {rule.sku} has more than one reorder rule")
        seen.add(rule.sku)
    return rules
'''

REORDER_HEAD = '''\
"""The reorder report: SKUs at or below their reorder point, and how many to order."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from inventory.policy import ReorderRule
from inventory.stock import Inventory


@dataclass(frozen=True)
class ReorderLine:
    """One line of the report: a SKU to reorder and the quantity that tops it up."""

    sku: str
    on_hand: int
    reorder_point: int
    order_quantity: int
'''

# The first attempt's comparison is `<`: a SKU exactly at its reorder point is missed.
REORDER_IMPLEMENTATION = '''

def reorder_report(inventory: Inventory, rules: Iterable[ReorderRule]) -> list[ReorderLine]:
    """The SKUs to reorder, sorted by SKU; a SKU never received counts as 0 on hand."""
    lines: list[ReorderLine] = []
    for rule in sorted(rules, key=lambda rule: rule.sku):
        on_hand = inventory.on_hand(rule.sku)
        if on_hand @COMPARISON@ rule.reorder_point:
            order = rule.target_level - on_hand
            lines.append(ReorderLine(rule.sku, on_hand, rule.reorder_point, order))
    return lines
'''

REORDER_REFACTORED = '''

def _by_sku(rule: ReorderRule) -> str:
    return rule.sku


def _line(rule: ReorderRule, on_hand: int) -> ReorderLine:
    return ReorderLine(rule.sku, on_hand, rule.reorder_point, rule.order_quantity(on_hand))


def reorder_report(inventory: Inventory, rules: Iterable[ReorderRule]) -> list[ReorderLine]:
    """The SKUs to reorder, sorted by SKU; a SKU never received counts as 0 on hand."""
    counted = ((rule, inventory.on_hand(rule.sku)) for rule in sorted(rules, key=_by_sku))
    return [_line(rule, on_hand) for rule, on_hand in counted if rule.needs_reorder(on_hand)]
'''

README_REORDER_SECTION = """
## Reorder report

Which SKUs to reorder, and how many units: a SKU is reordered when its count on hand has fallen
to its reorder point **or below**, and the order brings it back up to its target level. A SKU
that was never received counts as 0 on hand.

```python
from inventory import Inventory
from inventory.policy import load_rules
from inventory.reorder import reorder_report

stock = Inventory({"bolt-m6": 10, "nut-m6": 64})
for line in reorder_report(stock, load_rules("data/reorder-rules.json")):
    print(line.sku, line.on_hand, "->", line.order_quantity)
# BOLT-M6 10 -> 40
# WASHER-M6 0 -> 100
```

The rules live in a versioned JSON file (see `data/reorder-rules.json`); why, and what was
weighed against it, is recorded in `docs/adr/0001-reorder-rules-in-a-json-file.md`:

```json
{"version": 1, "rules": [{"sku": "BOLT-M6", "reorder_point": 10, "target_level": 50}]}
```

`load_rules` refuses a negative reorder point, a target level not above its reorder point, a
duplicate SKU and an unknown format version, naming the SKU or the file.
"""

# ---- the steps ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """What the agent does for one task: files it reads, what it says, files it writes."""

    reads: tuple[str, ...]
    notes: tuple[str, ...]
    writes: dict[str, str]
    summary: str
    confidence: float


def _failing_tests(feedback: str) -> list[str]:
    """The `FAIL: test_x (...)` and `ERROR: ...` lines of unittest output quoted in feedback."""
    return [
        line.strip()
        for line in feedback.splitlines()
        if line.strip().startswith(("FAIL: ", "ERROR: "))
    ]


def write_tests(attempt: int, feedback: str, project: Path) -> Step:
    return Step(
        reads=("inventory/stock.py", "tests/test_stock.py"),
        notes=(
            "planning: rules (reorder point, target level) per SKU; a report of what to order",
            "the boundary matters: a SKU exactly at its reorder point must be reordered",
        ),
        writes={"tests/test_reorder.py": TEST_REORDER},
        summary="added 11 tests for reorder rules and the reorder report; "
        "they fail until inventory/policy.py and inventory/reorder.py exist",
        confidence=0.9,
    )


def design_storage(attempt: int, feedback: str, project: Path) -> Step:
    return Step(
        reads=("inventory/stock.py", "tests/test_reorder.py"),
        notes=(
            "options: fields on Inventory | a SQLite table | a versioned JSON file",
            "choosing the JSON file: stdlib only, reviewable diffs, no migrations",
        ),
        writes={
            "docs/adr/" + ADR_NAME: ADR,
            "inventory/policy.py": POLICY_HEAD + POLICY_LOAD,
            "data/reorder-rules.json": SAMPLE_RULES,
        },
        summary="recorded ADR 0001 (reorder rules in a versioned JSON file) and added "
        "inventory/policy.py with ReorderRule and load_rules",
        confidence=0.8,
    )


def implement(attempt: int, feedback: str, project: Path) -> Step:
    if attempt == 1:
        return Step(
            reads=("tests/test_reorder.py", "inventory/policy.py", "inventory/stock.py"),
            notes=("a SKU is reordered when its count drops under the reorder point",),
            writes={
                "inventory/reorder.py": REORDER_HEAD
                + REORDER_IMPLEMENTATION.replace("@COMPARISON@", "<")
            },
            summary="implemented reorder_report in inventory/reorder.py",
            confidence=0.8,
        )
    failing = _failing_tests(feedback)
    notes = [
        f"feedback: {feedback.strip().splitlines()[0]}"
        if feedback.strip()
        else "no feedback from the previous attempt; re-reading the tests myself"
    ]
    notes += [f"feedback: {line}" for line in failing[:3]]
    notes.append("diagnosis: off by one at the boundary: `on_hand < reorder_point` skips a SKU")
    notes.append("           exactly at its reorder point; the tests say it must be reordered")
    return Step(
        reads=("tests/test_reorder.py", "inventory/policy.py"),
        notes=tuple(notes),
        writes={
            "inventory/reorder.py": REORDER_HEAD
            + REORDER_IMPLEMENTATION.replace("@COMPARISON@", "<=")
        },
        summary="fixed the boundary in reorder_report (`<=`): a SKU at its reorder point "
        "is reordered",
        confidence=0.95,
    )


def refactor(attempt: int, feedback: str, project: Path) -> Step:
    return Step(
        reads=("inventory/policy.py", "inventory/reorder.py"),
        notes=(
            "moving the reorder decision and the order quantity onto ReorderRule",
            "behaviour unchanged: the tests are the contract",
        ),
        writes={
            "inventory/policy.py": POLICY_HEAD + POLICY_RULE_METHODS + POLICY_LOAD_REFACTORED,
            "inventory/reorder.py": REORDER_HEAD + REORDER_REFACTORED,
        },
        summary="ReorderRule.needs_reorder / order_quantity now own the rule; "
        "reorder_report is a comprehension over them",
        confidence=0.9,
    )


def docs(attempt: int, feedback: str, project: Path) -> Step:
    readme = (project / "README.md").read_text(encoding="utf-8")
    marker = "\n## Tests\n"
    if "## Reorder report" in readme:  # a rerun: take the section out, then put it back
        start = readme.index("\n## Reorder report\n")
        end = readme.find(marker, start + 1)
        readme = readme[:start] + (readme[end:] if end != -1 else "\n")
    if marker in readme:
        before, after = readme.split(marker, 1)
        updated = before.rstrip("\n") + "\n" + README_REORDER_SECTION + marker + after
    else:
        updated = readme.rstrip("\n") + "\n" + README_REORDER_SECTION
    return Step(
        reads=("README.md", "inventory/reorder.py", "docs/adr/" + ADR_NAME),
        notes=("documenting the reorder report, the rules file and the boundary rule",),
        writes={"README.md": updated},
        summary="README.md: new section 'Reorder report' with an example and the rules format",
        confidence=0.9,
    )


STEPS: dict[str, Callable[[int, str, Path], Step]] = {
    "write-tests": write_tests,
    "design-storage": design_storage,
    "implement": implement,
    "refactor": refactor,
    "docs": docs,
}

# ---- the agent's loop --------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[agent] {message}", flush=True)


def parse_args(argv: list[str]) -> dict[str, str]:
    """--flag VALUE pairs; a value is taken verbatim, even when it starts with '-'."""
    values = {flag: "" for flag in FLAGS}
    index = 0
    while index < len(argv):
        flag = argv[index]
        if flag not in values or index + 1 >= len(argv):
            raise SystemExit(f"scripted_agent: bad argument {flag!r}\n{USAGE}")
        values[flag] = argv[index + 1]
        index += 2
    return values


def diff_stat(old: str, new: str) -> tuple[int, int]:
    added = removed = 0
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def write_file(project: Path, name: str, text: str) -> bool:
    """Write one file in full (so rerunning an attempt gives the same files); True if changed."""
    path = project / name
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if path.exists() and old == text:
        say(f"unchanged {name}")
        return False
    added, removed = diff_stat(old, text)
    say(f"{'editing' if path.exists() else 'writing'} {name} (+{added} -{removed})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
    return True


def write_result(step: Step, changed: list[str]) -> None:
    target = os.environ.get("ORCH_RESULT")
    if not target:
        return
    tokens = 800 + sum(len(text) for text in step.writes.values()) // 4
    result = {
        "confidence": step.confidence,
        "summary": step.summary,
        "tokens": tokens,
        "cost_usd": round(tokens * USD_PER_TOKEN, 6),
        "files_written": sorted(step.writes),
        "files_changed": changed,
    }
    Path(target).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    task = args["--task"] or os.environ.get("ORCH_TASK_ID", "")
    if task not in STEPS:
        known = ", ".join(STEPS)
        print(f"scripted_agent: unknown task id {task!r}; known: {known}", file=sys.stderr)
        return EXIT_USAGE
    project = Path.cwd()
    if not (project / PROJECT_MARKER).is_file():
        print(
            f"scripted_agent: {project} is not the demo project (no {PROJECT_MARKER}); "
            "run me with the project as the working directory",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        attempt = max(1, int(os.environ.get("ORCH_ATTEMPT", "1")))
    except ValueError:
        attempt = 1
    feedback, answer = args["--feedback"], args["--answer"]

    say(f"task {task}, attempt {attempt}")
    if args["--prompt"].strip():
        say(f"prompt: {args['--prompt'].strip().splitlines()[0]}")
    if answer.strip():
        say(f"human answer: {answer.strip().splitlines()[0]}")
    step = STEPS[task](attempt, feedback, project)
    for name in step.reads:
        path = project / name
        if not path.is_file():
            print(
                f"scripted_agent: {name} is missing; did the task that writes it run?",
                file=sys.stderr,
            )
            return EXIT_MISSING_INPUT
        lines = len(path.read_text(encoding="utf-8").splitlines())
        say(f"reading {name} ({lines} lines)")
    for note in step.notes:
        say(note)
    changed = [name for name, text in step.writes.items() if write_file(project, name, text)]
    write_result(step, changed)
    say(f"done: {step.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
