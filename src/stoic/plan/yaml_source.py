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
    """The text is not YAML; carries where the parser gave up."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


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
    parser = yaml.CSafeLoader(text)
    try:
        with _collector_paused():
            return _build(parser)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = " ".join(part for part in (exc.context, exc.problem) if part)
        raise YamlSyntaxError(line, column, message or "not valid YAML") from None
    finally:
        parser.dispose()


def _build(parser: yaml.CSafeLoader) -> tuple[Any, list[YamlProblem]]:
    problems: list[YamlProblem] = []
    anchors: dict[str, Any] = {}
    # Each open container: [container, pending key (maps), key position, explicit keys,
    # merges (`<<` values, applied when the mapping ends and every explicit key is known)].
    stack: list[list[Any]] = []
    holder: list[Any] = [None]
    stack.append([holder, None, None, None, None])
    documents = 0
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
            continue
        mark = event.start_mark
        position = (mark.line + 1, mark.column + 1)
        if kind is scalar_event:
            text = event.value
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
                            "remove the tag; plans hold plain text, numbers, booleans and lists",
                        )
                    )
            if event.anchor:
                anchors[event.anchor] = value
        elif kind is mapping_start or kind is sequence_start:
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
        elif kind is yaml.AliasEvent:
            if event.anchor not in anchors:
                raise YamlSyntaxError(*position, f"unknown alias *{event.anchor}")
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
            if isinstance(value, dict | list):
                problems.append(
                    YamlProblem(*position, "a key must be a plain value", "write the key as text")
                )
                value = f"<key at line {position[0]}>"
            frame[1], frame[2] = value, position
            continue
        else:
            _set_item(frame, value, position, problems)
        if kind is mapping_start or kind is sequence_start:
            stack.append([value, no_key, None, set(), []])


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
                f"key {key!r} appears twice in one mapping (first on line {first})",
                "keep one of them; YAML would silently use the last",
            )
        )
    explicit.add(key)
    container[key] = value
    container.key_positions[key] = key_position
    container.value_positions[key] = position
