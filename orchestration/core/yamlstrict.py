"""Strict YAML for user files: no aliases, no duplicate keys, no exotic tags; with positions."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import yaml

logger = logging.getLogger(__name__)

MAX_YAML_CHARS = 2_000_000  # a user file larger than this is a mistake, not a plan
MAX_YAML_NODES = 200_000

# The tags a user file may contain; `!!python/...`, `!!binary`, `!!set` and friends are refused.
_ALLOWED_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:timestamp",
}


class YamlError(ValueError):
    """A YAML file is unreadable or uses a refused feature; carries file, line and column."""

    def __init__(
        self, message: str, *, file: str, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class Position:
    """Where an entry is (1-based): the line of its key or list item, where its value starts,
    and whether the value is a one-line scalar (plain or quoted): then a column inside it maps to
    a column of the file."""

    line: int
    value_line: int
    value_column: int
    inline: bool
    quoted: bool


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2-like scalars (only true/false are booleans, no base-60 numbers)
    that refuses anchors and aliases before PyYAML expands anything."""

    file = "<yaml>"

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            mark = event.start_mark
            raise YamlError(
                "anchors and aliases (&name, *name) are not allowed",
                file=self.file,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        return super().compose_node(parent, index)


# YAML 1.1 turns `no`, `on`, `1:30` into booleans and numbers; rule and plan authors do not expect
# that. Rebuild the implicit resolvers with the YAML 1.2 core schema's patterns.
_StrictLoader.yaml_implicit_resolvers = {}
_RESOLVERS = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    (
        "tag:yaml.org,2002:timestamp",
        r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}"
        r"(?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?"
        r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)?)$",
        "0123456789",
    ),
)
for _tag, _pattern, _first in _RESOLVERS:
    _StrictLoader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


MAX_INT_DIGITS = 30  # an integer in a plan or rule file; Python refuses over 4,300 digits


def too_many_digits(text: str) -> str | None:
    """Why the integer `text` is refused (None: it is fine): too long to be a figure."""
    digits = sum(ch.isdigit() for ch in text)
    if digits <= MAX_INT_DIGITS:
        return None
    return f"the integer has {digits:,} digits; a figure has at most {MAX_INT_DIGITS}"


def _int_1_2(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    problem = too_many_digits(text)
    if problem is not None:
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0) if text.startswith("0x") else int(text, 10)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _int_1_2)


def load_strict_yaml(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], int]]:
    """Load one YAML document; return the data and a map from key paths to 1-based lines.

    A key path is a tuple of mapping keys (their text) and sequence indexes, `()` for the root.
    Aliases and anchors, duplicate keys, explicit exotic tags and multiple documents are refused
    with a YamlError naming the file and line.
    """
    data, positions = load_strict_yaml_positions(text, file)
    return data, {path: position.line for path, position in positions.items()}


def load_strict_yaml_positions(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    """Like `load_strict_yaml`, with the line, column and style of every value."""
    if len(text) > MAX_YAML_CHARS:
        raise YamlError(f"file larger than {MAX_YAML_CHARS:,} characters", file=file)
    loader = _StrictLoader(text)
    loader.file = file
    try:
        root = loader.get_single_node()
        positions: dict[tuple[Any, ...], Position] = {}
        if root is None:
            return None, positions
        _walk(root, (), positions, file, [0])
        return loader.construct_document(root), positions
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        problem = error.problem or error.context or "invalid YAML"
        raise YamlError(f"invalid YAML: {problem}", file=file, line=line, column=column) from None
    except yaml.YAMLError as error:
        raise YamlError(f"invalid YAML: {error}", file=file) from None
    except RecursionError:
        raise YamlError("YAML nested too deeply", file=file) from None
    finally:
        loader.dispose()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _walk(
    node: yaml.Node,
    path: tuple[Any, ...],
    positions: dict[tuple[Any, ...], Position],
    file: str,
    count: list[int],
    entry_line: int | None = None,
) -> None:
    count[0] += 1
    if count[0] > MAX_YAML_NODES:
        raise YamlError(f"more than {MAX_YAML_NODES:,} values", file=file)
    line, column = _mark(node)
    if node.tag not in _ALLOWED_TAGS:
        raise YamlError(f"tag {node.tag!r} is not allowed", file=file, line=line, column=column)
    inline = isinstance(node, yaml.ScalarNode) and node.style in (None, "'", '"')
    quoted = isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')
    here = entry_line if entry_line is not None else line
    positions[path] = Position(here, line, column, inline and line == here, quoted)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("mapping keys must be plain values", file=file, line=line)
            key = key_node.value
            key_line, key_column = _mark(key_node)
            if key in seen:
                raise YamlError(
                    f"duplicate key {key!r} (first on line {seen[key]})",
                    file=file,
                    line=key_line,
                    column=key_column,
                )
            seen[key] = key_line
            _walk(value_node, (*path, key), positions, file, count, key_line)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, file, count)
