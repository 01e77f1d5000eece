"""A run's state, folded from its decision records (pure): the truth behind state.json.

Tasks the log does not mention are pending. An attempt with a start record and no end is
`open`: its runner died, and the next runner records it as interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stoic.core.graph import Analysis, TaskGraph, TaskState, analyse_states

__all__ = ["OpenAttempt", "RunFolder", "RunView", "TaskView", "fold_run"]

_END_STATES = {
    "succeeded": TaskState.SUCCEEDED,
    "failed": TaskState.FAILED,
    "halted": TaskState.FAILED,
    "interrupted": TaskState.FAILED,
}
"""Until a recovery decision says otherwise, an ended attempt's failure stands."""


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    attempt: int
    attempt_id: str
    started_at: str


@dataclass(frozen=True, slots=True)
class TaskView:
    """One task of a run, as the log tells it."""

    state: TaskState = TaskState.PENDING
    attempts: int = 0
    last_attempt_id: str | None = None
    open_attempt: OpenAttempt | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float = 0.0
    """Summed over attempts."""
    failure: Mapping[str, Any] | None = None
    """The last attempt's failure, as recorded."""
    outcome: str | None = None
    """The last end record's outcome: succeeded, failed, halted, interrupted."""


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


class RunFolder:
    """Builds a RunView record by record, so a runner can keep it current as it appends."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.tasks: dict[str, TaskView] = {}
        self.started: Mapping[str, Any] | None = None
        self.started_at: str | None = None
        self.lifecycle: str | None = None
        self.last_seq = 0

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
        if kind != "execution" or task_id is None:
            return
        task = self.tasks.get(task_id, TaskView())
        attempt = record.get("attempt") or 1
        if outcome == "started":
            task = replace(
                task,
                state=TaskState.RUNNING,
                attempts=max(task.attempts, attempt),
                last_attempt_id=record.get("attempt_id"),
                open_attempt=OpenAttempt(
                    attempt, record.get("attempt_id") or "", record["decided_at"]
                ),
                started_at=task.started_at or record["decided_at"],
            )
        elif outcome in _END_STATES:
            duration = record["details"].get("duration_s", 0.0)
            task = replace(
                task,
                state=_END_STATES[outcome],
                open_attempt=None,
                ended_at=record["decided_at"],
                duration_s=task.duration_s + float(duration or 0.0),
                failure=None if outcome == "succeeded" else record["decision_inputs"],
                outcome=outcome,
                attempts=max(task.attempts, attempt),
            )
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


def fold_run(run_id: str, records: Iterable[Mapping[str, Any]]) -> RunView:
    """Replay the records of one run (others are ignored) into a RunView."""
    folder = RunFolder(run_id)
    for record in records:
        folder.feed(record)
    return folder.view()
