"""A snapshot of the review queue's fold, so a big queue is listed without folding the log.

A cache, not a projection: `manifests/.queue-snapshot.ndjson` holds each proposal as the log
folded it up to a byte offset of the log, stamped with the seq and hash of the record that ends
there. It is used only when that record is still in the log exactly so; the records after it
are folded on top. Missing, stale or unreadable, it is ignored and the log is folded as usual
(and deleting it is always safe). `stoic audit` never reads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core.proposals import Proposal, ProposalStatus, QueueState, fold_proposal
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import atomic_write
from stoic.store.confined import read_confined

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["SNAPSHOT", "WRITE_AFTER", "listing", "load", "write_snapshot"]

SNAPSHOT = Path("manifests/.queue-snapshot.ndjson")
WRITE_AFTER = 2000
"""Proposal records a fold had to read from the log before a new snapshot is worth writing."""
_VERSION = 2
"""Bumped whenever `Proposal.to_json` or the line format changes: older snapshots are ignored."""
_NEEDLE = b'"decision_type":"proposal"'


def write_snapshot(workspace: Workspace, state: QueueState, offset: int, seq: int) -> None:
    """Save the fold as it stands at `offset` (a cache: renamed into place, not fsynced)."""
    hash_at = _hash_at(workspace, offset, seq)
    if hash_at is None:
        return
    header = {"version": _VERSION, "offset": offset, "seq": seq, "hash": hash_at}
    lines = [orjson.dumps(header)]
    for proposal in sorted(state.proposals.values(), key=lambda p: p.created_seq):
        lines.append(orjson.dumps([proposal.created_seq, proposal.to_json()]))
    with contextlib.suppress(WorkspaceNotWritable):  # a cache not written is simply not there
        atomic_write(workspace.root / SNAPSHOT, b"\n".join(lines) + b"\n", root=workspace.root)
        state.unsaved = 0


def _hash_at(workspace: Workspace, offset: int, seq: int) -> str | None:
    """The hash of the record that ends at `offset`, if it has `seq`."""
    if offset <= 0:
        return None
    for line in workspace.log.lines_reversed(offset):
        record = orjson.loads(line)
        return str(record["hash"]) if record.get("seq") == seq else None
    return None


def _read(workspace: Workspace, good_end: int) -> tuple[list[bytes], int] | None:
    """The snapshot's proposal lines and its offset, when it still matches the log."""
    try:
        data = read_confined(workspace.root, workspace.root / SNAPSHOT)
        header_line, _, body = data.partition(b"\n")
        header = orjson.loads(header_line)
        if header.get("version") != _VERSION or not data.endswith(b"\n"):
            return None
        offset, seq = int(header["offset"]), int(header["seq"])
        if offset > good_end or _hash_at(workspace, offset, seq) != header["hash"]:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return body.splitlines(), offset


def _proposal(created_seq: int, data: dict[str, Any]) -> Proposal:
    def strings(value: Any) -> tuple[str, ...] | None:
        return tuple(value) if isinstance(value, list) else None

    return Proposal(
        id=data["id"],
        status=ProposalStatus(data["status"]),
        type=data["type"],
        title=data["title"],
        summary=data["summary"],
        action=strings(data["action"]),
        reasoning_trace=strings(data["reasoning_trace"]) or (),
        sources=strings(data["sources"]) or (),
        confidence=data["confidence"],
        trade_off=data["trade_off"],
        rollback=strings(data["rollback"]),
        batch_id=data["batch_id"],
        origin=data["origin"],
        created_at=data["created_at"],
        created_seq=created_seq,
        run_id=data["run_id"],
        task_id=data["task_id"],
        decision=data["decision"],
        execution=data["execution"],
        history=tuple(data["history"]),
        running=data["running"],
    )


def _newer(workspace: Workspace, start: int, end: int) -> Iterator[dict[str, Any]]:
    for _line_no, _offset, raw, _complete in workspace.log.lines(start, end):
        if _NEEDLE in raw:
            yield orjson.loads(raw)


def load(workspace: Workspace, good_end: int) -> tuple[QueueState, int] | None:
    """The fold as the snapshot holds it, and the log offset it stands at."""
    found = _read(workspace, good_end)
    if found is None:
        return None
    lines, offset = found
    state = QueueState()
    try:
        for line in lines:
            created_seq, data = orjson.loads(line)
            state.adopt(_proposal(int(created_seq), data))
    except (ValueError, KeyError, TypeError):
        return None
    state.unsaved = 0
    return state, offset


def listing(workspace: Workspace, status: ProposalStatus | None) -> bytes | None:
    """The proposals (with `status`, or all) as a JSON array, oldest first: the snapshot's own
    bytes, with the proposals that changed after it folded anew; None without a snapshot."""
    tail = workspace.log.tail_state()
    found = _read(workspace, tail.good_end)
    if found is None:
        return None
    lines, offset = found
    changed: dict[str, Proposal | None] = {}
    for record in _newer(workspace, offset, tail.good_end):
        proposal_id = record.get("proposal_id")
        if not proposal_id:
            continue
        current = changed[proposal_id] if proposal_id in changed else _from(lines, proposal_id)
        changed[proposal_id] = fold_proposal(current, record) or current
    wanted = f'"status":"{status.value}"'.encode() if status is not None else None
    kept: list[tuple[bytes, bytes]] = []
    for line in lines:
        created_seq, _, document = line[1:-1].partition(b",")
        if changed and _id_of(document) in changed:
            continue  # written out below, as folded now
        if wanted is None or wanted in document:
            kept.append((created_seq, document))
    now = [p for p in changed.values() if p is not None and (status is None or p.status is status)]
    if not now:
        return b"[" + b",".join(document for _, document in kept) + b"]"
    merged = [(int(seq), document) for seq, document in kept]
    merged += [(p.created_seq, orjson.dumps(p.to_json())) for p in now]
    merged.sort(key=lambda item: item[0])
    return b"[" + b",".join(document for _, document in merged) + b"]"


def _id_of(document: bytes) -> str:
    start = document.index(b'"id":"') + 6
    return document[start : document.index(b'"', start)].decode()


def _from(lines: list[bytes], proposal_id: str) -> Proposal | None:
    needle = f'"id":"{proposal_id}"'.encode()
    for line in lines:
        if needle in line:
            created_seq, data = orjson.loads(line)
            return _proposal(int(created_seq), data)
    return None
