"""What is checked before every attempt: approval, policy, budgets (DESIGN §7).

A retry never bypasses these: they run before first attempts, automatic retries and approved
recoveries alike. The rules themselves are pure (`stoic.core.policy`); this applies them to a
run as its records tell it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.machinery import PathFinder
from pathlib import Path

from stoic.core.failure import Failure, FailureKind
from stoic.core.policy import (
    BudgetLimits,
    Policy,
    Spent,
    approval_rule,
    budget_violation,
    module_violation,
    policy_violation,
    remaining_seconds,
)
from stoic.core.records import Decision
from stoic.core.run_state import RunFolder
from stoic.plan.loader import Plan, PlanError
from stoic.plan.models import Budget, TaskSpec, Verifier
from stoic.run import decisions as made
from stoic.run.attempt import Attempt, AttemptResult
from stoic.store.processes import run_policy

__all__ = [
    "Admission",
    "Guard",
    "budget_exhausted_view",
    "executor_of",
    "in_plan_folder",
    "limits_of",
    "policy_rule",
    "policy_warnings",
    "run_policy",
]


def in_plan_folder(plan_dir: Path, call: str) -> bool:
    """Is the top-level package of `call:`'s module a module or package of the plan's folder?"""
    top = call.partition(":")[0].split(".")[0]
    return bool(top) and PathFinder.find_spec(top, [str(plan_dir)]) is not None


def limits_of(budget: Budget | None) -> BudgetLimits:
    if budget is None:
        return BudgetLimits()
    return BudgetLimits(budget.max_seconds, budget.max_attempts, budget.max_cost)


def executor_of(spec: TaskSpec) -> str:
    if spec.run is not None:
        return "shell"
    if spec.call is not None:
        return "python"
    if spec.http is not None:
        return "http"
    return "agent"


@dataclass(frozen=True, slots=True)
class Admission:
    """May the attempt start? If not, the records that say why and the failure they make."""

    refusal: tuple[list[Decision], Failure] | None = None
    timeout: float | None = None
    """A budget leaves less time than the task's timeout: the attempt gets this instead."""


class Guard:
    def __init__(
        self,
        policy: Policy,
        run_budget: BudgetLimits,
        folder: RunFolder,
        role_of: Callable[[TaskSpec], str | None] = lambda spec: spec.agent,
        plan_dir: Path | None = None,
        plan_verifiers: Sequence[Verifier] = (),
    ) -> None:
        self.policy = policy
        self.plan_dir = plan_dir
        self.plan_verifiers = list(plan_verifiers)
        self._in_plan_folder: dict[str, bool] = {}
        self.run_budget = run_budget
        self.folder = folder
        self.role_of = role_of
        """An agent task's role (`agent: auto` resolved), for `role:NAME` approval rules."""

    def approval_needed(self, spec: TaskSpec, attempt: Attempt) -> Decision | None:
        """A task that needs a person's approval and has none waits for it, suspended."""
        rule = approval_rule(self.policy, spec.id, self.role_of(spec), spec.approval)
        task = self.folder.tasks.get(spec.id)
        if rule is None or (task is not None and task.approved_by is not None):
            return None
        return made.approval_needed_decision(
            attempt, rule=rule, executor=executor_of(spec), command=describe_command(spec)
        )

    def admit(self, spec: TaskSpec, attempt: Attempt, in_flight: Spent | None = None) -> Admission:
        """Policy, then the task's budget, then the run's: the first that refuses decides.

        `in_flight` is what the run spent in records not yet written: the attempts that just
        ended and those admitted a moment ago go to disk in the same commit as this start.
        """
        rule, executor, command = self._policy_rule(spec)
        check = "policy_check"
        if rule is None and spec.budget is None and self.run_budget == BudgetLimits():
            return Admission()
        if rule is None:
            task_spent, run_spent = self._spent(spec.id)
            if in_flight is not None:
                run_spent += in_flight
            task_limits = limits_of(spec.budget)
            check = "budget_check"
            rule = budget_violation(task_limits, task_spent, "task") or budget_violation(
                self.run_budget, run_spent, "run"
            )
            if rule is None:
                left = remaining_seconds([(task_limits, task_spent), (self.run_budget, run_spent)])
                if left is not None and (spec.timeout is None or left < spec.timeout):
                    return Admission(timeout=max(0.001, left))
                return Admission()
        refusal = made.guard_decisions(
            attempt, check=check, rule=rule, executor=executor, command=command
        )
        return Admission(refusal=refusal)

    def next_attempt_refusal(
        self, spec: TaskSpec, *, task_unrecorded: Spent, run_unrecorded: Spent
    ) -> str | None:
        """The rule that would refuse the task's next attempt, as its recovery would face it.

        The recovery classifier needs this at the failure (DESIGN §7: never an R1 or R2 that
        cannot happen). `*_unrecorded` is what is spent but not on record yet: the failed
        attempt's time and cost, and for the run the retry's delay as well.
        """
        rule = self._policy_rule(spec)[0]
        if rule is not None or (spec.budget is None and self.run_budget == BudgetLimits()):
            return rule
        task_spent, run_spent = self._spent(spec.id)
        return budget_violation(
            limits_of(spec.budget), task_spent + task_unrecorded, "task"
        ) or budget_violation(self.run_budget, run_spent + run_unrecorded, "run")

    def _policy_rule(self, spec: TaskSpec) -> tuple[str | None, str, str]:
        return policy_rule(self.policy, spec, self.plan_verifiers, self._in_folder)

    def _in_folder(self, call: str) -> bool:
        """Asked once per call per run (the worker checks again itself)."""
        if call not in self._in_plan_folder and self.plan_dir is not None:
            self._in_plan_folder[call] = in_plan_folder(self.plan_dir, call)
        return self._in_plan_folder.get(call, True)

    def _spent(self, task_id: str) -> tuple[Spent, Spent]:
        folder = self.folder
        task = folder.tasks.get(task_id)
        run_seconds = 0.0
        if folder.started_at:
            started = datetime.fromisoformat(folder.started_at)
            run_seconds = (datetime.now(UTC) - started).total_seconds()
        task_spent = Spent(task.duration_s, task.attempts, task.cost) if task else Spent()
        return task_spent, Spent(run_seconds, folder.attempts_made, folder.cost_spent)


