"""The projections a PostgreSQL log keeps as rows of its `projections` table (DESIGN §13):
read where the log backs them, caught up from the log where other writers moved it on, and
written with the head row's move in the transaction of the records they reflect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from psycopg.types.json import Jsonb

from stoic.core.projection import Projection, WorkspaceStatusProjection
from stoic.core.records import GENESIS_HASH, Record
from stoic.store.interface import Stamped
from stoic.store.pg_driver import Conn

__all__ = [
    "KEPT_PROJECTIONS",
    "StoredProjection",
    "folded_on",
    "kept",
    "move_head",
    "stored",
]

S = TypeVar("S")

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class StoredProjection:
    """A row of the `projections` table, as stored (its state not yet read)."""

    name: str
    version: int
    seq: int
    hash: str
    state: Any


KEPT_PROJECTIONS: tuple[Projection[Any], ...] = (WorkspaceStatusProjection(),)
"""Projections every handle keeps in the `projections` table from its first append; any other
joins once a handle is asked for it."""


def stored(conn: Conn, projection: Projection[S]) -> Stamped[S] | None:
    """The projection's row where the log backs it — its stamp a record's seq and hash — and
    it can be read as this version's; else None (refolded from the log, which decides)."""
    row = conn.execute(
        "SELECT p.version, p.seq, p.hash, p.state, d.hash FROM projections p"
        " LEFT JOIN decision_log d ON d.seq = p.seq WHERE p.name = %s",
        (projection.name,),
    ).fetchone()
    if row is None or int(row[0]) != projection.version:
        return None
    backed = row[4] if int(row[1]) > 0 else GENESIS_HASH
    if backed != row[2]:
        return None
    try:
        state = projection.from_json(row[3])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a row no fold wrote: refolded from the log, which decides
    return Stamped(int(row[1]), str(row[2]), state)


def kept(
    conn: Conn, projection: Projection[S], records: Sequence[Record], last: Stamped[S] | None
) -> Stamped[S]:
    """The projection at the last of `records`, inside the appending transaction (which holds
    the head row): from `last` when it stands at the head this transaction found, else from
    its row, caught up from the log where other writers appended past it, or from the start
    where the log does not back it."""
    before = records[0].seq - 1  # the head row this transaction holds: no other writer
    at_head = last is not None and (last.seq, last.hash) == (before, records[0].prev_hash)
    start = last if last is not None and at_head else stored(conn, projection)
    if start is None or start.seq > before:
        start = Stamped(0, GENESIS_HASH, projection.initial())
    try:
        state = folded_on(conn, projection, start, before, records)
    except Exception:  # a row no fold wrote cannot be folded on: the log decides
        if start.seq == 0:
            raise  # the fold itself fails: the append fails with it
        fresh = Stamped(0, GENESIS_HASH, projection.initial())
        state = folded_on(conn, projection, fresh, before, records)
    return Stamped(records[-1].seq, records[-1].hash, state)


def move_head(
    conn: Conn, last: Record, kept: Sequence[tuple[Projection[Any], Stamped[Any]]]
) -> None:
    """The head row moved to `last` and the kept projections' rows written at it: one
    statement (the head row's trigger sees the records the statements before it inserted)."""
    head = "UPDATE log_head SET seq = %s, hash = %s"
    if not kept:
        conn.execute(head, (last.seq, last.hash))
        return
    values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(kept))
    conn.execute(
        f"WITH head AS ({head} RETURNING seq)"
        f" INSERT INTO projections (name, version, seq, hash, state) VALUES {values}"
        " ON CONFLICT (name) DO UPDATE SET version = excluded.version, seq = excluded.seq,"
        " hash = excluded.hash, state = excluded.state",
        (
            last.seq,
            last.hash,
            *(
                field
                for projection, stamped in kept
                for field in (
                    projection.name,
                    projection.version,
                    stamped.seq,
                    stamped.hash,
                    Jsonb(projection.to_json(stamped.state)),
                )
            ),
        ),
    )


def folded_on(
    conn: Conn, projection: Projection[S], start: Stamped[S], before: int, records: Sequence[Record]
) -> S:
    """`start` folded on over the log to `before`, then over `records`."""
    state, cursor = start.state, start.seq
    while cursor < before:
        rows = conn.execute(
            "SELECT seq, line FROM decision_log WHERE seq > %s AND seq <= %s ORDER BY seq LIMIT %s",
            (cursor, before, _PAGE),
        ).fetchall()
        state = projection.fold(state, [orjson.loads(line) for _seq, line in rows])
        cursor = int(rows[-1][0])
    return projection.fold(state, [record._asdict() for record in records])
