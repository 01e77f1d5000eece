"""A worker's heartbeat: its leases renewed from a thread of its own, and until when they hold.

The worker's loop must never wait on the network to know whether it still holds a task: a cut
link can hold a socket call for half a minute, longer than a lease. So renewals run here, every
third of the lease, on their own connection, and the loop asks `lost` at every turn: a claim is
lost when a renewal made after it did not keep it (another worker took it over), or when its
lease ran out by this host's clock with no renewal that kept it — the worker then stops the task
itself, before anyone can take it over, and never records its end.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import psycopg

from stoic.exceptions import WorkspaceError
from stoic.store import pg_work as work
from stoic.store.pg_driver import Conn, connect, translated

__all__ = ["Claimed", "Heartbeat"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """When this host asked for a claim (its lease runs from no earlier) and when the claim
    was committed (a renewal begun after it sees it)."""

    asked: float
    committed: float


class Heartbeat:
    """Renews `worker`'s leases every `lease_s / 3` seconds until closed."""

    def __init__(
        self,
        url: str,
        worker: str,
        lease_s: float,
        say: Callable[[str], None],
        on_lost: Callable[[int], None] = lambda fence: None,
    ) -> None:
        """`on_lost(fence)`: called once per claim found lost by the watchdog, from its own
        thread — while the worker's loop may be stuck in a call on a cut link."""
        self.url, self.worker, self.lease_s, self.say = url, worker, lease_s, say
        self._lock = threading.Lock()
        self._held: frozenset[int] = frozenset()
        """The fences the worker runs now: those renewed, and no other claim of its."""
        self._renewed: tuple[float, frozenset[int], frozenset[int]] | None = None
        """The last renewal that answered: when it began (monotonic), the fences it asked for
        and those it kept."""
        self._stop = threading.Event()
        self._conn: Conn | None = None
        self._thread = threading.Thread(target=self._beat, name="stoic-heartbeat", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="stoic-watchdog", daemon=True)
        self._on_lost = on_lost
        self._claims: dict[int, Claimed] = {}
        self._told: set[int] = set()
        self._failing = False

    def start(self) -> None:
        self._thread.start()
        self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_s)
        self._watchdog.join(timeout=self.lease_s)
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()

    def hold(self, claims: Mapping[int, Claimed]) -> None:
        """The claims the worker runs now (set at every turn of its loop)."""
        held = frozenset(claims)
        with self._lock:
            self._held = held
            self._claims = dict(claims)

    def lost(self, claims: Mapping[int, Claimed], now: float) -> set[int]:
        """The fences of `claims` this worker no longer holds."""
        with self._lock:
            renewed = self._renewed
        lost: set[int] = set()
        for fence, claimed in claims.items():
            held_until = claimed.asked + self.lease_s
            if renewed is not None:
                began, asked, kept = renewed
                if fence in kept:
                    held_until = max(held_until, began + self.lease_s)
                elif fence in asked and began > claimed.committed:
                    lost.add(fence)  # a renewal that saw the claim did not keep it
                    continue
            if now >= held_until:
                lost.add(fence)  # ran out on this host's clock: stop before a take-over
        return lost

    def next_deadline(self, claims: Mapping[int, Claimed]) -> float | None:
        """The soonest moment a claim could run out (the loop wakes by then to look)."""
        with self._lock:
            renewed = self._renewed
        soonest: float | None = None
        for fence, claimed in claims.items():
            until = claimed.asked + self.lease_s
            if renewed is not None and fence in renewed[2]:
                until = max(until, renewed[0] + self.lease_s)
            soonest = until if soonest is None else min(soonest, until)
        return soonest

    def _watch(self) -> None:
        """Every so often, by this host's clock alone (no call that a cut link could hold):
        each claim found lost is told to `on_lost`, once."""
        while not self._stop.wait(min(0.25, self.lease_s / 8)):
            with self._lock:
                claims = dict(self._claims)
            for fence in self.lost(claims, time.monotonic()) - self._told:
                self._told.add(fence)
                self._on_lost(fence)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            began = time.monotonic()
            with self._lock:
                held = self._held
            if not held:
                continue
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = connect(self.url)
                with translated("renew the worker's leases"):
                    kept = work.renew(self._conn, held, self.lease_s)
            except WorkspaceError as exc:
                if not self._failing:
                    self.say(f"could not renew leases ({exc}); trying again")
                self._failing = True
                if self._conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._conn.close()
                self._conn = None
                continue
            self._failing = False
            with self._lock:
                self._renewed = (began, held, frozenset(kept))
