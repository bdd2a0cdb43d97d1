"""Text from plans, agents and tools made safe for a terminal: no escape or control sequences."""

from __future__ import annotations

import logging
import re
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderHook, RenderResult
from rich.segment import Segment
from rich.text import Text

# What a terminal would act on rather than show: CSI (cursor moves, clear screen), OSC (window
# title, OSC 52 clipboard writes, hyperlinks), DCS/SOS/PM/APC strings, other two-byte escapes, and
# their 8-bit C1 forms. A string's body is removed with its introducer, so no half of a sequence
# is left printable; the classes stop at the next ESC so one scan stays linear.
_SEQUENCES = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]?               # CSI ... final byte
    | (?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])             # OSC, DCS, SOS, PM, APC ...
      [^\x07\x1b\x9c]* (?:\x07|\x1b\\|\x9c)?              # ... up to BEL or ST
    | \x1b [ -/]* [0-~]?                                  # any other escape sequence
    """,
    re.VERBOSE,
)
# Every other C0 and C1 control but newline and tab; DEL too. A carriage return could overwrite
# what a line showed, so it becomes a newline (CRLF first, so it stays one line break).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strip_control(text: str) -> str:
    """`text` without control sequences or control characters; newline and tab are kept."""
    if not _CONTROLS.search(text):  # the common case: nothing to do, no copy
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))


class _Stripped:
    """A renderable whose text segments pass through strip_control; rich's own codes stay.

    Rich keeps its cursor moves in control segments and adds colours from each segment's style
    when writing, so a segment's text is only ever text that came from the caller.
    """

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.renderable, options):
            if segment.control or not _CONTROLS.search(segment.text):
                yield segment
            else:
                yield Segment(strip_control(segment.text), segment.style)


class _StripControlHook(RenderHook):
    """A rich render hook wrapping everything printed in _Stripped."""

    def process_renderables(self, renderables: list[Any]) -> list[Any]:
        return [_Stripped(renderable) for renderable in renderables]


class TerminalConsole(Console):
    """A rich Console whose every print, table, panel and log line passes through strip_control.

    Strings are cleaned before rich lays them out (so widths stay right, and before rich drops
    the BEL that ends an OSC sequence); a render hook cleans whatever text arrives in other
    renderables, such as a Text built by hand.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.push_render_hook(_StripControlHook())

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(strip_control(text), **options)


class TerminalLogFormatter(logging.Formatter):
    """A log formatter for a terminal: the formatted line passes through strip_control."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_control(super().format(record))
