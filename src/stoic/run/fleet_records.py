"""The records a worker of database runs writes beyond the runner's (`stoic.run.decisions`):
each names the claim it is written under, and a take-over says what became of the attempt."""

from __future__ import annotations

import socket
from dataclasses import replace

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.records import Decision
from stoic.run import decisions as made
from stoic.run.process import kill_leftovers
from stoic.store import pg_work as work

__all__ = ["fenced", "lease_ran_out", "leftovers"]


def fenced(decision: Decision, claim: work.Claim) -> Decision:
    """`decision` naming the claim it is written under: its worker and fencing token."""
    return replace(
        decision,
        decision_inputs={**decision.decision_inputs, "worker": claim.worker, "fence": claim.fence},
    )


def leftovers(claim: work.Claim) -> str:
    """What became of the processes of a claim being taken over: those of a worker of this
    host are killed first (a task never runs on unrecorded); another host's may still run."""
    host = claim.worker.partition(" pid ")[0]
    if host != socket.gethostname():
        return f"its processes on {host}, if any are left, may still run"
    killed = kill_leftovers(claim.run_id, claim.task_id, claim.attempt)
    return "its leftover processes were killed" if killed else "none of its processes was left"


def lease_ran_out(
    claim: work.Claim, *, never_launched: bool, leftovers: str
) -> tuple[Decision, Failure]:
    """The end of an attempt whose worker's lease ran out (interrupted, partial unknown: the
    matrix decides as for any interruption), or of a claim its own worker holds but never
    launched — its commit went unheard — which ran nothing: failed, the worker unavailable,
    partial false (the matrix retries it once)."""
    if never_launched:
        why = "its worker never launched it (the claim's commit went unheard)"
        failure = Failure(FailureKind.UNAVAILABLE, why, partial=Partial.FALSE)
        outcome = "failed"
    else:
        why = f"the lease of its worker ({claim.worker}) ran out before it recorded an end"
        failure = Failure(FailureKind.INTERRUPTED, f"{why}; {leftovers}", partial=Partial.UNKNOWN)
        outcome = "interrupted"
    record, _ = made.interrupted_decision(
        claim.run_id, claim.task_id, claim.attempt, claim.attempt_id, killed=False
    )
    what = "failed before it started" if never_launched else "was interrupted"
    return replace(
        record,
        decision_outcome=outcome,
        decision_reason=(
            f"Task {claim.task_id} attempt {claim.attempt} {what}: {why}"
            f" (worker {claim.worker}, fence {claim.fence}); {leftovers}; partial:"
            f" {failure.partial.value}."
        ),
        decision_inputs={**failure.to_json(), "worker": claim.worker, "fence": claim.fence},
        details={"duration_s": 0.0, "lease_expired": not never_launched, "leftovers": leftovers},
    ), failure
