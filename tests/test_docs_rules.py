"""docs/rules.md and the code agree: context names, functions and the default rules."""

from __future__ import annotations

import re
from pathlib import Path

from orchestration.core.context import CONTEXT_NAMES
from orchestration.rules.expression_limits import BUILTIN_FUNCTIONS
from orchestration.rules.rule_files import load_rules

DOC = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    heading = re.search(rf"^(#+) {re.escape(title)}\n", text, re.M)
    assert heading, f"docs/rules.md has no section {title!r}"
    level = len(heading.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, heading.end())
    return text[heading.end() : end.start() if end else len(text)]


def first_column_names(table: str) -> list[str]:
    return re.findall(r"^\| `(\w+)`", table, re.M)


def squash(text: str) -> str:
    return " ".join(text.split())


def test_docs_list_exactly_the_context_names_in_order() -> None:
    assert first_column_names(section("Rule context")) == [n.name for n in CONTEXT_NAMES]


def test_docs_list_every_function() -> None:
    documented = set(re.findall(r"^\| `(\w+)\(", section("Functions"), re.M))
    documented |= set(re.findall(r"`(\w+)\([^`]*\)`", section("Functions")))
    assert documented == set(BUILTIN_FUNCTIONS)


def test_docs_describe_every_default_rule_with_its_expression() -> None:
    rules = load_rules()
    text = squash(section("The default rule set"))
    for rule in rules.breakpoints:
        assert f"`{rule.name}`" in text, rule.name
        assert squash(rule.when.source) in text, f"expression of {rule.name} differs from the docs"
        assert squash(rule.doc) in text, f"doc of {rule.name} differs from the docs"
    for decision in rules.decisions:
        assert f"`{decision.name}`" in text, decision.name
        if decision.when is not None:
            assert squash(decision.when.source) in text
