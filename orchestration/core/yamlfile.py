"""Strict YAML for user files: no aliases, no duplicate keys, each problem with a line."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from orchestration.core.errors import OrchestrationError, PlanError
from orchestration.core.inputfiles import read_capped
from orchestration.core.yamlstrict import too_many_digits

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024  # a plan of 200,000 tasks fits well under this
MAX_DEPTH = 100  # nesting levels; deeper input would exhaust the stack of later walkers

# The C parser gives events several times faster; pure-Python PyYAML is the fallback. Composition is
# done here from events, iteratively: PyYAML's C composer recurses in C and crashes the process
# (segmentation fault) on deeply nested input instead of raising RecursionError.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp")
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_KEY_KINDS = {  # what YAML 1.1 makes of an unquoted key that is not text
    "tag:yaml.org,2002:bool": "a boolean (YAML reads unquoted yes/no/on/off as booleans)",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}

Lines = dict[str, tuple[int, "LineTree | None"]] | list["int | LineTree"]


@dataclass(slots=True)
class LineTree:
    """Where one mapping or sequence starts, and where each of its entries is."""

    line: int  # 1-based
    children: Lines  # mapping: key -> (line of the key, subtree); sequence: item line or subtree


class LineMap:
    """Answers 'on which line is this value?' for a key path such as ('tasks', 3, 'priority')."""

    def __init__(
        self, root: LineTree | None = None, *, later: Callable[[], LineTree | None] | None = None
    ) -> None:
        self._root = root
        # Where the tree comes from when it is first asked for: a valid file never asks, and the
        # tree of a 100,000-task plan would take about 1 KB per task while the plan is checked.
        self._later = later

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The 1-based line of `path`, or of its closest ancestor present in the file."""
        if self._later is not None:
            self._root, self._later = self._later(), None
        node = self._root
        if node is None:
            return None
        line = node.line
        for part in path:
            if node is None:
                break
            children = node.children
            if isinstance(children, dict) and isinstance(part, str) and part in children:
                line, node = children[part]
            elif isinstance(children, list) and _is_index(part, len(children)):
                item = children[part]  # type: ignore[index]
                line, node = (item, None) if isinstance(item, int) else (item.line, item)
            else:
                break
        return line


def _is_index(part: str | int, length: int) -> bool:
    return isinstance(part, int) and not isinstance(part, bool) and 0 <= part < length


def load_yaml_file(
    path: Path, *, error: type[OrchestrationError] = PlanError
) -> tuple[Any, LineMap]:
    """Read one YAML document strictly; any problem raises `error` naming the file and line."""
    display = str(path)
    return load_yaml_text(_read_text(path, display, error), display, error=error)


def load_yaml_text(
    text: str, display: str, *, error: type[OrchestrationError] = PlanError
) -> tuple[Any, LineMap]:
    """Parse one YAML document strictly (e.g. an uploaded plan); errors name `display`."""
    if not text.strip():
        raise error("the file is empty", file=display)
    try:
        data, _ = _compose(text, display, error, lines=False)
    except _LinesNeeded:  # a problem whose message names another line: read again with lines
        _compose(text, display, error, lines=True)
        raise AssertionError("the second reading found no problem") from None  # pragma: no cover
    return data, LineMap(later=lambda: _compose(text, display, error, lines=True)[1])


class _LinesNeeded(Exception):
    """Raised while reading without lines when a message needs the line of an earlier value."""


