"""A run's state, folded from its decision records (pure): the truth behind state.json.

Tasks the log does not mention are pending. An attempt with a start record and no end is
`open`: its runner died, and the next runner records it as interrupted. A failed attempt is
`awaiting_evaluation` until its recovery_evaluation record says what follows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stoic.core.graph import Analysis, TaskGraph, TaskState, analyse_states
from stoic.core.recovery import AttemptKind

__all__ = ["OpenAttempt", "RunFolder", "RunView", "TaskView", "fold_run", "reconciliation"]

_FAILED_ENDS = frozenset({"failed", "halted", "interrupted"})


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    attempt: int
    attempt_id: str
    started_at: str
    kind: AttemptKind = AttemptKind.FIRST


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task of a run, as the log tells it."""

    state: TaskState = TaskState.PENDING
    attempts: int = 0
    last_attempt_id: str | None = None
    last_attempt_kind: AttemptKind = AttemptKind.FIRST
    open_attempt: OpenAttempt | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float = 0.0
    """Summed over attempts."""
    cost: float = 0.0
    """Cost units the task's result files reported, summed over attempts."""
    failure: Mapping[str, Any] | None = None
    """The last attempt's failure, as recorded."""
    outcome: str | None = None
    """The last end record's outcome: succeeded, failed, halted, interrupted."""
    awaiting_evaluation: bool = False
    next_attempt_kind: AttemptKind = AttemptKind.FIRST
    retry_delay_s: float = 0.0
    retry_decided_at: str | None = None
    hint: str | None = None
    """STOIC_HINT for the next attempt (`reduce_input` after a context overflow)."""
    suggestion: Mapping[str, Any] | None = None
    """An R2 suggestion waiting for a person."""
    approved_by: str | None = None
    # Outcome reconciliation (DESIGN §7).
    original_failure: Mapping[str, Any] | None = None
    recovery_evaluated: bool = False
    recovery_class: str | None = None
    recovery_applied: bool = False
    recovery_succeeded: bool | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    """A run as the log tells it."""

    run_id: str
    started: Mapping[str, Any] | None = None
    """Details of the run's start record: plan path, sha256, plan_dir …"""
    started_at: str | None = None
    lifecycle: str | None = None
    """The last run_lifecycle outcome after the start: completed, failed, awaiting_approval …"""
    tasks: dict[str, TaskView] = field(default_factory=dict)
    last_seq: int = 0

    def task(self, task_id: str) -> TaskView:
        return self.tasks.get(task_id, TaskView())

    def states(self, graph: TaskGraph) -> list[TaskState]:
        """Each task's state in graph order; an open attempt counts as running."""
        result = []
        for task_id in graph.ids:
            view = self.tasks.get(task_id)
            if view is None:
                result.append(TaskState.PENDING)
            elif view.open_attempt is not None:
                result.append(TaskState.RUNNING)
            else:
                result.append(view.state)
        return result

    def analyse(self, graph: TaskGraph) -> Analysis:
        return analyse_states(graph, self.states(graph))

    @property
    def cost(self) -> float:
        return sum(task.cost for task in self.tasks.values())

    @property
    def attempts(self) -> int:
        return sum(task.attempts for task in self.tasks.values())


def _cost_of(details: Mapping[str, Any]) -> float:
    result = details.get("result")
    cost = result.get("cost") if isinstance(result, Mapping) else None
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0


