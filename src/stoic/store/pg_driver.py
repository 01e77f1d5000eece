"""Where the PostgreSQL backend meets psycopg: its errors become stoic's here, in one place,
and its transactions travel in as few round trips as they can.

Also the advisory lock keys the backend takes: a 63-bit digest of a name, so keys of different
purposes (the writer, each run's lease) never meet, and the key a reader looks up in `pg_locks`
is the one the holder took.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow

from stoic.exceptions import WorkspaceError, WorkspaceNotWritable

__all__ = [
    "CONNECTION",
    "Conn",
    "connect",
    "lock_key",
    "lock_parts",
    "pipelined_transaction",
    "translated",
]

Conn = psycopg.Connection[TupleRow]
"""A connection as the backend uses them: autocommit, rows as tuples."""


CONNECTION: dict[str, object] = {
    "autocommit": True,
    "connect_timeout": 10,
    # A peer that vanishes without a word (a cut link) is noticed in about half a minute, so a
    # renewal or an append answers "lost" instead of hanging.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
"""How every connection of the backend is made."""


def connect(url: str) -> Conn:
    """A connection to the stoic database at `url`. Its errors never repeat the URL (it may hold
    a password): a URL libpq cannot parse is refused in fixed words."""
    try:
        return psycopg.connect(url, **CONNECTION)  # type: ignore[arg-type]
    except psycopg.ProgrammingError as exc:
        raise WorkspaceError(
            "cannot open the stoic database: its URL cannot be read (postgresql://USER@HOST/DB;"
            " the URL is not repeated here: it may hold a password)"
        ) from exc
    except psycopg.Error as exc:
        raise WorkspaceNotWritable(
            f"cannot open the stoic database: {_scrubbed(_first_line(exc), url)}"
        ) from exc


def _scrubbed(text: str, url: str) -> str:
    """`text` without the URL's password, wherever libpq repeated it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text


def lock_key(kind: str, name: str) -> int:
    """The advisory lock key of `name` among locks of `kind` (non-negative, 63 bits)."""
    digest = hashlib.sha256(f"stoic:{kind}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def lock_parts(key: int) -> tuple[int, int]:
    """How `pg_locks` shows a bigint advisory key: (classid, objid), the high and low halves."""
    return key >> 32, key & 0xFFFFFFFF


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn a driver error inside the block into a `WorkspaceError` that says what failed."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise WorkspaceNotWritable(f"cannot {what}: {_first_line(exc)}") from exc
    except psycopg.OperationalError as exc:
        raise WorkspaceNotWritable(
            f"cannot {what}: the database is unreachable or failed ({_first_line(exc)})"
        ) from exc
    except psycopg.Error as exc:
        raise WorkspaceError(f"cannot {what}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def pipelined_transaction(conn: Conn) -> Iterator[None]:
    """One explicit transaction on an autocommit connection in pipeline mode, its `BEGIN`
    and `COMMIT` sent with the statements between them: what is not read on the way travels
    in one round trip with the commit. (psycopg's `transaction()` syncs the pipeline at its
    start, after the block and at the commit: three round trips more per transaction.)

    A read on the way syncs the pipeline, which an explicit transaction outlives. A statement
    that fails makes the server skip what follows up to the sync, the `COMMIT` too, and the
    transaction is rolled back here, as it is when the block raises."""
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            yield
            conn.execute("COMMIT")
    except BaseException:
        if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                conn.close()  # the transaction goes with the session
        raise
