"""Text from tasks, plans, agents and proposers made safe to show a person.

Anything a task or proposer wrote may reach a terminal: a title, a task's output, a result file's
message. Written raw, control characters are instructions to the terminal (an OSC sets the window
title or writes the clipboard, a CSI clears the screen or rewrites the line above), so every human
view passes its text through `escape_controls` at the point it is written. Machine views
(`--json`) are exact and escape through JSON itself.
"""

from __future__ import annotations

import re
import reprlib
from typing import Any

__all__ = [
    "brief_repr",
    "counted",
    "escape_controls",
    "flattened",
    "has_controls",
    "one_line",
    "shortened",
]

_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 except tab and newline, DEL, C1 (0x9b is a CSI)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidirectional overrides and marks
    "\u2028\u2029"  # line and paragraph separators
    "\ud800-\udfff]"  # lone surrogates: bytes of a name that were not UTF-8
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_controls(text: str) -> bool:
    """Whether `text` holds a character `escape_controls` would escape."""
    return _CONTROLS.search(text) is not None


def escape_controls(text: str) -> str:
    """`text` with every control character written as a visible escape (`\\x1b`, `\\u202e`).

    Tab and newline stay: they move the cursor only forward and down, so they cannot rewrite
    anything already shown. A carriage return, a backspace and an escape can, so they are
    escaped like every other control character.
    """
    return _CONTROLS.sub(_escaped, text) if _CONTROLS.search(text) else text


def flattened(text: str) -> str:
    """`text` on one line, its newlines written `\\n`: what a task or a proposer wrote cannot
    start a line of its own that looks like stoic's (a listing's line, a heading)."""
    return text.replace("\r\n", "\\n").replace("\n", "\\n")


def one_line(text: str) -> str:
    """`text` for a place that is one line of a listing (an escalation's question, a
    proposal's title): `flattened`, and its controls escaped."""
    return escape_controls(flattened(text))


def shortened(text: str, keep: int = 60) -> str:
    """Long text cut to its start and its length, so an error message stays one line."""
    return text if len(text) <= keep else f"{text[:keep]}… ({len(text)} characters)"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """`count` and its noun, singular for one: "1 task", "2 tasks", "1 red flag", "0 errors".

    `plural` for a noun that does not just take an s ("1 entry", "2 entries").
    """
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


class _BriefRepr(reprlib.Repr):
    """reprlib's bounded repr, applied to subclasses of dict and list too (reprlib dispatches
    on the exact type name, and would hand a subclass to the unbounded built-in repr)."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, dict) and type(x) is not dict:
            return self.repr_dict(x, level)
        if isinstance(x, list) and type(x) is not list:
            return self.repr_list(x, level)
        return super().repr1(x, level)


_brief = _BriefRepr()
_brief.maxlevel = 3
_brief.maxdict = 4
_brief.maxlist = 6
_brief.maxstring = 60
_brief.maxlong = 40
_brief.maxother = 60


def brief_repr(value: Any) -> str:
    """A repr of `value` bounded in length and in the work it takes, however large the value."""
    return _brief.repr(value)
