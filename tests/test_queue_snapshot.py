"""The queue snapshot: a cache of the fold that must always give what folding the log gives."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import stoic
from stoic.core.proposals import ProposalStatus
from stoic.services import queue as queue_service
from stoic.store import queue_snapshot
from stoic.store.queue import Queue
from stoic.store.queue_snapshot import SNAPSHOT
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
        queue_service.execute(ws, ids[0], by="human:ana")
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


def forge_snapshot(ws_path: Path, proposal_id: str, **changes: object) -> None:
    """Write a snapshot as an attacker can: its header stamped with the real offset, seq and
    hash of the last record (all readable from the log), one row changed."""
    log = ws_path / "logs" / "decision_log.ndjson"
    last = orjson.loads(log.read_bytes().splitlines()[-1])
    header = {"version": 2, "offset": log.stat().st_size, "seq": last["seq"], "hash": last["hash"]}
    rows = []
    for record in map(orjson.loads, log.read_bytes().splitlines()):
        if record["decision_type"] == "proposal" and record["decision_outcome"] == "created":
            found = next((ws_path / "queue").glob(f"*/{record['proposal_id']}.json"))
            document = orjson.loads(found.read_bytes())
            if document["id"] == proposal_id:
                document.update(changes)
            rows.append(orjson.dumps([record["seq"], document]))
    (ws_path / queue_snapshot.SNAPSHOT).write_bytes(
        b"\n".join([orjson.dumps(header), *rows]) + b"\n"
    )


def test_a_forged_approval_in_the_snapshot_never_lets_a_command_run(
    ws_path: Path, tmp_path: Path
) -> None:
    made = tmp_path / "made"
    with stoic.Workspace.open(ws_path) as ws:
        proposal_id = ws.propose(
            title="Touch", reasoning_trace=["needed"], action=["touch", str(made)]
        ).id
    forge_snapshot(ws_path, proposal_id, status="approved")
    log = ws_path / "logs" / "decision_log.ndjson"
    before = log.read_bytes()
    shown = orjson.loads(run_cli("-w", str(ws_path), "queue", "show", proposal_id, "--json").stdout)
    assert shown["status"] == "pending"  # what a person is shown comes from the log
    refused = run_cli("-w", str(ws_path), "execute", proposal_id)
    assert refused.exit_code == 1
    assert "is pending" in refused.stderr and "cannot be executed" in refused.stderr
    assert not made.exists() and log.read_bytes() == before
    audit = run_cli("-w", str(ws_path), "audit", "--json")
    assert audit.exit_code == 1
    found = [v for v in orjson.loads(audit.stdout)["violations"] if v["path"] == str(SNAPSHOT)]
    assert found and found[0]["code"] == "projection_mismatch"
    assert f"{proposal_id} differs at status" in found[0]["message"]


def test_a_forged_action_in_the_snapshot_is_never_the_one_that_runs(
    ws_path: Path, tmp_path: Path
) -> None:
    safe, forged = tmp_path / "safe", tmp_path / "forged"
    with stoic.Workspace.open(ws_path) as ws:
        proposal_id = ws.propose(
            title="Touch", reasoning_trace=["needed"], action=["touch", str(safe)]
        ).id
        ws.approve(proposal_id, by="human:ana")
    forge_snapshot(ws_path, proposal_id, action=["touch", str(forged)])
    assert run_cli("-w", str(ws_path), "execute", proposal_id).exit_code == 0
    assert safe.exists() and not forged.exists()
    lines = (ws_path / "logs" / "decision_log.ndjson").read_bytes().splitlines()
    executed = [r for r in map(orjson.loads, lines) if r["decision_outcome"] == "executed"]
    assert executed[0]["details"]["command"] == f"touch {safe}"


def test_the_audit_compares_the_snapshot_with_a_replay(
    ws_path: Path, snapshotted: list[str]
) -> None:
    assert run_cli("-w", str(ws_path), "audit").exit_code == 0  # a true snapshot is clean
    path = ws_path / queue_snapshot.SNAPSHOT
    header, _, body = path.read_bytes().partition(b"\n")
    path.write_bytes(header + b"\n" + body.replace(b'"status":"rejected"', b'"status":"pending"'))
    audit = run_cli("-w", str(ws_path), "audit")
    assert audit.exit_code == 1
    assert f"{snapshotted[1]} differs at status (log: 'rejected', file: 'pending')" in audit.stdout
