"""The review queue of a database (DESIGN §8, §13): propose, decide, get, list.

Each decision is checked and appended in one transaction at the head of the log, with the same
checks and records as a workspace's queue; a decision on a suspended task of a database run
takes that run up in the same transaction (`stoic.run.fleet_review`), so what a person approves
is ready for the run's workers the moment the approval commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stoic.core import next_steps
from stoic.core.gate import TOOL_CALL_TYPE
from stoic.core.pause import (
    READER_SIGNALS,
    DetectedSignal,
    execution_failure_pause,
    too_fast_to_read,
)
from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import PolicyRefused, StoicError, UsageError, WorkspacePaused
from stoic.plan.models import PolicySpec
from stoic.run.actions import run_action
from stoic.run.fleet_plans import recorded_plan
from stoic.run.fleet_review import take_up_after
from stoic.services.shown_review import ProposalChanged, action_sha256
from stoic.store import pg_work as work
from stoic.store.config import Settings
from stoic.store.pg_queue import (
    decide_at,
    flag_at,
    pause_at,
    propose_at,
    queue_state,
    stored_proposal,
)
from stoic.store.pg_store import AtHead, PostgresStore
from stoic.store.processes import ProcessPolicy
from stoic.store.queue import ExecutionResult
from stoic.store.queue_decisions import (
    PAST,
    ExecutionClaim,
    ProposalRequest,
    check_id,
    decided_decision,
    execution_argv,
)

__all__ = [
    "DECISIONS",
    "Decided",
    "database_proposal",
    "database_proposals",
    "decide",
    "execute",
    "propose",
    "raise_flag",
]

DECISIONS = ("approved", "rejected", "deferred", "undeferred")


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision as recorded, and what it did to the proposal's run (None: nothing)."""

    proposal: Proposal
    run_taken_up: str | None
    flag: DetectedSignal | None = None
    """The red flag the decision raised itself (an approval too fast to have been read)."""
    paused: bool = False
    """The database is paused now (by this decision or before it)."""


def propose(
    url: str,
    *,
    title: str,
    reasoning_trace: Sequence[str],
    by: str,
    sources: Sequence[str] = (),
    action: Sequence[str] | None = None,
    rollback: Sequence[str] | None = None,
    type: str = "action",
    summary: str = "",
    confidence: float | None = None,
    trade_off: str | None = None,
    origin: str | None = None,
    settings: Settings | None = None,
) -> Proposal:
    """A new pending proposal in the database's queue; refused while it is paused, without
    reasoning, or with a source its log does not know."""
    request = ProposalRequest.checked(
        title=title,
        reasoning_trace=reasoning_trace,
        sources=sources,
        action=action,
        rollback=rollback,
        type=type,
        summary=summary,
        confidence=confidence,
        trade_off=trade_off,
        origin=origin,
        actor=by,
    )
    default = (settings or Settings()).queue.batch_size
    with PostgresStore.open(url) as store, store.writing("record a proposal") as writing:
        batch = writing.projected(WorkspaceStatusProjection()).batch_size or default
        return propose_at(writing, request, batch_size=batch)


def decide(
    url: str,
    proposal_id: str,
    decision: str,
    *,
    by: str,
    reason: str | None = None,
    shown_sha256: str | None = None,
    read_seconds: float | None = None,
    settings: Settings | None = None,
) -> Decided:
    """Approve, reject (a reason is required), defer or undefer a proposal of the database;
    two people deciding one proposal at once: the first wins, the second is told who decided
    and when. From a page, `shown_sha256` is the action shown (one changed since is refused
    with `ProposalChanged`) and `read_seconds` how long it was shown, kept on the record: an
    approval sooner than `review.min_read_seconds` raises the rubber-stamping red flag.
    `settings`: the workspace's (its queue's batch size and review minimum), else the
    defaults."""
    settings = settings or Settings()
    if decision not in DECISIONS:
        raise UsageError(unknown_word("decision", decision, DECISIONS))
    check_id(proposal_id)  # before any connection: a malformed id says so
    inputs: dict[str, object] | None = None
    if read_seconds is not None:
        inputs = {"read_seconds": round(read_seconds, 3)}
    with PostgresStore.open(url) as store, store.writing("record a decision") as writing:
        if shown_sha256 is not None:
            current = stored_proposal(writing.conn, proposal_id)
            if action_sha256(current) != shown_sha256:
                raise ProposalChanged(
                    f"{proposal_id} changed since it was shown: its action is not the one"
                    " read; open it again"
                )
        batch = writing.projected(WorkspaceStatusProjection()).batch_size
        proposal, _record = decide_at(
            writing,
            proposal_id,
            decision,
            actor=by,
            reason=reason,
            inputs=inputs,
            batch_size=batch or settings.queue.batch_size,
        )
        minimum, flag = settings.review.min_read_seconds, None
        if (
            decision == "approved"
            and read_seconds is not None
            and too_fast_to_read(read_seconds, minimum)
        ):
            note = (
                f"{proposal_id} approved {read_seconds:.1f}s after it was shown"
                f" (minimum {minimum:g}s)"
            )
            flag = DetectedSignal.RUBBER_STAMPING
            flag_at(writing, flag, note, actor="system:review")
        taken_up = None
        if decision in ("approved", "rejected"):
            taken_up = take_up_after(writing, proposal, by)
        paused = writing.projected(WorkspaceStatusProjection()).paused is not None
        return Decided(proposal, taken_up, flag, paused)


