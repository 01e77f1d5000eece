"""A snapshot of the review queue's fold, so a big queue is listed without folding the log.

`manifests/.queue-snapshot.ndjson` holds each proposal as the log folded it up to a byte
offset of the log, stamped with the seq and hash of the record that ends there. It serves
reading only: `stoic queue --json` lists from its bytes while that record is still in the log
exactly so, with the records after it folded on top. Nothing is ever decided from it (anyone
who can write the workspace can write it): the queue that decides is folded from the log.
Like every file view, `stoic audit` compares it with a replay of the log (`check_snapshot`),
and `stoic audit --repair` rewrites it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core import next_steps
from stoic.core.audit import Violation, ViolationCode
from stoic.core.proposals import (
    Proposal,
    ProposalStatus,
    QueueState,
    fold_proposal,
    is_proposal_id,
)
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import atomic_write
from stoic.store.confined import read_confined
from stoic.store.log import FileDecisionLog

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle as Workspace

__all__ = ["SNAPSHOT", "WRITE_AFTER", "SnapshotCheck", "listing", "write_snapshot"]

SNAPSHOT = Path("manifests/.queue-snapshot.ndjson")
WRITE_AFTER = 2000
"""Proposal records a fold had to read from the log before a new snapshot is worth writing."""
_VERSION = 2
"""Bumped whenever `Proposal.to_json` or the line format changes: older snapshots are ignored."""
_NEEDLE = b'"decision_type":"proposal"'


def write_snapshot(workspace: Workspace, state: QueueState, offset: int, seq: int) -> None:
    """Save the fold as it stands at `offset`."""
    hash_at = _hash_at(workspace.log, offset, seq)
    if hash_at is None:
        return
    header = {"version": _VERSION, "offset": offset, "seq": seq, "hash": hash_at}
    lines = [orjson.dumps(header), *_rows(state)]
    # Durable like any view (the audit checks it): a power cut must not leave half of one.
    with contextlib.suppress(WorkspaceNotWritable):  # one that cannot be written is not there
        atomic_write(workspace.root / SNAPSHOT, b"\n".join(lines) + b"\n", root=workspace.root)
        state.unsaved = 0


def _rows(state: QueueState) -> list[bytes]:
    """The snapshot's lines after its header: each proposal as folded, oldest first."""
    ordered = sorted(state.proposals.values(), key=lambda p: p.created_seq)
    return [orjson.dumps([proposal.created_seq, proposal.to_json()]) for proposal in ordered]


def _hash_at(log: FileDecisionLog, offset: int, seq: int) -> str | None:
    """The hash of the record that ends at `offset`, if it has `seq`."""
    if offset <= 0 or offset > log.size():
        return None
    for line in log.lines_reversed(offset):
        try:
            record = orjson.loads(line)
            return str(record["hash"]) if record.get("seq") == seq else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
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
        if offset > good_end or _hash_at(workspace.log, offset, seq) != header["hash"]:
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


