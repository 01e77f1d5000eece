"""The audit of a decision log kept in PostgreSQL (DESIGN §12, §13).

The same pure checks the files audit feeds — the chain checker over each stored line, the
behavioural invariants over each record — fed from one consistent snapshot of the table, a page
at a time, so memory stays flat on any log. The database adds its own: each row's `seq`, `hash`
and `prev_hash` columns say what its line says, and the `log_head` row names the last record.
Each projection row stoic keeps is held against a replay of the log up to the record it names:
a row whose state the log does not give is named (`projection_mismatch`), so a state changed by
hand in the table is found even where its stamp is a real record's. So are the work items of
database runs, against the attempts the log has open (`work_item_mismatch`).
A row the trigger was bypassed to change or remove is named by seq, never raised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from stoic.core.audit import Anchor, AuditReport, ChainChecker, Violation, ViolationCode
from stoic.core.invariants import InvariantChecker
from stoic.core.projection import Projection
from stoic.core.work_audit import WorkItemsChecker
from stoic.store.interface import Head
from stoic.store.pg_projections import KEPT_PROJECTIONS, StoredProjection
from stoic.store.pg_store import PostgresStore
from stoic.store.pg_transfer import LogRow

__all__ = ["audit_database"]

_MAX_LISTED = 10_000
"""The most violations listed; past that only their count (as the files audit does)."""


def audit_database(store: PostgresStore) -> AuditReport:
    """Check every stored record and the head row; violations are listed, never raised."""
    checker = ChainChecker()
    invariants = InvariantChecker()
    violations: list[Violation] = []
    dropped = 0
    replay_broken = False

    def note(found: Sequence[Violation], rows: Mapping[int, int] | None = None) -> None:
        """List `found`, placed by seq alone: rows have no line numbers. A line the checker
        could not read is placed by its row's seq (`rows`: each position's seq)."""
        nonlocal dropped
        room = max(0, _MAX_LISTED - len(violations))
        for v in found[:room]:
            seq = v.seq
            if seq is None and rows is not None and v.line is not None:
                seq = rows.get(v.line)
            violations.append(dataclasses.replace(v, seq=seq, line=None))
        dropped += len(found) - len(found[:room])

    with store.snapshot_with_projections() as (head, pages, stored, items):
        replays = _Replays(stored)
        work = WorkItemsChecker(items)
        position = 0
        for page in pages:
            note([problem for row in page if (problem := _not_one_line(row)) is not None])
            lines = [row[3][:-1] if row[3].endswith(b"\n") else row[3] for row in page]
            records, found = checker.feed_chunk(position + 1, lines, ends_log=False)
            note(found, {position + 1 + index: row[0] for index, row in enumerate(page)})
            position += len(page)
            note(_columns_differ(page, records))
            try:
                work.feed(records)
                replays.feed(records)
            except Exception as exc:  # any input: listed, never an internal error
                replays.broken(str(exc))
            if not replay_broken:
                try:
                    invariants.feed(records)
                except Exception as exc:  # any input: listed, never an internal error
                    replay_broken = True
                    note([_unreplayable(exc, records)])
        note(checker.finish())
        if not replay_broken:
            note(invariants.finish())
        note(_head_problems(head, checker))
        note(replays.finish())
        note(work.finish())
    if dropped:
        violations.append(
            Violation(ViolationCode.BAD_LINE, f"{dropped} further violations are not listed")
        )
    last = Anchor(checker.last_seq, checker.last_hash) if checker.last_seq else None
    return AuditReport(
        records=checker.records,
        last_seq=checker.last_seq,
        violations=tuple(violations),
        head=last,
    )


def _not_one_line(row: LogRow) -> Violation | None:
    line = row[3]
    if line.endswith(b"\n") and b"\n" not in line[:-1]:
        return None
    return Violation(
        ViolationCode.BAD_LINE,
        "the stored line is not one line ending in a newline: it was changed after writing",
        seq=row[0],
    )


def _columns_differ(
    page: Sequence[LogRow], records: Sequence[Mapping[str, Any]]
) -> list[Violation]:
    """Rows whose `seq`, `hash` or `prev_hash` column is not what their line holds: what the
    database reads by (a tail, a cursor) would not be what the record says."""
    columns = {row[0]: (row[1], row[2]) for row in page}
    found = []
    for record in records:
        seq = record["seq"]
        held = columns.get(seq)
        if held != (record["hash"], record["prev_hash"]):
            found.append(
                Violation(
                    ViolationCode.BAD_RECORD,
                    "the row's seq, hash or prev_hash column is not what its line holds",
                    seq=seq,
                    expected=f"seq {seq}, hash {record['hash']}",
                    found="no row of that seq" if held is None else f"hash {held[0]}",
                )
            )
    return found


def _unreplayable(exc: Exception, records: Sequence[Mapping[str, Any]]) -> Violation:
    return Violation(
        ViolationCode.BAD_RECORD,
        "a record cannot be replayed into the behavioural invariants"
        f" ({type(exc).__name__}: {str(exc)[:200]!r}); they are not checked past that point",
        seq=records[0]["seq"] if records else None,
    )


def _head_problems(head: Head, checker: ChainChecker) -> list[Violation]:
    """The head row against the last record: appends go on from the head, so a wrong one
    would chain the next record to the wrong place (or hide records past it)."""
    if head.seq == checker.last_seq and head.hash == checker.last_hash:
        return []
    if head.seq > checker.last_seq:
        message = (
            f"log_head names seq {head.seq}, but the log ends at seq {checker.last_seq}:"
            " records were lost"
        )
        code = ViolationCode.RECORDS_LOST
    elif head.seq < checker.last_seq:
        message = f"log_head names seq {head.seq}, behind the log's last record"
        code = ViolationCode.CHAIN_BREAK
    else:
        message = "log_head names another hash than the last record's"
        code = ViolationCode.CHAIN_BREAK
    return [
        Violation(
            code,
            message,
            seq=head.seq,
            expected=f"{checker.last_seq}:{checker.last_hash}",
            found=f"{head.seq}:{head.hash}",
        )
    ]


class _Replays:
    """The kept projections folded along the stream, each compared with its stored row once the
    replay reaches the record the row names: constant memory, one state per projection."""

    def __init__(self, stored: Sequence[StoredProjection]) -> None:
        known = {projection.name: projection for projection in KEPT_PROJECTIONS}
        self._rows = {
            row.name: row
            for row in stored
            if row.name in known and row.version == known[row.name].version
        }
        self._folds: dict[str, tuple[Projection[Any], Any]] = {
            name: (known[name], known[name].initial()) for name in self._rows
        }
        self._found: list[Violation] = []
        self._done: set[str] = set()
        for name, row in self._rows.items():
            if row.seq == 0:
                self._compare(name, known[name].initial())

    def feed(self, records: Sequence[Mapping[str, Any]]) -> None:
        for name, (projection, state) in list(self._folds.items()):
            if name in self._done:
                continue
            row = self._rows[name]
            for record in records:
                if int(record["seq"]) > row.seq:
                    break
                state = projection.fold(state, [record])
                if int(record["seq"]) == row.seq:
                    if record.get("hash") != row.hash:
                        self._mismatch(name, f"its stamp names seq {row.seq} with another hash")
                    else:
                        self._compare(name, state)
            self._folds[name] = (projection, state)

    def _compare(self, name: str, state: Any) -> None:
        projection, _ = self._folds[name]
        self._done.add(name)
        replayed = orjson.loads(orjson.dumps(projection.to_json(state)))  # as JSON reads back
        if replayed != self._rows[name].state:
            self._mismatch(name, "its state is not what the log gives")

    def _mismatch(self, name: str, why: str) -> None:
        self._done.add(name)
        row = self._rows[name]
        self._found.append(
            Violation(
                ViolationCode.PROJECTION_MISMATCH,
                f"the {name} projection row (seq {row.seq}) disagrees with a replay of the"
                f" log: {why}",
                seq=row.seq,
            )
        )

    def broken(self, why: str) -> None:
        """The log could not be replayed: no row can be checked against it."""
        for name in self._rows:
            if name not in self._done:
                self._mismatch(name, f"the log cannot be replayed ({why[:200]})")

    def finish(self) -> list[Violation]:
        for name, row in self._rows.items():
            if name not in self._done:
                self._mismatch(name, f"no record at seq {row.seq}")
        return self._found
