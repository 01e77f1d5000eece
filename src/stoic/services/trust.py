"""Trust (DESIGN §9): pausing and resuming the workspace, red flags, calibration notes and
incidents.

A red flag and what it brings are one transaction: the flag is recorded, the flags since the
last resume counted, and the third pauses (`stoic.core.pause.flags_pause_due`), so two
processes flagging at once cannot both stop short of the pause.

`refuse_if_paused` is the one pause check: every use case that starts work or grows the queue
calls it before it does anything, so a paused workspace refuses it the same way from any
interface.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoic.core import next_steps
from stoic.core.database_notices import RESUME_LINE
from stoic.core.escalations import Escalation, EscalationMode, EscalationRequest
from stoic.core.next_steps import NextStep
from stoic.core.notifications import Event
from stoic.core.pause import (
    READER_SIGNALS,
    RESUME_PROCEDURES,
    Criterion,
    FlagDue,
    IncidentSeverity,
    PauseDue,
    incident_pause,
    resume_needs_clean_audit,
)
from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.records import Record
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import UsageError, WorkspaceError
from stoic.services import escalations
from stoic.services.escalations import TRACKS
from stoic.services.standing import Standing
from stoic.store import trust
from stoic.store.log import utc_timestamp
from stoic.store.workspace import Workspace

__all__ = [
    "SEVERITIES",
    "Incident",
    "IncidentReport",
    "Standing",
    "calibrate",
    "flag_detected",
    "new_incident",
    "pause",
    "pause_database",
    "pause_for",
    "raise_flag",
    "refuse_if_paused",
    "report_incident",
    "resume",
    "resume_database",
    "resume_work",
    "standing",
    "stop_work",
    "work_standing",
]

SEVERITIES = tuple(severity.value for severity in IncidentSeverity)


@dataclass(frozen=True, slots=True)
class Incident:
    """An incident on record."""

    id: str
    """ISSUE-YYYYMMDD-NNN."""
    severity: IncidentSeverity
    path: Path
    """Its record, written from the template (DESIGN §9)."""
    paused: bool
    """Whether it paused the workspace (moderate and major do, unless already paused)."""
    seq: int = 0
    """The seq of the red flag that put it on record."""


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """A production incident reported: the escalation asking for a track, or settled by one."""

    escalation: Escalation
    track_done: str | None
    """What the chosen track did, in words; None while the escalation asks which track."""


def standing(workspace: Workspace) -> Standing:
    """The workspace's status, caught up with the log, and the batch size in force."""
    status = workspace.status()
    named = status.batch_size
    return Standing(status, named or workspace.settings.queue.batch_size, bool(named))


def database_standing(url: str) -> Standing:
    """Where a PostgreSQL database's log stands, from its status projection row checked
    against the log; a database keeps no settings, so the batch size is the default's unless
    the last resume named one."""
    from stoic.services.log import database  # psycopg only when a database is named
    from stoic.store.config import QueueSettings

    with database(url) as store:
        status = store.projected(WorkspaceStatusProjection()).state
    named = status.batch_size
    return Standing(status, named or QueueSettings().batch_size, bool(named))


def pause_database(
    url: str,
    *,
    reason: str,
    actor: str,
    criterion: Criterion = Criterion.HUMAN_STOP,
    workspace: Workspace | None = None,
) -> bool:
    """Pause a database (a person's stop unless another criterion is named): its workers start
    nothing more and its queue takes no proposal until it is resumed; False when it was paused
    already. Read and recorded in one transaction at the head of its log; the notifiers of
    `workspace` (the one the person works from, if any) are told."""
    if _record_database_pause(url, reason=reason, actor=actor, criterion=criterion):
        if workspace is not None:
            workspace.announce(
                Event.PAUSED,
                f"The database is paused ({criterion}): {reason}",
                data={"criterion": criterion, "database": True},
                lines=[RESUME_LINE],
            )
        return True
    return False


def _record_database_pause(url: str, *, reason: str, actor: str, criterion: Criterion) -> bool:
    from stoic.store.pg_store import PostgresStore  # psycopg only when a database is named
    from stoic.store.pg_work import PauseFollower

    decision = trust.pause_decision(reason=reason, criterion=criterion, actor=actor)
    with PostgresStore.open(url) as store, store.writing("record a pause") as writing:
        if PauseFollower().check(writing.conn) is not None:  # the log's pause records decide
            return False
        writing.append([decision])
        return True


