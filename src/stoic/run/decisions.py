"""The decision records a run writes, built in one place so their shape stays consistent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.records import Decision
from stoic.core.recovery import AttemptKind, RecoveryDecision
from stoic.core.retry import RETRY_KIND
from stoic.core.verification import VerificationOutcome, VerificationStatus
from stoic.run.attempt import Attempt, AttemptResult

__all__ = [
    "ACTOR",
    "advance_approval_decision",
    "approval_decision",
    "approval_needed_decision",
    "end_decision",
    "evaluation_decision",
    "guard_decisions",
    "interrupted_decision",
    "request_id",
    "retry_decision",
    "start_decision",
    "verification_decision",
]

ACTOR = "system:runner"


def request_id(run_id: str, task_id: str) -> str:
    """Stays the same across a task's attempts: retries answer the same request."""
    return f"{run_id}/{task_id}"


def start_decision(
    attempt: Attempt,
    *,
    executor: str,
    command: str,
    kind: AttemptKind,
    approved_by: str | None,
    log: str,
    limit: Mapping[str, Any] | None = None,
) -> Decision:
    """`limit`: where the attempt's time limit came from, when no plan set it."""
    inputs: dict[str, Any] = {"executor": executor, "command": command, "attempt_kind": kind.value}
    if approved_by is not None:
        key = "recovery_approved_by" if kind is AttemptKind.APPROVED_RECOVERY else "approved_by"
        inputs[key] = approved_by
    if limit:
        inputs.update(limit)
    what = {
        AttemptKind.FIRST: "started" + (f" (approved by {approved_by})" if approved_by else ""),
        AttemptKind.AUTOMATIC_RETRY: "started (automatic retry after R1)",
        AttemptKind.APPROVED_RECOVERY: f"started (recovery approved by {approved_by})",
        AttemptKind.RESUMED: f"resumed (its agent's call was decided by {approved_by})",
    }[kind]
    return Decision(
        decision_type="execution",
        decision_outcome="started",
        decision_reason=f"Task {attempt.task_id} attempt {attempt.attempt} {what}: {command}",
        actor=ACTOR,
        decision_trigger="autonomous" if kind is not AttemptKind.APPROVED_RECOVERY else "explicit",
        decision_source="system" if kind is not AttemptKind.APPROVED_RECOVERY else "hybrid",
        decision_inputs=inputs,
        causal_role="in_run",
        run_id=attempt.run_id,
        request_id=attempt.request_id,
        task_id=attempt.task_id,
        attempt_id=attempt.attempt_id,
        attempt=attempt.attempt,
        details={"log": log},
    )


def end_decision(attempt: Attempt, result: AttemptResult, outcome: str) -> Decision:
    if result.failure is None:
        reason = f"Task {attempt.task_id} succeeded in {result.duration_s:.3f}s."
        inputs: dict[str, Any] = {}
    else:
        reason = (
            f"Task {attempt.task_id} attempt {attempt.attempt} {outcome}:"
            f" {result.failure.kind.value}: {result.failure.message}"
        )
        inputs = result.failure.to_json()
    return Decision(
        decision_type="execution",
        decision_outcome=outcome,
        decision_reason=reason,
        actor=ACTOR,
        decision_trigger="autonomous" if result.failure is None else "reactive",
        decision_inputs=inputs,
        causal_role="in_run",
        run_id=attempt.run_id,
        request_id=attempt.request_id,
        task_id=attempt.task_id,
        attempt_id=attempt.attempt_id,
        attempt=attempt.attempt,
        details=result.details(),
    )


