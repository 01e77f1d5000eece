"""`stoic plan check`: what a plan file's own statuses say about it (pure).

The same graph code the runner uses, in the same words, with `runnable` standing in for
`running`: a plan file cannot be running, but it can have work that could run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stoic.core.graph import Readiness, analyse_states
from stoic.core.vocabulary import PLAN_CHECK_WORD
from stoic.plan.loader import Plan, PlanError

__all__ = ["CheckStatus", "PlanCheck", "check_plan", "invalid_plan_check"]


class CheckStatus(StrEnum):
    COMPLETED = "completed"
    RUNNABLE = "runnable"
    AWAITING_HUMAN = "awaiting_human"
    FAILED = "failed"
    INVALID = "invalid"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {
    CheckStatus.COMPLETED: 0,
    CheckStatus.RUNNABLE: 0,
    CheckStatus.FAILED: 1,
    CheckStatus.INVALID: 2,
    CheckStatus.AWAITING_HUMAN: 3,
}
_FROM_RUN_STATUS = {status: CheckStatus(word) for status, word in PLAN_CHECK_WORD.items()}


@dataclass(frozen=True, slots=True)
class PlanCheck:
    """The verdict on one plan file."""

    plan: str
    status: CheckStatus
    runnable: tuple[str, ...] = ()
    """Tasks that could run now, and tasks in progress (they can still finish)."""
    waiting: tuple[str, ...] = ()
    """Tasks behind dependencies that can still finish, or behind a person's decision."""
    awaiting_human: tuple[str, ...] = ()
    """Suspended tasks: each waits for a person."""
    blocked: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Each task that can never run, with the failed tasks at the root of it."""
    failed: tuple[str, ...] = ()
    errors: tuple[PlanError, ...] = field(default=())
    agents: tuple[Mapping[str, Any], ...] = ()
    """Every agent task: id, role, profile, and whether the role was inferred."""

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "status": self.status.value,
            "runnable": list(self.runnable),
            "waiting": list(self.waiting),
            "awaiting_human": list(self.awaiting_human),
            "blocked": [{"id": task, "blocked_by": list(roots)} for task, roots in self.blocked],
            "failed": list(self.failed),
            "errors": [
                {"line": e.line, "column": e.column, "message": e.message, "hint": e.hint}
                for e in self.errors
            ],
            "agents": [dict(agent) for agent in self.agents],
        }


def check_plan(plan: Plan, path: str, agents: Sequence[Mapping[str, Any]] = ()) -> PlanCheck:
    """Analyse the statuses a valid plan carries."""
    states = plan.states()
    analysis = analyse_states(plan.graph, states)
    waiting = tuple(
        task_id
        for task_id, word in analysis.readiness.items()
        if word in (Readiness.WAITING, Readiness.AWAITING_HUMAN)
        and task_id not in analysis.awaiting_human
    )
    runnable = tuple(
        task_id
        for task_id, word in analysis.readiness.items()
        if word in (Readiness.RUNNABLE, Readiness.ACTIVE)
    )
    return PlanCheck(
        plan=path,
        status=_FROM_RUN_STATUS[analysis.status],
        runnable=runnable,
        waiting=waiting,
        awaiting_human=analysis.awaiting_human,
        blocked=tuple(analysis.blocked.items()),
        failed=analysis.failed,
        agents=tuple(agents),
    )


def invalid_plan_check(path: str, errors: Sequence[PlanError]) -> PlanCheck:
    return PlanCheck(plan=path, status=CheckStatus.INVALID, errors=tuple(errors))
