"""The audit of a database's work items against its log (pure; DESIGN §12, §13).

A work item is a projection: a task of a database run that may start (ready) or that a worker
runs under a claim (its fence). The log says the same thing another way — an open attempt is
a start record with no end after it, naming its fence — and the two must agree: a claimed item
is the open attempt of its task with its fence; a ready item is a task with no open attempt,
not done, of a run that has not ended, whose next attempt is the item's; and every open attempt
a worker started (its start names a fence) is held by a claimed item, or nobody would ever end
it. Memory is bounded by the items and the attempts open at once, not by the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stoic.core.audit import Violation, ViolationCode

__all__ = ["WorkItem", "WorkItemsChecker"]

_ENDS = frozenset({"succeeded", "failed", "halted", "interrupted"})
_DONE = frozenset({"succeeded", "skipped"})


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A row of `work_items`, as stored."""

    run_id: str
    task_id: str
    attempt: int
    fence: int | None
    """None: ready; else the claim's fencing token."""


@dataclass(slots=True)
class _Task:
    attempts: int = 0
    open_fence: int | None = None
    open_attempt: int | None = None
    open_seq: int = 0
    done: bool = False


@dataclass(slots=True)
class WorkItemsChecker:
    """Fed the log in seq order; `finish` compares it with the work items."""

    items: Sequence[WorkItem]
    _watched: dict[tuple[str, str], _Task] = field(default_factory=dict)
    _open: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    """Every attempt open now whose start names a fence: (fence, seq of its start)."""
    _ended_runs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for item in self.items:
            self._watched[(item.run_id, item.task_id)] = _Task()

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            kind, outcome = record.get("decision_type"), record.get("decision_outcome")
            run_id, task_id = record.get("run_id"), record.get("task_id")
            if kind == "run_lifecycle" and isinstance(run_id, str):
                if outcome == "started":
                    self._ended_runs.discard(run_id)
                else:
                    self._ended_runs.add(run_id)
                continue
            if kind != "execution" or not isinstance(run_id, str) or not isinstance(task_id, str):
                continue
            key = (run_id, task_id)
            task = self._watched.get(key)
            inputs = record.get("decision_inputs") or {}
            fence = inputs.get("fence") if isinstance(inputs, Mapping) else None
            if outcome == "started":
                attempt = record.get("attempt")
                if isinstance(fence, int):
                    self._open[key] = (fence, int(record.get("seq") or 0))
                if task is not None:
                    task.attempts = attempt if isinstance(attempt, int) else task.attempts + 1
                    task.open_attempt = task.attempts
                    task.open_fence = fence if isinstance(fence, int) else None
                    task.open_seq = int(record.get("seq") or 0)
            elif outcome in _ENDS or outcome in _DONE:
                self._open.pop(key, None)
                if task is not None:
                    task.open_attempt = task.open_fence = None
                    task.done = task.done or outcome in _DONE
            if outcome == "skipped" and task is not None:
                task.done = True

    def finish(self) -> list[Violation]:
        found: list[Violation] = []
        claimed = {item.fence for item in self.items if item.fence is not None}
        for item in self.items:
            task = self._watched[(item.run_id, item.task_id)]
            where = f"{item.run_id} {item.task_id}"
            if item.fence is not None:
                if task.open_fence != item.fence or task.open_attempt != item.attempt:
                    found.append(
                        _mismatch(
                            f"the work item of {where} is claimed (attempt {item.attempt},"
                            f" fence {item.fence}), but the log has no such attempt open",
                            task.open_seq or None,
                        )
                    )
                continue
            if task.open_attempt is not None or task.done or item.run_id in self._ended_runs:
                why = (
                    "an attempt of it is open"
                    if task.open_attempt is not None
                    else "it is done"
                    if task.done
                    else "its run has ended"
                )
                found.append(_mismatch(f"the work item of {where} is ready, but {why}", None))
            elif item.attempt != task.attempts + 1:
                found.append(
                    _mismatch(
                        f"the work item of {where} is ready for attempt {item.attempt}, but the"
                        f" log's next attempt is {task.attempts + 1}",
                        None,
                    )
                )
        for (run_id, task_id), (fence, seq) in sorted(self._open.items()):
            if fence not in claimed and run_id not in self._ended_runs:
                found.append(
                    _mismatch(
                        f"attempt of {run_id} {task_id} (fence {fence}) is open on the log, but"
                        " no work item holds it: no worker would ever end it",
                        seq,
                    )
                )
        return found


def _mismatch(message: str, seq: int | None) -> Violation:
    return Violation(ViolationCode.WORK_ITEM_MISMATCH, message, seq=seq)
