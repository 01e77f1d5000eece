"""The notices of a database's records, told by `stoic serve` (DESIGN §11, §13).

Workers write the records that call for a person — a run that ended or waits, a suggestion,
an escalation, a pause the system made — and have no notifiers. The server of a workspace
that names the database follows its log, a second at a time, and tells the workspace's
notifiers of each such record (`stoic.core.database_notices`); each delivery is recorded in
the workspace's log, as every notification is, naming the database record it announced
(`database_seq`, `database_hash`). A server started again goes on after the last record so
named — when the database still holds that very record; a database it has never announced
(or another one) is followed from its head at the start: what it recorded before anyone
served it is not announced, nor what `stoic import` stored in it (the history of a workspace,
not news). One server of a workspace announces at a time: the one that holds
`logs/database_notices.lock` (the OS lets it go when that server dies, and another takes it).
"""

from __future__ import annotations

import os
import threading

from stoic.core.database_notices import database_notice
from stoic.services.workspace import Workspace
from stoic.store.layout import NOTICES_LOCK
from stoic.store.leases import hold_exclusive
from stoic.store.pg_store import PostgresStore

__all__ = ["DatabaseAnnouncer"]


class DatabaseAnnouncer:
    """Follows one database's log and tells the notifiers of a workspace what it records."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seq: int | None = None
        """The last database record looked at; None until the first turn."""
        self._store: PostgresStore | None = None
        self._held: int | None = None
        """The descriptor of the announcer's lock, once this process holds it."""

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._held is not None:
            os.close(self._held)
            self._held = None

    def turn(self, workspace: Workspace, stopping: threading.Event | None = None) -> int:
        """Announce what the database recorded since the last turn; returns how many notices
        (none while another server of the workspace announces). `stopping`: checked between
        notices, so a slow notifier delays a stop by one delivery at most."""
        if self._held is None:
            self._held = hold_exclusive(workspace.root, workspace.root / NOTICES_LOCK)
            if self._held is None:
                return 0
            self.seq = None  # where the server that held it stopped, as the log says
        store = self._store = self._store or PostgresStore.open(self.url)
        if self.seq is None:
            self.seq = _announced_upto(workspace, store)
        if store.head().seq <= self.seq:
            return 0
        if self.seq == 0:  # an empty log, the only kind an import fills: its history is no news
            self.seq = store.imported_upto()
        told = 0
        for record in store.read(self.seq):
            if stopping is not None and stopping.is_set():
                break
            notice = database_notice(record._asdict())
            if notice is not None:
                workspace.announce(
                    notice.event,
                    notice.text,
                    run_id=notice.run_id,
                    data={**notice.data, "database_hash": record.hash},
                    lines=notice.lines,
                )
                told += 1
            self.seq = record.seq
        return told


def _announced_upto(workspace: Workspace, store: PostgresStore) -> int:
    """Where to go on from: the last database record this workspace's log says was
    announced, if the database holds that record; else the database's head."""
    last: tuple[int, str] | None = None
    for record in workspace.records(decision_type="notification"):
        inputs = record.decision_inputs
        if isinstance(inputs.get("database_seq"), int) and inputs.get("database_hash"):
            last = (int(inputs["database_seq"]), str(inputs["database_hash"]))
    if last is not None:
        seq, hash_ = last
        held = next(store.read(seq - 1), None)
        if held is not None and held.seq == seq and held.hash == hash_:
            return seq
    return store.head().seq
