"""The store on PostgreSQL (DESIGN §13): the decision log as a table, one head row as its lock.

An append locks the single `log_head` row `FOR UPDATE`, inserts its records after it and moves
it, in one transaction: seqs are gapless in commit order (a sequence's are not), and a reader
that sees the head sees every record up to it. The lines are sealed by `core.records.seal`,
byte for byte what the files backend writes, so a record hashes the same in both.

`transaction()` is a session advisory lock on this handle's own connection, which its appends
then use; every other append takes the same key for its own transaction first. Appends inside
it commit one by one, as the protocol asks.

Runs on this backend are carried out by workers (`stoic.run.fleet`): their claims and work
items are rows written in the transactions of the records that announce them (`writing`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Self, TypeVar

import orjson
import psycopg
from psycopg_pool import ConnectionPool

from stoic.core.pause import PauseInForce, pause_after
from stoic.core.projection import Projection
from stoic.core.records import GENESIS_HASH, Decision, Record, seal
from stoic.core.work_audit import WorkItem
from stoic.exceptions import WorkspaceExists, WorkspaceNotWritable
from stoic.store import pg_projections
from stoic.store.interface import Head, Stamped
from stoic.store.log import utc_timestamp
from stoic.store.pg_driver import (
    CONNECTION,
    Conn,
    connect,
    lock_key,
    pipelined_transaction,
    translated,
)
from stoic.store.pg_leases import PostgresLeases
from stoic.store.pg_outputs import PostgresOutputs
from stoic.store.pg_projections import KEPT_PROJECTIONS, StoredProjection
from stoic.store.pg_run_files import read_attempt_outputs, read_run_files, store_run_files
from stoic.store.pg_schema import check_current, migrate
from stoic.store.pg_transfer import LineChecker, LogRow, stored_row
from stoic.store.provenance import vet
from stoic.store.run_evidence import RunFile

__all__ = ["AtHead", "PostgresPauseWatch", "PostgresStore"]

S = TypeVar("S")

_WRITER = lock_key("writer", "decision_log")
"""The advisory key every writer of the log takes: a transaction's session, an append's
transaction."""
_PAGE = 1000
"""Records read per query: a read streams without holding a connection between pages."""

_INSERT = """
INSERT INTO decision_log (seq, hash, prev_hash, decision_id, decided_at, decision_type,
    decision_outcome, run_id, task_id, is_failure, line)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


_INSERT_SELECTED = """
INSERT INTO decision_log (seq, hash, prev_hash, decision_id, decided_at, decision_type,
    decision_outcome, run_id, task_id, is_failure, line)
SELECT %s::bigint, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text, %s::text,
    %s::text, %s::boolean, %s::bytea
"""
"""`_INSERT` as a SELECT, whose FROM decides whether the row is inserted."""


