"""What a task costs the runner besides its records: no re-reading of its own appends, no
registering a pooled worker's pipes again for every attempt."""

from __future__ import annotations

import os
from pathlib import Path

import stoic
from stoic.core.records import Decision
from stoic.run.loop import EventLoop
from tests.conftest import log_path


def _note(kind: str = "audit", outcome: str = "passed") -> Decision:
    return Decision.from_mapping(
        {
            "type": kind,
            "outcome": outcome,
            "reason": "a record",
            "source": "human" if kind == "pause" else "system",
            "actor": "human:ana" if kind == "pause" else "system:test",
            "trigger": "explicit",
            "inputs": {"criterion": "human_stop"} if kind == "pause" else {},
        }
    )


def test_the_pause_watch_reads_past_its_own_appends_and_still_sees_every_pause(
    ws_path: Path,
) -> None:
    with stoic.Workspace.open(ws_path) as runner, stoic.Workspace.open(ws_path) as person:
        watch = runner.pause_watch()
        with runner.transaction():
            assert watch.check() is None
            runner.record_many([_note(), _note()])
        # Its own lines are behind it already: nothing to read back at the next check.
        assert watch.offset == log_path(ws_path).stat().st_size
        person.record_many([_note()])  # another writer: read at the next check
        with runner.transaction():
            assert watch.check() is None
        assert watch.offset == log_path(ws_path).stat().st_size
        with runner.transaction():  # a pause this very process records is not skipped
            runner.record_many([_note("pause", "paused")])
            seen = watch.check()
        assert seen is not None and seen.criterion == "human_stop"
        person.record_many([_note("pause", "resumed")])
        with runner.transaction():
            assert watch.check() is None


class _Pooled:
    """A handle on a long-lived pipe, as a pooled worker's attempt is."""

    def __init__(self, source: object, fd: int) -> None:
        self.fd_source = source
        self.fd = fd
        self.seen = 0
        self.result = None

    def fds(self) -> list[int]:
        return [self.fd]

    def deadline(self) -> float | None:
        return None

    def on_ready(self, fd: int) -> None:
        os.read(fd, 100)
        self.seen += 1

    def tick(self, now: float) -> None:
        del now

    def stop(self) -> None:
        pass


def test_a_pooled_workers_pipe_stays_registered_from_one_attempt_to_the_next() -> None:
    read_end, write_end = os.pipe()
    loop = EventLoop()
    worker = object()
    try:
        first = _Pooled(worker, read_end)
        os.write(write_end, b"x")
        loop.step([first], 1.0)
        key = loop._selector.get_key(read_end)
        loop.step([], 0.0)  # between attempts nobody waits on it: it stays registered
        second = _Pooled(worker, read_end)
        os.write(write_end, b"y")
        loop.step([second], 1.0)
        assert (first.seen, second.seen) == (1, 1)
        assert loop._selector.get_key(read_end) is key  # never unregistered in between
        os.write(write_end, b"z")  # news while nobody waits: it is dropped, not spun on
        loop.step([], 0.0)
        assert read_end not in loop._selector.get_map()
    finally:
        loop.close()
        os.close(read_end)
        os.close(write_end)


def test_a_descriptor_number_closed_while_watched_can_be_watched_again() -> None:
    """An attempt's pipe closed before the loop next looks (its handle ended) leaves its number
    registered; a connection that gets the number (a LISTEN made anew) is watched all the same."""
    read_end, write_end = os.pipe()
    loop = EventLoop()
    try:
        os.write(write_end, b"x")
        loop.step([_Pooled(object(), read_end)], 1.0)
        os.close(read_end)
        os.close(write_end)
        again, other = os.pipe()
        assert again == read_end  # the lowest free number: the one just closed
        loop.watch_extra(again)
        os.write(other, b"y")
        assert loop.step([], 1.0) == [again]
        loop.unwatch_extra(again)
        os.close(again)
        os.close(other)
    finally:
        loop.close()
