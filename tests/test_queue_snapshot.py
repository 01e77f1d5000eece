"""The queue snapshot: a cache of the fold that must always give what folding the log gives."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import stoic
from stoic.core.manifest import manifest_document
from stoic.core.proposals import ProposalStatus
from stoic.store import queue_snapshot
from stoic.store.queue import Queue
from tests.conftest import run_cli

STATUSES = [None, *[status.value for status in ProposalStatus]]


def listed(ws_path: Path, status: str | None) -> bytes:
    args = ["-w", str(ws_path), "queue", "--json"] + (["--status", status] if status else [])
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return result.stdout_bytes


def by_folding(ws_path: Path, status: str | None) -> bytes:
    snapshot = ws_path / queue_snapshot.SNAPSHOT
    kept = snapshot.read_bytes() if snapshot.exists() else None
    snapshot.unlink(missing_ok=True)
    try:
        return listed(ws_path, status)
    finally:
        if kept is not None:
            snapshot.write_bytes(kept)


def propose(ws: stoic.Workspace, n: int) -> str:
    return ws.propose(
        title=f"Clean cache {n}",
        reasoning_trace=[f"disk at {80 + n}%"],
        action=["true"],
        confidence=0.5 + n / 100,
    ).id


@pytest.fixture
def snapshotted(ws_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(queue_snapshot, "WRITE_AFTER", 5)
    with stoic.Workspace.open(ws_path) as ws:
        ids = [propose(ws, n) for n in range(8)]
        ws.approve(ids[0], by="human:ana")
        ws.reject(ids[1], by="human:ana", reason="not now")
    with stoic.Workspace.open(ws_path) as ws:  # a fresh process folds from scratch …
        Queue(ws).state()
    assert (ws_path / queue_snapshot.SNAPSHOT).is_file()  # … and leaves a snapshot
    with stoic.Workspace.open(ws_path) as ws:  # what happens after the snapshot
        ws.approve(ids[2], by="human:ben")
        ws.defer(ids[3], by="human:ben")
        ws.defer(ids[4], by="human:ben")
        Queue(ws).decide(ids[4], "undeferred", actor="human:ben")
        Queue(ws).execute(ids[0], actor="human:ana")
        ids += [propose(ws, 8), propose(ws, 9)]
    return ids


@pytest.mark.parametrize("status", STATUSES)
def test_the_snapshot_listing_is_what_folding_gives(
    ws_path: Path, snapshotted: list[str], status: str | None
) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        selected = ProposalStatus(status) if status else None
        assert queue_snapshot.listing(ws, selected) is not None  # the snapshot is used …
    fast = listed(ws_path, status)
    assert fast == by_folding(ws_path, status)  # … and agrees with the log
    if status == "pending":
        pending = [p["id"] for p in orjson.loads(fast)]
        assert pending == [snapshotted[n] for n in (4, 5, 6, 7, 8, 9)]


def test_a_fold_started_from_the_snapshot_equals_a_full_fold(
    ws_path: Path, snapshotted: list[str]
) -> None:
    del snapshotted
    with stoic.Workspace.open(ws_path) as ws:
        from_snapshot = Queue(ws).state()
    (ws_path / queue_snapshot.SNAPSHOT).unlink()
    with stoic.Workspace.open(ws_path) as ws:
        folded = Queue(ws).state()
    assert from_snapshot.proposals == folded.proposals
    assert manifest_document(from_snapshot, "") == manifest_document(folded, "")
    assert from_snapshot.next_id("20991231") == folded.next_id("20991231")


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data.replace(b'"hash":"', b'"hash":"00', 1),  # not the log's record
        lambda data: data[: len(data) // 2],  # cut off
        lambda data: b"garbage\n" + data,
        lambda data: data.replace(b'"version":2', b'"version":9', 1),
    ],
)
def test_a_damaged_or_stale_snapshot_is_ignored(
    ws_path: Path, snapshotted: list[str], damage: object
) -> None:
    del snapshotted
    path = ws_path / queue_snapshot.SNAPSHOT
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with stoic.Workspace.open(ws_path) as ws:
        assert queue_snapshot.listing(ws, None) is None
    for status in STATUSES:
        assert listed(ws_path, status) == by_folding(ws_path, status)


def test_a_snapshot_ahead_of_a_repaired_log_is_ignored(
    ws_path: Path, snapshotted: list[str]
) -> None:
    del snapshotted
    log = ws_path / "logs" / "decision_log.ndjson"
    lines = log.read_bytes().splitlines(keepends=True)
    with stoic.Workspace.open(ws_path) as ws:
        queue_snapshot.write_snapshot(ws, Queue(ws).state(), log.stat().st_size, len(lines))
    log.write_bytes(b"".join(lines[:-3]))  # the log is shorter than the snapshot's offset
    with stoic.Workspace.open(ws_path, catch_up=False) as ws:
        assert queue_snapshot.listing(ws, None) is None