def raise_flag(
    url: str, proposal_id: str, signal: str, *, by: str, note: str | None = None
) -> bool:
    """A reviewer's red flag on a proposal of the database; True when it paused the database
    (the third since the last resume)."""
    if signal not in READER_SIGNALS:
        raise UsageError(unknown_word("signal", signal, READER_SIGNALS, listed="signals"))
    said = f"{proposal_id}: {note}" if note else proposal_id
    with PostgresStore.open(url) as store, store.writing("record a red flag") as writing:
        stored_proposal(writing.conn, proposal_id)
        return flag_at(writing, signal, said, actor=by, detected=False)


def database_proposal(url: str, proposal_id: str) -> Proposal:
    """One proposal as the database's log tells it."""
    with PostgresStore.open(url) as store, store.connection() as conn:
        return stored_proposal(conn, proposal_id)


def database_proposals(url: str, status: ProposalStatus | None = None) -> list[Proposal]:
    """The database's proposals, oldest first (those with `status`, or all)."""
    with PostgresStore.open(url) as store, store.connection() as conn:
        proposals = list(queue_state(conn).proposals.values())
    return [p for p in proposals if status is None or p.status is status]


def execute(
    url: str,
    proposal_id: str,
    *,
    by: str,
    cwd: Path,
    settings: Settings | None = None,
    again: bool = False,
    rollback: bool = False,
    confirmed: bool = False,
) -> ExecutionResult:
    """Run an approved proposal's action of the database (or, with `rollback`, an executed
    one's rollback) on this host, in `cwd`, and record its result there; an action that fails
    pauses the database. The claim is committed before the command starts, so a second
    execution is refused while this one works, and one whose process died stays claimed until
    it is run `again` on purpose. The policy is the workspace's (`settings`), narrowed by the
    plan of the database run the proposal names; a refusal is on record."""
    settings = settings or Settings()
    what = "rollback" if rollback else "action"
    with PostgresStore.open(url) as store:
        with store.writing("claim a proposal's execution") as writing:
            proposal = stored_proposal(writing.conn, proposal_id)
            if proposal.type == TOOL_CALL_TYPE:
                raise UsageError(
                    f"{proposal_id} is an agent's tool call: approving it lets that agent make"
                    " the call, and stoic itself runs nothing"
                )
            status = writing.projected(WorkspaceStatusProjection())
            argv = execution_argv(
                proposal,
                rollback=rollback,
                confirmed=confirmed,
                confirmations_due=status.confirmations_due,
            )
            paused = work.PauseFollower().check(writing.conn)
            if not rollback and paused is not None:
                raise WorkspacePaused(
                    f"the database is paused ({paused.reason}):"
                    f" {next_steps.execute()} is refused until it is resumed"
                )
            narrowed = _run_policy(writing, proposal.run_id) if proposal.run_id else None
            process = ProcessPolicy.for_command(settings, argv, narrowed_by=narrowed)
            refused = process.refused(proposal_id=proposal_id, what=what)
            if refused is not None:
                writing.append([refused[0]])  # kept: the error is raised once it commits
            else:
                _claimed, start = decide_at(
                    writing,
                    proposal_id,
                    "execution_started",
                    actor=by,
                    reason=f"{proposal_id}: its {what} `{process.command}` starts"
                    + (" again." if again else "."),
                    inputs={"rollback": rollback, **({"again": True} if again else {})},
                    batch_size=settings.queue.batch_size,
                )
                claim = ExecutionClaim(
                    proposal_id, by, rollback, process, start.seq, start.decided_at
                )
        if refused is not None:
            raise refused[1]
        ran = run_action(process, cwd)
        outcome = "rolled_back" if rollback else "executed"
        code = ran.exit_code
        result = (
            ("rolled_back" if code == 0 else "failure")
            if rollback
            else ("success" if code == 0 else "failure")
        )
        with store.writing("record a proposal's execution") as writing:
            state = queue_state(writing.conn)
            decision = decided_decision(
                state,
                proposal_id,
                outcome,
                actor=by,
                reason=f"{proposal_id} {PAST[outcome]}: `{process.command}` exited {code}.",
                inputs={"result": result, "exit_code": code},
                details={
                    "command": process.command,
                    "exit_code": code,
                    "duration_s": round(ran.duration_s, 6),
                    "output": ran.output[-4000:],
                },
                claim=claim,
            )
            record = writing.append([decision])[0]
            state.feed([record._asdict()])
            due = execution_failure_pause(proposal_id, process.command, code, rollback=rollback)
            if due is not None:
                pause_at(writing, due)
        return ExecutionResult(state.proposals[proposal_id], code, ran.output)


def _run_policy(writing: AtHead, run_id: str) -> PolicySpec | None:
    """The `meta.policy` of the database run's plan, its copy checked against its start; a
    proposal naming no run of the database is narrowed by nothing."""
    try:
        started, text = work.run_start(writing.conn, run_id)
    except LookupError:
        return None
    try:
        return recorded_plan(run_id, text, started).document.meta.policy
    except (ValueError, StoicError) as exc:
        raise PolicyRefused(
            f"the policy of run {run_id} cannot be read from its plan copy in the database: {exc}"
        ) from None
