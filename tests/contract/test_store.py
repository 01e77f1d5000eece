"""The store contract (`stoic.store.interface.Store`), tested through the interface only."""

from __future__ import annotations

import itertools
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import pytest

from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.records import GENESIS_HASH, Decision, Record, record_hash
from stoic.exceptions import InvalidDecision, StoicError, UsageError
from stoic.store.interface import Head, Store

Start = Callable[[str, str], subprocess.Popen[str]]


def decision(reason: str = "A check passed.", **fields: Any) -> Decision:
    return Decision.from_mapping(
        {"type": "policy_check", "outcome": "passed", "reason": reason, **fields}
    )


def appended(store: Store, count: int, **fields: Any) -> list[Record]:
    return store.append([decision(f"Check {n} passed.", **fields) for n in range(count)])


class _CountByType:
    """A projection of the test's own: how many records of each type."""

    name = "count_by_type"
    version = 1

    def initial(self) -> dict[str, int]:
        return {}

    def fold(self, state: dict[str, int], records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        counts = dict(state)
        for record in records:
            counts[record["decision_type"]] = counts.get(record["decision_type"], 0) + 1
        return counts

    def to_json(self, state: dict[str, int]) -> dict[str, Any]:
        return dict(state)

    def from_json(self, data: Mapping[str, Any]) -> dict[str, int]:
        return dict(data)


# -- append ------------------------------------------------------------------------------------


def test_append_returns_sealed_records_with_gapless_seq_and_chained_hashes(backend: Store) -> None:
    records = appended(backend, 3) + appended(backend, 2)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    for record in records:
        stored = record.to_dict()
        del stored["hash"]
        assert record.hash == record_hash(stored)
        assert record.decided_at.endswith("Z")
    assert len({r.decision_id for r in records}) == 5
    assert list(backend.read()) == records


def test_an_append_is_one_commit_a_bad_decision_appends_none_of_its_batch(backend: Store) -> None:
    appended(backend, 1)
    before = backend.head()
    unsealable = decision(inputs={"value": object()})
    with pytest.raises(InvalidDecision):
        backend.append([decision("Fine."), unsealable, decision("Fine too.")])
    assert backend.head() == before
    assert [r.seq for r in backend.read()] == [1]
    assert backend.append([]) == []
    assert appended(backend, 1)[0].seq == 2


# -- transactions ------------------------------------------------------------------------------


def test_a_transaction_holds_off_a_writer_in_another_process(
    backend: Store, second_process: Start
) -> None:
    with backend.transaction():
        seen = backend.head()
        other = second_process("append", "Appended by a second process.")
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "appending"
        time.sleep(0.5)  # long enough for an unguarded append to land first
        (mine,) = backend.append([decision("Decided on what the transaction read.")])
    out, err = other.communicate(timeout=60)
    assert other.returncode == 0, err
    assert mine.seq == seen.seq + 1
    assert int(out.split()[-1]) == seen.seq + 2
    assert [r.decision_reason for r in backend.read()][-1] == "Appended by a second process."


def test_read_check_append_in_transactions_decides_once(reopen: Callable[[], Store]) -> None:
    handles = [reopen(), reopen()]
    ready = threading.Barrier(2)
    errors: list[BaseException] = []

    def decide_once(store: Store) -> None:
        try:
            ready.wait(timeout=30)
            with store.transaction():
                done = any(r.decision_reason == "Decided once." for r in store.read())
                time.sleep(0.2)  # another writer would slip in here without the transaction
                if not done:
                    store.append([decision("Decided once.")])
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=decide_once, args=(h,)) for h in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert [r.decision_reason for r in handles[0].read()] == ["Decided once."]


def test_nested_transactions_are_one_and_let_go_when_the_outer_ends(
    backend: Store, reopen: Callable[[], Store]
) -> None:
    with backend.transaction():
        with backend.transaction():
            appended(backend, 1)
        appended(backend, 1)
    other = reopen()
    assert appended(other, 1)[0].seq == 3
    with pytest.raises(RuntimeError), backend.transaction():
        raise RuntimeError("a failed decision")
    assert appended(other, 1)[0].seq == 4  # the writer was let go, and nothing was undone