class SnapshotCheck:
    """The audit's check of the snapshot: its rows against the queue fold at the seq it names.

    Fed the audit's queue fold record by record; it compares when the fold reaches the
    snapshot's seq. A snapshot that names a seq the log never reaches reflects records the log
    has lost.
    """

    def __init__(self, log: FileDecisionLog, root: Path) -> None:
        self.log = log
        self.violations: list[Violation] = []
        self._body = b""
        self._stamp: tuple[int, int, str] | None = None
        try:
            data = (root / SNAPSHOT).read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._unreadable(exc.strerror or str(exc))
            return
        header_line, _, self._body = data.partition(b"\n")
        try:
            header = orjson.loads(header_line)
            stamp = (int(header["offset"]), int(header["seq"]), str(header["hash"]))
            version = header.get("version")
        except (ValueError, KeyError, TypeError, AttributeError):
            self._unreadable("its first line is not a snapshot header")
            return
        if version != _VERSION:
            self._unreadable(f"it has version {version!r}, this stoic writes {_VERSION}")
        elif not data.endswith(b"\n") or stamp[0] <= 0 or stamp[1] < 1:
            self._unreadable("it is cut off or its header is not one stoic writes")
        else:
            self._stamp = stamp

    def feed(self, queue: QueueState, records: list[dict[str, Any]]) -> None:
        """Fold `records` into the audit's `queue`, comparing where the snapshot stands."""
        stamp = self._stamp
        if stamp is not None and records and records[0]["seq"] <= stamp[1] <= records[-1]["seq"]:
            for index, record in enumerate(records):
                if record["seq"] == stamp[1]:
                    queue.feed(records[: index + 1])
                    self._compare(queue, record["hash"])
                    queue.feed(records[index + 1 :])
                    return
        queue.feed(records)

    def finish(self, last_seq: int) -> list[Violation]:
        if self._stamp is not None:
            self.violations.append(Violation.reflects_lost(str(SNAPSHOT), self._stamp[1], last_seq))
            self._stamp = None
        return self.violations

    def _unreadable(self, why: str) -> None:
        self.violations.append(
            Violation(
                ViolationCode.PROJECTION_UNREADABLE,
                f"{SNAPSHOT} is unreadable: {why}; {next_steps.audit(repair=True)} rewrites it",
                path=str(SNAPSHOT),
            )
        )

    def _compare(self, queue: QueueState, digest: str) -> None:
        assert self._stamp is not None
        offset, seq, claimed = self._stamp
        self._stamp = None
        if claimed != digest:
            self.violations.append(Violation.other_record(str(SNAPSHOT), seq, digest, claimed))
            return
        if _hash_at(self.log, offset, seq) != digest:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{SNAPSHOT} does not line up with the log: seq {seq} does not end at byte"
                    f" {offset}",
                    seq=seq,
                    path=str(SNAPSHOT),
                )
            )
        expected = _rows(queue)
        found = self._body.splitlines()
        if found == expected:
            return
        differences = _differences(expected, found)
        shown = differences[:_SHOWN]
        more = len(differences) - len(shown)
        self.violations.append(
            Violation(
                ViolationCode.PROJECTION_MISMATCH,
                f"{SNAPSHOT} disagrees with a replay of the log at seq {seq}: "
                + "; ".join(shown)
                + (f"; and {more} more" if more > 0 else ""),
                seq=seq,
                path=str(SNAPSHOT),
            )
        )


_SHOWN = 5


def _differences(expected: list[bytes], found: list[bytes]) -> list[str]:
    """Each proposal whose row differs, in words (ids and values shown escaped)."""
    replayed = {_row_id(line): line for line in expected}
    stored: dict[str, bytes] = {}
    out: list[str] = []
    for number, line in enumerate(found, start=2):
        row_id = _row_id(line)
        if row_id is None:
            out.append(f"line {number} is not a proposal row")
        else:
            stored[row_id] = line
    for row_id, line in replayed.items():
        assert row_id is not None
        if row_id not in stored:
            out.append(f"{row_id} is missing")
        elif stored[row_id] != line:
            out.append(f"{row_id} differs at {_fields(line, stored[row_id])}")
    unknown = sorted(stored.keys() - replayed.keys())
    out += [f"{_shown(row_id)} is not a proposal the log knows" for row_id in unknown]
    return out or ["its rows are not in the order stoic writes them"]


def _row_id(line: bytes) -> str | None:
    try:
        _created_seq, document = orjson.loads(line)
        return str(document["id"])
    except (ValueError, KeyError, TypeError):
        return None


def _fields(expected: bytes, found: bytes) -> str:
    seq_a, left = orjson.loads(expected)
    seq_b, right = orjson.loads(found)
    names = [key for key in left if left.get(key) != right.get(key)]
    if seq_a != seq_b:
        names.insert(0, "created_seq")
    if set(right) - set(left):
        names.append("fields the log does not have")
    parts = []
    for name in names[:3]:
        if name in left and name in right and name in ("status", "action", "rollback"):
            parts.append(f"{name} (log: {left[name]!r}, file: {right[name]!r:.80})")
        else:
            parts.append(name)
    return ", ".join(parts)


def _shown(text: str) -> str:
    return text if is_proposal_id(text) else repr(text[:80])
