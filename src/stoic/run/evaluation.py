"""Each failure's one recovery evaluation (DESIGN §7), with the facts the classifier needs.

The classifier is pure; this gathers what it reads: whether the task is idempotent, what kind of
attempt failed, and the rule of the budget or policy that would refuse the attempt a recovery
needs (never an R1 or R2 that cannot happen). Then it builds the one evaluation record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from stoic.core.failure import Failure, FailureKind
from stoic.core.policy import Spent
from stoic.core.records import Decision
from stoic.core.recovery import (
    AttemptKind,
    RecoveryClass,
    RecoveryContext,
    RecoveryDecision,
    classify,
    suggestion_for,
)
from stoic.plan.models import TaskSpec
from stoic.run import decisions as made
from stoic.run.guard import Guard

__all__ = ["Evaluator"]


class Evaluator:
    """Evaluates the failures of one run."""

    def __init__(
        self,
        run_id: str,
        specs: Mapping[str, TaskSpec],
        guard: Guard,
        retry_delays: Mapping[FailureKind, float],
    ) -> None:
        self.run_id = run_id
        self.specs = specs
        self.guard = guard
        self.retry_delays = retry_delays
        """Seconds before an automatic retry, by kind, when the upstream named none."""

    def evaluate(
        self,
        task_id: str,
        failure: Failure,
        kind: AttemptKind,
        attempt: int,
        attempt_id: str,
        unrecorded: Spent | None = None,
        run_cost_unrecorded: float = 0.0,
    ) -> tuple[Decision, RecoveryDecision]:
        """The failure's one evaluation; the budget and policy its recovery would face decide
        with it (an attempt they would refuse makes it R3 now, not after the retry's delay).
        An R1 decision carries the delay its retry waits."""
        spec = self.specs[task_id]
        spent = unrecorded or Spent()
        context = RecoveryContext(spec.is_idempotent, kind, retry_delays=self.retry_delays)
        would_be = classify(failure, context)
        if would_be.recovery_class in (RecoveryClass.R1, RecoveryClass.R2):
            refused = self.guard.next_attempt_refusal(
                spec,
                task_unrecorded=Spent(spent.seconds, 0, spent.cost),
                # An automatic retry starts after its delay: the run's clock runs on meanwhile.
                run_unrecorded=Spent(would_be.delay_s or 0.0, 0, run_cost_unrecorded),
            )
            context = replace(context, retry_refused=refused)
        decision = classify(failure, context)
        hint: str | None = None
        suggestion: dict[str, str] | None = None
        if decision.recovery_class is RecoveryClass.R1:
            if failure.kind is FailureKind.CONTEXT_OVERFLOW:
                hint = "reduce_input"
        elif decision.recovery_class is RecoveryClass.R2:
            suggestion = suggestion_for(failure, decision)
        record = made.evaluation_decision(
            run_id=self.run_id,
            task_id=task_id,
            attempt=attempt,
            attempt_id=attempt_id,
            failure=failure,
            decision=decision,
            attempt_kind=kind,
            retry_delay_s=decision.delay_s,
            hint=hint,
            suggestion=suggestion,
        )
        return record, decision
