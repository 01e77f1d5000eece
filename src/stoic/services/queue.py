"""The review queue's use cases: propose, decide, execute, roll back, get, list (DESIGN §8).

Each decision is checked and appended by the store under the workspace's writer; running an
approved action happens in the runtime between two records: the claim (`execution_started`)
before the command starts, its result after it ends. The record of a command that never ran
is never written, and a command whose result never came stays claimed: a second execution
is refused until someone runs it `again` on purpose.

What a decision brings about is decided here, by the rules of `stoic.core.pause`, in the
transaction of the decision itself: a queue that outgrows review raises a red flag, a reason
given a third time raises one, too many rejections in a batch pause, and so does an approved
action that failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from stoic.core.gate import TOOL_CALL_TYPE
from stoic.core.pause import (
    execution_failure_pause,
    growth_flag,
    reason_key,
    rejection_rate_pause,
    repeated_reason_flag,
)
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import UsageError
from stoic.run.actions import run_action
from stoic.services import trust
from stoic.store.queue import ExecutionResult, Queue
from stoic.store.queue_snapshot import listing
from stoic.store.workspace import Workspace

__all__ = [
    "DECISIONS",
    "POLL_SECONDS",
    "SETTLED",
    "ExecutionResult",
    "decide",
    "execute",
    "get",
    "left_behind",
    "list_json",
    "list_proposals",
    "propose",
    "rollback",
    "status_named",
    "wait_for_decision",
]

DECISIONS = ("approved", "rejected", "deferred", "undeferred")
"""What a person may decide of a proposal; executing and rolling back have their own calls."""


def propose(
    workspace: Workspace,
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
    run_id: str | None = None,
    task_id: str | None = None,
) -> Proposal:
    """A new pending proposal. Refused while the workspace is paused, without reasoning, or
    with a source that does not exist; a queue that outgrows review raises a red flag."""
    with workspace.transaction():
        proposed = Queue(workspace).propose(
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
            run_id=run_id,
            task_id=task_id,
        )
        flag = growth_flag(proposed.pending, proposed.batch_size)
        if flag is not None:
            trust.flag_detected(workspace, flag)
    return proposed.proposal


def decide(
    workspace: Workspace,
    proposal_id: str,
    decision: str,
    *,
    by: str,
    reason: str | None = None,
    session: str | None = None,
    read_seconds: float | None = None,
) -> Proposal:
    """Approve, reject (a reason is required), defer or undefer a proposal — allowed while
    paused, since a pause stops the queue's growth, not its review. A rejection may raise
    a red flag (the same reason a third time) or pause (too many in one batch). `session`
    is the review session the decision is made in and `read_seconds` how long the proposal
    was shown before it, both kept on its record."""
    if decision not in DECISIONS:
        raise UsageError(unknown_word("decision", decision, DECISIONS))
    queue = Queue(workspace)
    inputs: dict[str, object] | None = None
    if session is not None or read_seconds is not None:
        inputs = {"session": session} if session is not None else {}
        if read_seconds is not None:
            inputs["read_seconds"] = round(read_seconds, 3)
    if decision != "rejected":
        return queue.decide(proposal_id, decision, actor=by, reason=reason, inputs=inputs)
    with workspace.transaction():
        decided = queue.decide(proposal_id, decision, actor=by, reason=reason, inputs=inputs)
        _after_rejection(workspace, queue, decided)
    return decided


def _after_rejection(workspace: Workspace, queue: Queue, decided: Proposal) -> None:
    """The red flag of a reason given a third time, then the pause of a batch rejected too
    often; read in the rejection's transaction, so each is raised once."""
    state = queue.state()
    reason = reason_key(str((decided.decision or {}).get("reason", "")))
    flag = repeated_reason_flag(reason, state.rejected_for.get(reason, []))
    if flag is not None:
        trust.flag_detected(workspace, flag)
    rejected = state.rejected_in_batch.get(decided.batch_id, 0)
    due = rejection_rate_pause(decided.batch_id, rejected, queue.batch_size())
    if due is not None:
        trust.pause_for(workspace, due)


