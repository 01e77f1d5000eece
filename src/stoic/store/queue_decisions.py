"""What a queue decision puts on record, whichever backend keeps it (DESIGN §8).

Both backends read the queue as the log tells it under their writer, then ask this module for
the record a proposal or a decision makes: every check (the id, who may decide, the allowed
transition, a rejection's reason, an execution's claim and result) and the record's shape live
here once; the backend appends it and brings its views in line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stoic.core import next_steps
from stoic.core.gate import TOOL_CALL_TYPE
from stoic.core.proposals import (
    PERSONS_DECISIONS,
    Proposal,
    ProposalStatus,
    QueueState,
    allowed_from,
    is_proposal_id,
    is_rolled_back,
    move,
)
from stoic.core.records import Decision
from stoic.core.task_states import TASK_PROPOSAL_KIND
from stoic.exceptions import ActingAsPerson, ProposalNotFound, TransitionRefused, UsageError
from stoic.store.processes import ProcessPolicy

__all__ = [
    "PAST",
    "ExecutionClaim",
    "ProposalRequest",
    "check_id",
    "created_decision",
    "decided_decision",
    "execution_argv",
    "refusal",
]

PAST = {
    "execution_started": "started",
    "approved": "approved",
    "rejected": "rejected",
    "deferred": "deferred",
    "undeferred": "taken out of deferral",
    "executed": "executed",
    "rolled_back": "rolled back",
}


@dataclass(frozen=True, slots=True)
class ExecutionClaim:
    """An execution on record as started, whose command has not run yet."""

    proposal_id: str
    actor: str
    rollback: bool
    """The executed proposal's rollback, not an approved one's action."""
    process: ProcessPolicy
    """The command with the environment it may see and the secrets to mask in its output."""
    started_seq: int
    """The seq of its execution_started record: its result is recorded only while the
    proposal shows this start running."""
    started_at: str


RUNNER_KINDS = {"recovery": "recovery", "approval": "start"}
"""What deciding one of the runner's proposals for a task does to it: its recovery or its start
lets it run."""


def _task_kind(proposal: Proposal) -> str:
    """The `kind` a decision of `proposal`, which names a task, is recorded with: the runner's
    (`RUNNER_KINDS`); a tool call's, which moves its task only through the gate's own records
    (DESIGN §15); else a proposal the task made while it ran, which moves no task."""
    if proposal.type == TOOL_CALL_TYPE:
        return TOOL_CALL_TYPE
    if proposal.origin == f"runner:{proposal.type}" and proposal.type in RUNNER_KINDS:
        return RUNNER_KINDS[proposal.type]
    return TASK_PROPOSAL_KIND


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """What a proposer asks for, checked (`checked`) before the queue is read."""

    title: str
    reasoning_trace: tuple[str, ...]
    sources: tuple[str, ...] = ()
    action: tuple[str, ...] | None = None
    rollback: tuple[str, ...] | None = None
    type: str = "action"
    summary: str = ""
    confidence: float | None = None
    trade_off: str | None = None
    origin: str | None = None
    actor: str = "human:unknown"
    run_id: str | None = None
    task_id: str | None = None

    @classmethod
    def checked(
        cls,
        *,
        title: str,
        reasoning_trace: Sequence[str],
        sources: Sequence[str] = (),
        action: Sequence[str] | None = None,
        rollback: Sequence[str] | None = None,
        type: str = "action",
        summary: str = "",
        confidence: float | None = None,
        trade_off: str | None = None,
        origin: str | None = None,
        actor: str = "human:unknown",
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> ProposalRequest:
        """Refused without a title or reasoning, or with a confidence outside 0..1."""
        if not title.strip():
            raise UsageError("a proposal needs a title")
        trace = tuple(step for step in reasoning_trace if step.strip())
        if not trace:
            raise UsageError("a proposal needs its reasoning: at least one --reasoning step")
        if confidence is not None and not 0 <= confidence <= 1:
            raise UsageError(f"confidence must be between 0 and 1, not {confidence}")
        return cls(
            title=title,
            reasoning_trace=trace,
            sources=tuple(sources),
            action=tuple(action) if action else None,
            rollback=tuple(rollback) if rollback else None,
            type=type,
            summary=summary,
            confidence=confidence,
            trade_off=trade_off,
            origin=origin,
            actor=actor,
            run_id=run_id,
            task_id=task_id,
        )


def created_decision(
    request: ProposalRequest, state: QueueState, *, day: str, batch_size: int
) -> tuple[str, Decision]:
    """The new proposal's id and its `proposal/created` record, after the queue `state`."""
    proposal_id = state.next_id(day)
    actor = request.actor
    details: dict[str, Any] = {
        "type": request.type,
        "title": request.title,
        "summary": request.summary,
        "action": list(request.action) if request.action is not None else None,
        "rollback": list(request.rollback) if request.rollback else None,
        "reasoning_trace": list(request.reasoning_trace),
        "sources": list(request.sources),
        "confidence": request.confidence,
        "trade_off": request.trade_off,
        "batch_id": state.next_batch(batch_size),
        "origin": request.origin or ("human" if actor.startswith("human:") else actor),
    }
    no_rollback = (
        " It has no rollback action: it cannot be rolled back."
        if (request.action is not None and not request.rollback)
        else ""
    )
    return proposal_id, Decision(
        decision_type="proposal",
        decision_outcome="created",
        decision_reason=f"Proposed: {request.title}.{no_rollback}",
        decision_source="human" if actor.startswith("human:") else "system",
        actor=actor,
        decision_trigger="explicit" if actor.startswith("human:") else "autonomous",
        decision_inputs={
            "reasoning_steps": len(request.reasoning_trace),
            "sources": len(request.sources),
        },
        causal_role="pre_run",
        proposal_id=proposal_id,
        run_id=request.run_id,
        task_id=request.task_id,
        details=details,
    )


