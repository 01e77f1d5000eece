"""Escalations in a database (DESIGN §9, §13): the records of a workspace's escalations
(`stoic.store.escalations`), read and appended in one transaction at the head of the log.

Escalations are folded from the log's escalation records inside the transaction that holds the
head row, so an id is never handed out twice and an answer is checked against what the log
says when it is appended. The briefing a workspace writes as a file is a projection of the
record; a database keeps only the record, and `stoic export` writes the briefing from it.
"""

from __future__ import annotations

import orjson

from stoic.core.escalations import (
    Escalation,
    EscalationRequest,
    EscalationState,
    question_error,
)
from stoic.exceptions import UsageError
from stoic.store.escalations import (
    answer_decision,
    briefing_text,
    check_answer,
    escalation_in,
    raised_decision,
    title_of,
)
from stoic.store.pg_driver import Conn
from stoic.store.pg_store import AtHead

__all__ = ["answer_at", "briefing_at", "escalation_state", "raise_at", "stored_escalation"]


def escalation_state(conn: Conn) -> EscalationState:
    """Every escalation, folded from the escalation records `conn`'s transaction sees."""
    state = EscalationState()
    rows = conn.execute(
        "SELECT line FROM decision_log WHERE decision_type = 'escalation' ORDER BY seq"
    ).fetchall()
    state.feed([orjson.loads(line) for (line,) in rows])
    return state


def stored_escalation(conn: Conn, escalation_id: str) -> Escalation:
    """One escalation as the log tells it."""
    return escalation_in(escalation_state(conn), escalation_id)


def briefing_at(conn: Conn, item: Escalation) -> str:
    """The briefing `item`'s record wrote, as a workspace writes it (`briefing_text`), from
    the task's records before it; its To Proceed answers in the database."""
    history = []
    if item.run_id is not None and item.task_id is not None:
        rows = conn.execute(
            "SELECT line FROM decision_log WHERE run_id = %s AND task_id = %s AND seq < %s"
            " ORDER BY seq",
            (item.run_id, item.task_id, item.seq),
        ).fetchall()
        history = [orjson.loads(line) for (line,) in rows]
    return briefing_text(item, history, database=True)


def raise_at(
    writing: AtHead,
    request: EscalationRequest,
    *,
    actor: str,
    run_id: str | None,
    task_id: str | None,
    project: str,
) -> Escalation:
    """Open an escalation, in the transaction at hand: for a run's task (a worker's end of the
    task that asked), or a person's about the work; a request without exactly one question is
    refused."""
    problem = question_error(request.question)
    if problem is not None:
        raise UsageError(f"escalation refused: {problem}")
    state = escalation_state(writing.conn)
    escalation_id = state.next_id()
    decision = raised_decision(
        escalation_id,
        request,
        actor=actor,
        run_id=run_id,
        task_id=task_id,
        title=request.title or title_of(request, task_id),
        project=project,
    )
    state.feed([record._asdict() for record in writing.append([decision])])
    return state.escalations[escalation_id]


def answer_at(
    writing: AtHead,
    escalation_id: str,
    decision: str,
    *,
    note: str,
    actor: str,
    to: str | None = None,
) -> Escalation:
    """Record a person's answer, checked against the log under the head's lock: an unknown or
    closed escalation, or one answered meanwhile, is refused with who answered it."""
    state = escalation_state(writing.conn)
    current, chosen = check_answer(
        state, escalation_id, decision, noted=bool(note.strip()), amending=False, to=to
    )
    answer = answer_decision(current, chosen, note=note, actor=actor, to=to)
    state.feed([record._asdict() for record in writing.append([answer])])
    return state.escalations[escalation_id]
