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

__all__ = ["Audited", "LastAudit", "audit", "last_audit"]

_SHOWN_VIOLATIONS = 20
"""The most violations an `audit` record names; the count is always whole."""


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
    record: bool = False,
) -> Audited:
    """Audit the workspace (with `repair`, mend what can be mended first; each anchor must still
    be in the log), announce the outcome with the head, and pause on a failure.

    With `record`, the outcome is also an `audit` record of `actor`'s: an audit a person asks
    for from the console is on record as theirs, whether or not a notifier is configured."""
    paused_before = None
    with contextlib.suppress(StoicError):  # a log too damaged to fold is the audit's to name
        paused_before = workspace.status().paused
    report = workspace.verify(repair=repair, anchors=anchors)
    if record:
        _record(workspace, report, actor)
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


@dataclass(frozen=True, slots=True)
class LastAudit:
    """The last audit on record: its `audit` record, or the notice of its outcome."""

    ok: bool
    seq: int
    at: str
    actor: str
    violations: int | None
    """How many were found; None where only a notice of the outcome is on record."""
    shown: tuple[Mapping[str, Any], ...] = ()
    """The violations the record names (the first of them), to show a person."""


def last_audit(workspace: Workspace) -> LastAudit | None:
    """The last audit's result the log holds, None when no audit is on record. The notices that
    follow an `audit` record are of that audit, not another."""
    found: LastAudit | None = None
    noticed = False  # `found` is an audit record, and only its notices follow it
    for rec in workspace.records():
        if rec.decision_type == "audit" and rec.decision_outcome in ("passed", "failed"):
            shown = rec.details.get("violations", ())
            found = LastAudit(
                ok=rec.decision_outcome == "passed",
                seq=rec.seq,
                at=rec.decided_at,
                actor=rec.actor,
                violations=int(rec.decision_inputs.get("violations", 0)),
                shown=tuple(v for v in shown if isinstance(v, Mapping)),
            )
            noticed = True
            continue
        event = rec.decision_inputs.get("event") if rec.decision_type == "notification" else None
        if event in (Event.AUDIT_PASSED.value, Event.AUDIT_FAILED.value) and not noticed:
            found = LastAudit(
                ok=event == Event.AUDIT_PASSED.value,
                seq=rec.seq,
                at=rec.decided_at,
                actor=rec.actor,
                violations=None,
            )
        elif rec.decision_type != "notification" and not (
            rec.decision_type == "pause" and found is not None and not found.ok
        ):
            noticed = False
    return found


def _record(workspace: Workspace, report: AuditReport, actor: str) -> None:
    head = str(report.head) if report.head is not None else None
    reason = (
        f"The audit passed: {counted(report.records, 'record')}; head {head}."
        if report.ok
        else f"The audit failed: {counted(len(report.violations), 'violation')};"
        f" first: {report.violations[0].code.value}: {report.violations[0].message}"
    )
    with contextlib.suppress(StoicError):  # the damage the audit names can refuse appends too
        workspace.record(
            "audit",
            "passed" if report.ok else "failed",
            reason,
            source="human" if actor.startswith("human:") else "system",
            actor=actor,
            trigger="explicit",
            inputs={"violations": len(report.violations)},
            details={
                "head": head,
                "records": report.records,
                "violations": [v.to_dict() for v in report.violations[:_SHOWN_VIOLATIONS]],
            },
        )


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