class PostgresStore:
    """A handle on a stoic database: the `Store` protocol (`stoic.store.interface`)."""

    def __init__(self, url: str, writer: Conn) -> None:
        """Use `open` or `init`; `writer` is this handle's own connection, schema checked."""
        self._url = url
        self._writer: Conn | None = writer
        # A connection is waited for as long as one takes to make (`connect_timeout`), not
        # psycopg_pool's 30 s: with the server gone, a worker's turn fails (and a stop signal
        # is acted on) that much sooner.
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=8,
            kwargs=CONNECTION,
            open=True,
            name="stoic",
            timeout=float(str(CONNECTION["connect_timeout"])),
        )
        self._mutex = threading.RLock()
        self._depth = 0
        self._owner: int | None = None
        self._kept: dict[str, Projection[Any]] = {
            projection.name: projection for projection in KEPT_PROJECTIONS
        }
        self._folds: dict[str, Stamped[Any]] = {}
        """The state each kept projection was last brought to by this handle, stamped with the
        record it folds to: the next append that finds the head at that stamp folds on from it,
        without reading the row back (the stamp's hash names the whole log before it)."""
        self._leases = PostgresLeases(lambda: connect(url), self._lend)
        self._outputs = PostgresOutputs(self._lend)

    @classmethod
    def init(cls, url: str) -> Self:
        """Create the schema, or bring it up to date, and open the store."""
        cls.migrate(url)
        return cls.open(url)

    @staticmethod
    def migrate(url: str) -> list[str]:
        """Apply the named migrations the database lacks (each recorded in
        `stoic_migrations`); returns their names, [] when it is up to date."""
        with translated("create the stoic schema"), connect(url) as conn:
            return migrate(conn)

    @classmethod
    def open(cls, url: str) -> Self:
        """Open a database `init` made; a newer stoic's, or one not made yet, is refused."""
        with translated("open the stoic database"):
            writer = connect(url)
        try:
            with translated("read the stoic schema"):
                check_current(writer)
        except BaseException:
            writer.close()
            raise
        return cls(url, writer)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._leases.close()
        self._pool.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    # -- connections ---------------------------------------------------------------------------

    def _own(self) -> Conn:
        """This handle's own connection: opened again if it broke — except inside a
        transaction, whose writer lock went with the old session: a new one would append
        without it, on what another writer may have changed since."""
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._depth:
                raise WorkspaceNotWritable(
                    "the writer lock of the decision log was lost with its connection: what"
                    " this transaction read may be stale; nothing more is written in it"
                )
            self._writer = connect(self._url)
        return self._writer

    @contextlib.contextmanager
    def _lend(self) -> Iterator[Conn]:
        """A connection for one statement or transaction: the handle's own while this thread
        holds the transaction (it sees what it holds), else one from the pool."""
        if self.held_here():
            yield self._own()
            return
        with self._pool.connection() as conn:
            yield conn

    def connection(self) -> AbstractContextManager[Conn]:
        """A connection of the pool for statements outside the log (a worker's heartbeat)."""
        return self._lend()

    # -- writing -------------------------------------------------------------------------------

    def held_here(self) -> bool:
        """Whether this thread holds the writer (is inside `transaction()`)."""
        return self._depth > 0 and self._owner == threading.get_ident()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        with self._mutex:
            if self._depth:  # already held by this thread: one transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with translated("take the writer lock of the decision log"):
                conn = self._own()
                conn.execute("SELECT pg_advisory_lock(%s)", (_WRITER,))
            self._depth, self._owner = 1, threading.get_ident()
            try:
                yield
            finally:
                self._depth, self._owner = 0, None
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_WRITER,))
                except psycopg.Error:
                    conn.close()  # the lock goes with the session

    def transaction(self) -> AbstractContextManager[None]:
        """Exclusive writing across processes; nested use in one thread is one."""
        return self._transaction()

    @contextlib.contextmanager
    def _at_head(
        self, what: str, expected: Head | None = None
    ) -> Iterator[tuple[Conn, Callable[[], Head]]]:
        """One database transaction holding the writer key and the head row: what is written
        in it follows the head it yields, and commits with it or not at all.

        The head is read when first asked for: the server takes the locks first whatever comes
        after, and the reads sent before it is asked for travel in the same round trip."""
        held = self.held_here()
        with translated(what), self._lend() as conn, pipelined_transaction(conn):
            cursor = (
                conn.execute("SELECT seq, hash FROM log_head FOR UPDATE")
                if held  # this session holds the writer key already
                else conn.execute(
                    "SELECT seq, hash, pg_advisory_xact_lock(%s) FROM log_head FOR UPDATE",
                    (_WRITER,),
                )
            )

            def head() -> Head:
                if expected is not None:
                    return expected
                row = cursor.fetchone()
                assert row is not None, "the log_head row is created with the schema"
                return Head(int(row[0]), str(row[1]))

            yield conn, head

    def append(self, decisions: Sequence[Decision]) -> list[Record]:
        """Seal and append in one database transaction, under the head row's lock."""
        if not decisions:
            return []
        with self.writing("append to the decision log") as writing:
            return writing.append(decisions)  # vetted there, once

    @contextlib.contextmanager
    def writing(self, what: str, expected: Head | None = None) -> Iterator[AtHead]:
        """One database transaction at the head of the log: the records appended in it and the
        rows written beside them (a worker's claim, a run's work items) commit together or not
        at all. `what` names it in an error.

        `expected`: the head the caller knows (its own last commit), its records sealed after
        it without a read; where the log has moved on, the log's triggers refuse the first of
        them, and the transaction with it (the caller then writes it the long way)."""
        with self._at_head(what, expected) as (conn, head):
            writing = AtHead(conn, head)
            yield writing
            records = writing.records
            if records:
                kept = []
                for projection in list(self._kept.values()):
                    last = self._folds.get(projection.name)
                    self._folds[projection.name] = state = pg_projections.kept(
                        conn, projection, records, last
                    )
                    kept.append((projection, state))
                pg_projections.move_head(conn, records[-1], kept)

    def import_lines(
        self, batches: Iterable[Sequence[bytes]], run_files: Iterable[RunFile] = ()
    ) -> Head:
        """Store another log's lines in this empty one, byte for byte, then its runs' evidence
        files, and move the head to its last record: one database transaction under the head
        row's lock, so the log and the files are whole or untouched. Each line is checked
        before it is written (`LineChecker`: its hash covers its canonical bytes, it links to
        the one before, seqs run from 1 without a gap); a log that is not empty is refused,
        naming its head."""
        with self._at_head("import into the decision log") as (conn, read_head):
            head = read_head()
            if head.seq != 0:
                raise WorkspaceExists(
                    f"the database's decision log is not empty (head {head.seq}:{head.hash});"
                    " import only into an empty one"
                )
            checker = LineChecker()
            for batch in batches:
                rows = [checker.row(line) for line in batch]
                if rows:
                    with conn.cursor() as cursor:
                        cursor.executemany(_INSERT, rows)
            store_run_files(conn, run_files)
            conn.execute(
                "UPDATE log_head SET seq = %s, hash = %s", (checker.seq, checker.prev_hash)
            )
            if checker.seq > 0:
                conn.execute("INSERT INTO log_import (upto_seq) VALUES (%s)", (checker.seq,))
        return Head(checker.seq, checker.prev_hash)

    def imported_upto(self) -> int:
        """The last record that came by `import_lines` (0: none did): the log's history
        before this database held it."""
        with translated("read what the decision log imported"), self._lend() as conn:
            row = conn.execute("SELECT upto_seq FROM log_import").fetchone()
        return 0 if row is None else int(row[0])

    # -- reading -------------------------------------------------------------------------------

    def head(self) -> Head:
        with translated("read the head of the decision log"), self._lend() as conn:
            return _head_row(conn)

    def read(self, after_seq: int = 0) -> Iterator[Record]:
        for page in self._pages(after_seq):
            for data in page:
                yield Record(**data)

    def _pages(
        self, after_seq: int, upto: int | None = None, *, decision_type: str | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """The records after `after_seq` up to the head as it is when reading begins (or
        `upto`), a page at a time: every record up to a head seen is committed."""
        end = self.head().seq if upto is None else upto
        cursor = after_seq
        typed = "" if decision_type is None else " AND decision_type = %s"
        while cursor < end:
            with translated("read the decision log"), self._lend() as conn:
                rows = conn.execute(
                    "SELECT seq, line FROM decision_log WHERE seq > %s AND seq <= %s"
                    + typed
                    + " ORDER BY seq LIMIT %s",
                    (cursor, end, *(() if decision_type is None else (decision_type,)), _PAGE),
                ).fetchall()
            if not rows:
                return
            yield [orjson.loads(line) for _seq, line in rows]
            cursor = int(rows[-1][0])

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[tuple[Head, Iterator[list[LogRow]], Iterator[RunFile]]]:
        """The head row, every stored row in seq order and the runs' evidence files, as one
        moment holds them (see `snapshot_with_projections`); read the pages first."""
        with self._moment() as conn:
            head = _head_row(conn)
            with conn.cursor(name="stoic_log_snapshot") as cursor:
                cursor.execute("SELECT seq, hash, prev_hash, line FROM decision_log ORDER BY seq")
                yield head, _fetched(cursor), _evidence(conn)

    @contextlib.contextmanager
    def snapshot_with_projections(
        self,
    ) -> Iterator[tuple[Head, Iterator[list[LogRow]], list[StoredProjection], list[WorkItem]]]:
        """The head row, every stored row in seq order, the projection rows and the work
        items, as one moment holds them.

        One read-only REPEATABLE READ transaction and a server-side cursor: a reader of the
        whole log (an export, an audit) sees no append that commits meanwhile, and holds one
        page in memory at a time. The rows are read by `seq`, not up to the head, so a head
        row that lags the log shows as such.
        """
        with self._moment() as conn:
            head = _head_row(conn)
            stored = [
                StoredProjection(str(name), int(version), int(seq), str(digest), state)
                for name, version, seq, digest, state in conn.execute(
                    "SELECT name, version, seq, hash, state FROM projections ORDER BY name"
                )
            ]
            items = [
                WorkItem(str(run_id), str(task_id), int(attempt), fence)
                for run_id, task_id, attempt, fence in conn.execute(
                    "SELECT run_id, task_id, attempt, fence FROM work_items"
                    " ORDER BY run_id, task_id"
                )
            ]
            with conn.cursor(name="stoic_log_snapshot") as cursor:
                cursor.execute("SELECT seq, hash, prev_hash, line FROM decision_log ORDER BY seq")
                yield head, _fetched(cursor), stored, items

    @contextlib.contextmanager
    def _moment(self) -> Iterator[Conn]:
        """A connection in one read-only REPEATABLE READ transaction."""
        with (
            translated("read the decision log"),
            self._pool.connection() as conn,
            conn.transaction(),
        ):
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    def tail(
        self,
        count: int,
        *,
        run_id: str | None = None,
        decision_type: str | None = None,
        failures: bool = False,
    ) -> list[Record]:
        """The last `count` matching records, oldest first, each filter an indexed column."""
        if count <= 0:
            return []
        where, params = ["true"], list[object]()
        if run_id is not None:
            where.append("run_id = %s")
            params.append(run_id)
        if decision_type is not None:
            where.append("decision_type = %s")
            params.append(decision_type)
        if failures:
            where.append("is_failure")
        with translated("read the decision log"), self._lend() as conn:
            rows = conn.execute(
                "SELECT line FROM decision_log WHERE "
                + " AND ".join(where)
                + " ORDER BY seq DESC LIMIT %s",
                (*params, count),
            ).fetchall()
        return [Record(**orjson.loads(line)) for (line,) in reversed(rows)]

    def projected(self, projection: Projection[S]) -> Stamped[S]:
        """`projection` as its table row holds it, checked against the log (the row's seq and
        hash must be a record's) and caught up from there; kept from now on in the
        transaction of every append this handle makes. A row the log does not back, or of
        another version, is refolded from the start."""
        self._kept.setdefault(projection.name, projection)
        with translated(f"read the {projection.name} projection"), self._lend() as conn:
            # Before the head: the head is never behind it.
            stored = pg_projections.stored(conn, projection)
            head = _head_row(conn)
        start = Stamped(0, GENESIS_HASH, projection.initial()) if stored is None else stored
        if start.seq > head.seq:
            start = Stamped(0, GENESIS_HASH, projection.initial())
        try:
            return self._folded_on(projection, start, head.seq)
        except Exception:  # a row no fold wrote cannot be folded on: the log decides
            if start.seq == 0:
                raise
            fresh = Stamped(0, GENESIS_HASH, projection.initial())
            return self._folded_on(projection, fresh, head.seq)

    def _folded_on(self, projection: Projection[S], start: Stamped[S], upto: int) -> Stamped[S]:
        seq, digest, state = start.seq, start.hash, start.state
        for page in self._pages(seq, upto):
            state = projection.fold(state, page)
            seq, digest = int(page[-1]["seq"]), str(page[-1]["hash"])
        return Stamped(seq, digest, state)

    def pause_records(self, after_seq: int, upto: int) -> Iterator[Mapping[str, Any]]:
        """The pause records in (`after_seq`, `upto`], in order: what the pause watch folds."""
        for page in self._pages(after_seq, upto, decision_type="pause"):
            yield from page

    def pause_watch(self) -> PostgresPauseWatch:
        return PostgresPauseWatch(self)

    @property
    def leases(self) -> PostgresLeases:
        """Run leases: a session advisory lock per run (see `stoic.store.pg_leases`)."""
        return self._leases

    @property
    def outputs(self) -> PostgresOutputs:
        """Attempt outputs: chunked rows (see `stoic.store.pg_outputs`)."""
        return self._outputs


class AtHead:
    """A transaction holding the head of the log (`PostgresStore.writing`)."""

    def __init__(self, conn: Conn, head: Callable[[], Head]) -> None:
        self.conn = conn
        """The transaction's connection, for the rows written beside the records."""
        self._read_head = head
        self._head: Head | None = None
        self.records: list[Record] = []
        """What this transaction appended, in order."""

    @property
    def head(self) -> Head:
        """The head as it stands in this transaction, with what it appended."""
        if self._head is None:
            self._head = self._read_head()
        return self._head

    def append(self, decisions: Sequence[Decision]) -> list[Record]:
        """Seal `decisions` after the head and insert them; they commit with the transaction."""
        if not decisions:
            return []
        records, rows = _sealed(vet(decisions), self.head.seq, self.head.hash)
        if len(rows) == 1:
            self.conn.execute(_INSERT, rows[0])
        else:
            with self.conn.cursor() as cursor:
                cursor.executemany(_INSERT, rows)
        self.records.extend(records)
        self._head = Head(records[-1].seq, records[-1].hash)
        return records

    def append_if(self, decision: Decision, check: str, params: Sequence[object]) -> Record:
        """Seal `decision` after the head and insert it only if `check` (a statement that may
        change rows, `RETURNING` what it did) yields a row, in one statement with it (nothing
        to wait for). Without that row the record is missing: the next record appended, or
        the head's move, does not follow the log's last record, and the log's triggers fail
        the transaction."""
        (record,), (row,) = _sealed(vet([decision]), self.head.seq, self.head.hash)
        self.conn.execute(
            f"WITH checked AS ({check}) {_INSERT_SELECTED} FROM checked LIMIT 1", (*params, *row)
        )
        self.records.append(record)
        self._head = Head(record.seq, record.hash)
        return record

    def projected(self, projection: Projection[S]) -> S:
        """`projection` as of this transaction's head: its row where the log backs it, caught
        up from the log (this transaction's records too)."""
        start = pg_projections.stored(self.conn, projection)
        if start is None or start.seq > self.head.seq:
            start = Stamped(0, GENESIS_HASH, projection.initial())
        return pg_projections.folded_on(self.conn, projection, start, self.head.seq, [])


class PostgresPauseWatch:
    """Follows the log for pauses and resumes, reading only pause records it has not seen."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self.seq = store.head().seq
        self.in_force: PauseInForce | None = None
        for record in store.pause_records(0, self.seq):
            self.in_force = pause_after(self.in_force, record)

    def check(self) -> PauseInForce | None:
        """The pause in force now; the caller holds the store's transaction, so it stays true
        until the caller lets go."""
        assert self._store.held_here(), "check the pause in the transaction that appends"
        head = self._store.head().seq
        for record in self._store.pause_records(self.seq, head):
            self.in_force = pause_after(self.in_force, record)
        self.seq = head
        return self.in_force


def _evidence(conn: Conn) -> Iterator[RunFile]:
    """The runs' stored evidence files, then the attempt logs only the workers' outputs hold."""
    yield from read_run_files(conn)
    yield from read_attempt_outputs(conn)


def _head_row(conn: Conn) -> Head:
    row = conn.execute("SELECT seq, hash FROM log_head").fetchone()
    assert row is not None, "the log_head row is created with the schema"
    return Head(int(row[0]), str(row[1]))


def _fetched(cursor: psycopg.ServerCursor[Any]) -> Iterator[list[LogRow]]:
    while True:
        with translated("read the decision log"):
            rows = cursor.fetchmany(_PAGE)
        if not rows:
            return
        yield [(int(seq), str(digest), str(prev), bytes(line)) for seq, digest, prev, line in rows]


def _sealed(
    batch: Sequence[Decision], seq: int, prev_hash: str
) -> tuple[list[Record], list[tuple[object, ...]]]:
    """The batch sealed after (`seq`, `prev_hash`), and the rows that store it; a decision that
    cannot be sealed raises before any row is written."""
    decided_at = utc_timestamp()
    records: list[Record] = []
    rows: list[tuple[object, ...]] = []
    for decision in batch:
        seq += 1
        record, line = seal(
            decision,
            seq=seq,
            prev_hash=prev_hash,
            decision_id=os.urandom(16).hex(),
            decided_at=decided_at,
        )
        records.append(record)
        rows.append(stored_row(record, line))
        prev_hash = record.hash
    return records, rows
