"""Trust's records and files (DESIGN §9): pause and resume records, red flags, and the files
beside them, calibration_log.md and incidents/.

What a flag or a failure brings about (a pause at the third flag, after a failed action …) is
decided by the trust and queue services from the rules in `stoic.core.pause`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.notifications import Event
from stoic.core.pause import (
    READER_SIGNALS,
    Criterion,
    PauseDue,
    flags_pause_due,
    resume_needs_clean_audit,
)
from stoic.core.projection import WorkspaceStatus
from stoic.core.records import Decision
from stoic.core.text import counted
from stoic.exceptions import UsageError, WorkspaceNotWritable, WorkspacePaused
from stoic.store.atomic import append_durably, atomic_write
from stoic.store.confined import read_confined
from stoic.store.log import utc_timestamp

if TYPE_CHECKING:
    from stoic.core.next_steps import NextStep
    from stoic.core.records import Record
    from stoic.store.handle import WorkspaceHandle as Workspace

__all__ = [
    "add_to_next_cycle",
    "calibrate",
    "flag",
    "flag_decision",
    "incident_file",
    "next_incident_id",
    "note_calibration",
    "pause",
    "pause_decision",
    "pause_for",
    "record_flag",
    "refuse_if_paused",
    "resume",
    "resume_decision",
    "unclean_audit",
    "write_incident_file",
]


def pause_decision(
    *, reason: str, criterion: Criterion, actor: str, inputs: dict[str, Any] | None = None
) -> Decision:
    """The record of a pause, whichever backend keeps it."""
    human = actor.startswith("human:")
    return Decision(
        decision_type="pause",
        decision_outcome="paused",
        decision_reason=reason,
        decision_source="human" if human else "system",
        actor=actor,
        decision_trigger="explicit" if human else "reactive",
        decision_inputs={"criterion": criterion, **(inputs or {})},
    )


def pause(
    workspace: Workspace,
    *,
    reason: str,
    criterion: Criterion,
    actor: str = "system:stoic",
    inputs: dict[str, Any] | None = None,
) -> bool:
    """Record a pause (the queue is left as it is); False when already paused."""
    with workspace.transaction():
        if workspace.status().paused is not None:
            return False
        workspace.record_many(
            [pause_decision(reason=reason, criterion=criterion, actor=actor, inputs=inputs)]
        )
        workspace.sync_projections()
    workspace.announce(
        Event.PAUSED,
        f"The workspace is paused ({criterion}): {reason}",
        data={"criterion": criterion},
        lines=[f"{next_steps.resume(procedure='…', reason='…')} once it is dealt with"],
    )
    return True


def refuse_if_paused(workspace: Workspace, refused: NextStep) -> None:
    """Refuse the command `refused` names while the workspace is paused."""
    paused = workspace.status().paused
    if paused is not None:
        raise WorkspacePaused(
            f"the workspace is paused ({paused['reason']}); {refused} is refused until"
            f" {next_steps.resume()}"
        )


def pause_for(workspace: Workspace, due: PauseDue) -> bool:
    """Record the pause a rule of `stoic.core.pause` called for; False when already paused."""
    return pause(workspace, reason=due.reason, criterion=due.criterion, inputs=dict(due.inputs))


def resume(
    workspace: Workspace,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
) -> Record:
    """Resume, naming the procedure followed; a verification batch needs a clean audit first.

    Returns the resume record."""
    status = workspace.status()
    decision = resume_decision(
        status,
        procedure=procedure,
        reason=reason,
        actor=actor,
        batch_size=batch_size,
        default_batch_size=workspace.settings.queue.batch_size,
    )
    if resume_needs_clean_audit(procedure, (status.paused or {}).get("criterion")):
        report = workspace.verify()
        if not report.ok:
            raise unclean_audit(len(report.violations))
    record = workspace.record_many([decision])[0]
    workspace.sync_projections()
    workspace.announce(
        Event.RESUMED,
        f"The workspace was resumed by {actor} ({procedure}): {reason}",
        data={"procedure": procedure},
    )
    return record


def resume_decision(
    status: WorkspaceStatus,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None,
    default_batch_size: int,
) -> Decision:
    """The record of a resume from the pause `status` shows, whichever backend keeps it;
    refused when nothing is paused or the batch size does not go with the procedure (the
    clean audit a verification batch needs is the caller's to check)."""
    paused = status.paused
    if paused is None:
        raise UsageError("the workspace is not paused")
    if procedure == "smaller-batch" and batch_size is None:
        raise UsageError("--procedure smaller-batch needs --batch-size N")
    if procedure != "smaller-batch" and batch_size is not None:
        raise UsageError("--batch-size goes with --procedure smaller-batch")
    current = status.batch_size or default_batch_size
    if batch_size is not None and batch_size >= current:
        raise UsageError(
            f"a smaller batch: --batch-size must be below the current {current}, not {batch_size}"
        )
    return Decision(
        decision_type="pause",
        decision_outcome="resumed",
        decision_reason=reason,
        decision_source="human",
        actor=actor,
        decision_trigger="explicit",
        decision_inputs={
            "procedure": procedure,
            "paused_by": paused.get("criterion"),
            **({"batch_size": batch_size} if batch_size is not None else {}),
        },
    )


def unclean_audit(violations: int) -> UsageError:
    """The refusal of a resume that needs a clean audit, when it is not clean."""
    return UsageError(
        f"the audit is not clean ({counted(violations, 'violation')}): run"
        f" {next_steps.audit()}, repair what it names, then resume"
    )


def flag_decision(
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
    detected: bool = False,
) -> Decision:
    """The record of a red flag, whichever backend keeps it."""
    what = READER_SIGNALS.get(signal, signal)
    return Decision(
        decision_type="red_flag",
        decision_outcome="raised",
        decision_reason=f"Red flag: {what}" + (f" — {note}" if note else "") + ".",
        decision_source="system" if detected else "human",
        actor=actor,
        decision_trigger="reactive" if detected else "explicit",
        decision_inputs={
            "signal": signal,
            "detected": detected,
            **({"session": session} if session else {}),
            **({"note": note} if note else {}),
        },
    )


def record_flag(
    workspace: Workspace,
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
    detected: bool = False,
) -> int:
    """Record a red flag; returns the flags since the last resume, this one included, read
    in the same transaction as the append (what they bring is the trust service's to say)."""
    decision = flag_decision(
        signal=signal, actor=actor, note=note, session=session, detected=detected
    )
    with workspace.transaction():
        workspace.record_many([decision])
        return workspace.status().flags_since_resume


def flag(
    workspace: Workspace,
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
    detected: bool = False,
) -> bool:
    """Record a red flag and, when it is the third since the last resume, the pause the rule
    of `stoic.core.pause` calls for — one transaction, so the count cannot change in between.
    True when it paused the workspace."""
    with workspace.transaction():
        flags = record_flag(
            workspace, signal=signal, actor=actor, note=note, session=session, detected=detected
        )
        due = flags_pause_due(flags, signal)
        return due is not None and pause_for(workspace, due)


def note_calibration(workspace: Workspace, *, actor: str, text: str) -> None:
    """Append an entry to calibration_log.md (a projection of the records that name it)."""
    with workspace.projecting("calibration_log.md"):
        append_durably(
            workspace.root / "calibration_log.md",
            f"\n## {utc_timestamp()} — {actor}\n\n{text}\n".encode(),
            root=workspace.root,
        )


def calibrate(workspace: Workspace, *, note: str, actor: str) -> Record:
    """A reviewer's calibration note: appended to calibration_log.md, and on record; returns
    the record."""
    if not note.strip():
        raise UsageError("a calibration note cannot be empty")
    record = workspace.record(
        "red_flag",
        "noted",
        f"Calibration note by {actor}: {note.strip()}",
        source="human",
        actor=actor,
        trigger="explicit",
        inputs={"kind": "calibration"},
    )
    note_calibration(workspace, actor=actor, text=note.strip())
    return record


# -- incident files ----------------------------------------------------------------------------


def next_incident_id(workspace: Workspace, day: str) -> str:
    """The next free ISSUE-<day>-NNN among the incident records of that day."""
    folder = workspace.root / "incidents"
    taken = [int(p.stem.rsplit("-", 1)[1]) for p in folder.glob(f"ISSUE-{day}-*.md")]
    return f"ISSUE-{day}-{max(taken, default=0) + 1:03d}"


def incident_file(workspace: Workspace, name: str) -> Path:
    """Where incidents/<name> is."""
    return workspace.root / "incidents" / name


def write_incident_file(workspace: Workspace, name: str, text: str) -> Path:
    """Write incidents/<name> (replaced atomically); returns where it is."""
    path = incident_file(workspace, name)
    atomic_write(path, text.encode(), root=workspace.root)
    return path


def add_to_next_cycle(workspace: Workspace, entry: str) -> Path:
    """Add a line to incidents/next-cycle.md, what the next plan must take up."""
    path = incident_file(workspace, "next-cycle.md")
    try:  # never read through a link: what it points to would be copied in
        previous = read_confined(workspace.root, path).decode("utf-8", errors="replace")
    except FileNotFoundError:
        previous = "# For the next cycle\n"
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot update {path}: {exc.strerror or exc}") from exc
    atomic_write(path, (previous + f"\n- {entry}\n").encode(), root=workspace.root)
    return path
