"""Plan graph analysis: readiness, transitive blocking with root causes, run status (DESIGN §6).

Pure and O(V+E) apart from the root-blocker sets, which are shared between tasks rather than
copied. "No runnable task" is never taken to mean "done": the run status is computed from the
whole graph.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "Analysis",
    "GraphTask",
    "Readiness",
    "RunStatus",
    "TaskState",
    "analyse",
    "find_cycle",
    "topological_order",
]


class TaskState(StrEnum):
    """Where a task is in its life."""

    PENDING = "pending"  # not started yet
    RUNNING = "running"  # an attempt is under way
    SUCCEEDED = "succeeded"  # finished well
    FAILED = "failed"  # finished badly, and the failure stands
    SUSPENDED = "suspended"  # waiting for a human: a proposal or an escalation
    SKIPPED = "skipped"  # not run, by rule; counts as satisfied for its dependents
    INTERRUPTED = "interrupted"  # the run died mid-attempt; evaluated like a failure next


DONE_STATES = frozenset({TaskState.SUCCEEDED, TaskState.SKIPPED})


class Readiness(StrEnum):
    """What a task can do next, derived from its state and its dependencies."""

    DONE = "done"  # succeeded or skipped
    RUNNABLE = "runnable"  # pending, every dependency done
    ACTIVE = "active"  # running, or interrupted and about to be evaluated
    WAITING = "waiting"  # pending behind dependencies that can still finish
    AWAITING_HUMAN = "awaiting_human"  # suspended, or pending behind a suspended task only
    BLOCKED = "blocked"  # pending behind a failed task: can never run
    FAILED = "failed"  # failed itself


class RunStatus(StrEnum):
    """The status of a whole run."""

    COMPLETED = "completed"  # every task succeeded or was skipped
    RUNNING = "running"  # a task is runnable or under way
    AWAITING_HUMAN = "awaiting_human"  # nothing can move until a person decides
    FAILED = "failed"  # no task can ever run again


@dataclass(frozen=True, slots=True)
class GraphTask:
    id: str
    depends_on: tuple[str, ...]
    state: TaskState


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the graph says, task by task and for the run."""

    status: RunStatus
    readiness: Mapping[str, Readiness]
    runnable: tuple[str, ...]
    """Pending tasks whose dependencies are all done, in plan order."""
    active: tuple[str, ...]
    awaiting_human: tuple[str, ...]
    """Suspended tasks: each waits for a person."""
    blocked: Mapping[str, tuple[str, ...]]
    """Each blocked task and the failed tasks at the root of its blocking, in plan order."""
    failed: tuple[str, ...]


def topological_order(dependencies: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Tasks with each after its dependencies (plan order among equals); None if cyclic."""
    indegree = dict.fromkeys(dependencies, 0)
    dependents: dict[str, list[str]] = {task: [] for task in dependencies}
    for task, deps in dependencies.items():
        for dep in deps:
            indegree[task] += 1
            dependents[dep].append(task)
    ready = deque(task for task, degree in indegree.items() if degree == 0)
    order: list[str] = []
    while ready:
        task = ready.popleft()
        order.append(task)
        for dependent in dependents[task]:
            indegree[dependent] -= 1
            if indegree[dependent] == 0:
                ready.append(dependent)
    return order if len(order) == len(dependencies) else None


def find_cycle(dependencies: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One dependency cycle as a path that returns to its start (`a → b → a`), or None."""
    colour: dict[str, int] = {}  # absent: unseen, 1: on the current path, 2: finished
    for start in dependencies:
        if start in colour:
            continue
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(start, iter(dependencies[start]))]
        colour[start] = 1
        path.append(start)
        while stack:
            node, children = stack[-1]
            advanced = False
            for child in children:
                if child not in dependencies:
                    continue
                state = colour.get(child)
                if state == 1:
                    return [*path[path.index(child) :], child]
                if state is None:
                    colour[child] = 1
                    path.append(child)
                    stack.append((child, iter(dependencies[child])))
                    advanced = True
                    break
            if not advanced:
                colour[node] = 2
                path.pop()
                stack.pop()
    return None