def decided_decision(
    state: QueueState,
    proposal_id: str,
    outcome: str,
    *,
    actor: str,
    reason: str | None = None,
    inputs: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
    claim: ExecutionClaim | None = None,
) -> Decision:
    """The record moving a proposal along one allowed transition, after the queue `state`:
    refused for an unknown proposal, a non-person deciding, a rejection without a reason, a
    transition its status does not allow, an execution already running or a result that is
    not its claim's."""
    check_id(proposal_id)
    if outcome in PERSONS_DECISIONS and not actor.startswith("human:"):
        raise ActingAsPerson(
            f"only a person decides a proposal: {actor!r} is not one (human:<name>)"
        )
    if outcome == "rejected" and not (reason and reason.strip()):
        raise UsageError("a rejection needs a reason: --reason …")
    current = state.proposals.get(proposal_id)
    if current is None:
        raise ProposalNotFound(f"no proposal {proposal_id}")
    if move(current, outcome) is None:
        raise TransitionRefused(refusal(current, outcome))
    if outcome == "execution_started":
        _check_claim(current, inputs or {})
    if claim is not None:
        _check_result(current, claim)
    kind = {"kind": _task_kind(current)} if current.task_id is not None else {}
    return Decision(
        decision_type="proposal",
        decision_outcome=outcome,
        decision_reason=(
            reason.strip() if reason and reason.strip() else f"{proposal_id} {PAST[outcome]}."
        ),
        decision_source="human" if actor.startswith("human:") else "system",
        actor=actor,
        decision_trigger="explicit",
        decision_inputs={"from": current.status.value, **kind, **(inputs or {})},
        causal_role="pre_run",
        proposal_id=proposal_id,
        run_id=current.run_id,
        task_id=current.task_id,
        details=dict(details or {}),
    )


