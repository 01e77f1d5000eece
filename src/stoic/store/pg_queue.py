"""The review queue in a database: the checks and records of the files' queue
(`stoic.store.queue_decisions`), read and appended in one transaction at the head of the log.

The queue is folded from the log's proposal records inside the transaction that holds the head
row, so what is checked is what the log says when the decision is appended: two people
deciding one proposal at once, on any hosts, are one after the other here, and the second is
told who decided and when.
"""

from __future__ import annotations

import time

import orjson

from stoic.core import next_steps
from stoic.core.pause import (
    PauseDue,
    flags_pause_due,
    growth_flag,
    reason_key,
    rejection_rate_pause,
    repeated_reason_flag,
)
from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.proposals import Proposal, ProposalStatus, QueueState
from stoic.core.records import Record
from stoic.exceptions import ProposalNotFound, UsageError, WorkspacePaused
from stoic.store.pg_driver import Conn
from stoic.store.pg_store import AtHead
from stoic.store.pg_work import PauseFollower
from stoic.store.queue_decisions import (
    ProposalRequest,
    check_id,
    created_decision,
    decided_decision,
)
from stoic.store.trust import flag_decision, pause_decision

__all__ = ["decide_at", "flag_at", "pause_at", "propose_at", "queue_state", "stored_proposal"]


def queue_state(conn: Conn) -> QueueState:
    """Every proposal, folded from the proposal records `conn`'s transaction sees."""
    state = QueueState()
    rows = conn.execute(
        "SELECT line FROM decision_log WHERE decision_type = 'proposal' ORDER BY seq"
    ).fetchall()
    state.feed([orjson.loads(line) for (line,) in rows])
    return state


def stored_proposal(conn: Conn, proposal_id: str) -> Proposal:
    """One proposal as the log tells it."""
    check_id(proposal_id)
    proposal = queue_state(conn).proposals.get(proposal_id)
    if proposal is None:
        raise ProposalNotFound(f"no proposal {proposal_id}")
    return proposal


def propose_at(writing: AtHead, request: ProposalRequest, *, batch_size: int) -> Proposal:
    """A new pending proposal, appended in `writing`; refused while the database is paused
    (a pause stops the queue's growth) or with a source the log does not know. A queue that
    outgrows review raises its red flag in the same transaction."""
    paused = PauseFollower().check(writing.conn)
    if paused is not None:
        raise WorkspacePaused(
            f"the database is paused ({paused.reason}, record #{paused.seq}):"
            f" {next_steps.propose()} is refused until it is resumed"
        )
    state = queue_state(writing.conn)
    for source in request.sources:
        if source not in state.proposals and not _on_record(writing.conn, source):
            raise UsageError(
                f"proposal refused: source {source!r} does not exist (a run or decision id,"
                " or a proposal, of this database)"
            )
    day = time.strftime("%Y%m%d", time.gmtime())
    proposal_id, decision = created_decision(request, state, day=day, batch_size=batch_size)
    record = writing.append([decision])[0]
    state.feed([record._asdict()])
    due = growth_flag(state.counts[ProposalStatus.PENDING], batch_size)
    if due is not None:
        flag_at(writing, due.signal, due.note)
    return state.proposals[proposal_id]


def decide_at(
    writing: AtHead,
    proposal_id: str,
    outcome: str,
    *,
    actor: str,
    batch_size: int,
    reason: str | None = None,
    inputs: dict[str, object] | None = None,
) -> tuple[Proposal, Record]:
    """Move a proposal along one allowed transition, appended in `writing`; a rejection
    brings about, in the same transaction, the red flag of a reason given a third time and
    the pause of a batch rejected too often (`batch_size`: the size in force)."""
    state = queue_state(writing.conn)
    decision = decided_decision(
        state, proposal_id, outcome, actor=actor, reason=reason, inputs=inputs
    )
    record = writing.append([decision])[0]
    state.feed([record._asdict()])
    decided = state.proposals[proposal_id]
    if outcome == "rejected":
        why = reason_key(str((decided.decision or {}).get("reason", "")))
        due = repeated_reason_flag(why, state.rejected_for.get(why, []))
        if due is not None:
            flag_at(writing, due.signal, due.note)
        rejected = state.rejected_in_batch.get(decided.batch_id, 0)
        pause = rejection_rate_pause(decided.batch_id, rejected, batch_size)
        if pause is not None:
            pause_at(writing, pause)
    return decided, record


def flag_at(
    writing: AtHead,
    signal: str,
    note: str | None,
    *,
    actor: str = "system:stoic",
    session: str | None = None,
    detected: bool = True,
) -> bool:
    """A red flag (stoic's own, or with `detected` false a person's), and at the third since
    the last resume the pause it calls for, in `writing`; True when it paused the database."""
    decision = flag_decision(
        signal=signal, actor=actor, note=note, session=session, detected=detected
    )
    writing.append([decision])
    flags = writing.projected(WorkspaceStatusProjection()).flags_since_resume
    pause = flags_pause_due(flags, signal)
    return pause is not None and pause_at(writing, pause)


def pause_at(writing: AtHead, due: PauseDue) -> bool:
    """The pause a rule called for, in `writing`; False when the database is paused already."""
    if PauseFollower().check(writing.conn) is not None:  # the log's pause records decide
        return False
    writing.append(
        [
            pause_decision(
                reason=due.reason,
                criterion=due.criterion,
                actor="system:stoic",
                inputs=dict(due.inputs),
            )
        ]
    )
    return True


def _on_record(conn: Conn, source: str) -> bool:
    """Whether `source` is a run or a decision of the log (both indexed columns)."""
    row = conn.execute(
        "SELECT 1 FROM decision_log WHERE run_id = %s OR decision_id = %s LIMIT 1",
        (source, source),
    ).fetchone()
    return row is not None