_EMPTY: frozenset[str] = frozenset()


def analyse(tasks: Sequence[GraphTask]) -> Analysis:
    """Readiness of every task, root blockers of every blocked task, and the run status."""
    by_id = {task.id: task for task in tasks}
    order = topological_order({task.id: task.depends_on for task in tasks})
    if order is None:
        raise ValueError(f"dependency cycle: {' → '.join(find_cycle(_deps(tasks)) or [])}")
    position = {task.id: index for index, task in enumerate(tasks)}
    readiness: dict[str, Readiness] = {}
    failed_roots: dict[str, frozenset[str]] = {}
    human_roots: dict[str, bool] = {}
    for task_id in order:
        task = by_id[task_id]
        roots: frozenset[str] = _EMPTY
        behind_human = False
        all_done = True
        for dep in task.depends_on:
            dep_roots = failed_roots[dep]
            if dep_roots:
                roots = dep_roots if not roots else (roots | dep_roots)
            behind_human = behind_human or human_roots[dep]
            all_done = all_done and readiness[dep] is Readiness.DONE
        state = task.state
        if state in DONE_STATES:
            readiness[task_id] = Readiness.DONE
            roots, behind_human = _EMPTY, False
        elif state is TaskState.FAILED:
            readiness[task_id] = Readiness.FAILED
            roots = frozenset({task_id})
        elif state in (TaskState.RUNNING, TaskState.INTERRUPTED):
            readiness[task_id] = Readiness.ACTIVE
        elif state is TaskState.SUSPENDED:
            readiness[task_id] = Readiness.AWAITING_HUMAN
            behind_human = True
        elif roots:
            readiness[task_id] = Readiness.BLOCKED
        elif all_done:
            readiness[task_id] = Readiness.RUNNABLE
        elif behind_human:
            readiness[task_id] = Readiness.AWAITING_HUMAN
        else:
            readiness[task_id] = Readiness.WAITING
        # A task under way or suspended stands between its dependents and any failure behind
        # it: they wait for it, not for the failure.
        if state in (TaskState.RUNNING, TaskState.INTERRUPTED, TaskState.SUSPENDED):
            roots = _EMPTY
        failed_roots[task_id] = roots
        human_roots[task_id] = behind_human

    def in_plan_order(ids: Iterable[str]) -> tuple[str, ...]:
        return tuple(sorted(ids, key=position.__getitem__))

    def pick(wanted: Readiness) -> tuple[str, ...]:
        return in_plan_order(t for t, r in readiness.items() if r is wanted)

    blocked = {
        task_id: in_plan_order(failed_roots[task_id])
        for task_id in in_plan_order(t for t, r in readiness.items() if r is Readiness.BLOCKED)
    }
    runnable, active = pick(Readiness.RUNNABLE), pick(Readiness.ACTIVE)
    waiting_human = pick(Readiness.AWAITING_HUMAN)
    if all(r is Readiness.DONE for r in readiness.values()):
        status = RunStatus.COMPLETED
    elif runnable or active or any(r is Readiness.WAITING for r in readiness.values()):
        status = RunStatus.RUNNING
    elif waiting_human:
        status = RunStatus.AWAITING_HUMAN
    else:
        status = RunStatus.FAILED
    return Analysis(
        status=status,
        readiness=readiness,
        runnable=runnable,
        active=active,
        awaiting_human=tuple(t for t in waiting_human if by_id[t].state is TaskState.SUSPENDED),
        blocked=blocked,
        failed=pick(Readiness.FAILED),
    )


def _deps(tasks: Sequence[GraphTask]) -> dict[str, tuple[str, ...]]:
    return {task.id: task.depends_on for task in tasks}
