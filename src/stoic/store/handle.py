"""What the file backend's modules need of an open workspace, and what its views are.

`stoic.store.workspace` builds the queue, the escalations, the views and the auditor, so none
of them may import it back: they are written against `WorkspaceHandle`, the narrow face of an
open workspace that `Workspace` satisfies, and the store's modules import one another in one
direction only (`make test` checks that no two of them import each other).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from stoic.core.audit import Anchor, AuditReport, Violation
from stoic.core.escalations import EscalationState
from stoic.core.notifications import Event
from stoic.core.projection import WorkspaceStatus
from stoic.core.proposals import QueueState
from stoic.core.records import Decision, Record
from stoic.store.config import Settings
from stoic.store.log import FileDecisionLog, TornTail
from stoic.store.projections import ProjectionFile, Stamp
from stoic.store.quarantine import Quarantine

__all__ = ["ProjectionWriter", "ViewCheck", "WorkspaceHandle"]


class ViewCheck(Protocol):
    """One view's audit: fed the log in order, then asked what disagrees."""

    def feed(self, records: list[dict[str, Any]]) -> None: ...

    def finish(self, last_seq: int, newest: Callable[[], int]) -> list[Violation]:
        """What the view's files say other than the log up to `last_seq`; `newest` is where
        the log ends now (files read after the log may already show newer records)."""
        ...


class ProjectionWriter(Protocol):
    """The writer of one view's files."""

    name: str
    """Short and stable: the `audit/repaired` record lists the views it rebuilt by it."""
    title: str
    """The view as the audit's messages name it."""

    def catch_up(self, before: Stamp[WorkspaceStatus], after: Stamp[WorkspaceStatus]) -> None:
        """Write what the records between two status stamps left behind (the status
        projection's own stamps: they tell cheaply whether this view has anything to do)."""
        ...

    def rebuild(self, quarantine: Quarantine) -> None: ...

    def check(self) -> ViewCheck:
        """A new check, reading the view's files now: the audit takes the log's end after."""
        ...


class WorkspaceHandle(Protocol):
    """An open file workspace as the store's own modules use it (see
    `stoic.store.workspace.Workspace` for what each member does)."""

    root: Path
    settings: Settings
    log: FileDecisionLog
    status_file: ProjectionFile[WorkspaceStatus]
    queue_cache: tuple[QueueState, int] | None
    """The review queue folded up to a log offset, kept by `stoic.store.queue`."""
    escalation_cache: tuple[EscalationState, int] | None
    """The escalations folded up to a log offset, kept by `stoic.store.escalations`."""

    def record(
        self,
        decision_type: str,
        decision_outcome: str,
        reason: str,
        *,
        source: str = ...,
        actor: str | None = ...,
        trigger: str | None = ...,
        inputs: Mapping[str, Any] | None = ...,
        causal_role: str | None = ...,
        run_id: str | None = ...,
        request_id: str | None = ...,
        task_id: str | None = ...,
        attempt_id: str | None = ...,
        attempt: int | None = ...,
        proposal_id: str | None = ...,
        escalation_id: str | None = ...,
        details: Mapping[str, Any] | None = ...,
    ) -> Record: ...

    def record_many(self, decisions: Iterable[Decision | Mapping[str, Any]]) -> list[Record]: ...

    def record_over_torn_tail(
        self, keep: Callable[[bytes], object], decide: Callable[[TornTail], Decision]
    ) -> tuple[TornTail, Record] | None: ...

    def transaction(self) -> contextlib.AbstractContextManager[None]: ...

    def projecting(self, what: str) -> contextlib.AbstractContextManager[None]: ...

    def announce(
        self,
        event: Event,
        text: str,
        *,
        run_id: str | None = ...,
        data: Mapping[str, Any] | None = ...,
        lines: Sequence[str] = ...,
    ) -> None: ...

    def records(
        self,
        *,
        since_seq: int | None = ...,
        run_id: str | None = ...,
        decision_type: str | None = ...,
    ) -> Iterator[Record]: ...

    def status(self) -> WorkspaceStatus: ...

    @property
    def views(self) -> tuple[ProjectionWriter, ...]: ...

    def sync_projections(self) -> Stamp[WorkspaceStatus]: ...

    def rebuild_projections(self, quarantine: Quarantine) -> None: ...

    def status_stamp(self) -> Stamp[WorkspaceStatus]: ...

    def verify(self, *, repair: bool = ..., anchors: Sequence[Anchor] = ...) -> AuditReport: ...