def evaluation_decision(
    *,
    run_id: str,
    task_id: str,
    attempt: int,
    attempt_id: str,
    failure: Failure,
    decision: RecoveryDecision,
    attempt_kind: AttemptKind,
    retry_delay_s: float | None = None,
    hint: str | None = None,
    suggestion: dict[str, str] | None = None,
) -> Decision:
    """The one recovery_evaluation record that follows a failure."""
    inputs: dict[str, Any] = {
        "failure_kind": failure.kind.value,
        "attempt": attempt,
        "attempt_kind": attempt_kind.value,
        "recovery_class": decision.recovery_class.value,
        "recovery_action": decision.action.value,
        "partial": failure.partial.value,
    }
    if retry_delay_s is not None:
        inputs["retry_delay_s"] = retry_delay_s
    if hint is not None:
        inputs["hint"] = hint
    return Decision(
        decision_type="recovery_evaluation",
        decision_outcome=decision.outcome,
        decision_reason=decision.reason,
        actor=ACTOR,
        decision_source="system",
        decision_trigger="reactive",
        decision_inputs=inputs,
        causal_role="post_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        attempt_id=attempt_id,
        attempt=attempt,
        details={"suggestion": suggestion} if suggestion is not None else {},
    )


def done_in_file_decision(run_id: str, task_id: str, word: str) -> Decision:
    """At a run's start: a task its plan file marks done is recorded done, not run."""
    return Decision(
        decision_type="execution",
        decision_outcome="skipped",
        decision_reason=f"Task {task_id} is marked {word} in the plan file: done, not run.",
        actor=ACTOR,
        decision_trigger="autonomous",
        decision_inputs={"plan_status": word},
        causal_role="pre_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        details={"done_in": "plan file"},
    )


def interrupted_decision(
    run_id: str, task_id: str, attempt: int, attempt_id: str, killed: bool
) -> tuple[Decision, Failure]:
    failure = Failure(
        FailureKind.INTERRUPTED,
        "the runner stopped during this attempt"
        + ("; its leftover processes were killed" if killed else ""),
        partial=Partial.UNKNOWN,
    )
    record = Decision(
        decision_type="execution",
        decision_outcome="interrupted",
        decision_reason=(
            f"Task {task_id} attempt {attempt} was interrupted: its runner stopped before"
            " recording an end; partial: unknown."
        ),
        actor=ACTOR,
        decision_trigger="reactive",
        decision_inputs=failure.to_json(),
        causal_role="in_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        attempt_id=attempt_id,
        attempt=attempt,
        details={"duration_s": 0.0, "leftover_processes_killed": killed},
    )
    return record, failure


def guard_decisions(
    attempt: Attempt, *, check: str, rule: str, executor: str, command: str
) -> tuple[list[Decision], Failure]:
    """A policy block or an exhausted budget: the check's record, then the halted attempt."""
    kind = FailureKind.POLICY_VIOLATION if check == "policy_check" else FailureKind.BUDGET_EXHAUSTED
    failure = Failure(kind, rule, partial=Partial.FALSE)
    common: dict[str, Any] = {
        "actor": ACTOR,
        "causal_role": "in_run",
        "run_id": attempt.run_id,
        "request_id": attempt.request_id,
        "task_id": attempt.task_id,
        "attempt_id": attempt.attempt_id,
        "attempt": attempt.attempt,
    }
    blocked = Decision(
        decision_type=check,
        decision_outcome="blocked" if check == "policy_check" else "exhausted",
        decision_reason=f"Task {attempt.task_id} attempt {attempt.attempt} may not start: {rule}.",
        decision_trigger="autonomous",
        decision_inputs={"rule": rule, "executor": executor, "command": command},
        **common,
    )
    halted = Decision(
        decision_type="execution",
        decision_outcome="halted",
        decision_reason=f"Task {attempt.task_id} was halted before it started: {rule}.",
        decision_trigger="reactive",
        decision_inputs=failure.to_json(),
        details={"duration_s": 0.0},
        **common,
    )
    return [blocked, halted], failure


def approval_needed_decision(
    attempt: Attempt, *, rule: str, executor: str, command: str
) -> Decision:
    """A task that may start only once a person approves it: it waits, suspended."""
    return Decision(
        decision_type="policy_check",
        decision_outcome="blocked",
        decision_reason=f"Task {attempt.task_id} waits for approval before it starts: {rule}.",
        actor=ACTOR,
        decision_trigger="autonomous",
        decision_inputs={
            "rule": rule,
            "requires": "approval",
            "executor": executor,
            "command": command,
        },
        causal_role="pre_run",
        run_id=attempt.run_id,
        request_id=attempt.request_id,
        task_id=attempt.task_id,
        details={
            "suggestion": {
                "what_failed": "nothing yet: the task has not started",
                "suggested": f"approve running: {command}",
                "trade_off": rule,
            }
        },
    )


