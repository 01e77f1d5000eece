"""Run leases in the PostgreSQL backend: a session advisory lock per run (DESIGN §6, §13).

Each lease holds its own connection, and the lock lives as long as that session: a holder that
dies, however it dies, ends its connection and the lease with it. A row in `run_leases` names
the holder for readers; the lock, not the row, is the lease, so a reader trusts a row only
while the session that wrote it (`backend_pid`) still holds the run's lock.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

from stoic.exceptions import UsageError
from stoic.store.interface import Lease
from stoic.store.leases import check_run_id, holder_here, refused
from stoic.store.log import utc_timestamp
from stoic.store.pg_driver import Conn, lock_key, lock_parts, translated

__all__ = ["PostgresLeases"]

_TRIES = 20
"""A holder that was just killed needs an instant for its session to end: try a few times
before refusing."""

_HELD_BY = """
SELECT r.holder, r.since
FROM pg_locks l LEFT JOIN run_leases r ON r.run_id = %s AND r.backend_pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = %s AND l.objid::bigint = %s
"""

_HELD = """
SELECT r.run_id, r.holder, r.since
FROM run_leases r JOIN pg_locks l
  ON l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid = r.backend_pid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid::bigint = r.lock_key >> 32 AND l.objid::bigint = r.lock_key & 4294967295
ORDER BY r.run_id COLLATE "C"
"""

_NAME_HOLDER = """
INSERT INTO run_leases (run_id, holder, since, lock_key, backend_pid)
VALUES (%s, %s, %s, %s, pg_backend_pid())
ON CONFLICT (run_id) DO UPDATE SET holder = excluded.holder, since = excluded.since,
    lock_key = excluded.lock_key, backend_pid = excluded.backend_pid
"""


class PostgresLeases:
    """The run leases of one database, as held by this handle."""

    def __init__(
        self, connect: Callable[[], Conn], reader: Callable[[], AbstractContextManager[Conn]]
    ) -> None:
        """`connect` opens a lease's own connection; `reader` lends one for a question."""
        self._connect = connect
        self._reader = reader
        self._held: dict[str, tuple[Conn, Lease]] = {}
        self._mutex = threading.Lock()

    def acquire(self, run_id: str) -> Lease:
        key = lock_key("run", check_run_id(run_id))
        with translated(f"take the lease of run {run_id}"):
            conn = self._connect()
            try:
                for tried in range(1, _TRIES + 1):
                    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                    if got is not None and got[0]:
                        break
                    if tried == _TRIES:
                        raise refused(run_id, self.held_by(run_id))
                    time.sleep(0.01)
                lease = Lease(run_id, holder_here(), utc_timestamp())
                conn.execute(_NAME_HOLDER, (run_id, lease.holder, lease.since, key))
            except BaseException:
                conn.close()
                raise
        with self._mutex:
            self._held[run_id] = (conn, lease)
        return lease

    def renew(self, lease: Lease) -> Lease:
        """The lock lasts as long as the lease's session: renewing checks the session lives."""
        with self._mutex:
            held = self._held.get(lease.run_id)
        if held is None or held[1] != lease:
            raise UsageError(
                f"run {lease.run_id} is not held by this process: it cannot be renewed"
            )
        try:
            held[0].execute("SELECT 1")
        except psycopg.Error:
            self.release(lease)
            raise UsageError(
                f"run {lease.run_id} was lost: the connection that held it ended"
            ) from None
        return lease

    def release(self, lease: Lease) -> None:
        with self._mutex:
            held = self._held.get(lease.run_id)
            if held is None or held[1] != lease:
                return
            del self._held[lease.run_id]
        _let_go(held[0], lease.run_id)

    def held_by(self, run_id: str) -> Lease | None:
        """Read from `pg_locks`, which takes no lock: asking never holds anyone off."""
        classid, objid = lock_parts(lock_key("run", check_run_id(run_id)))
        with translated(f"see who holds run {run_id}"), self._reader() as conn:
            row = conn.execute(_HELD_BY, (run_id, classid, objid)).fetchone()
        if row is None:
            return None
        if row[0] is None:
            # Locked by a session that has not named itself (yet): someone holds it all the same.
            return Lease(run_id, "another stoic process", None)
        return Lease(run_id, str(row[0]), str(row[1]))

    def held(self) -> list[Lease]:
        with translated("list the runs held"), self._reader() as conn:
            rows = conn.execute(_HELD).fetchall()
        return [Lease(str(run_id), str(holder), str(since)) for run_id, holder, since in rows]

    def close(self) -> None:
        with self._mutex:
            held, self._held = list(self._held.items()), {}
        for run_id, (conn, _lease) in held:
            _let_go(conn, run_id)


def _let_go(conn: Conn, run_id: str) -> None:
    """The row goes first, so no reader sees it stale; then the lock, at once — a closed
    session lets its locks go only once its backend has ended, which a reader could see
    before it does."""
    with contextlib.suppress(psycopg.Error):
        conn.execute(
            "DELETE FROM run_leases WHERE run_id = %s AND backend_pid = pg_backend_pid()",
            (run_id,),
        )
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key("run", run_id),))
    conn.close()
