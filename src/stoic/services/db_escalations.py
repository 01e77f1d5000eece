"""Escalations of a database (DESIGN §9, §13): list, get with its briefing, raise, answer.

A task of a database run that hands its decision to a person has its escalation raised by the
worker that ran it, in the transaction of its evaluation (`stoic.run.fleet_review`). A person's
answer is checked and appended in one transaction at the head of the log, and takes the run up
in that transaction: routed, the task runs again on any worker with the note as its guidance
(`$STOIC_GUIDANCE`); aborted, its failure stands. A database run's plan is its recorded copy,
which no answer replaces: `amended` is refused, saying what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from stoic.core.escalations import Escalation, EscalationRequest, is_escalation_id
from stoic.exceptions import UsageError
from stoic.run.fleet_review import take_up_answered
from stoic.store.pg_escalations import (
    answer_at,
    briefing_at,
    escalation_state,
    raise_at,
    stored_escalation,
)
from stoic.store.pg_store import PostgresStore

__all__ = [
    "AnsweredInDatabase",
    "answer",
    "briefing",
    "escalation",
    "escalations",
    "raise_",
]


@dataclass(frozen=True, slots=True)
class AnsweredInDatabase:
    """What answering a database's escalation did."""

    escalation: Escalation
    """The escalation as the answer left it (still open when it was passed on)."""
    run_taken_up: str | None
    """What the answer did to its run, in words, when it took the run up or ended it again."""


def escalations(url: str, *, open_only: bool = False) -> list[Escalation]:
    """The database's escalations, oldest first (all, or only the open ones)."""
    with PostgresStore.open(url) as store, store.connection() as conn:
        rows = list(escalation_state(conn).escalations.values())
    rows.sort(key=lambda item: item.seq)
    return [row for row in rows if row.open] if open_only else rows


def escalation(url: str, escalation_id: str) -> Escalation:
    """One escalation of the database; an unknown id is refused."""
    _check_id(escalation_id)
    with PostgresStore.open(url) as store, store.connection() as conn:
        return stored_escalation(conn, escalation_id)


def answer(
    url: str,
    escalation_id: str,
    *,
    decision: str,
    actor: str,
    note: str = "",
    to: str | None = None,
) -> AnsweredInDatabase:
    """Answer an escalation of the database: routed, escalated (passed on, stays open) or
    aborted; two people answering at once: the first wins, the second is told who did."""
    _check_id(escalation_id)
    if decision == "amended":
        raise UsageError(
            "a database run's plan is the copy its start recorded, which no answer replaces:"
            " answer routed (the task runs again with your note) or aborted, and start a new"
            " run of the amended plan"
        )
    with PostgresStore.open(url) as store, store.writing("record an answer") as writing:
        answered = answer_at(writing, escalation_id, decision, note=note, actor=actor, to=to)
        return AnsweredInDatabase(answered, take_up_answered(writing, answered, actor))


def raise_(url: str, request: EscalationRequest, *, actor: str, project: str) -> Escalation:
    """A person's (or an agent's) escalation about the work, in the database: one question,
    about no task (a database run's task escalates itself, from the task)."""
    with PostgresStore.open(url) as store, store.writing("raise an escalation") as writing:
        return raise_at(writing, request, actor=actor, run_id=None, task_id=None, project=project)


def briefing(url: str, escalation_id: str) -> tuple[Escalation, str]:
    """One escalation of the database and its briefing, the one `stoic export` writes."""
    _check_id(escalation_id)
    with PostgresStore.open(url) as store, store.connection() as conn:
        item = stored_escalation(conn, escalation_id)
        return item, briefing_at(conn, item)


def _check_id(escalation_id: str) -> None:
    """A malformed id says so before any connection is made."""
    if not is_escalation_id(escalation_id):
        raise UsageError(f"{escalation_id!r} is not an escalation id (they look like ESC-001)")
