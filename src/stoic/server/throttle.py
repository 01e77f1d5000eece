"""Failed logins counted per name and per client address, in the server's memory.

Five failures within fifteen minutes for one name, or from one address, refuse further
attempts for either (429 with Retry-After) until the oldest failure is that old. The clock is
a parameter: what a window is does not depend on waiting for one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

__all__ = ["LoginThrottle"]

FAILURES = 5
WINDOW_SECONDS = 15 * 60
_SWEEP_AT = 10_000


class LoginThrottle:
    """Recent failures by key (`name:alice`, `address:10.0.0.1`); safe from any thread."""

    def __init__(
        self,
        *,
        failures: int = FAILURES,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures = failures
        self._window = window_seconds
        self._clock = clock
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        times = self._recent.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._recent[key]
        return times

    def retry_after(self, keys: Iterable[str]) -> int | None:
        """Seconds until an attempt for these keys is admitted again; None when it is now."""
        with self._lock:
            now = self._clock()
            waits = [
                times[0] + self._window - now
                for times in (self._live(key, now) for key in keys)
                if len(times) >= self._failures
            ]
        return max(1, math.ceil(max(waits))) if waits else None

    def failed(self, keys: Iterable[str]) -> None:
        with self._lock:
            now = self._clock()
            if len(self._recent) > _SWEEP_AT:  # names made up by the thousand: forget old ones
                for old in list(self._recent):
                    self._live(old, now)
            for key in keys:
                self._live(key, now)
                self._recent.setdefault(key, deque()).append(now)

    def clear(self, key: str) -> None:
        """Forget the failures of `key` (a name that just logged in)."""
        with self._lock:
            self._recent.pop(key, None)
