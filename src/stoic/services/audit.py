"""The audit (DESIGN §8, §9): check the log and every view of it, and act on what is found.

Every audit tells the notifiers its outcome with the log's head, so the head can be kept where
the workspace's writers cannot reach it; a failed audit pauses the workspace, whoever asked
for it (a person, a schedule, the web console).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stoic.core.audit import Anchor, AuditReport
from stoic.core.notifications import Event
from stoic.core.pause import Criterion
from stoic.core.text import counted
from stoic.exceptions import StoicError
from stoic.services.trust import pause
from stoic.store.workspace import Workspace

__all__ = ["Audited", "audit"]


@dataclass(frozen=True, slots=True)
class Audited:
    """What an audit found and did."""

    report: AuditReport
    paused: bool
    """The audit failed and paused the workspace (False when it was paused already)."""
    head: Anchor | None
    """The last record's seq and hash, to keep outside the workspace; None for an empty log."""
    paused_before: Mapping[str, Any] | None
    """The pause in force when the audit began, if the log could tell."""
    unrecorded: str | None = None
    """Why the failure's pause could not be recorded (the log refused the append)."""


def audit(
    workspace: Workspace,
    *,
    repair: bool = False,
    anchors: Sequence[Anchor] = (),
    actor: str = "system:stoic",
) -> Audited:
    """Audit the workspace (with `repair`, mend what can be mended first; each anchor must still
    be in the log), announce the outcome with the head, and pause on a failure."""
    paused_before = None
    with contextlib.suppress(StoicError):  # a log too damaged to fold is the audit's to name
        paused_before = workspace.status().paused
    report = workspace.verify(repair=repair, anchors=anchors)
    _announce(workspace, report)
    if report.ok:
        return Audited(report, False, report.head, paused_before)
    first = report.violations[0]
    try:
        paused = pause(
            workspace,
            reason=f"the audit failed: {first.code.value}: {first.message}",
            criterion=Criterion.AUDIT_FAILURE,
            actor=actor,
            inputs={"violations": len(report.violations)},
        )
    except StoicError as exc:  # the damage the audit names can refuse appends too
        return Audited(report, False, report.head, paused_before, unrecorded=str(exc))
    return Audited(report, paused, report.head, paused_before)


def _announce(workspace: Workspace, report: AuditReport) -> None:
    head = str(report.head) if report.head is not None else None
    if report.ok:
        workspace.announce(
            Event.AUDIT_PASSED,
            f"The audit of {workspace.root} passed: {counted(report.records, 'record')};"
            f" head {head}.",
            data={"records": report.records, "head": head},
        )
        return
    first = report.violations[0]
    workspace.announce(
        Event.AUDIT_FAILED,
        f"The audit of {workspace.root} failed: {counted(len(report.violations), 'violation')};"
        f" first: {first.code.value}: {first.message}",
        data={"violations": len(report.violations), "head": head},
    )
