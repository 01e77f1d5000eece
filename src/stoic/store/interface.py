"""What a store backend does, and nothing more (DESIGN §2).

Services and the runtime are written against `Store`; the file backend
(`stoic.store.workspace.Workspace`) implements it, and a PostgreSQL backend will too. The
contract suite in `tests/contract/` holds each backend to the guarantees written here. Where a
backend keeps records (byte offsets, tables, files) is its own business: nothing here names one.

Records are sealed by the backend (seq, prev_hash, hash, decision_id, decided_at); a seq is a
cursor every backend understands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from stoic.core.pause import PauseInForce
from stoic.core.projection import Projection
from stoic.core.records import Decision, Record

__all__ = [
    "AttemptOutputs",
    "Head",
    "Lease",
    "Leases",
    "OutputWriter",
    "PauseWatcher",
    "Stamped",
    "Store",
]

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Head:
    """Where the log ends: the last record's seq and hash (0 and the genesis hash when empty)."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class Stamped(Generic[S]):
    """A projection's state and the record it reflects: every record up to `seq`, no other."""

    seq: int
    hash: str
    state: S


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a run, and since when: one runner per run (DESIGN §6)."""

    run_id: str
    holder: str
    """Who holds it, as a person reads it: `pid 4242 on build-1`."""
    since: str | None
    """When it was acquired (RFC 3339 UTC); None when the holder did not say."""


class OutputWriter(Protocol):
    """The captured output of one attempt, being written."""

    def write(self, chunk: bytes) -> int:
        """Keep `chunk`; returns how many bytes were kept (a short write is not an error)."""
        ...

    def close(self) -> None: ...


class AttemptOutputs(Protocol):
    """The captured output of each attempt of each task of each run."""

    def open_writer(self, run_id: str, task_id: str, attempt: int) -> OutputWriter:
        """A new output for the attempt; one that already exists is refused, never truncated
        (it is evidence)."""
        ...

    def read(self, run_id: str, task_id: str, attempt: int) -> Iterator[bytes]:
        """The attempt's output in chunks, as written so far; nothing when it wrote none."""
        ...


class Leases(Protocol):
    """Run leases: while one is held, no other holder gets the run."""

    def acquire(self, run_id: str) -> Lease:
        """Hold the run; refused with a `UsageError` while someone else holds it. A lease
        ends with `release` or with its holder's process, however that dies."""
        ...

    def renew(self, lease: Lease) -> Lease:
        """Keep holding; refused with a `UsageError` when the lease is no longer this holder's."""
        ...

    def release(self, lease: Lease) -> None:
        """Let the run go; releasing a lease not held is a no-op."""
        ...

    def held_by(self, run_id: str) -> Lease | None:
        """Who holds the run right now (None when nobody does): a reader's answer, never
        recorded, and it holds nothing itself."""
        ...

    def held(self) -> list[Lease]:
        """Every run held right now, by anyone, in run id order: a reader's answer, like
        `held_by` for each run at once."""
        ...


class PauseWatcher(Protocol):
    """Follows the log for pauses and resumes, reading only what it has not seen yet."""

    def check(self) -> PauseInForce | None:
        """The pause in force now. Call it inside `Store.transaction()`: the answer then stays
        true until the transaction ends, since nobody can record a pause in between."""
        ...


class Store(Protocol):
    """The decision log, the state folded from it, run leases and attempt outputs.

    Every read sees whole records only: a record is visible to readers once, and only once, its
    append has returned (or, for a crashed writer, never).
    """

    def append(self, decisions: Sequence[Decision]) -> list[Record]:
        """Seal and durably append `decisions` in order: one commit for the whole batch.

        On return the records are durable and their seqs follow the head without a gap. If
        any decision cannot be sealed, or the commit fails, none is appended. A crash during
        the commit leaves either all of them or none.
        """
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Exclusive writing for read-check-append: no other writer, in any process, appends
        while it is held, so what was read is still the head when the appends happen.

        Nested use in one thread is one transaction (the outer block holds it). Appends inside
        it are durable as each `append` returns; leaving the block, even by an exception,
        undoes nothing. A crash lets it go.
        """
        ...

    def read(self, after_seq: int = 0) -> Iterator[Record]:
        """The records after `after_seq`, in seq order, streamed up to the head as it was when
        reading began."""
        ...

    def tail(
        self,
        count: int,
        *,
        run_id: str | None = None,
        decision_type: str | None = None,
        failures: bool = False,
    ) -> list[Record]:
        """The last `count` records that match (of a run, of a type, failures only), oldest
        first."""
        ...

    def head(self) -> Head: ...

    def projected(self, projection: Projection[S]) -> Stamped[S]:
        """`projection` folded over every record up to the head, stamped with the seq it
        reflects. A backend may keep it stored and catch it up; the answer is the same."""
        ...

    def pause_watch(self) -> PauseWatcher:
        """A watcher that starts from the head as it is now."""
        ...

    @property
    def leases(self) -> Leases: ...

    @property
    def outputs(self) -> AttemptOutputs: ...

    def close(self) -> None:
        """Let every resource go; leases still held are released."""
        ...
