"""The file backend's views of the log (DESIGN §3): each file kept beside the log is written by
one projection writer, and catch-up, audit and repair all go through the same registry.

A writer only ever writes what durable records say. `catch_up` brings its files up to the log
after a writer was killed between a record and its files; `check` is fed the whole log by the
audit and lists where the files disagree with it; `rebuild` rewrites the files from the log for
`stoic audit --repair`, which has moved whatever they replace to its quarantine first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.audit import Violation, ViolationCode, diff_states
from stoic.core.escalations import EscalationState
from stoic.core.projection import WorkspaceStatus
from stoic.core.proposals import QueueState
from stoic.core.records import GENESIS_HASH
from stoic.store.escalation_audit import check_escalation_files
from stoic.store.escalations import Escalations
from stoic.store.log import FileDecisionLog
from stoic.store.projections import ProjectionFile, ProjectionUnreadable, Stamp
from stoic.store.quarantine import Quarantine
from stoic.store.queue import Queue
from stoic.store.queue_audit import check_queue_files
from stoic.store.queue_snapshot import SnapshotCheck
from stoic.store.run_audit import RunFilesCheck, rebuild_run_files
from stoic.store.user_files import UserFilesView

if TYPE_CHECKING:
    from stoic.store.handle import ProjectionWriter, WorkspaceHandle

__all__ = ["file_views"]


def file_views(workspace: WorkspaceHandle) -> tuple[ProjectionWriter, ...]:
    """Every view of the file backend, in the order they are caught up and rebuilt."""
    return (
        StatusView(workspace),
        QueueView(workspace),
        EscalationView(workspace),
        RunFilesView(workspace),
        UserFilesView(workspace),
    )


class StatusView:
    """`manifests/workspace_status.json`: the status projection, stamped."""

    title = "the status projection"

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace
        self.file = workspace.status_file
        self.name = self.file.projection.name

    def catch_up(self, before: Stamp[WorkspaceStatus], after: Stamp[WorkspaceStatus]) -> None:
        workspace = self.workspace
        relative = str(self.file.path.relative_to(workspace.root))
        with workspace.log.locked(), workspace.projecting(relative):
            if workspace.status_stamp().last_seq < after.last_seq:
                self.file.write(after)

    def rebuild(self, quarantine: Quarantine) -> None:
        log = self.workspace.log
        end = log.tail_state().good_end
        fresh = self.file.advance(self.file.initial(), log, end)
        with log.locked():
            self.file.write(fresh)

    def check(self) -> StatusCheck:
        return StatusCheck(self.file, self.workspace.log, self.workspace.root)


class QueueView:
    """The queue folders, the manifest and its snapshot."""

    name = "queue"
    title = "the review queue"

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace

    def catch_up(self, before: Stamp[WorkspaceStatus], after: Stamp[WorkspaceStatus]) -> None:
        if after.state.count("proposal") > before.state.count("proposal"):
            with self.workspace.projecting("the review queue's files"):
                Queue(self.workspace).catch_up(since_offset=before.log_offset)

    def rebuild(self, quarantine: Quarantine) -> None:
        Queue(self.workspace).rebuild(quarantine)

    def check(self) -> _QueueCheck:
        return _QueueCheck(self.workspace)


class _QueueCheck:
    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.root = workspace.root
        self.queue = QueueState()
        self.snapshot = SnapshotCheck(workspace.log, workspace.root)

    def feed(self, records: list[dict[str, Any]]) -> None:
        self.snapshot.feed(self.queue, records)

    def finish(self, last_seq: int, newest: Callable[[], int]) -> list[Violation]:
        return [
            *self.snapshot.finish(last_seq),
            *check_queue_files(self.root, self.queue, last_seq, newest),
        ]


class EscalationView:
    """The briefings (`escalations/ESC-NNN.md`) and `escalations/escalation-log.md`."""

    name = "escalations"
    title = "the escalations"

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace

    def catch_up(self, before: Stamp[WorkspaceStatus], after: Stamp[WorkspaceStatus]) -> None:
        if after.state.count("escalation") > before.state.count("escalation"):
            with self.workspace.projecting("the escalation briefings"):
                Escalations(self.workspace).catch_up(before.log_offset, before.last_seq)

    def rebuild(self, quarantine: Quarantine) -> None:
        """Every briefing the repair moved aside (or that is gone) and the escalation log."""
        Escalations(self.workspace).rebuild()

    def check(self) -> _EscalationCheck:
        return _EscalationCheck(self.workspace)


class _EscalationCheck:
    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace
        self.state = EscalationState()

    def feed(self, records: list[dict[str, Any]]) -> None:
        self.state.feed(records)

    def finish(self, last_seq: int, newest: Callable[[], int]) -> list[Violation]:
        return check_escalation_files(
            self.workspace, self.state, settled=lambda: newest() == last_seq
        )


class RunFilesView:
    """Each run's `state.json` and `logs/execution_log.md`."""

    name = "runs"
    title = "the runs' files"

    def __init__(self, workspace: WorkspaceHandle) -> None:
        self.workspace = workspace

    def catch_up(self, before: Stamp[WorkspaceStatus], after: Stamp[WorkspaceStatus]) -> None:
        """Nothing on open: the runner holding a run writes its files as it goes, and
        `stoic continue` writes them again from the log; the audit names any that lag."""

    def rebuild(self, quarantine: Quarantine) -> None:
        rebuild_run_files(self.workspace, quarantine)

    def check(self) -> _RunFilesCheck:
        return _RunFilesCheck(self.workspace.root)