class RunFolder:
    """Builds a RunView record by record, so a runner can keep it current as it appends."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.tasks: dict[str, TaskView] = {}
        self.started: Mapping[str, Any] | None = None
        self.started_at: str | None = None
        self.lifecycle: str | None = None
        self.last_seq = 0
        self.attempts_made = 0
        """Attempts started or halted in the whole run."""
        self.cost_spent = 0.0
        """Cost units reported by every attempt of the run."""

    def feed(self, record: Mapping[str, Any]) -> None:
        if record.get("run_id") != self.run_id:
            return
        self.last_seq = record["seq"]
        kind, outcome = record["decision_type"], record["decision_outcome"]
        if kind == "run_lifecycle":
            if outcome == "started" and self.started is None:
                self.started, self.started_at = record["details"], record["decided_at"]
            else:
                self.lifecycle = outcome
            return
        task_id = record.get("task_id")
        if task_id is None:
            return
        task = self.tasks.get(task_id, TaskView())
        if kind == "execution":
            if outcome in ("started", "halted"):
                self.attempts_made += 1
            else:
                self.cost_spent += _cost_of(record["details"])
            task = _execution(task, record, outcome)
        elif kind == "recovery_evaluation":
            task = _evaluation(task, record, outcome)
        elif kind == "proposal" and outcome == "approved":
            task = replace(
                task,
                state=TaskState.PENDING,
                suggestion=None,
                next_attempt_kind=AttemptKind.APPROVED_RECOVERY,
                approved_by=record["actor"],
                recovery_applied=True,
            )
        elif kind == "proposal" and outcome == "rejected":
            task = replace(task, state=TaskState.FAILED, suggestion=None)
        else:
            return
        self.tasks[task_id] = task

    def view(self) -> RunView:
        return RunView(
            run_id=self.run_id,
            started=self.started,
            started_at=self.started_at,
            lifecycle=self.lifecycle,
            tasks=dict(self.tasks),
            last_seq=self.last_seq,
        )


def _execution(task: TaskView, record: Mapping[str, Any], outcome: str) -> TaskView:
    attempt = record.get("attempt") or 1
    if outcome == "started":
        attempt_kind = AttemptKind(record["decision_inputs"].get("attempt_kind", "first"))
        return replace(
            task,
            state=TaskState.RUNNING,
            attempts=max(task.attempts, attempt),
            last_attempt_id=record.get("attempt_id"),
            last_attempt_kind=attempt_kind,
            open_attempt=OpenAttempt(
                attempt, record.get("attempt_id") or "", record["decided_at"], attempt_kind
            ),
            started_at=task.started_at or record["decided_at"],
            hint=None,
        )
    details = record["details"]
    duration = details.get("duration_s", 0.0)
    ended = replace(
        task,
        open_attempt=None,
        ended_at=record["decided_at"],
        duration_s=task.duration_s + float(duration or 0.0),
        cost=task.cost + _cost_of(details),
        outcome=outcome,
        attempts=max(task.attempts, attempt),
    )
    if outcome == "succeeded":
        return replace(
            ended,
            state=TaskState.SUCCEEDED,
            failure=None,
            recovery_succeeded=True if task.recovery_applied else task.recovery_succeeded,
        )
    if outcome in _FAILED_ENDS:
        inputs = record["decision_inputs"]
        return replace(
            ended,
            state=TaskState.FAILED,
            failure=inputs,
            awaiting_evaluation=True,
            original_failure=task.original_failure or inputs,
            recovery_succeeded=False if task.recovery_applied else task.recovery_succeeded,
            last_attempt_kind=(
                task.open_attempt.kind if task.open_attempt is not None else task.next_attempt_kind
            ),
        )
    return ended


def _evaluation(task: TaskView, record: Mapping[str, Any], outcome: str) -> TaskView:
    inputs = record["decision_inputs"]
    evaluated = replace(
        task,
        awaiting_evaluation=False,
        recovery_evaluated=True,
        recovery_class=inputs.get("recovery_class"),
    )
    if outcome == "recovery_applied":
        return replace(
            evaluated,
            state=TaskState.PENDING,
            next_attempt_kind=AttemptKind.AUTOMATIC_RETRY,
            retry_delay_s=float(inputs.get("retry_delay_s", 0.0)),
            retry_decided_at=record["decided_at"],
            hint=inputs.get("hint"),
            recovery_applied=True,
        )
    if outcome == "recovery_suggested":
        return replace(
            evaluated, state=TaskState.SUSPENDED, suggestion=record["details"].get("suggestion")
        )
    return replace(evaluated, state=TaskState.FAILED)


def fold_run(run_id: str, records: Iterable[Mapping[str, Any]]) -> RunView:
    """Replay the records of one run (others are ignored) into a RunView."""
    folder = RunFolder(run_id)
    for record in records:
        folder.feed(record)
    return folder.view()


def reconciliation(task: TaskView) -> dict[str, Any]:
    """The outcome reconciliation of one task (DESIGN §7)."""
    return {
        "original_failure": dict(task.original_failure) if task.original_failure else None,
        "recovery_evaluated": task.recovery_evaluated,
        "recovery_class": task.recovery_class,
        "recovery_applied": task.recovery_applied,
        "recovery_succeeded": task.recovery_succeeded,
        "final_status": task.state.value,
    }