# -- reading -----------------------------------------------------------------------------------


def test_read_streams_records_in_order_from_a_seq_cursor(backend: Store) -> None:
    records = [r for _ in range(5) for r in appended(backend, 10)]
    assert [r.seq for r in backend.read()] == list(range(1, 51))
    assert list(backend.read(after_seq=0)) == records
    for after in (1, 9, 10, 11, 37, 49):
        assert list(backend.read(after_seq=after)) == records[after:]
    assert list(backend.read(after_seq=50)) == []
    assert list(backend.read(after_seq=500)) == []
    cursor, seen = 0, []
    for _ in range(3):
        appended(backend, 2)
        for record in backend.read(after_seq=cursor):
            seen.append(record.seq)
            cursor = record.seq
    assert seen == list(range(1, 57))


def test_read_is_fixed_at_the_head_it_began_with_and_sees_only_whole_records(
    backend: Store,
) -> None:
    appended(backend, 3)
    reading = backend.read()
    first = next(reading)
    appended(backend, 2)
    assert [first.seq, *(r.seq for r in reading)] == [1, 2, 3]


def test_tail_is_the_last_matching_records_oldest_first(backend: Store) -> None:
    appended(backend, 4, run_id="run-a")
    backend.append(
        [
            Decision.from_mapping(
                {"type": "execution", "outcome": "failed", "reason": "Broke.", "run_id": "run-b"}
            ),
            Decision.from_mapping(
                {"type": "execution", "outcome": "succeeded", "reason": "Ran.", "run_id": "run-a"}
            ),
        ]
    )
    assert [r.seq for r in backend.tail(3)] == [4, 5, 6]
    assert [r.seq for r in backend.tail(100)] == [1, 2, 3, 4, 5, 6]
    assert backend.tail(0) == []
    assert [r.seq for r in backend.tail(2, run_id="run-a")] == [4, 6]
    assert [r.seq for r in backend.tail(5, decision_type="execution")] == [5, 6]
    assert [r.seq for r in backend.tail(5, failures=True)] == [5]
    assert backend.tail(5, run_id="run-z") == []


def test_head_of_an_empty_store_and_after_appends(backend: Store) -> None:
    assert backend.head() == Head(0, GENESIS_HASH)
    last = appended(backend, 3)[-1]
    assert backend.head() == Head(3, last.hash)


def test_projected_state_is_stamped_with_the_seq_it_reflects(backend: Store) -> None:
    counted = _CountByType()
    empty = backend.projected(counted)
    assert (empty.seq, empty.hash, empty.state) == (0, GENESIS_HASH, {})
    appended(backend, 3)
    stamped = backend.projected(counted)
    assert (stamped.seq, stamped.hash) == (3, backend.head().hash)
    assert stamped.state == {"policy_check": 3}
    backend.append(
        [Decision.from_mapping({"type": "audit", "outcome": "passed", "reason": "Clean."})]
    )
    later = backend.projected(counted)
    assert (later.seq, later.state) == (4, {"policy_check": 3, "audit": 1})
    status = backend.projected(WorkspaceStatusProjection())
    assert (status.seq, status.hash) == (4, backend.head().hash)
    assert status.state.records == 4 and status.state.count("policy_check") == 3


# -- leases ------------------------------------------------------------------------------------


def test_a_lease_is_held_renewed_released_and_refused_to_a_second_holder(
    backend: Store, reopen: Callable[[], Store]
) -> None:
    assert backend.leases.held_by("run-1") is None
    lease = backend.leases.acquire("run-1")
    assert lease.run_id == "run-1" and lease.holder and lease.since
    other = reopen()
    assert other.leases.held_by("run-1") == lease
    with pytest.raises(UsageError) as refused:
        other.leases.acquire("run-1")
    assert "run run-1 is being run by another stoic process right now" in str(refused.value)
    assert lease.holder in str(refused.value)
    assert other.leases.acquire("run-2").run_id == "run-2"  # one lease per run
    assert backend.leases.renew(lease) == lease
    with pytest.raises(UsageError):
        other.leases.renew(lease)
    backend.leases.release(lease)
    assert other.leases.held_by("run-1") is None
    with pytest.raises(UsageError):
        backend.leases.renew(lease)
    again = other.leases.acquire("run-1")
    assert backend.leases.held_by("run-1") == again


