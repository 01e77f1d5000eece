"""Projection files: a pure fold's state on disk, stamped with the log position it reflects.

A projection file is `{"projection", "version", "last_seq", "last_hash", "log_offset",
"generated_at", "state"}`. Catching up reads only the log after `log_offset`, after checking
that the record ending there is the one the stamp names; anything else is a mismatch the audit
reports and `stoic audit --repair` rebuilds. A missing or unreadable file is never recreated
silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import orjson

from stoic.core import next_steps
from stoic.core.projection import Projection
from stoic.core.records import GENESIS_HASH
from stoic.exceptions import LogCorrupt, ProjectionMismatch
from stoic.store.atomic import atomic_write
from stoic.store.confined import LinkRefused, read_confined
from stoic.store.log import FileDecisionLog, utc_timestamp

__all__ = [
    "ProjectionFile",
    "ProjectionUnreadable",
    "Stamp",
    "fold_tail",
    "misalignment",
    "parsed_records",
]

S = TypeVar("S")

_FOLD_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Stamp(Generic[S]):
    """A projection's state and the log position it reflects."""

    last_seq: int
    last_hash: str
    log_offset: int
    state: S


class ProjectionUnreadable(Exception):
    """The projection file exists but cannot be read as one."""


def parsed_records(
    log: FileDecisionLog, start: int, end: int
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records between two offsets with the offset after each; a bad line is LogCorrupt."""
    for line_no, offset, raw, complete in log.lines(start, end):
        where = f"{log.path}:{line_no}" if line_no else f"{log.path} at byte {offset}"
        if not complete:
            raise LogCorrupt(f"{where}: incomplete line; run {next_steps.audit()}")
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise LogCorrupt(f"{where}: not valid JSON ({exc}); run {next_steps.audit()}") from exc
        if not isinstance(parsed, dict) or "seq" not in parsed:
            raise LogCorrupt(f"{where}: not a decision record; run {next_steps.audit()}")
        yield offset + len(raw) + 1, parsed


class ProjectionFile(Generic[S]):
    """One projection and the file it is kept in."""

    def __init__(self, projection: Projection[S], path: Path, *, root: Path) -> None:
        self.projection = projection
        self.path = path
        self.root = root

    def initial(self) -> Stamp[S]:
        return Stamp(0, GENESIS_HASH, 0, self.projection.initial())

    def read(self) -> Stamp[S] | None:
        """The stamped state on disk; None when the file is missing."""
        try:
            raw = read_confined(self.root, self.path)
        except FileNotFoundError:
            return None
        except LinkRefused as exc:
            raise ProjectionUnreadable(exc.strerror) from exc
        try:
            data = orjson.loads(raw)
            if data.get("projection") != self.projection.name:
                raise ProjectionUnreadable(f"it is not the {self.projection.name} projection")
            if data.get("version") != self.projection.version:
                raise ProjectionUnreadable(
                    f"it has version {data.get('version')!r}, this stoic writes"
                    f" {self.projection.version}"
                )
            return Stamp(
                last_seq=int(data["last_seq"]),
                last_hash=str(data["last_hash"]),
                log_offset=int(data["log_offset"]),
                state=self.projection.from_json(data["state"]),
            )
        except ProjectionUnreadable:
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProjectionUnreadable(f"it is not a valid projection file ({exc})") from exc

    def write(self, stamp: Stamp[S]) -> None:
        document = {
            "projection": self.projection.name,
            "version": self.projection.version,
            "last_seq": stamp.last_seq,
            "last_hash": stamp.last_hash,
            "log_offset": stamp.log_offset,
            "generated_at": utc_timestamp(),
            "state": self.projection.to_json(stamp.state),
        }
        atomic_write(
            self.path, orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n", root=self.root
        )

    def advance(self, stamp: Stamp[S], log: FileDecisionLog, end: int) -> Stamp[S]:
        """Fold the records between the stamp's offset and `end` into its state."""
        if stamp.log_offset > end:
            raise ProjectionMismatch(
                f"{self.path} reflects seq {stamp.last_seq}, past the end of the log;"
                f" run {next_steps.audit()}"
            )
        self.check_lines_up(stamp, log)
        return fold_tail(self.projection, stamp, log, end)

    def check_lines_up(self, stamp: Stamp[S], log: FileDecisionLog) -> None:
        """The record that ends at the stamp's offset must be the one the stamp names."""
        problem = self.misalignment(stamp, log)
        if problem is not None:
            raise ProjectionMismatch(f"{problem}; run {next_steps.audit()}")

    def misalignment(self, stamp: Stamp[S], log: FileDecisionLog) -> str | None:
        """Why the stamp's offset is not the end of the record it names, or None when it is."""
        return misalignment(str(self.path), stamp, log)


def fold_tail(
    projection: Projection[S], stamp: Stamp[S], log: FileDecisionLog, end: int
) -> Stamp[S]:
    """`stamp` with the records between its offset and `end` folded into its state."""
    state, last_seq, last_hash, offset = (
        stamp.state,
        stamp.last_seq,
        stamp.last_hash,
        stamp.log_offset,
    )
    batch: list[Mapping[str, Any]] = []
    for after, record in parsed_records(log, stamp.log_offset, end):
        batch.append(record)
        last_seq, last_hash, offset = record["seq"], record["hash"], after
        if len(batch) >= _FOLD_BATCH:
            state = projection.fold(state, batch)
            batch = []
    if batch:
        state = projection.fold(state, batch)
    return Stamp(last_seq, last_hash, offset, state)


def misalignment(label: str, stamp: Stamp[Any], log: FileDecisionLog) -> str | None:
    """Why the stamp's offset is not the end of the record it names, or None when it is.

    The offset must end a whole line (an edit of the log before it moves every line after),
    and that line must be the stamped record. `label` names what holds the stamp.
    """
    offset = stamp.log_offset
    if offset == 0:
        if stamp.last_seq != 0:
            return f"{label} names seq {stamp.last_seq} at the start of the log"
        return None
    size = log.size()
    if offset < 0 or offset > size:
        return (
            f"{label} names seq {stamp.last_seq} at byte {offset}, past the end of the"
            f" log ({size} bytes)"
        )
    if not log.ends_line(offset):
        return (
            f"{label} does not line up with the log: it names seq {stamp.last_seq} at"
            f" byte {offset}, which falls inside a line (the log before it changed length)"
        )
    line = next(log.lines_reversed(offset), b"")
    try:
        parsed = orjson.loads(line)
        seq, digest = parsed["seq"], parsed["hash"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        seq, digest = None, None
    if seq != stamp.last_seq or digest != stamp.last_hash:
        return (
            f"{label} does not line up with the log: it names seq {stamp.last_seq}"
            f" at byte {offset}, the log has seq {seq} there"
        )
    return None