def policy_rule(
    policy: Policy,
    spec: TaskSpec,
    plan_verifiers: Sequence[Verifier],
    in_folder: Callable[[str], bool],
) -> tuple[str | None, str, str]:
    """The policy rule an attempt of the task breaks, if any, with the executor and command
    line of the process that breaks it (the task's own when none does): what the runner halts
    before the start, and what `stoic plan check` says it would."""
    for stage_executor, stage_command in _processes(spec, plan_verifiers):
        rule = policy_violation(policy, stage_executor, stage_command)
        if rule is not None:
            return rule, stage_executor, stage_command
    rule = None
    if spec.call is not None:
        rule = module_violation(policy, spec.call, in_plan_folder=in_folder(spec.call))
    return rule, executor_of(spec), describe_command(spec)


def policy_warnings(plan: Plan, policy: Policy) -> list[PlanError]:
    """Each task a run would halt before it starts because the policy forbids what it would
    run (R3, its dependents blocked): `stoic plan check` says so, at the task's line."""
    plan_dir = plan.path.absolute().parent
    verifiers = plan.document.meta.verify or ()
    found = []
    for spec in plan.tasks:
        rule = policy_rule(policy, spec, verifiers, lambda call: in_plan_folder(plan_dir, call))[0]
        if rule is not None:
            line, column = plan.task_positions.get(spec.id, (1, 1))
            found.append(
                PlanError(
                    line,
                    column,
                    f"task {spec.id!r}: a run halts it before it starts: {rule}",
                    "the policy (stoic.toml's [policy], the plan's meta.policy) forbids it: the"
                    " run records it halted and blocks what depends on it",
                )
            )
    return found


def _processes(spec: TaskSpec, plan_verifiers: Sequence[Verifier]) -> Iterator[tuple[str, str]]:
    """Every process an attempt of the task would start, as (executor, command line): the
    task, its iterate check, its verifiers — policy covers each of them."""
    yield executor_of(spec), describe_command(spec)
    if spec.iterate is not None:
        yield "shell", shlex.join(spec.iterate.check)
    for verifier in [*plan_verifiers, *(spec.verify or ())]:
        if verifier.agent is not None:
            yield "agent", f"agent {verifier.agent}"
        elif isinstance(verifier.run, str):
            yield "shell", verifier.run
        elif verifier.run is not None:
            yield "shell", shlex.join(verifier.run)


def describe_command(spec: TaskSpec) -> str:
    """A task's command as one line, for records and people."""
    if spec.run is not None:
        return spec.run if isinstance(spec.run, str) else shlex.join(spec.run)
    if spec.call is not None:
        return spec.call
    if spec.http is not None:
        return f"{spec.http.method} {spec.http.url}"
    if spec.agent is not None:
        asked = spec.prompt or spec.description or spec.name or spec.id
        shown = asked if len(asked) <= 60 else asked[:59] + "…"
        return f"agent {spec.agent}: {' '.join(shown.split())}"
    return "(nothing)"


def budget_exhausted_view(result: AttemptResult, limit: float | None) -> AttemptResult:
    """An attempt stopped by a budget's time limit failed for the budget, not a timeout."""
    failure = result.failure
    if failure is None or failure.kind is not FailureKind.TIMEOUT:
        return result
    exhausted = Failure(
        FailureKind.BUDGET_EXHAUSTED,
        f"budget max_seconds used up after {limit or 0:.1f}s of this attempt",
        partial=failure.partial,
        exit_code=failure.exit_code,
    )
    return replace(result, failure=exhausted)
