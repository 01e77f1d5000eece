"""The workspace's counts for monitoring (`GET /metrics`, DESIGN §14): runs by status, pending
proposals, open escalations, the pause, the log's head and the last audit's result.

Counts only: nothing a task wrote (a title, a reason, an output) is in them, so they can be
served to a scraper that has no login.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stoic.core.graph import RunStatus
from stoic.core.proposals import ProposalStatus
from stoic.services import escalations, queue
from stoic.services.audit import last_audit
from stoic.services.run_list import UNKNOWN, list_runs

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["Counts", "counts"]


@dataclass(frozen=True, slots=True)
class Counts:
    """What the log holds now, counted."""

    runs: Mapping[str, int] = field(default_factory=dict)
    """Runs by status: every run status, and `unknown` (its plan copy cannot be read)."""
    pending_proposals: int = 0
    open_escalations: int = 0
    paused: bool = False
    records: int = 0
    """The log's head seq."""
    audit_ok: bool | None = None
    """The last audit on record passed (True) or failed (False); None: none on record."""
    audit_seq: int | None = None
    """The seq of the record that says so."""


def counts(workspace: Workspace) -> Counts:
    """The counts, each read from the log (the run fold, the queue and escalation views)."""
    runs = {status.value: 0 for status in RunStatus} | {UNKNOWN: 0}
    for row in list_runs(workspace):
        runs[row.status] = runs.get(row.status, 0) + 1
    pending = len(queue.list_proposals(workspace, ProposalStatus.PENDING))
    open_escalations = len(escalations.escalations(workspace, open_only=True))
    status = workspace.status()
    last = last_audit(workspace)
    return Counts(
        runs=runs,
        pending_proposals=pending,
        open_escalations=open_escalations,
        paused=status.paused is not None,
        records=workspace.head().seq,
        audit_ok=last.ok if last is not None else None,
        audit_seq=last.seq if last is not None else None,
    )