def _compose(
    text: str, display: str, error: type[OrchestrationError], *, lines: bool
) -> tuple[Any, LineTree | None]:
    loader = None
    try:
        loader = _Loader(text)  # the pure-Python reader checks characters here already
        with collection_paused():
            return _StrictComposer(loader, display, error, lines=lines).load()
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, display, error) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise error(f"invalid YAML: {exc.reason}", file=display, line=line) from None
    except yaml.YAMLError as exc:
        raise error(f"invalid YAML: {exc}", file=display) from None
    except RecursionError:
        raise error("invalid YAML: nested too deeply", file=display) from None
    finally:
        if loader is not None:
            loader.dispose()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Switch the cyclic garbage collector off while a large tree of objects is built."""
    # Building a large file allocates millions of objects that all survive; the cyclic garbage
    # collector would rescan them again and again (60% of the time for 100,000 tasks).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_text(path: Path, display: str, error: type[OrchestrationError]) -> str:
    data = read_capped(path, MAX_FILE_BYTES, error, "a YAML file")  # a FIFO or /dev/zero is refused
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        message = f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        raise error(message, file=display, line=line) from None


def _syntax_error(
    exc: yaml.MarkedYAMLError, text: str, display: str, error: type[OrchestrationError]
) -> OrchestrationError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "malformed"
    if exc.context and exc.problem and exc.context_mark is not None:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
    if mark is None:
        return error(f"invalid YAML: {problem}", file=display)
    if _tab_at(text, mark.line, mark.column):
        problem += "; YAML does not allow tabs for indentation, use spaces"
    return error(
        f"invalid YAML: {problem}", file=display, line=mark.line + 1, column=mark.column + 1
    )


def _tab_at(text: str, line_index: int, column: int) -> bool:
    lines = text.splitlines()
    if line_index >= len(lines):
        return False
    line = lines[line_index]
    indent = line[: len(line) - len(line.lstrip())]
    return "\t" in indent or line[column : column + 1] == "\t"


class _Frame:
    """A mapping or sequence being built while its events arrive."""

    __slots__ = ("key", "key_line", "lines", "start", "value")

    def __init__(
        self, value: dict[str, Any] | list[Any], lines: LineTree | None, start: Any
    ) -> None:
        self.value = value
        self.start = start  # the start event, for messages about the whole container
        self.lines = lines
        self.key: str | None = None  # a mapping's key waiting for its value
        self.key_line = 0


class _StrictComposer:
    """Builds plain Python data (and a LineTree if `lines`) from parser events, rejecting risky
    YAML."""

    def __init__(
        self, loader: Any, display: str, error: type[OrchestrationError], *, lines: bool
    ) -> None:
        self.loader = loader
        self.display = display
        self.error = error
        self.lines = lines
        # Plans repeat values (kind: shell, priority: high...): resolve and construct each once.
        self._tags: dict[tuple[str, Any], str] = {}
        self._values: dict[tuple[str, str], Any] = {}
        # ... and one string object for each text: keys, kinds, and an id and the dependencies
        # naming it share one (strings are immutable; a 100,000-task plan has millions of them).
        self._strings: dict[str, str] = {}

    def load(self) -> tuple[Any, LineTree | None]:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(StreamEndEvent):
            raise self.error("the file is empty", file=self.display)
        loader.get_event()  # document start
        value, lines = self._document()
        if value is None:  # no content, or a lone `~` / `null`
            raise self.error("the file is empty", file=self.display)
        if not loader.check_event(StreamEndEvent):
            extra = loader.get_event()
            self._fail(extra, "only one YAML document is allowed; a second one starts here")
        return value, lines

    def _document(self) -> tuple[Any, LineTree | None]:
        stack: list[_Frame] = []
        next_event = self.loader.get_event
        while True:
            event = next_event()
            kind = type(event)
            if kind is DocumentEndEvent:
                return None, None  # only reached for a document without content
            if kind is AliasEvent:
                self._fail(event, f"aliases (*{event.anchor}) are not allowed; write the value out")
            if getattr(event, "anchor", None) is not None:
                self._fail(event, f"anchors (&{event.anchor}) are not allowed; write values out")
            line = event.start_mark.line + 1
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    self._fail(event, f"nested deeper than {MAX_DEPTH} levels")
                stack.append(self._open(event, kind is MappingStartEvent, line))
                continue
            if kind is ScalarEvent:
                value: Any = self._scalar(event)
                subtree: LineTree | None = None
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                value, subtree, event = frame.value, frame.lines, frame.start
            else:  # pragma: no cover - the parser emits nothing else inside a document
                self._fail(event, f"unexpected YAML event {kind.__name__}")
            if not stack:
                self._expect_document_end()
                if subtree is None and self.lines:
                    subtree = LineTree(line, {})
                return value, subtree
            self._add(stack[-1], event, value, line, subtree)

    def _open(self, event: Any, is_mapping: bool, line: int) -> _Frame:
        expected = _MAP_TAG if is_mapping else _SEQ_TAG
        if event.tag not in (None, "!", expected):
            self._unsupported_tag(event, event.tag)
        if is_mapping:
            return _Frame({}, LineTree(line, {}) if self.lines else None, event)
        return _Frame([], LineTree(line, []) if self.lines else None, event)

    def _add(
        self, frame: _Frame, event: Any, value: Any, line: int, subtree: LineTree | None
    ) -> None:
        tree = frame.lines
        if isinstance(frame.value, list):
            frame.value.append(value)
            if tree is not None:
                tree.children.append(subtree if subtree is not None else line)  # type: ignore[union-attr]
        elif frame.key is None:
            frame.key = self._key(frame, event, value, line)
            frame.key_line = line
        else:
            frame.value[frame.key] = value
            if tree is not None:
                tree.children[frame.key] = (frame.key_line, subtree)  # type: ignore[call-overload]
            frame.key = None

    def _key(self, frame: _Frame, event: Any, value: Any, line: int) -> str:
        if type(event) is not ScalarEvent:
            self._fail(event, "mapping keys must be plain text, not a list or a mapping")
        if value is True and event.value == "on" and event.implicit[0]:
            # `on:` declares a plan's event triggers (docs/triggers.md), as in CI files; YAML 1.1
            # reads it as true, which would make the trigger's own key an error.
            value = "on"
        elif not isinstance(value, str) or self._tag(event) != _STR_TAG:
            what = _KEY_KINDS.get(self._tag(event), "not text")
            self._fail(event, f"the key {event.value!r} is read as {what}; put the key in quotes")
        if value in frame.value:
            if frame.lines is None:
                raise _LinesNeeded
            assert isinstance(frame.lines.children, dict)
            first = frame.lines.children[value][0]
            self._fail(event, f"duplicate key '{value}' (first at line {first}, again at {line})")
        return value

    def _tag(self, event: Any) -> str:
        tag = event.tag
        if tag is not None and tag != "!":
            return str(tag)
        cache_key = (event.value, event.implicit)
        resolved = self._tags.get(cache_key)
        if resolved is None:
            resolved = self.loader.resolve(ScalarNode, event.value, event.implicit)
            self._tags[cache_key] = resolved
        return resolved

    def _scalar(self, event: Any) -> Any:
        tag = self._tag(event)
        if tag == _STR_TAG:
            return self._strings.setdefault(event.value, event.value)
        if tag == _MERGE_TAG:
            self._fail(event, "merge keys (<<) are not supported; write the keys out")
        cache_key = (tag, event.value)
        if cache_key in self._values:
            return self._values[cache_key]
        if tag not in _SCALAR_TAGS:
            self._unsupported_tag(event, tag)
        if tag == _INT_TAG and (problem := too_many_digits(event.value)) is not None:
            self._fail(event, problem)  # before Python's own limit turns it into a crash
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark)
        value = self.loader.yaml_constructors[tag](self.loader, node)
        self._values[cache_key] = value  # ints, floats, booleans, None, dates: all immutable
        return value

    def _expect_document_end(self) -> None:
        event = self.loader.get_event()
        if type(event) is not DocumentEndEvent:  # pragma: no cover - the parser guarantees it
            self._fail(event, "expected the end of the document")

    def _unsupported_tag(self, event: Any, tag: str) -> NoReturn:
        shown = tag.replace("tag:yaml.org,2002:", "!!")
        self._fail(
            event,
            f"the tag {shown} is not supported; use plain text, numbers, booleans, dates, "
            "lists and mappings",
        )

    def _fail(self, event: Any, message: str) -> NoReturn:
        mark = event.start_mark
        raise self.error(message, file=self.display, line=mark.line + 1, column=mark.column + 1)


__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "LineMap",
    "LineTree",
    "collection_paused",
    "load_yaml_file",
]


class _PlanDumper(yaml.SafeDumper):
    """Writes repeated values out in full: plan files reject anchors and aliases."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump_plan(data: Any) -> str:
    """YAML text for plan data (e.g. a generated plan) that `load_yaml_file` accepts."""
    return yaml.dump(data, Dumper=_PlanDumper, sort_keys=False)
