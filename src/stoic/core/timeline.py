"""The two views of a run (DESIGN §7): the operator's timeline and the customer's (pure).

The operator timeline is every record of the run in order, grouped by task and attempt, with
the recovery class and reason. The customer view is final statuses only — honest, and free of
mechanics: no classes, no attempt counts, no talk of retries or recovery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stoic.core.graph import Analysis, RunStatus, TaskState
from stoic.core.run_state import RunView, reconciliation

__all__ = [
    "MECHANICS",
    "customer_view",
    "mechanics_in",
    "operator_timeline",
    "run_reconciliation",
    "shown_status",
]

MECHANICS = re.compile(r"retr(y|ies|ied)|recover|\bR[123]\b|attempt", re.IGNORECASE)
"""Words the customer view must never contain."""

_CUSTOMER_TASK = {
    TaskState.SUCCEEDED: "done",
    TaskState.SKIPPED: "skipped",
    TaskState.FAILED: "failed",
    TaskState.SUSPENDED: "waiting for a decision",
    TaskState.RUNNING: "in progress",
    TaskState.INTERRUPTED: "in progress",
    TaskState.PENDING: "not started",
}
_NOT_STARTED_BLOCKED = "not started: work it needs failed"
_STOPPED = "stopped before it finished"
"""A run the log says is going, with no runner working on it (and its unfinished tasks)."""
_CUSTOMER_RUN = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.AWAITING_HUMAN: "waiting for a decision",
    RunStatus.RUNNING: "in progress",
}


def shown_status(view: RunView, analysis: Analysis, *, runner_working: bool) -> RunStatus:
    """The run's status as a view shows it.

    The log says a run is going until an end is on record; a runner killed with -9 records
    none. Whether a runner is at it is known only now, from the run's lock (`runner_working`),
    so views say it when they render: `interrupted` (or `paused`, as the runner recorded it)
    for a run that is going on record and has nobody working on it.
    """
    if analysis.status is not RunStatus.RUNNING or runner_working:
        return analysis.status
    return RunStatus.PAUSED if view.stopped == "paused" else RunStatus.INTERRUPTED


def customer_view(
    run_id: str,
    tasks: Sequence[tuple[str, str | None, TaskState]],
    analysis: Analysis,
    *,
    stopped: bool = False,
) -> dict[str, Any]:
    """Final status per task and for the run. `tasks`: (id, name, state) in plan order.

    `stopped`: nobody is working on the run (its runner is gone), so nothing is in progress.
    """
    rows = []
    for task_id, name, state in tasks:
        row: dict[str, Any] = {"task": task_id, "name": name or task_id}
        blockers = analysis.blocked.get(task_id)
        if blockers:
            row["status"] = _NOT_STARTED_BLOCKED
            row["needs"] = list(blockers)
        elif stopped and _CUSTOMER_TASK[state] == _CUSTOMER_TASK[TaskState.RUNNING]:
            row["status"] = _STOPPED
        else:
            row["status"] = _CUSTOMER_TASK[state]
        rows.append(row)
    status = _CUSTOMER_RUN[analysis.status]
    if stopped and analysis.status is RunStatus.RUNNING:
        status = _STOPPED
    return {"run": run_id, "status": status, "tasks": rows}


def mechanics_in(view: Mapping[str, Any]) -> list[str]:
    """Mechanics words in the view's own wording (task ids, names and `needs` are the user's)."""
    phrases = {str(view["status"])} | {str(row["status"]) for row in view["tasks"]}
    return sorted({match.group(0) for phrase in phrases for match in MECHANICS.finditer(phrase)})


def operator_timeline(
    records: Iterable[Mapping[str, Any]], task_order: Sequence[str]
) -> dict[str, Any]:
    """Every record of a run, in order, and the same records grouped by task and attempt."""
    entries: list[dict[str, Any]] = []
    by_task: dict[str, dict[int, list[dict[str, Any]]]] = {task: {} for task in task_order}
    for record in records:
        inputs = record["decision_inputs"]
        entry = {
            "seq": record["seq"],
            "at": record["decided_at"],
            "decision": f"{record['decision_type']}/{record['decision_outcome']}",
            "task": record.get("task_id"),
            "attempt": record.get("attempt"),
            "actor": record["actor"],
            "class": inputs.get("recovery_class"),
            "reason": record["decision_reason"],
        }
        entries.append(entry)
        task = record.get("task_id")
        if task is not None:
            attempts = by_task.setdefault(task, {})
            attempts.setdefault(record.get("attempt") or 0, []).append(entry)
    grouped = {
        task: [
            {"attempt": number or None, "records": attempts[number]} for number in sorted(attempts)
        ]
        for task, attempts in by_task.items()
    }
    return {"records": entries, "tasks": grouped}


def run_reconciliation(view: RunView, task_order: Sequence[str]) -> dict[str, Any]:
    """Per task and for the run: what failed, what was evaluated, applied, and how it ended."""
    tasks = {task_id: reconciliation(view.task(task_id)) for task_id in task_order}
    rows = list(tasks.values())
    return {
        "tasks": tasks,
        "run": {
            "original_failures": sum(row["original_failure"] is not None for row in rows),
            "recovery_evaluated": sum(row["recovery_evaluated"] for row in rows),
            "recovery_applied": sum(row["recovery_applied"] for row in rows),
            "recovery_succeeded": sum(row["recovery_succeeded"] is True for row in rows),
            "final_status": {
                state: sum(row["final_status"] == state for row in rows)
                for state in sorted({row["final_status"] for row in rows})
            },
        },
    }