def execution_argv(
    proposal: Proposal, *, rollback: bool, confirmed: bool, confirmations_due: int
) -> tuple[str, ...]:
    """The command an execution of `proposal` would run (its rollback's with `rollback`), once
    every check of the proposal itself holds: confirmation after a manual-verification resume,
    the transition, a command there is to run."""
    proposal_id = proposal.id
    if not rollback and confirmations_due and not confirmed:
        raise UsageError(
            f"{proposal_id} needs explicit confirmation ({confirmations_due} more executions do,"
            f" after a manual-verification resume): run"
            f" {next_steps.execute(proposal_id, confirm=proposal_id)}"
        )
    outcome = "rolled_back" if rollback else "executed"
    if move(proposal, outcome) is None:
        raise TransitionRefused(refusal(proposal, outcome))
    argv = proposal.rollback if rollback else proposal.action
    if rollback and argv is None:
        raise TransitionRefused(f"{proposal_id} has no rollback action: it cannot be rolled back")
    if argv is None:
        # Recording `executed` for a command that never ran would be a false record.
        raise TransitionRefused(
            f"{proposal_id} has no action: there is nothing to execute (a run's approval or"
            f" recovery proposal takes effect through {next_steps.continue_run('RUN_ID')})"
        )
    return tuple(argv)


def check_id(proposal_id: str) -> None:
    if not is_proposal_id(proposal_id):
        raise UsageError(f"{proposal_id!r} is not a proposal id (they look like PROP-20261123-001)")


def _check_claim(current: Proposal, inputs: Mapping[str, Any]) -> None:
    """An execution may start when its result is allowed and no other run of it is open."""
    rollback = bool(inputs.get("rollback"))
    final = "rolled_back" if rollback else "executed"
    if move(current, final) is None:
        raise TransitionRefused(refusal(current, final))
    running = current.running
    if running is not None and not inputs.get("again"):
        what = "rollback" if running.get("rollback") else "action"
        once_more = (next_steps.rollback if rollback else next_steps.execute)(
            current.id, again=True
        )
        raise TransitionRefused(
            f"{current.id}'s {what} started at {running['at']} by {running['by']} and has no"
            " result on record: it is running now, or the process running it died. Check what"
            f" it did; {once_more} runs it once more"
        )


def _check_result(current: Proposal, claim: ExecutionClaim) -> None:
    """A result is recorded for the execution the proposal shows running, and only for the
    claim that started it with the proposal's own command."""
    what = "rollback" if claim.rollback else "action"
    running = current.running
    if running is None or bool(running.get("rollback")) is not claim.rollback:
        raise TransitionRefused(
            f"{current.id} has no {what} running on record: a result is recorded only for an"
            " execution on record as started"
        )
    started = next(
        (step for step in reversed(current.history) if step["decision"] == "execution_started"),
        None,
    )
    if (
        started is None
        or started["seq"] != claim.started_seq
        or (running["at"], running["by"]) != (claim.started_at, claim.actor)
    ):
        raise TransitionRefused(
            f"{current.id}'s {what} running on record started at {running['at']} by"
            f" {running['by']}, not at {claim.started_at} by {claim.actor} (seq"
            f" {claim.started_seq}): this claim's result is not recorded"
        )
    argv = current.rollback if claim.rollback else current.action
    if argv is None or tuple(argv) != claim.process.argv:
        raise TransitionRefused(
            f"{current.id}'s {what} is not `{claim.process.command}`: this claim's result is"
            " not recorded"
        )


def refusal(proposal: Proposal, outcome: str) -> str:
    if proposal.decision is not None and proposal.status is not ProposalStatus.PENDING:
        decided = proposal.decision
        who = f" by {decided['by']} at {decided['at']}"
    else:
        who = ""
    if is_rolled_back(proposal):
        execution = proposal.execution or {}
        return (
            f"{proposal.id} was rolled back at {execution.get('at')}: it cannot be"
            f" {PAST[outcome]} (a rollback runs once; nothing moves it any more)"
        )
    allowed = ", ".join(allowed_from(proposal.status)) or "none"
    return (
        f"{proposal.id} is {proposal.status.value}{who}: it cannot be {PAST[outcome]}"
        f" (allowed now: {allowed})"
    )
