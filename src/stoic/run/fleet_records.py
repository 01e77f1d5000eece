"""The records a worker of database runs writes beyond the runner's (`stoic.run.decisions`):
each names the claim it is written under, a take-over says what became of the attempt, a
failure gets its one recovery evaluation, and a run with nothing left its end."""

from __future__ import annotations

import socket
from dataclasses import replace

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.records import Decision
from stoic.core.recovery import AttemptKind, RecoveryClass
from stoic.core.run_state import RunFolder
from stoic.run import decisions as made
from stoic.run.evaluation import Evaluator
from stoic.run.fleet_plans import RunPlan
from stoic.run.fleet_review import escalate_task, propose_recovery
from stoic.run.fleet_runs import Runs
from stoic.run.process import kill_leftovers
from stoic.run.run_end import lifecycle_reason, run_end_decision
from stoic.store import pg_work as work
from stoic.store.pg_store import AtHead

__all__ = [
    "end_if_done",
    "evaluate_failure",
    "fenced",
    "lease_ran_out",
    "leftovers",
    "take_over_expired",
]


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


def evaluate_failure(
    writing: AtHead, plan: RunPlan, claim: work.Claim, failure: Failure, kind: AttemptKind
) -> None:
    """The failure's one recovery evaluation, in the transaction of the end it follows: an
    automatic retry is ready after its delay; a person's part is proposed or escalated."""
    evaluator = Evaluator(claim.run_id, plan.specs, plan.guard, plan.retry_delays)
    record, decision = evaluator.evaluate(
        claim.task_id, failure, kind, claim.attempt, claim.attempt_id
    )
    writing.append([record])
    escalate_task(writing, plan.plan, claim.run_id, claim.task_id, failure)
    if decision.recovery_class is RecoveryClass.R2:
        suggestion = record.details.get("suggestion") or {}
        propose_recovery(writing, claim.run_id, plan.specs[claim.task_id], suggestion)
    again = None
    if decision.recovery_class is RecoveryClass.R1:
        again = work.Ready(
            claim.run_id,
            claim.task_id,
            claim.attempt + 1,
            AttemptKind.AUTOMATIC_RETRY.value,
            decision.delay_s or 0.0,
        )
    work.finish(writing.conn, claim, again)


def end_if_done(writing: AtHead, plan: RunPlan) -> str | None:
    """The run's end, from its whole graph, once nothing of it is ready or running; the
    status it ended with, or None while work is left."""
    run_id = plan.run_id
    if work.items_left(writing.conn, run_id):
        return None
    folder = RunFolder(run_id)
    for record in work.run_records(writing.conn, run_id):  # this transaction's too
        folder.feed(record)
    analysis = folder.view().analyse(plan.plan.graph)
    reason = lifecycle_reason(run_id, analysis)
    writing.append([run_end_decision(run_id, analysis.status, reason, analysis)])
    return analysis.status.value


def take_over_expired(
    writing: AtHead, runs: Runs, worker: str, running: set[int], limit: int
) -> tuple[list[work.Claim], list[tuple[str, str]]]:
    """Up to `limit` claims whose lease ran out (none this worker runs), each attempt
    recorded interrupted and its failure evaluated, and the runs that left with nothing
    ready or running ended; returns the claims and each ended run with its status."""
    expired = work.expired_claims(writing.conn, limit, runs.refused, worker=worker, running=running)
    touched: dict[str, RunPlan] = {}
    for claim in expired:
        plan = runs.plan(writing.conn, claim.run_id)
        record, failure = lease_ran_out(
            claim, never_launched=claim.worker == worker, leftovers=leftovers(claim)
        )
        writing.append([record])
        evaluate_failure(writing, plan, claim, failure, AttemptKind(claim.attempt_kind))
        touched[claim.run_id] = plan
    ended = [
        (run_id, status)
        for run_id, plan in touched.items()
        if (status := end_if_done(writing, plan)) is not None
    ]
    return expired, ended
