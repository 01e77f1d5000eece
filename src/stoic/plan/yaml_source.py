"""YAML read straight from libyaml's event stream into dicts and lists that know their lines.

Plan errors must name a line and a column, so every mapping remembers where each key and value
stood. Building the values from parser events (rather than composing a node tree, then
constructing) keeps a 100,000-task plan within its load budget; the garbage collector is held
off while the tree is built because nothing built here is garbage.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import yaml

from stoic.core.limits import MAX_INT_BITS
from stoic.core.text import brief_repr, shortened

__all__ = ["LocatedDict", "LocatedList", "YamlProblem", "YamlSyntaxError", "load_located"]

Position = tuple[int, int]
"""(line, column), both counted from 1."""


class LocatedDict(dict[Any, Any]):
    """A mapping read from YAML, with the position of itself, each key and each value."""

    __slots__ = ("key_positions", "position", "value_positions")

    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position
        self.key_positions: dict[Any, Position] = {}
        self.value_positions: dict[Any, Position] = {}


class LocatedList(list[Any]):
    """A sequence read from YAML, with the position of itself and each item."""

    __slots__ = ("item_positions", "position")

    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position
        self.item_positions: list[Position] = []


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """Something valid YAML still cannot mean in a plan (a repeated key, an unknown tag …)."""

    line: int
    column: int
    message: str
    hint: str


class YamlSyntaxError(Exception):
    """The text is not YAML (or not YAML a plan may be); carries where reading stopped."""

    def __init__(self, line: int, column: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message
        self.hint = hint


MAX_DEPTH = 64
"""Mappings and lists nest at most this deep, aliases followed: deeper data would reach the
validators' and the JSON encoder's recursion limits, and no plan needs it."""
ALIAS_FLOOR = 10_000
ALIAS_RATIO = 10
"""Aliases may add at most max(ALIAS_FLOOR, ALIAS_RATIO × the values written) values: sharing a
block is fine, a "billion laughs" that expands a few hundred bytes into gigabytes is refused."""


_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
_RESOLVERS: dict[str | None, list[tuple[str, re.Pattern[str]]]] = (
    yaml.resolver.Resolver.yaml_implicit_resolvers
)
_WORDS: dict[str, bool | None] = {
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
    **dict.fromkeys(("null", "Null", "NULL"), None),
}
"""Plain words YAML 1.1 reads as booleans or null; any other word starting with a letter is text."""
_MERGE_KEY = object()
"""Stands for `<<` while a mapping is being built."""


class _Constructor(yaml.constructor.SafeConstructor):
    pass


_constructor = _Constructor()


def _plain_tag(value: str) -> str:
    for tag, pattern in _RESOLVERS.get(value[:1] if value else "", ()):
        if pattern.match(value):
            return tag
    return _STR


def _scalar(event: yaml.ScalarEvent) -> Any:
    value = _scalar_value(event)
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise _TooLarge
    return value


class _TooLarge(Exception):
    """An integer beyond MAX_INT_BITS (or of too many digits to read)."""


def _scalar_value(event: yaml.ScalarEvent) -> Any:
    tag = event.tag
    if tag in (None, "!"):
        tag = _plain_tag(event.value) if event.implicit[0] else _STR
    if tag == _STR:
        return event.value
    if tag == _MERGE:
        return _MERGE_KEY
    if tag not in _SCALAR_TAGS:
        return event.value  # a timestamp and the like: kept as the text that was written
    node = yaml.ScalarNode(tag, event.value)
    if tag == _INT:
        if len(event.value) > 200:  # far more than a 64-bit number needs, even in binary
            raise _TooLarge
        return _constructor.construct_yaml_int(node)
    if tag == _FLOAT:
        return _constructor.construct_yaml_float(node)
    if tag == _BOOL:
        return _constructor.construct_yaml_bool(node)
    return None


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Everything built survives; freezing it spares the next collection a full walk.
        gc.freeze()
        if enabled:
            gc.enable()


def load_located(text: str) -> tuple[Any, list[YamlProblem]]:
    """The single YAML document in `text` (None if empty) and the problems found building it."""
    parser: yaml.CSafeLoader | None = None
    try:
        parser = yaml.CSafeLoader(text)
        with _collector_paused():
            return _build(parser)
    except yaml.MarkedYAMLError as exc:
        mark, hint = exc.problem_mark or exc.context_mark, ""
        stopped = exc.problem_mark
        unclosed = any(what in (exc.context or "") for what in ("quoted scalar", "flow"))
        if (
            exc.context_mark is not None
            and unclosed
            and (
                "end of stream" in (exc.problem or "")
                or (stopped is not None and not text[stopped.index :].strip())
            )
        ):
            # Reading stopped at the end: the mistake is where the unclosed thing opened.
            mark, hint = exc.context_mark, "a quote or bracket opened here is never closed"
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlSyntaxError(line, column, message or "not valid YAML", hint) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ESC …)
        start = text.rfind("\n", 0, exc.position) + 1
        raise YamlSyntaxError(
            text.count("\n", 0, exc.position) + 1,
            exc.position - start + 1,
            f"character U+{_code(exc.character):04X} is not allowed in YAML",
            "remove it; to put a control character in a value, write it quoted as an escape"
            ' like "\\t"',
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, 1, f"not valid YAML: {exc}") from None
    finally:
        if parser is not None:
            parser.dispose()


def _code(character: int | str) -> int:
    return character if isinstance(character, int) else ord(character[:1] or "\0")


def _build(parser: yaml.CSafeLoader) -> tuple[Any, list[YamlProblem]]:
    problems: list[YamlProblem] = []
    anchors: dict[str, Any] = {}
    # What each finished anchor stands for once aliases are followed: (values, depth). An
    # anchor defined but not in here is still open: an alias to it would contain itself.
    sizes: dict[str, tuple[int, int]] = {}
    # Each open container: [container, pending key (maps), key position, explicit keys,
    # merges (`<<` values, applied when the mapping ends and every explicit key is known),
    # anchor, values counted when it started, deepest level reached inside it].
    stack: list[list[Any]] = []
    holder: list[Any] = [None]
    stack.append([holder, None, None, None, None, None, 0, 0])
    documents = 0
    written = 0  # values the text holds
    expanded = 0  # values the aliases add
    plain_cache: dict[str, Any] = {}
    resolvable = frozenset(key for key in _RESOLVERS if key is not None)
    no_key = _NO_KEY
    get_event = parser.get_event
    scalar_event, mapping_start, sequence_start = (
        yaml.ScalarEvent,
        yaml.MappingStartEvent,
        yaml.SequenceStartEvent,
    )
    located_list, located_dict = LocatedList, LocatedDict
    mapping_end, sequence_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
    while True:
        event: Any = get_event()
        kind = type(event)
        if kind is mapping_end or kind is sequence_end:
            ended = stack.pop()
            if ended[4]:
                _merge(ended, problems)
            depth = len(stack)
            if ended[5] is not None:
                sizes[ended[5]] = (written + expanded - ended[6], ended[7] - depth)
            if ended[7] > stack[-1][7]:
                stack[-1][7] = ended[7]
            continue
        mark = event.start_mark
        position = (mark.line + 1, mark.column + 1)
        if kind is scalar_event:
            written += 1
            text = event.value
            try:
                if event.tag is None and event.implicit[0]:
                    first = text[:1]
                    if first not in resolvable:
                        value: Any = text
                    elif first.isalpha():
                        value = _WORDS.get(text, text)
                    else:
                        value = plain_cache.get(text, no_key)
                        if value is no_key:
                            value = plain_cache[text] = _scalar(event)
                else:
                    value = _scalar(event)
                    if event.tag not in (None, "!") and event.tag not in _SCALAR_TAGS:
                        problems.append(
                            YamlProblem(
                                *position,
                                f"unsupported YAML tag {event.tag}",
                                "remove the tag; plans hold plain text, numbers, booleans and"
                                " lists",
                            )
                        )
            except _TooLarge:
                problems.append(
                    YamlProblem(
                        *position,
                        f"the number {shortened(text)} is too large (at most {MAX_INT_BITS} bits)",
                        "quote it to keep it as text",
                    )
                )
                value = text
            if event.anchor:
                anchors[event.anchor] = value
                sizes[event.anchor] = (1, -1)  # not a container: adds no level
        elif kind is mapping_start or kind is sequence_start:
            written += 1
            value = located_dict(position) if kind is mapping_start else located_list(position)
            if event.tag not in (None, "!", _MAP, _SEQ):
                problems.append(
                    YamlProblem(
                        *position,
                        f"unsupported YAML tag {event.tag}",
                        "remove the tag; plans hold plain text, numbers, booleans and lists",
                    )
                )
            if event.anchor:
                anchors[event.anchor] = value
                sizes.pop(event.anchor, None)
            if len(stack) > MAX_DEPTH:
                raise YamlSyntaxError(
                    *position,
                    f"mappings and lists nest deeper than {MAX_DEPTH} levels here",
                    "flatten the data; a plan needs only a few levels",
                )
        elif kind is yaml.AliasEvent:
            if event.anchor not in anchors:
                raise YamlSyntaxError(*position, f"unknown alias *{event.anchor}")
            size = sizes.get(event.anchor)
            if size is None:
                raise YamlSyntaxError(
                    *position,
                    f"alias *{event.anchor} stands inside the very node it names",
                    "a plan cannot contain itself; write the value out",
                )
            count, height = size
            expanded += count
            if expanded > max(ALIAS_FLOOR, ALIAS_RATIO * written):
                raise YamlSyntaxError(
                    *position,
                    f"aliases expand to more than {max(ALIAS_FLOOR, ALIAS_RATIO * written)}"
                    f" values here (*{event.anchor} alone stands for {count})",
                    "write the values out, or share fewer nested aliases",
                )
            reached = len(stack) + height
            if reached > MAX_DEPTH:
                raise YamlSyntaxError(
                    *position,
                    f"alias *{event.anchor} makes mappings and lists nest deeper than"
                    f" {MAX_DEPTH} levels",
                    "flatten the data; a plan needs only a few levels",
                )
            if reached > stack[-1][7]:
                stack[-1][7] = reached
            value = anchors[event.anchor]
        elif kind is yaml.DocumentStartEvent:
            documents += 1
            if documents > 1:
                raise YamlSyntaxError(*position, "a plan is one YAML document, found a second")
            continue
        elif kind is yaml.StreamEndEvent:
            return holder[0], problems
        else:
            continue
        frame = stack[-1]
        container = frame[0]
        if type(container) is located_list:
            container.append(value)
            container.item_positions.append(position)
        elif container is holder:
            holder[0] = value
        elif frame[1] is no_key:
            key = value
            if isinstance(value, dict | list):
                problems.append(
                    YamlProblem(*position, "a key must be a plain value", "write the key as text")
                )
                key = f"<key at line {position[0]}>"
            frame[1], frame[2] = key, position
        else:
            _set_item(frame, value, position, problems)
        if kind is mapping_start or kind is sequence_start:
            # A mapping or list used as a key is read into itself too, then goes nowhere.
            depth = len(stack)
            stack.append(
                [value, no_key, None, set(), [], event.anchor, written + expanded - 1, depth]
            )


_NO_KEY = object()


def _merge(frame: list[Any], problems: list[YamlProblem]) -> None:
    """Apply a mapping's `<<` merges as YAML does: its own keys win, then the first source."""
    container: LocatedDict = frame[0]
    explicit: set[Any] = frame[3]
    merged: set[Any] = set()
    merges: list[tuple[Any, Position, Position]] = frame[4]
    for value, (line, column), key_position in merges:
        for source in value if isinstance(value, list) else [value]:
            if not isinstance(source, dict):
                problems.append(
                    YamlProblem(line, column, "`<<` merges mappings only", "merge a mapping")
                )
                continue
            for merged_key, merged_value in source.items():
                if merged_key not in explicit and merged_key not in merged:
                    merged.add(merged_key)
                    container[merged_key] = merged_value
                    container.key_positions[merged_key] = key_position
                    container.value_positions[merged_key] = (line, column)


def _set_item(
    frame: list[Any], value: Any, position: Position, problems: list[YamlProblem]
) -> None:
    container: LocatedDict = frame[0]
    key, explicit = frame[1], frame[3]
    key_position: Position = frame[2]
    frame[1] = _NO_KEY
    if key is _MERGE_KEY:
        frame[4].append((value, position, key_position))
        return
    if key in explicit:
        first = container.key_positions[key][0]
        problems.append(
            YamlProblem(
                *key_position,
                f"key {brief_repr(key)} appears twice in one mapping (first on line {first})",
                "keep one of them; YAML would silently use the last",
            )
        )
    explicit.add(key)
    container[key] = value
    container.key_positions[key] = key_position
    container.value_positions[key] = position