def resume_database(
    url: str,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
    workspace: Workspace | None = None,
) -> Record:
    """Resume a paused database (see `_record_database_resume`); the notifiers of `workspace`,
    if any, are told."""
    record = _record_database_resume(
        url, procedure=procedure, reason=reason, actor=actor, batch_size=batch_size
    )
    if workspace is not None:
        workspace.announce(
            Event.RESUMED,
            f"The database was resumed by {actor} ({procedure}): {reason}",
            data={"procedure": procedure, "database": True},
        )
    return record


def _record_database_resume(
    url: str, *, procedure: str, reason: str, actor: str, batch_size: int | None = None
) -> Record:
    """Resume a paused database, naming the recovery procedure followed, by the rules of a
    workspace's resume; a verification batch needs its audit (`stoic audit --db`) clean — of
    the log with the very pause it resumes, checked again under the head's lock."""
    from stoic.store.config import QueueSettings
    from stoic.store.pg_audit import audit_database as audit_records
    from stoic.store.pg_store import PostgresStore
    from stoic.store.pg_work import PauseFollower

    if procedure not in RESUME_PROCEDURES:
        raise UsageError(
            f"unknown procedure {procedure!r} (allowed: {', '.join(RESUME_PROCEDURES)})"
        )
    with PostgresStore.open(url) as store:
        with store.connection() as conn:
            before = PauseFollower().check(conn)
        audited = None
        if before is not None and resume_needs_clean_audit(procedure, before.criterion):
            report = audit_records(store)
            if not report.ok:
                raise trust.unclean_audit(len(report.violations))
            audited = before.seq
        with store.writing("record a resume") as writing:
            in_force = PauseFollower().check(writing.conn)
            status = writing.projected(WorkspaceStatusProjection())
            if in_force is not None and (status.paused or {}).get("seq") != in_force.seq:
                raise WorkspaceError(
                    "the database's status row does not show the pause its log has in force:"
                    f" run {next_steps.audit()} --db"
                )
            if (
                in_force is not None
                and resume_needs_clean_audit(procedure, in_force.criterion)
                and audited != in_force.seq
            ):
                raise UsageError("the pause changed while it was audited: resume again")
            decision = trust.resume_decision(
                status,
                procedure=procedure,
                reason=reason,
                actor=actor,
                batch_size=batch_size,
                default_batch_size=QueueSettings().batch_size,
            )
            return writing.append([decision])[0]


def work_standing(workspace: Workspace) -> Standing:
    """Where the pause over this workspace's work stands, for the console: its database's
    when its `stoic.toml` names one (its runs and queue are there), else its own."""
    url = workspace.settings.store.url
    return database_standing(url) if url else standing(workspace)


def stop_work(workspace: Workspace, *, reason: str, actor: str) -> bool:
    """A person's stop of this workspace's work: its database's pause when it names one."""
    url = workspace.settings.store.url
    if url:
        return pause_database(url, reason=reason, actor=actor, workspace=workspace)
    return pause(workspace, reason=reason, actor=actor)


def resume_work(
    workspace: Workspace,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
) -> Record:
    """Resume this workspace's work: its database when it names one."""
    url = workspace.settings.store.url
    if url:
        return resume_database(
            url,
            procedure=procedure,
            reason=reason,
            actor=actor,
            batch_size=batch_size,
            workspace=workspace,
        )
    return resume(workspace, procedure=procedure, reason=reason, actor=actor, batch_size=batch_size)


def refuse_if_paused(workspace: Workspace, refused: NextStep) -> None:
    """Refuse the command `refused` names (`next_steps.run()`, …) while the workspace is
    paused."""
    trust.refuse_if_paused(workspace, refused)


def pause(
    workspace: Workspace,
    *,
    reason: str,
    actor: str,
    criterion: Criterion = Criterion.HUMAN_STOP,
    inputs: dict[str, Any] | None = None,
) -> bool:
    """Pause the workspace (a person's stop, unless another criterion is named); False when it
    was paused already."""
    return trust.pause(workspace, reason=reason, criterion=criterion, actor=actor, inputs=inputs)