def execute(
    workspace: Workspace,
    proposal_id: str,
    *,
    by: str,
    again: bool = False,
    rollback: bool = False,
    confirmed: bool = False,
) -> ExecutionResult:
    """Run an approved proposal's action (or, with `rollback`, an executed one's rollback)
    and record its result; an action that fails pauses the workspace.

    `again` runs it although an earlier execution has no result on record (its process
    died); `confirmed` is the explicit confirmation a manual-verification resume asks for.
    """
    queue = Queue(workspace)
    if queue.get(proposal_id).type == TOOL_CALL_TYPE:
        raise UsageError(
            f"{proposal_id} is an agent's tool call: approving it lets that agent make the call,"
            " and stoic itself runs nothing"
        )
    claim = queue.begin_execution(
        proposal_id, actor=by, rollback=rollback, confirmed=confirmed, again=again
    )
    ran = run_action(claim.process, workspace.root)
    result = queue.finish_execution(claim, ran)
    due = execution_failure_pause(
        proposal_id, claim.process.command, ran.exit_code, rollback=claim.rollback
    )
    if due is not None:
        trust.pause_for(workspace, due)
    return result


def rollback(
    workspace: Workspace, proposal_id: str, *, by: str, again: bool = False
) -> ExecutionResult:
    """Run an executed proposal's rollback and record its result."""
    return execute(workspace, proposal_id, by=by, again=again, rollback=True)


def get(workspace: Workspace, proposal_id: str) -> Proposal:
    """One proposal as the log tells it."""
    return Queue(workspace).get(proposal_id)


SETTLED = frozenset({ProposalStatus.APPROVED, ProposalStatus.REJECTED, ProposalStatus.EXECUTED})
"""The statuses a person's decision leaves a proposal in for good; a deferral is not one (a
deferred proposal comes back to pending)."""

POLL_SECONDS = 0.2
"""How often a wait for a decision looks at the log."""


def wait_for_decision(workspace: Workspace, proposal_id: str, seconds: float) -> Proposal:
    """The proposal once a person has settled it (approved, rejected, executed), or as it
    stands after `seconds`: the caller bounds the wait, the log says how it ended."""
    ends = time.monotonic() + max(seconds, 0.0)
    while True:
        proposal = get(workspace, proposal_id)
        left = ends - time.monotonic()
        if proposal.status in SETTLED or left <= 0:
            return proposal
        time.sleep(min(POLL_SECONDS, left))


def status_named(name: str | None) -> ProposalStatus | None:
    """The status a person named to filter by (None: all)."""
    if name is None:
        return None
    if name not in {s.value for s in ProposalStatus}:
        raise UsageError(unknown_word("status", name, [s.value for s in ProposalStatus]))
    return ProposalStatus(name)


def list_proposals(workspace: Workspace, status: ProposalStatus | None = None) -> list[Proposal]:
    """Proposals oldest first, all or those with `status`."""
    rows = sorted(Queue(workspace).state().proposals.values(), key=lambda p: p.created_seq)
    return rows if status is None else [p for p in rows if p.status is status]


def left_behind(workspace: Workspace) -> tuple[list[str], bool]:
    """What the workspace's own log holds undecided — its pending and deferred proposals, and
    whether it is paused — which a command sent to the database its `stoic.toml` names
    would not see."""
    waiting = [
        proposal.id
        for proposal in list_proposals(workspace)
        if proposal.status in (ProposalStatus.PENDING, ProposalStatus.DEFERRED)
    ]
    return waiting, workspace.status_folded().paused is not None


def list_json(workspace: Workspace, status: ProposalStatus | None = None) -> bytes:
    """The listing as a JSON array, from the queue snapshot's own bytes while it matches the
    log — a big queue lists without folding it — else from the fold."""
    listed = listing(workspace, status)
    if listed is not None:
        return listed
    return orjson.dumps([p.to_json() for p in list_proposals(workspace, status)])
