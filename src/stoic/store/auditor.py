"""Drives the pure audit over the files of a workspace, and repairs what may be repaired.

Repair is deliberately narrow: it removes a torn last line and rebuilds projection files from the
log. A damaged record anywhere before the last line is never repaired or skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stoic.core.audit import AuditReport, ChainChecker, Violation, ViolationCode, diff_states
from stoic.core.projection import WorkspaceStatus
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.log import FileDecisionLog
from stoic.store.projections import ProjectionFile, ProjectionUnreadable, Stamp

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["REPAIRABLE", "audit_workspace", "repair_workspace"]

REPAIRABLE = frozenset(
    {
        ViolationCode.TORN_TAIL,
        ViolationCode.PROJECTION_MISSING,
        ViolationCode.PROJECTION_UNREADABLE,
        ViolationCode.PROJECTION_MISMATCH,
    }
)
"""What `stoic audit --repair` mends; anything else makes it refuse and change nothing."""

_MAX_LISTED = 10_000
_FOLD_BATCH = 4096


def _consistent_end(log: FileDecisionLog) -> int:
    """The log's size with no write half-done: taken under a shared lock where one is possible."""
    try:
        with log.locked(shared=True):
            return log.size()
    except WorkspaceNotWritable:
        return log.size()


class _ProjectionCheck:
    """Replays the log into one projection and compares with its file at the file's seq."""

    def __init__(self, projection_file: ProjectionFile[WorkspaceStatus]) -> None:
        self.file = projection_file
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
        projection = projection_file.projection
        self.state = projection.initial()
        self.batch: list[Mapping[str, Any]] = []
        self.done = self.stamp is None
        if self.stamp is not None and self.stamp.last_seq == 0:
            self._compare(0, self.file.initial().last_hash, 0)

    def add(self, record: Mapping[str, Any], end_offset: int) -> None:
        if self.done:
            return
        self.batch.append(record)
        assert self.stamp is not None
        if record["seq"] == self.stamp.last_seq:
            self._compare(record["seq"], record["hash"], end_offset)
        elif len(self.batch) >= _FOLD_BATCH:
            self._fold()

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

    def _fold(self) -> None:
        if self.batch:
            self.state = self.file.projection.fold(self.state, self.batch)
            self.batch = []

    def _compare(self, seq: int, digest: str, end_offset: int) -> None:
        self._fold()
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
        if self.stamp.log_offset != end_offset:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{path} places seq {seq} at another byte offset of the log",
                    seq=seq,
                    expected=f"log_offset {end_offset}",
                    found=f"log_offset {self.stamp.log_offset}",
                )
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
    check = _ProjectionCheck(workspace.status_file)
    violations: list[Violation] = []
    dropped = 0

    def note(found: list[Violation]) -> None:
        nonlocal dropped
        for violation in found:
            if len(violations) < _MAX_LISTED:
                violations.append(violation)
            else:
                dropped += 1

    def take(line_no: int, offset: int, raw: bytes, is_last: bool) -> None:
        parsed, found = checker.feed(line_no, raw, is_last=is_last)
        if found:
            note(found)
        if parsed is not None:
            check.add(parsed, offset + len(raw) + 1)

    held: tuple[int, int, bytes] | None = None
    for line_no, offset, raw, complete in log.lines(0, end):
        if held is not None:
            take(*held, is_last=False)
            held = None
        if complete:
            held = (line_no, offset, raw)
        else:
            note(
                [
                    Violation(
                        ViolationCode.TORN_TAIL,
                        f"the last line is cut off ({len(raw)} bytes without a newline): a write"
                        " was interrupted — `stoic audit --repair` removes it",
                        line=line_no,
                    )
                ]
            )
    if held is not None:
        take(*held, is_last=True)
    note(checker.finish())
    check.finish(checker.last_seq)
    note(check.violations)
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
    parts.append(f"rebuilt the {projection_name} projection from the log")
    details["projections_rebuilt"] = [projection_name]
    details["violations_before"] = rebuilt + (["torn_tail"] if torn is not None else [])
    record = workspace.record(
        "audit",
        "repaired",
        "; ".join(parts).capitalize() + ".",
        trigger="explicit",
        inputs={"violations": len(before.violations)},
        details=details,
    )
    status_file = workspace.status_file
    end = workspace.log.tail_state().good_end
    fresh = status_file.advance(status_file.initial(), workspace.log, end)
    with workspace.log.locked():
        status_file.write(fresh)
    after = audit_workspace(workspace)
    return AuditReport(
        records=after.records,
        last_seq=after.last_seq,
        violations=after.violations,
        repaired={**details, "seq": record.seq},
    )