def pause_for(workspace: Workspace, due: PauseDue) -> bool:
    """Record the pause a rule called for (a rejection rate, a failed action, …); False when
    the workspace was paused already."""
    return trust.pause_for(workspace, due)


def resume(
    workspace: Workspace,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
) -> Record:
    """Resume a paused workspace, naming the recovery procedure followed; returns the record."""
    if procedure not in RESUME_PROCEDURES:
        raise UsageError(
            f"unknown procedure {procedure!r} (allowed: {', '.join(RESUME_PROCEDURES)})"
        )
    return trust.resume(
        workspace, procedure=procedure, reason=reason, actor=actor, batch_size=batch_size
    )


def raise_flag(
    workspace: Workspace,
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
) -> bool:
    """A reviewer's red flag; True when it paused the workspace (three since the last resume)."""
    if signal not in READER_SIGNALS:
        raise UsageError(unknown_word("signal", signal, READER_SIGNALS, listed="signals"))
    return trust.flag(workspace, signal=signal, actor=actor, note=note, session=session)


def flag_detected(
    workspace: Workspace, due: FlagDue, *, actor: str = "system:stoic", session: str | None = None
) -> bool:
    """A red flag stoic raised itself (a rule of `stoic.core.pause` saw it); True when it
    paused the workspace."""
    return trust.flag(
        workspace, signal=due.signal, actor=actor, note=due.note, session=session, detected=True
    )


def calibrate(workspace: Workspace, *, note: str, actor: str) -> Record:
    """A reviewer's calibration note: on record and in calibration_log.md; returns the record."""
    return trust.calibrate(workspace, note=note, actor=actor)


def new_incident(
    workspace: Workspace,
    *,
    severity: str,
    title: str,
    description: str,
    actor: str,
) -> Incident:
    """Write an incident record from the template and act on its severity: a minor one is
    noted for calibration, a moderate or major one pauses the workspace."""
    if severity not in SEVERITIES:
        raise UsageError(f"unknown severity {severity!r} (allowed: {', '.join(SEVERITIES)})")
    criterion = incident_pause(IncidentSeverity(severity))
    if not title.strip():
        raise UsageError("an incident needs a title")
    incident_id = trust.next_incident_id(workspace, time.strftime("%Y%m%d", time.gmtime()))
    detected_by = "reviewer" if actor.startswith("human:") else "system"
    body = _incident_text(incident_id, severity, title, description, detected_by, actor)
    path = trust.write_incident_file(workspace, f"{incident_id}.md", body)
    record = workspace.record(
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
    paused = False
    if criterion is None:
        trust.note_calibration(
            workspace, actor=actor, text=f"Minor incident {incident_id}: {title.strip()}"
        )
    else:
        paused = trust.pause(
            workspace,
            reason=f"{severity} incident {incident_id}: {title.strip()}",
            criterion=criterion,
            inputs={"incident": incident_id},
        )
    return Incident(incident_id, IncidentSeverity(severity), path, paused, record.seq)


def _incident_text(
    incident_id: str, severity: str, title: str, description: str, detected_by: str, actor: str
) -> str:
    return (
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


def report_incident(
    workspace: Workspace, description: str, *, track: str | None, actor: str
) -> IncidentReport:
    """A production incident: an escalation asking which track, or with `track` that track
    followed and the escalation settled by it."""
    if not description.strip():
        raise UsageError("an incident report needs a description")
    if track is not None and track not in TRACKS:  # before an escalation is raised for it
        raise UsageError(f"unknown track {track!r} (allowed: {', '.join(TRACKS)})")
    request = EscalationRequest(
        mode=EscalationMode.PRODUCTION_INCIDENT,
        question="Which track should this incident take: next-cycle or hotfix?",
        context=description.strip(),
        title=f"Production incident: {description.strip()[:60]}",
    )
    escalation = escalations.raise_(workspace, request, actor=actor)
    if track is None:
        return IncidentReport(escalation, None)
    answered = escalations.answer(
        workspace, escalation.id, decision="routed", track=track, actor=actor
    )
    return IncidentReport(answered.escalation, answered.track_done)
