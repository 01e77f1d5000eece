"""Where the PostgreSQL backend meets psycopg: its errors become stoic's here, in one place.

Also the advisory lock keys the backend takes: a 63-bit digest of a name, so keys of different
purposes (the writer, each run's lease) never meet, and the key a reader looks up in `pg_locks`
is the one the holder took.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import psycopg
from psycopg.rows import TupleRow

from stoic.exceptions import WorkspaceError, WorkspaceNotWritable

__all__ = ["Conn", "lock_key", "lock_parts", "translated"]

Conn = psycopg.Connection[TupleRow]
"""A connection as the backend uses them: autocommit, rows as tuples."""


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