def approval_decision(
    run_id: str, task_id: str, actor: str, suggestion: dict[str, Any] | None, *, recovery: bool
) -> Decision:
    """A person approves a suspended task: its suggested recovery, or its first start."""
    what = (
        f"the suggested recovery of task {task_id}:"
        f" {(suggestion or {}).get('suggested', 'run it again')}"
        if recovery
        else f"starting task {task_id}"
    )
    return Decision(
        decision_type="proposal",
        decision_outcome="approved",
        decision_reason=f"{actor} approved {what}.",
        actor=actor,
        decision_source="human",
        decision_trigger="explicit",
        decision_inputs={
            "recovery_approved_by" if recovery else "approved_by": actor,
            "kind": "recovery" if recovery else "start",
        },
        causal_role="in_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        details={"suggestion": suggestion} if suggestion else {},
    )


def retry_decision(
    run_id: str,
    task_id: str,
    actor: str,
    reason: str,
    *,
    attempt: int,
    attempt_id: str | None,
    failure_kind: str | None,
) -> Decision:
    """A person runs a failed task again in its run: linked to the failed attempt, whose
    failure stood; the attempt it allows is a human-approved recovery (DESIGN §7)."""
    inputs: dict[str, Any] = {
        "kind": RETRY_KIND,
        "recovery_approved_by": actor,
        "failed_attempt": attempt,
        "failure_kind": failure_kind,
    }
    return Decision(
        decision_type="proposal",
        decision_outcome="approved",
        decision_reason=(
            f"{actor} decided to run task {task_id} again in run {run_id} after attempt"
            f" {attempt} failed: {reason}"
        ),
        actor=actor,
        decision_source="human",
        decision_trigger="explicit",
        decision_inputs=inputs,
        causal_role="post_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        attempt_id=attempt_id,
        attempt=attempt if attempt > 0 else None,
        details={"reason": reason},
    )


def advance_approval_decision(run_id: str, task_id: str, actor: str, command: str) -> Decision:
    """A person approves a gated task's start before the run reaches it (`stoic run --approve`):
    the task then starts without a proposal, its start record naming who approved."""
    return Decision(
        decision_type="proposal",
        decision_outcome="approved",
        decision_reason=f"{actor} approved starting task {task_id} before the run reached it.",
        actor=actor,
        decision_source="human",
        decision_trigger="explicit",
        decision_inputs={"approved_by": actor, "kind": "start", "command": command},
        causal_role="pre_run",
        run_id=run_id,
        request_id=request_id(run_id, task_id),
        task_id=task_id,
        details={"in_advance": True},
    )


def verification_decision(attempt: Attempt, outcome: VerificationOutcome) -> Decision:
    """What one verifier said about an attempt (DESIGN §10); absent ones are on record too."""
    what = {
        VerificationStatus.PASSED: "passed",
        VerificationStatus.WARNED: "warned",
        VerificationStatus.FAILED: "failed",
        VerificationStatus.INCOMPLETE: "could not verify",
        VerificationStatus.ABSENT: "is not there; skipped",
    }[outcome.status]
    reason = f"Verifier {outcome.verifier} of task {attempt.task_id} {what}"
    if outcome.report is not None:
        counts = outcome.report.counts
        reason += (
            f" ({outcome.report.status}: {counts['critical']} critical, {counts['high']} high,"
            f" {counts['warning']} warning, {counts['info']} info)"
        )
    elif outcome.reason:
        reason += f": {outcome.reason}"
    if outcome.blocks:
        reason += "; the gate blocks what follows"
    return Decision(
        decision_type="verification",
        decision_outcome=outcome.status.value,
        decision_reason=reason + ".",
        actor=ACTOR,
        decision_source="system",
        decision_trigger="autonomous",
        decision_inputs={"verifier": outcome.verifier, "gate": outcome.gate},
        causal_role="post_run",
        run_id=attempt.run_id,
        request_id=attempt.request_id,
        task_id=attempt.task_id,
        attempt_id=attempt.attempt_id,
        attempt=attempt.attempt,
        details=outcome.details(),
    )
