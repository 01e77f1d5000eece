"""Login attempts counted in the server's memory, so guessing a secret stays slow.

Three counts, each over fifteen minutes: 5 failures for one name from one address (the pair:
what locks a guesser out without locking the name's owner out everywhere), 20 from one
address whatever the names, and 50 for one name from anywhere (a guess spread over many
addresses is still bounded). An attempt takes its slot in all three *before* its secret is
checked — it counts as failed until it succeeds — so a burst of concurrent attempts gets no
more guesses than a sequence would. And at most 4 secrets are checked at once (each check is a
16 MiB scrypt): one more is refused at once (429), not queued.

The clock is a parameter: what a window is does not depend on waiting for one.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Admission", "LoginThrottle", "keys_of"]

LIMITS: Mapping[str, int] = {"pair": 5, "address": 20, "name": 50}
"""Attempts not (yet) succeeded within the window, by kind of key."""
WINDOW_SECONDS = 15 * 60
SCRYPTS = 4
"""Secrets checked at once."""
_SWEEP_AT = 10_000


def keys_of(name: str, address: str) -> tuple[str, str, str]:
    """The keys an attempt for `name` from `address` counts under (the pair's first)."""
    return (f"pair:{name}\n{address}", f"address:{address}", f"name:{name}")


@dataclass(frozen=True, slots=True)
class Admission:
    """An attempt admitted (`wait` None: its slot is taken at `at`) or refused for `wait` s."""

    wait: int | None
    at: float = 0.0


class LoginThrottle:
    """Attempts by key (`pair:alice\\n10.0.0.1`, `address:10.0.0.1`, `name:alice`); safe from
    any thread."""

    def __init__(
        self,
        *,
        limits: Mapping[str, int] = LIMITS,
        window_seconds: float = WINDOW_SECONDS,
        scrypts: int = SCRYPTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self._window = window_seconds
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(scrypts)

    def _live(self, key: str, now: float) -> deque[float]:
        times = self._recent.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._recent[key]
        return times

    def _limit(self, key: str) -> int:
        return self._limits[key.partition(":")[0]]

    def admit(self, keys: Sequence[str]) -> Admission:
        """Take a slot for an attempt under every key, or say how long until one is free."""
        with self._lock:
            now = self._clock()
            waits = [
                times[0] + self._window - now
                for key, times in ((key, self._live(key, now)) for key in keys)
                if len(times) >= self._limit(key)
            ]
            if waits:
                return Admission(max(1, math.ceil(max(waits))))
            if len(self._recent) > _SWEEP_AT:  # names made up by the thousand: forget old ones
                for old in list(self._recent):
                    self._live(old, now)
            for key in keys:
                self._recent.setdefault(key, deque()).append(now)
            return Admission(None, now)

    def succeeded(self, keys: Sequence[str], admission: Admission) -> None:
        """The attempt was right: its slots are given back and the pair's failures forgotten."""
        with self._lock:
            self._recent.pop(keys[0], None)
            for key in keys[1:]:
                with contextlib.suppress(KeyError, ValueError):
                    self._recent[key].remove(admission.at)

    @contextlib.contextmanager
    def checking(self) -> Iterator[bool]:
        """One of the few places to check a secret in: True while held, False if none is free."""
        held = self._checks.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                self._checks.release()
