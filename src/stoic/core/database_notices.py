"""What a database's records are worth telling people about (DESIGN §11, §13), as pure data.

Past one host, the records that call for a person — a run that ended or waits, a suggestion
waiting for review, an escalation, a pause the system made — are written by workers that
have no notifiers of their own. `stoic serve` of a workspace that names the database follows
its log and tells the workspace's notifiers of each; this module says which records those are
and what each notice says. A person's own command (a stop, a resume) tells the notifiers of
the workspace it runs from: the follower leaves those records alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stoic.core import next_steps
from stoic.core.notifications import Event

__all__ = ["RESUME_LINE", "DatabaseNotice", "database_notice"]

RESUME_LINE = f"{next_steps.resume(procedure='…', reason='…', database=True)} once it is dealt with"
"""What a person does next about a database's pause, whoever paused it."""

_RUN_ENDS = {
    "completed": Event.RUN_COMPLETED,
    "failed": Event.RUN_FAILED,
    "awaiting_approval": Event.RUN_AWAITING_HUMAN,
    "awaiting_human": Event.RUN_AWAITING_HUMAN,
}


@dataclass(frozen=True, slots=True)
class DatabaseNotice:
    """One notice a database record calls for."""

    event: Event
    text: str
    run_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    """Details, with the record's place in the database's log (`database_seq`)."""
    lines: tuple[str, ...] = ()
    """What a person does next, from the workspace that names the database."""


def database_notice(record: Mapping[str, Any]) -> DatabaseNotice | None:
    """The notice `record` (a database log record, as a mapping) calls for, or None."""
    kind, outcome = record.get("decision_type"), record.get("decision_outcome")
    actor = str(record.get("actor") or "")
    run_id = record.get("run_id")
    reason = str(record.get("decision_reason") or "")
    place = {"database_seq": int(record["seq"]), "database": True}
    if kind == "run_lifecycle" and outcome in _RUN_ENDS:
        event = _RUN_ENDS[str(outcome)]
        lines = () if run_id is None else (next_steps.run_status(str(run_id)).text,)
        return DatabaseNotice(event, reason, run_id, {**place, "status": str(outcome)}, lines)
    passed_on = (record.get("decision_inputs") or {}).get("decision") == "escalated"
    if kind == "escalation" and outcome == "raised" and not passed_on:  # a person's pass-on
        escalation = str(record.get("escalation_id"))
        return DatabaseNotice(
            Event.ESCALATION_RAISED,
            _named(escalation, reason),
            run_id,
            {**place, "escalation_id": escalation, "task_id": record.get("task_id")},
            (next_steps.answer_escalation(escalation, "routed", note="…").text,),
        )
    if kind == "proposal" and outcome == "created":
        proposal = str(record.get("proposal_id"))
        return DatabaseNotice(
            Event.SUGGESTION_CREATED,
            _named(proposal, reason),
            run_id,
            {**place, "proposal_id": proposal, "task_id": record.get("task_id")},
            (f"{next_steps.show_proposal(proposal).text}, then approve or reject it",),
        )
    if kind == "pause" and outcome == "paused" and not actor.startswith("human:"):
        criterion = (record.get("decision_inputs") or {}).get("criterion")
        return DatabaseNotice(
            Event.PAUSED,
            f"The database is paused ({criterion}): {reason}",
            None,
            {**place, "criterion": criterion},
            (RESUME_LINE,),
        )
    return None


def _named(what: str, reason: str) -> str:
    """The record's reason, naming what it is about first (once)."""
    return reason if reason.startswith(what) else f"{what}: {reason}"
