"""The backends the contract suite runs against, and the second processes its tests start.

A test names a backend by name and an opaque locator (a folder for files, a database URL for
PostgreSQL): it never builds a path itself. Run as a program, this module opens a store in a second,
real process: `python -m tests.contract.backends ACTION BACKEND LOCATOR ARG`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from stoic.core.notifications import Notice
from stoic.core.records import Decision
from stoic.store.interface import Store
from stoic.store.pg_store import PostgresStore
from stoic.store.workspace import Workspace


def no_notices(workspace: Workspace, notice: Notice) -> None:
    """The store interface announces nothing by itself: a notice here is a bug."""
    raise AssertionError(f"the store announced {notice.event.value}: {notice.text}")


BACKENDS = ["files", "postgres"]
"""Every backend the suite runs against."""

FILES_ONLY = ["files"]
"""For tests that need a `Workspace`, the file backend's wider handle."""

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def create(name: str, scratch: Path, *, new_database: Callable[[], str] | None = None) -> str:
    """A fresh, empty store of backend `name`; returns its locator. PostgreSQL's is made in
    a fresh database `new_database` returns the URL of."""
    if name == "files":
        where = scratch / "store"
        Workspace.init(where, deliverer=no_notices).close()
        return str(where)
    if name == "postgres":
        assert new_database is not None, "a PostgreSQL store needs a server"
        url = new_database()
        PostgresStore.init(url).close()
        return url
    raise ValueError(f"unknown backend {name!r}")


def open_store(name: str, locator: str) -> Store:
    """A new handle on an existing store."""
    if name == "files":
        return Workspace.open(locator, deliverer=no_notices)
    if name == "postgres":
        return PostgresStore.open(locator)
    raise ValueError(f"unknown backend {name!r}")


def start(action: str, name: str, locator: str, arg: str) -> subprocess.Popen[str]:
    """A second process acting on the store; its first line of output says it is ready."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.contract.backends", action, name, locator, arg],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _main(action: str, name: str, locator: str, arg: str) -> None:
    store = open_store(name, locator)
    if action == "hold-lease":
        lease = store.leases.acquire(arg)
        print(orjson.dumps({"holder": lease.holder}).decode(), flush=True)
        time.sleep(600)
    elif action == "append":
        print("appending", flush=True)
        (record,) = store.append(
            [Decision.from_mapping({"type": "policy_check", "outcome": "passed", "reason": arg})]
        )
        print(record.seq, flush=True)
    else:
        raise SystemExit(f"unknown action {action!r}")
    store.close()


if __name__ == "__main__":
    _main(*sys.argv[1:5])
