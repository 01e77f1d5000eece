"""What a task hands its dependents: its outputs, checked and encoded one way.

Outputs are JSON a dependent reads back exactly as the producer gave it, from the log alone:
so a value is refused when JSON cannot carry it faithfully (NaN, infinities, integers past 64
bits, non-string keys) rather than changed on the way.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from stoic.core.limits import MAX_INT_BITS

__all__ = [
    "OUTPUTS_HARD_CAP",
    "OUTPUTS_INLINE_LIMIT",
    "LongInteger",
    "OutputsInvalid",
    "canonical",
    "digest",
    "outputs_ref",
    "refuse_long_integers",
]

OUTPUTS_INLINE_LIMIT = 64 * 1024
"""Outputs up to this size (canonical JSON) are kept in the end record itself."""
OUTPUTS_HARD_CAP = 16 * 1024 * 1024
"""Bigger outputs fail the task: a dependent reads them whole into memory."""
_MAX_DEPTH = 64


class OutputsInvalid(ValueError):
    """Outputs JSON cannot carry as they are (the message says what and where)."""


def canonical(value: Any) -> bytes:
    """The outputs as canonical JSON (sorted keys, no spaces); raises OutputsInvalid."""
    _check(value, "outputs", 0)
    encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    if len(encoded) > OUTPUTS_HARD_CAP:
        raise OutputsInvalid(
            f"outputs of {len(encoded)} bytes are over the {OUTPUTS_HARD_CAP // (1024 * 1024)} MiB"
            " a task may hand its dependents (put bulky data in a file and pass its path)"
        )
    return encoded


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def outputs_ref(details: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an end record's details say of the task's outputs: `{"outputs": value}` or
    `{"outputs_file": {path, sha256, bytes}}`, or None when it handed on none."""
    if "outputs" in details:
        return {"outputs": details["outputs"]}
    file = details.get("outputs_file")
    if isinstance(file, Mapping):
        return {"outputs_file": dict(file)}
    return None


def _check(value: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise OutputsInvalid(f"{where} nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise OutputsInvalid(
                f"{where} is an integer past 64 bits (JSON readers cannot hold it; pass it as"
                " a string)"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OutputsInvalid(f"{where} is {value!r}, which JSON cannot carry")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise OutputsInvalid(f"{where} has a key {key!r} that is not a string")
            _check(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    raise OutputsInvalid(
        f"{where} is of type {type(value).__name__}, not JSON (return dicts, lists, strings,"
        " numbers, booleans or None)"
    )


class LongInteger(ValueError):
    """JSON text holds an integer past 64 bits."""


_LONG_NUMBER = re.compile(rb"\d{19}")


def refuse_long_integers(raw: bytes) -> None:
    """Raise LongInteger when `raw` (valid JSON) holds an integer past 64 bits: orjson reads
    one as a float without a word, and a dependent would be handed a changed number."""
    if _LONG_NUMBER.search(raw):  # the cheap look first: no such integer has under 19 digits
        json.loads(raw, parse_int=_bounded_int)


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 18 and int(text).bit_length() > MAX_INT_BITS:
        raise LongInteger(f"the integer {text} is past 64 bits (write it as a string)")
    return int(text)