def test_the_lease_of_a_killed_process_is_free_again(backend: Store, second_process: Start) -> None:
    holder = second_process("hold-lease", "run-1")
    assert holder.stdout is not None
    held = orjson.loads(holder.stdout.readline())
    lease = backend.leases.held_by("run-1")
    assert lease is not None and lease.holder == held["holder"]
    assert f"pid {holder.pid}" in lease.holder
    with pytest.raises(UsageError):
        backend.leases.acquire("run-1")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    # At once for a file lock; a database session ends a moment after its client dies.
    deadline = time.monotonic() + 10
    while backend.leases.held_by("run-1") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.leases.held_by("run-1") is None
    assert backend.leases.acquire("run-1").holder != held["holder"]


def test_every_lease_held_is_listed_whoever_holds_it(backend: Store, second_process: Start) -> None:
    assert backend.leases.held() == []
    mine = backend.leases.acquire("run-b")
    holder = second_process("hold-lease", "run-a")
    assert holder.stdout is not None
    theirs = orjson.loads(holder.stdout.readline())
    listed = backend.leases.held()
    assert [(lease.run_id, lease.holder) for lease in listed] == [
        ("run-a", theirs["holder"]),
        ("run-b", mine.holder),
    ]
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    backend.leases.release(mine)
    deadline = time.monotonic() + 10  # a killed client's database session ends a moment after
    while backend.leases.held() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.leases.held() == []


def test_a_run_id_that_is_not_a_plain_name_is_refused(backend: Store) -> None:
    with pytest.raises(UsageError, match="is not a run id"):
        backend.leases.acquire("../elsewhere")


# -- attempt outputs ---------------------------------------------------------------------------


def test_attempt_output_is_written_and_read_back(backend: Store) -> None:
    assert b"".join(backend.outputs.read("run-1", "build", 1)) == b""
    writer = backend.outputs.open_writer("run-1", "build", 1)
    big = bytes(range(256)) * 1024
    assert writer.write(b"compiling\n") == 10
    written = 0
    while written < len(big):
        written += writer.write(big[written:])
    writer.close()
    assert b"".join(backend.outputs.read("run-1", "build", 1)) == b"compiling\n" + big
    assert b"".join(backend.outputs.read("run-1", "build", 2)) == b""
    with pytest.raises(StoicError):
        backend.outputs.open_writer("run-1", "build", 1)  # evidence is never overwritten
    second = backend.outputs.open_writer("run-1", "build", 2)
    second.write(b"again\n")
    second.close()
    assert b"".join(backend.outputs.read("run-1", "build", 2)) == b"again\n"
    assert b"".join(backend.outputs.read("run-1", "build", 1)).startswith(b"compiling\n")


# -- the pause watch ---------------------------------------------------------------------------


def test_a_pause_watch_sees_a_pause_another_writer_recorded_and_its_resume(
    reopen: Callable[[], Store],
) -> None:
    runner, person = reopen(), reopen()
    watch = runner.pause_watch()
    with runner.transaction():
        assert watch.check() is None
    paused = person.append(
        [
            Decision.from_mapping(
                {
                    "type": "pause",
                    "outcome": "paused",
                    "reason": "A person stopped the workspace.",
                    "source": "human",
                    "actor": "human:ana",
                    "trigger": "explicit",
                    "inputs": {"criterion": "human_stop"},
                }
            )
        ]
    )[0]
    with runner.transaction():
        seen = watch.check()
    assert seen is not None and seen.seq == paused.seq and seen.criterion == "human_stop"
    person.append(
        [
            Decision.from_mapping(
                {
                    "type": "pause",
                    "outcome": "resumed",
                    "reason": "Checked.",
                    "source": "human",
                    "actor": "human:ana",
                    "trigger": "explicit",
                    "inputs": {"procedure": "standard"},
                }
            )
        ]
    )
    with runner.transaction():
        assert watch.check() is None
