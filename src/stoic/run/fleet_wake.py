"""How a worker hears that work is ready: `LISTEN stoic_work`, with polling behind it.

A transaction that makes work ready sends `NOTIFY stoic_work` at its commit; a worker that
hears it looks at once. Hearing is a speed-up, never relied on: a worker looks every poll
whatever it heard (a pooler in transaction mode drops notifications), and a listener that
breaks (a restart, a cut link) is dropped — by the descriptor it had, since a broken
connection has none to give — and made again at the next poll.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import psycopg

from stoic.exceptions import WorkspaceError
from stoic.run.loop import EventLoop
from stoic.store import pg_work as work
from stoic.store.pg_driver import Conn, connect

__all__ = ["Wake"]


class Wake:
    """The LISTEN connection of one worker, if it has one now."""

    def __init__(self, url: str, say: Callable[[str], None], poll_s: float) -> None:
        self.url, self.say, self.poll_s = url, say, poll_s
        self._conn: Conn | None = None
        self._fd = -1
        self._said = False

    def listen(self, loop: EventLoop) -> None:
        """Listen, unless listening already; a failure is said once and polling goes on."""
        if self._conn is not None:
            return
        try:
            conn = connect(self.url)
        except (WorkspaceError, OSError) as exc:
            self._unheard(exc)
            return
        try:
            conn.execute(f"LISTEN {work.CHANNEL}")
        except psycopg.Error as exc:
            conn.close()
            self._unheard(exc)
            return
        self._conn, self._fd, self._said = conn, conn.fileno(), False
        loop.watch_extra(self._fd)

    def heard(self, loop: EventLoop, ready: list[int]) -> bool:
        """Whether a notification came (a listener that broke counts: look now)."""
        conn = self._conn
        if conn is None or self._fd not in ready:
            return False
        try:
            return bool(list(conn.notifies(timeout=0, stop_after=1000)))
        except psycopg.Error:
            loop.unwatch_extra(self._fd)  # before its descriptor goes with it
            self.close()
            return True

    def close(self) -> None:
        conn, self._conn, self._fd = self._conn, None, -1
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _unheard(self, exc: BaseException) -> None:
        if not self._said:
            self.say(f"no LISTEN connection ({exc}); looking every {self.poll_s:g}s")
        self._said = True
