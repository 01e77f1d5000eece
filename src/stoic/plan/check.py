"""`stoic plan check`: what a plan file's own statuses say about it, and what a run of it
would do (pure).

The same graph code the runner uses, in the same words, with `runnable` standing in for
`running`: a plan file cannot be running, but it can have work that could run. A task the file
marks `in_progress` is work not finished, as `pending` is: behind a failed dependency it is
blocked (the orchestrators that write such files count both alike when they look for a
deadlock). What a run would do: the tasks the file marks done are recorded done, and the rest
run in waves, each wave once the one before it has succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stoic.core.graph import Readiness, TaskGraph, TaskState, analyse_states
from stoic.core.vocabulary import PLAN_CHECK_WORD
from stoic.plan.loader import Plan, PlanError

__all__ = ["CheckStatus", "PlanCheck", "check_plan", "invalid_plan_check", "waves_of"]


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
    done: tuple[tuple[str, str], ...] = ()
    """What a run would do first: record each of these done (the file's word), not run it."""
    waves: tuple[tuple[str, ...], ...] = ()
    """What a run would then run: each wave starts once every task before it has succeeded."""
    fresh: bool = False
    """The preview ignores the file's statuses, as `stoic run --fresh` would."""
    warnings: tuple[PlanError, ...] = ()
    """What would not stop a run but would leave it less checked (a verifier not found)."""

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
            "run": {
                "fresh": self.fresh,
                "done": [{"id": task, "status": word} for task, word in self.done],
                "waves": [list(wave) for wave in self.waves],
            },
            "warnings": [
                {"line": w.line, "column": w.column, "message": w.message, "hint": w.hint}
                for w in self.warnings
            ],
        }


def check_plan(
    plan: Plan,
    path: str,
    agents: Sequence[Mapping[str, Any]] = (),
    *,
    fresh: bool = False,
    warnings: Sequence[PlanError] = (),
) -> PlanCheck:
    """Analyse the statuses a valid plan carries, and say what a run of it would do."""
    # In a file nothing is under way: `in_progress` is unfinished work, like `pending`.
    states = [TaskState.PENDING if state is TaskState.RUNNING else state for state in plan.states()]
    done = {} if fresh else plan.done_in_file()
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
        done=tuple(done.items()),
        waves=waves_of(plan.graph, frozenset(done)),
        fresh=fresh,
        warnings=tuple(warnings),
    )


def waves_of(graph: TaskGraph, done: frozenset[str]) -> tuple[tuple[str, ...], ...]:
    """The tasks not in `done`, in the waves a run starts them in if each succeeds: a task is
    in the wave after the latest of its dependencies (wave 0 holds those with none left)."""
    wave_of: list[int] = [-1] * len(graph.ids)
    for index in graph.order:
        if graph.ids[index] in done:
            continue
        wave_of[index] = 1 + max((wave_of[dep] for dep in graph.dependencies[index]), default=-1)
    waves: list[list[str]] = [[] for _ in range(max(wave_of, default=-1) + 1)]
    for index, wave in enumerate(wave_of):
        if wave >= 0:
            waves[wave].append(graph.ids[index])
    return tuple(tuple(wave) for wave in waves)


def invalid_plan_check(path: str, errors: Sequence[PlanError]) -> PlanCheck:
    return PlanCheck(plan=path, status=CheckStatus.INVALID, errors=tuple(errors))