class _RunFilesCheck:
    def __init__(self, root: Path) -> None:
        self.runs = RunFilesCheck(root)

    def feed(self, records: list[dict[str, Any]]) -> None:
        self.runs.feed(records)

    def finish(self, last_seq: int, newest: Callable[[], int]) -> list[Violation]:
        return self.runs.finish(last_seq)


class StatusCheck:
    """Replays the log into the status projection and compares with its file at the file's seq."""

    def __init__(
        self, projection_file: ProjectionFile[WorkspaceStatus], log: FileDecisionLog, root: Path
    ):
        self.file = projection_file
        self.log = log
        self.relative = str(projection_file.path.relative_to(root))
        self.violations: list[Violation] = []
        self.stamp: Stamp[WorkspaceStatus] | None = None
        try:
            self.stamp = projection_file.read()
            if self.stamp is None:
                self.violations.append(
                    Violation(
                        ViolationCode.PROJECTION_MISSING,
                        f"{self.relative} is missing; {next_steps.audit(repair=True)} rebuilds it",
                        path=self.relative,
                    )
                )
        except ProjectionUnreadable as exc:
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_UNREADABLE,
                    f"{self.relative} is unreadable: {exc}",
                    path=self.relative,
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

    def feed(self, records: list[dict[str, Any]]) -> None:
        self.add(records)

    def finish(self, last_seq: int, newest: Callable[[], int] | None = None) -> list[Violation]:
        if self.done or self.stamp is None:
            return self.violations
        self.violations.append(
            Violation.reflects_lost(self.relative, self.stamp.last_seq, last_seq)
        )
        self.done = True
        return self.violations

    def _compare(self, seq: int, digest: str) -> None:
        self.done = True
        assert self.stamp is not None
        projection = self.file.projection
        if self.stamp.last_hash != digest:
            self.violations.append(
                Violation.other_record(self.relative, seq, digest, self.stamp.last_hash)
            )
        else:
            problem = self.file.misalignment(self.stamp, self.log)
            if problem is not None:
                self.violations.append(
                    Violation(
                        ViolationCode.PROJECTION_MISMATCH, problem, seq=seq, path=self.relative
                    )
                )
        replayed = projection.to_json(self.state)
        stored = projection.to_json(self.stamp.state)
        for where, expected, found in diff_states(replayed, stored):
            self.violations.append(
                Violation(
                    ViolationCode.PROJECTION_MISMATCH,
                    f"{self.relative} disagrees with a replay of the log at {where}",
                    seq=seq,
                    expected=repr(expected),
                    found=repr(found),
                    path=self.relative,
                )
            )
