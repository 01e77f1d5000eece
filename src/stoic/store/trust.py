"""Pause and resume (DESIGN §9): the workspace stops taking new work until a person says so."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core.notifications import Event
from stoic.core.pause import (
    READER_SIGNALS,
    Criterion,
    IncidentSeverity,
    flags_pause,
    incident_pause,
    resume_needs_clean_audit,
)
from stoic.exceptions import UsageError
from stoic.store.atomic import append_durably, atomic_write
from stoic.store.log import utc_timestamp

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = [
    "calibrate",
    "new_incident",
    "pause",
    "raise_flag",
    "resume",
]

SEVERITIES = tuple(severity.value for severity in IncidentSeverity)


def pause(
    workspace: Workspace,
    *,
    reason: str,
    criterion: Criterion,
    actor: str = "system:stoic",
    inputs: dict[str, Any] | None = None,
) -> bool:
    """Record a pause (the queue is left as it is); False when already paused."""
    if workspace.status().paused is not None:
        return False
    human = actor.startswith("human:")
    workspace.record(
        "pause",
        "paused",
        reason,
        source="human" if human else "system",
        actor=actor,
        trigger="explicit" if human else "reactive",
        inputs={"criterion": criterion, **(inputs or {})},
    )
    workspace.sync_projections()
    workspace.announce(
        Event.PAUSED,
        f"The workspace is paused ({criterion}): {reason}",
        data={"criterion": criterion},
        lines=["`stoic resume --procedure … --reason …` once it is dealt with"],
    )
    return True


def resume(
    workspace: Workspace,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
) -> None:
    """Resume, naming the procedure followed; a verification batch needs a clean audit first."""
    status = workspace.status()
    paused = status.paused
    if paused is None:
        raise UsageError("the workspace is not paused")
    if procedure == "smaller-batch" and batch_size is None:
        raise UsageError("--procedure smaller-batch needs --batch-size N")
    if procedure != "smaller-batch" and batch_size is not None:
        raise UsageError("--batch-size goes with --procedure smaller-batch")
    current = status.batch_size or workspace.settings.queue.batch_size
    if batch_size is not None and batch_size >= current:
        raise UsageError(
            f"a smaller batch: --batch-size must be below the current {current}, not {batch_size}"
        )
    if resume_needs_clean_audit(procedure, paused.get("criterion")):
        report = workspace.audit()
        if not report.ok:
            count = len(report.violations)
            raise UsageError(
                f"the audit is not clean ({count} violation{'s' if count != 1 else ''}): run"
                " `stoic audit`, repair what it names, then resume"
            )
    workspace.record(
        "pause",
        "resumed",
        reason,
        source="human",
        actor=actor,
        trigger="explicit",
        inputs={
            "procedure": procedure,
            "paused_by": paused.get("criterion"),
            **({"batch_size": batch_size} if batch_size is not None else {}),
        },
    )
    workspace.sync_projections()
    workspace.announce(
        Event.RESUMED,
        f"The workspace was resumed by {actor} ({procedure}): {reason}",
        data={"procedure": procedure},
    )


def raise_flag(
    workspace: Workspace,
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
    detected: bool = False,
) -> bool:
    """Record a red flag; returns True when it paused the workspace.

    Three flags since the last resume pause it, wherever they were raised: quitting and
    restarting `stoic review` does not start the count again (`session` is only recorded).
    The flag, the count and the pause it brings are one transaction on the log.
    """
    what = READER_SIGNALS.get(signal, signal)
    with workspace.log.locked():
        workspace.record(
            "red_flag",
            "raised",
            f"Red flag: {what}" + (f" — {note}" if note else "") + ".",
            source="system" if detected else "human",
            actor=actor,
            trigger="reactive" if detected else "explicit",
            inputs={
                "signal": signal,
                "detected": detected,
                **({"session": session} if session else {}),
                **({"note": note} if note else {}),
            },
        )
        count = workspace.status().flags_since_resume
        if not flags_pause(count):
            return False
        return pause(
            workspace,
            reason=f"{count} red flags since the last resume (the last: {what})",
            criterion=Criterion.RED_FLAGS,
            inputs={"flags": count},
        )


def _append(root: Path, path: Path, text: str) -> None:
    append_durably(path, text.encode(), root=root)


def calibrate(workspace: Workspace, *, note: str, actor: str) -> None:
    """A reviewer's calibration note: appended to calibration_log.md, and on record."""
    if not note.strip():
        raise UsageError("a calibration note cannot be empty")
    workspace.record(
        "red_flag",
        "noted",
        f"Calibration note by {actor}: {note.strip()}",
        source="human",
        actor=actor,
        trigger="explicit",
        inputs={"kind": "calibration"},
    )
    with workspace.projecting("calibration_log.md"):
        _append(
            workspace.root,
            workspace.root / "calibration_log.md",
            f"\n## {utc_timestamp()} — {actor}\n\n{note.strip()}\n",
        )


def new_incident(
    workspace: Workspace,
    *,
    severity: str,
    title: str,
    description: str,
    actor: str,
) -> Path:
    """Write an incident record (DESIGN §9) and act on its severity; returns its file."""
    if severity not in SEVERITIES:
        raise UsageError(f"unknown severity {severity!r} (allowed: {', '.join(SEVERITIES)})")
    criterion = incident_pause(IncidentSeverity(severity))
    if not title.strip():
        raise UsageError("an incident needs a title")
    folder = workspace.root / "incidents"
    day = time.strftime("%Y%m%d", time.gmtime())
    taken = [int(p.stem.rsplit("-", 1)[1]) for p in folder.glob(f"ISSUE-{day}-*.md")]
    incident_id = f"ISSUE-{day}-{max(taken, default=0) + 1:03d}"
    path = folder / f"{incident_id}.md"
    detected_by = "reviewer" if actor.startswith("human:") else "system"
    body = (
        f"# {incident_id}: {title.strip()}\n\n"
        f"**Severity:** {severity}\n"
        f"**Detected:** {utc_timestamp()}\n"
        f"**Detected By:** {detected_by} ({actor})\n\n"
        f"## Description\n\n{description.strip() or '(to fill in)'}\n\n"
        "## Impact\n\n(to fill in)\n\n"
        "## Resolution\n\n(to fill in)\n\n"
        "## Prevention\n\n(to fill in)\n\n"
        "## Status\n\n"
        "- [x] detected\n- [ ] investigated\n- [ ] resolved\n- [ ] prevention implemented\n"
    )
    atomic_write(path, body.encode(), root=workspace.root)
    workspace.record(
        "red_flag",
        "raised",
        f"Incident {incident_id} ({severity}): {title.strip()}.",
        source="human" if detected_by == "reviewer" else "system",
        actor=actor,
        trigger="explicit",
        inputs={"signal": "incident", "incident": incident_id, "severity": severity},
        details={"file": f"incidents/{incident_id}.md"},
    )
    workspace.sync_projections()
    if criterion is None:
        with workspace.projecting("calibration_log.md"):
            _append(
                workspace.root,
                workspace.root / "calibration_log.md",
                f"\n## {utc_timestamp()} — {actor}\n\nMinor incident {incident_id}:"
                f" {title.strip()}\n",
            )
    else:
        pause(
            workspace,
            reason=f"{severity} incident {incident_id}: {title.strip()}",
            criterion=criterion,
            inputs={"incident": incident_id},
        )
    return path
