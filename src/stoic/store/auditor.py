"""Drives the pure audit over the files of a workspace, and repairs what may be repaired.

Repair is deliberately narrow: it removes a torn last line and rebuilds projection files from the
log. A damaged record anywhere before the last line is never repaired or skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stoic.core.audit import AuditReport, ChainChecker, Violation, ViolationCode, diff_states
from stoic.core.escalations import EscalationState
from stoic.core.invariants import InvariantChecker
from stoic.core.projection import WorkspaceStatus
from stoic.core.proposals import QueueState
from stoic.core.records import GENESIS_HASH
from stoic.exceptions import ProjectionMismatch, WorkspaceNotWritable
from stoic.store.escalations import Escalations, check_escalation_files
from stoic.store.log import FileDecisionLog
from stoic.store.projections import ProjectionFile, ProjectionUnreadable, Stamp
from stoic.store.queue import Queue
from stoic.store.queue_audit import check_queue_files
from stoic.store.queue_snapshot import SnapshotCheck

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["REPAIRABLE", "audit_workspace", "repair_workspace"]

REPAIRABLE = frozenset(
    {
        ViolationCode.TORN_TAIL,
        ViolationCode.PROJECTION_MISSING,
        ViolationCode.PROJECTION_UNREADABLE,
        ViolationCode.PROJECTION_MISMATCH,
        ViolationCode.QUEUE_MISMATCH,
        ViolationCode.ESCALATION_MISMATCH,
    }
)
"""What `stoic audit --repair` mends; anything else makes it refuse and change nothing."""

_MAX_LISTED = 10_000


def _consistent_end(log: FileDecisionLog) -> int:
    """The log's size with no write half-done: taken under a shared lock where one is possible."""
    try:
        with log.locked(shared=True):
            return log.size()
    except WorkspaceNotWritable:
        return log.size()


class _ProjectionCheck:
    """Replays the log into one projection and compares with its file at the file's seq."""

    def __init__(self, projection_file: ProjectionFile[WorkspaceStatus], log: FileDecisionLog):
        self.file = projection_file
        self.log = log
        self.violations: list[Violation] = []
        self.stamp: Stamp[WorkspaceStatus] | None = None
        try:
            self.stamp = projection_file.read()
            if self.stamp is None:
                self.violations.append(
                    Violation(
                        ViolationCode.PROJECTION_MISSING,
                        f"{projection_file.path} is missing; `stoic audit --repair` rebuilds it",
                    )
                )
        except ProjectionUnreadable as exc:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_UNREADABLE,
                    f"{projection_file.path} is unreadable: {exc}",
                )
            )
        self.state = projection_file.projection.initial()
        self.done = self.stamp is None
        if self.stamp is not None and self.stamp.last_seq == 0:
            self._compare(0, GENESIS_HASH)

    def add(self, records: list[dict[str, Any]]) -> None:
        """Fold the next records of the log; compare when the file's seq goes by."""
        if self.done or not records:
            return
        assert self.stamp is not None
        target = self.stamp.last_seq
        if records[0]["seq"] <= target <= records[-1]["seq"]:
            for index, record in enumerate(records):
                if record["seq"] == target:
                    self.state = self.file.projection.fold(self.state, records[: index + 1])
                    self._compare(target, record["hash"])
                    return
        self.state = self.file.projection.fold(self.state, records)

    def finish(self, last_seq: int) -> None:
        if self.done or self.stamp is None:
            return
        self.violations.append(
            Violation(
                ViolationCode.PROJECTION_MISMATCH,
                f"{self.file.path} reflects seq {self.stamp.last_seq}, which the log does not"
                " contain",
                expected=f"last_seq ≤ {last_seq}",
                found=f"last_seq {self.stamp.last_seq}",
            )
        )
        self.done = True

    def _compare(self, seq: int, digest: str) -> None:
        self.done = True
        assert self.stamp is not None
        path = self.file.path
        projection = self.file.projection
        if self.stamp.last_hash != digest:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{path} names a different record as seq {seq}",
                    seq=seq,
                    expected=digest,
                    found=self.stamp.last_hash,
                )
            )
        else:
            try:
                self.file.check_lines_up(self.stamp, self.log)
            except ProjectionMismatch as exc:
                self.violations.append(
                    Violation(ViolationCode.PROJECTION_MISMATCH, str(exc), seq=seq)
                )
        replayed = projection.to_json(self.state)
        stored = projection.to_json(self.stamp.state)
        for where, expected, found in diff_states(replayed, stored):
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{path} disagrees with a replay of the log at {where}",
                    seq=seq,
                    expected=repr(expected),
                    found=repr(found),
                )
            )


