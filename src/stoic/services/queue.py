"""The review queue's use cases: propose, decide, execute, roll back, get, list (DESIGN §8).

Each decision is checked and appended by the store under the workspace's writer; running an
approved action happens in the runtime between two records: the claim (`execution_started`)
before the command starts, its result after it ends. The record of a command that never ran
is never written, and a command whose result never came stays claimed: a second execution
is refused until someone runs it `again` on purpose.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from stoic.core.proposals import Proposal, ProposalStatus
from stoic.exceptions import UsageError
from stoic.run.actions import run_action
from stoic.store.queue import ExecutionResult, Queue
from stoic.store.queue_snapshot import listing
from stoic.store.workspace import Workspace

__all__ = [
    "DECISIONS",
    "ExecutionResult",
    "decide",
    "execute",
    "get",
    "list_json",
    "list_proposals",
    "propose",
    "rollback",
    "status_named",
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
    return Queue(workspace).propose(
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


def decide(
    workspace: Workspace,
    proposal_id: str,
    decision: str,
    *,
    by: str,
    reason: str | None = None,
) -> Proposal:
    """Approve, reject (a reason is required), defer or undefer a proposal — allowed while
    paused, since a pause stops the queue's growth, not its review. A rejection may raise
    a red flag (the same reason a third time) or pause (too many in one batch)."""
    if decision not in DECISIONS:
        raise UsageError(f"unknown decision {decision!r} (allowed: {', '.join(DECISIONS)})")
    return Queue(workspace).decide(proposal_id, decision, actor=by, reason=reason)


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
    claim = queue.begin_execution(
        proposal_id, actor=by, rollback=rollback, confirmed=confirmed, again=again
    )
    ran = run_action(claim.process, workspace.root)
    return queue.finish_execution(claim, ran)


def rollback(
    workspace: Workspace, proposal_id: str, *, by: str, again: bool = False
) -> ExecutionResult:
    """Run an executed proposal's rollback and record its result."""
    return execute(workspace, proposal_id, by=by, again=again, rollback=True)


def get(workspace: Workspace, proposal_id: str) -> Proposal:
    """One proposal as the log tells it."""
    return Queue(workspace).get(proposal_id)


def status_named(name: str | None) -> ProposalStatus | None:
    """The status a person named to filter by (None: all)."""
    if name is None:
        return None
    if name not in {s.value for s in ProposalStatus}:
        allowed = ", ".join(s.value for s in ProposalStatus)
        raise UsageError(f"unknown status {name!r} (allowed: {allowed})")
    return ProposalStatus(name)


def list_proposals(workspace: Workspace, status: ProposalStatus | None = None) -> list[Proposal]:
    """Proposals oldest first, all or those with `status`."""
    rows = sorted(Queue(workspace).state().proposals.values(), key=lambda p: p.created_seq)
    return rows if status is None else [p for p in rows if p.status is status]


def list_json(workspace: Workspace, status: ProposalStatus | None = None) -> bytes:
    """The listing as a JSON array, from the queue snapshot's own bytes while it matches the
    log — a big queue lists without folding it — else from the fold."""
    listed = listing(workspace, status)
    if listed is not None:
        return listed
    return orjson.dumps([p.to_json() for p in list_proposals(workspace, status)])
