"""One thread watches every running attempt: output pipes, process exits, worker replies.

Each attempt is a small state machine (`Handle`) that names the file descriptors it waits on
and the next moment it needs a tick (a timeout, the end of a kill grace). The runner's thread
waits on all of them at once, so an attempt's end is noticed without a thread hand-off.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Protocol

from stoic.run.attempt import AttemptResult

__all__ = ["Ended", "EventLoop", "Handle", "SignalWake", "drive"]


class Handle(Protocol):
    """A running attempt, as the event loop sees it."""

    def fds(self) -> Iterable[int]:
        """The descriptors to watch for reading right now."""
        ...

    def deadline(self) -> float | None:
        """The next `time.monotonic()` at which `tick` must run, if any."""
        ...

    def on_ready(self, fd: int) -> None: ...

    def tick(self, now: float) -> None: ...

    def stop(self) -> None:
        """Stop the attempt: it ends as interrupted."""
        ...

    @property
    def result(self) -> AttemptResult | None:
        """Set once the attempt has ended and released everything it held."""
        ...


class EventLoop:
    """Waits on the descriptors of many handles; tells each what happened to it."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._registered: dict[int, tuple[object, bool]] = {}
        """fd → what it was registered for, and whether it stays registered between handles."""
        self._owners: dict[int, Handle] = {}
        """fd → the handle that waits on it now."""

    def close(self) -> None:
        self._selector.close()

    def watch_extra(self, fd: int) -> None:
        """Also wake up when `fd` is readable (a signal wake-up pipe). A registration the
        number still has is of a descriptor closed since (an attempt's pipe, unregistered at
        the next step): it goes first."""
        self._unregister(fd)
        self._selector.register(fd, selectors.EVENT_READ, None)

    def unwatch_extra(self, fd: int) -> None:
        """Stop waking up for `fd` (before it is closed)."""
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)

    def _sync(self, handles: Iterable[Handle]) -> None:
        """Register what the handles wait on now.

        A handle that moves on to a new child process (a staged attempt) may get a descriptor
        with the number of one it closed; its `generation` changes then, so the new one is
        registered instead of being mistaken for the old. A handle whose descriptors outlive it
        (a pooled worker's pipes) names their `fd_source`: they stay registered from one
        attempt to the next, so a task costs no registration calls.
        """
        owners: dict[int, Handle] = {}
        wanted: dict[int, tuple[object, bool]] = {}
        for handle in handles:
            source = getattr(handle, "fd_source", None)
            token = (handle, getattr(handle, "generation", 0)) if source is None else source
            for fd in handle.fds():
                owners[fd] = handle
                wanted[fd] = (token, source is not None)
        registered = self._registered
        for fd in list(registered):
            if fd not in wanted and not registered[fd][1]:
                self._unregister(fd)
        for fd, entry in wanted.items():
            now = registered.get(fd)
            if now is not None and _same(now[0], entry[0]):
                continue
            if now is not None:
                self._unregister(fd)  # a descriptor number reused for another file
            self._selector.register(fd, selectors.EVENT_READ, True)
            registered[fd] = entry
        self._owners = owners

    def _unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(fd)
        self._registered.pop(fd, None)

    def step(self, handles: list[Handle], max_wait: float) -> list[int]:
        """Wait once; dispatch ready descriptors and due ticks. Returns ready extra fds."""
        self._sync(handles)
        now = time.monotonic()
        wait = max_wait
        for handle in handles:
            due = handle.deadline()
            if due is not None:
                wait = min(wait, max(0.0, due - now))
        extras: list[int] = []
        for key, _ in self._selector.select(wait):
            if key.data is None:
                extras.append(key.fd)
            elif (owner := self._owners.get(key.fd)) is not None:
                owner.on_ready(key.fd)
            else:  # a kept descriptor with news while nobody waits on it: stop watching it
                self._unregister(key.fd)
        now = time.monotonic()
        for handle in handles:
            due = handle.deadline()
            if due is not None and due <= now and handle.result is None:
                handle.tick(now)
        return extras


def _same(registered: object, wanted: object) -> bool:
    """The same waiter: the one fd source, or the one handle in the same generation (a token
    is made anew at every step, so it is compared by its parts)."""
    if isinstance(registered, tuple) and isinstance(wanted, tuple):
        return registered[0] is wanted[0] and registered[1] == wanted[1]
    return registered is wanted


def drive(handle: Handle, stop: threading.Event | None = None) -> AttemptResult:
    """Run one handle to its end (the blocking form of an attempt); `stop` interrupts it."""
    loop = EventLoop()
    stopped = False
    try:
        while True:
            result = handle.result
            if result is not None:
                return result
            if stop is not None and stop.is_set() and not stopped:
                stopped = True
                handle.stop()
            loop.step([handle], 0.05)
    finally:
        loop.close()


class Ended:
    """An attempt that ended before it began (its executor could not start it)."""

    def __init__(self, result: AttemptResult) -> None:
        self.result: AttemptResult | None = result

    def fds(self) -> list[int]:
        return []

    def deadline(self) -> float | None:
        return None

    def on_ready(self, fd: int) -> None:
        del fd

    def tick(self, now: float) -> None:
        del now

    def stop(self) -> None:
        pass


class SignalWake:
    """SIGINT and SIGTERM set a flag and wake the loop (through a wake-up fd) at once.

    Only the main thread may install signal handlers; elsewhere this does nothing.
    """

    def __init__(self, loop: EventLoop, on_signal: Callable[[int], None]) -> None:
        self.installed = threading.current_thread() is threading.main_thread()
        self._handlers: dict[int, Any] = {}
        if not self.installed:
            return
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        loop.watch_extra(self._read)
        self._previous_fd = signal.set_wakeup_fd(self._write)

        def handler(signum: int, frame: FrameType | None) -> None:
            del frame
            on_signal(signum)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._handlers[signum] = signal.signal(signum, handler)

    def drain(self) -> None:
        if self.installed:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._read, 512):
                    pass

    def restore(self) -> None:
        if not self.installed:
            return
        for signum, previous in self._handlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)