def audit_workspace(workspace: Workspace) -> AuditReport:
    """Check chain, sequence, torn tail and every projection; memory stays flat."""
    log = workspace.log
    end = _consistent_end(log)
    checker = ChainChecker()
    invariants = InvariantChecker()
    queue = QueueState()
    escalations = EscalationState()
    check = _ProjectionCheck(workspace.status_file, log)
    snapshot = SnapshotCheck(log, workspace.root)
    violations: list[Violation] = []
    dropped = 0

    def note(found: list[Violation]) -> None:
        nonlocal dropped
        room = max(0, _MAX_LISTED - len(violations))
        violations.extend(found[:room])
        dropped += len(found) - len(found[:room])

    for chunk in log.chunks(0, end):
        records, found = checker.feed_chunk(
            chunk.first_line_no, chunk.lines, ends_log=chunk.final and not chunk.fragment
        )
        note(found)
        check.add(records)
        invariants.feed(records)
        snapshot.feed(queue, records)
        escalations.feed(records)
        if chunk.fragment:
            note(checker.finish())
            note(
                [
                    Violation(
                        ViolationCode.TORN_TAIL,
                        f"the last line is cut off ({len(chunk.fragment)} bytes without a"
                        " newline): a write was interrupted — `stoic audit --repair` removes it",
                        line=chunk.first_line_no + len(chunk.lines),
                    )
                ]
            )
    note(checker.finish())
    note(invariants.finish())
    check.finish(checker.last_seq)
    note(check.violations)
    note(snapshot.finish(checker.last_seq))
    note(check_queue_files(workspace.root, queue))
    note(check_escalation_files(workspace.root, escalations))
    if dropped:
        violations.append(
            Violation(ViolationCode.BAD_LINE, f"{dropped} further violations are not listed")
        )
    return AuditReport(
        records=checker.records, last_seq=checker.last_seq, violations=tuple(violations)
    )


def repair_workspace(workspace: Workspace) -> AuditReport:
    """Remove a torn last line and rebuild projections, record that it did, then audit again."""
    before = audit_workspace(workspace)
    damaged = [v for v in before.violations if v.code not in REPAIRABLE]
    if before.ok or damaged:
        return before
    torn = workspace.log.truncate_torn_tail()
    rebuilt = sorted(
        {v.code.value for v in before.violations if v.code is not ViolationCode.TORN_TAIL}
    )
    parts = []
    details: dict[str, Any] = {"bytes_removed": 0}
    if torn is not None:
        parts.append(f"removed a torn last line of {torn.length} bytes after seq {torn.after_seq}")
        details.update(
            bytes_removed=torn.length,
            after_seq=torn.after_seq,
            removed_prefix=torn.fragment.decode("utf-8", "backslashreplace"),
        )
    projection_name = workspace.status_file.projection.name
    parts.append(
        f"rebuilt the {projection_name} projection, queue folders, manifest and escalation"
        " files from the log"
    )
    details["projections_rebuilt"] = [projection_name, "queue", "escalations"]
    details["violations_before"] = rebuilt + (["torn_tail"] if torn is not None else [])
    record = workspace.record(
        "audit",
        "repaired",
        "; ".join(parts).capitalize() + ".",
        trigger="explicit",
        inputs={"violations": len(before.violations)},
        details=details,
    )
    workspace.rebuild_projections()
    Queue(workspace).rebuild()
    Escalations(workspace).rebuild()
    after = audit_workspace(workspace)
    return AuditReport(
        records=after.records,
        last_seq=after.last_seq,
        violations=after.violations,
        repaired={**details, "seq": record.seq},
    )
