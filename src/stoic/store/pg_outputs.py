"""Attempt outputs in the PostgreSQL backend: chunked `bytea` rows (DESIGN §13).

Opening an output writes its empty chunk 0, so a second writer of the same attempt meets the
primary key and is refused: an attempt's output is evidence, never written over. Each write is
its own row and commit, so what a runner captured survives it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from stoic.exceptions import WorkspaceError
from stoic.store.leases import check_run_id
from stoic.store.pg_driver import Conn, translated

__all__ = ["PostgresOutputWriter", "PostgresOutputs", "keep_output", "open_output"]

_CHUNK = 1 << 20
"""The most one row keeps; a longer write is kept in part (a short write, as the protocol
allows)."""
_PAGE = 16
"""Chunks read per query."""


def _named(run_id: str, task_id: str, attempt: int) -> str:
    return f"attempt {attempt} of task {task_id} in run {run_id}"


_INSERT = (
    "INSERT INTO attempt_outputs (run_id, task_id, attempt, chunk_no, bytes)"
    " VALUES (%s, %s, %s, %s, %s)"
)


def open_output(conn: Conn, attempt: tuple[str, str, int]) -> bool:
    """Write the attempt's empty chunk 0; False when it has an output already."""
    opened = conn.execute(
        "INSERT INTO attempt_outputs (run_id, task_id, attempt, chunk_no, bytes)"
        " VALUES (%s, %s, %s, 0, '') ON CONFLICT DO NOTHING RETURNING chunk_no",
        attempt,
    ).fetchone()
    return opened is not None


def keep_output(conn: Conn, attempt: tuple[str, str, int], data: bytes) -> None:
    """An attempt's whole output in the caller's transaction, as a writer lays it out (chunk
    0, then chunks of at most 1 MiB); nothing when it has one already. One statement, whose
    answer nobody waits for (it travels with the transaction's next read)."""
    chunks = [data[at : at + _CHUNK] for at in range(0, len(data), _CHUNK)]
    conn.execute(
        "WITH opened AS (INSERT INTO attempt_outputs (run_id, task_id, attempt, chunk_no, bytes)"
        "   VALUES (%s, %s, %s, 0, '') ON CONFLICT DO NOTHING RETURNING chunk_no)"
        " INSERT INTO attempt_outputs (run_id, task_id, attempt, chunk_no, bytes)"
        " SELECT %s, %s, %s, c.chunk_no, c.bytes"
        " FROM unnest(%s::bytea[]) WITH ORDINALITY AS c (bytes, chunk_no)"
        " WHERE EXISTS (SELECT FROM opened)",
        (*attempt, *attempt, chunks),
    )


class PostgresOutputWriter:
    """One attempt's output, open for appending chunks."""

    def __init__(
        self,
        lend: Callable[[], AbstractContextManager[Conn]],
        attempt: tuple[str, str, int],
    ) -> None:
        self._lend = lend
        self._attempt = attempt
        self._next = 1
        self._open = True

    def write(self, chunk: bytes) -> int:
        if not self._open:
            raise WorkspaceError(f"the output of {_named(*self._attempt)} is closed")
        kept = bytes(chunk[:_CHUNK])
        if not kept:
            return 0
        with translated(f"write the output of {_named(*self._attempt)}"), self._lend() as conn:
            conn.execute(_INSERT, (*self._attempt, self._next, kept))
        self._next += 1
        return len(kept)

    def close(self) -> None:
        self._open = False


class PostgresOutputs:
    """The attempt outputs of one database."""

    def __init__(self, lend: Callable[[], AbstractContextManager[Conn]]) -> None:
        self._lend = lend

    def open_writer(self, run_id: str, task_id: str, attempt: int) -> PostgresOutputWriter:
        where = (check_run_id(run_id), task_id, attempt)
        with translated(f"open the output of {_named(*where)}"), self._lend() as conn:
            opened = open_output(conn, where)
        if not opened:
            raise WorkspaceError(
                f"cannot write the output of {_named(*where)}: it already has one"
                " (stoic never writes over an attempt's output)"
            )
        return PostgresOutputWriter(self._lend, where)

    def read(self, run_id: str, task_id: str, attempt: int) -> Iterator[bytes]:
        where = (check_run_id(run_id), task_id, attempt)
        after = 0
        while True:
            with translated(f"read the output of {_named(*where)}"), self._lend() as conn:
                rows = conn.execute(
                    "SELECT chunk_no, bytes FROM attempt_outputs"
                    " WHERE run_id = %s AND task_id = %s AND attempt = %s AND chunk_no > %s"
                    " ORDER BY chunk_no LIMIT %s",
                    (*where, after, _PAGE),
                ).fetchall()
            for _chunk_no, data in rows:
                yield bytes(data)
            if len(rows) < _PAGE:
                return
            after = int(rows[-1][0])
