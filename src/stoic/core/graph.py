"""Plan graph analysis: readiness, transitive blocking with root causes, run status (DESIGN §6).

Pure and O(V+E) apart from the root-blocker sets, which are shared between tasks rather than
copied. "No runnable task" is never taken to mean "done": the run status is computed from the
whole graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "GRAPH_STATUSES",
    "Analysis",
    "GraphTask",
    "Readiness",
    "RunStatus",
    "TaskGraph",
    "TaskState",
    "analyse",
    "analyse_states",
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
    """The status of a whole run (DESIGN §6): the one set of words every view of a run uses.

    The graph analysis gives the first four; a runner's stretch of a run can also end `paused`
    or `interrupted`. Where a format says it differently, `core/vocabulary.py` maps it.
    """

    COMPLETED = "completed"  # every task succeeded or was skipped
    RUNNING = "running"  # a task is runnable or under way
    AWAITING_HUMAN = "awaiting_human"  # nothing can move until a person decides
    FAILED = "failed"  # no task can ever run again
    PAUSED = "paused"  # the workspace was paused: the runner started nothing more
    INTERRUPTED = "interrupted"  # a signal stopped the runner, or the runner is gone


GRAPH_STATUSES = frozenset(
    {RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.AWAITING_HUMAN, RunStatus.FAILED}
)
"""The statuses the graph analysis gives (the others say how a runner stopped)."""


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
    """Tasks with each after its dependencies; None if cyclic."""
    ids = list(dependencies)
    index_of = {task: index for index, task in enumerate(ids)}
    order = _order_of([[index_of[dep] for dep in deps] for deps in dependencies.values()])
    return None if order is None else [ids[index] for index in order]


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


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """The static shape of a plan: tasks by position, dependencies as positions, an order.

    Built once per plan; analysing a new set of states then touches only lists of numbers.
    """

    ids: tuple[str, ...]
    dependencies: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]
    """Every task after its dependencies."""

    @classmethod
    def build(cls, ids: Sequence[str], dependencies: Sequence[Sequence[str]]) -> TaskGraph:
        """Raises ValueError for an unknown dependency or a cycle (printed as `a → b → a`)."""
        index_of = {task: index for index, task in enumerate(ids)}
        if len(index_of) != len(ids):
            raise ValueError("task ids are not unique")
        try:
            numbered = tuple(tuple(index_of[dep] for dep in deps) for deps in dependencies)
        except KeyError as exc:
            raise ValueError(f"unknown dependency {exc.args[0]!r}") from None
        return cls.from_indices(tuple(ids), numbered)

    @classmethod
    def from_indices(
        cls, ids: tuple[str, ...], dependencies: tuple[tuple[int, ...], ...]
    ) -> TaskGraph:
        order = _order_of(dependencies)
        if order is None:
            named = {ids[i]: [ids[d] for d in deps] for i, deps in enumerate(dependencies)}
            raise ValueError(f"dependency cycle: {' → '.join(find_cycle(named) or [])}")
        return cls(ids, dependencies, order)


def _order_of(dependencies: Sequence[Sequence[int]]) -> tuple[int, ...] | None:
    # Plans are usually written dependencies first: then plan order is already an order.
    if all(dep < index for index, deps in enumerate(dependencies) for dep in deps):
        return tuple(range(len(dependencies)))
    indegree = [len(deps) for deps in dependencies]
    dependents: list[list[int]] = [[] for _ in dependencies]
    for index, deps in enumerate(dependencies):
        for dep in deps:
            dependents[dep].append(index)
    order = [index for index, degree in enumerate(indegree) if degree == 0]
    position = 0
    while position < len(order):
        for dependent in dependents[order[position]]:
            indegree[dependent] -= 1
            if indegree[dependent] == 0:
                order.append(dependent)
        position += 1
    return tuple(order) if len(order) == len(dependencies) else None


_EMPTY: frozenset[int] = frozenset()
_SHIELDING = frozenset({TaskState.RUNNING, TaskState.INTERRUPTED, TaskState.SUSPENDED})


def analyse(tasks: Sequence[GraphTask]) -> Analysis:
    """Readiness of every task, root blockers of every blocked task, and the run status."""
    graph = TaskGraph.build([task.id for task in tasks], [task.depends_on for task in tasks])
    return analyse_states(graph, [task.state for task in tasks])


def analyse_states(graph: TaskGraph, states: Sequence[TaskState]) -> Analysis:
    """`analyse` over a prebuilt graph: `states[i]` is the state of `graph.ids[i]`."""
    count = len(graph.ids)
    if len(states) != count:
        raise ValueError(f"{len(states)} states for {count} tasks")
    done, failed_word, blocked_word = Readiness.DONE, Readiness.FAILED, Readiness.BLOCKED
    readiness: list[Readiness] = [done] * count
    failed_roots: list[frozenset[int]] = [_EMPTY] * count
    behind_human = [False] * count
    dependencies = graph.dependencies
    for index in graph.order:
        state = states[index]
        if state in DONE_STATES:
            continue  # readiness DONE, no roots, not behind a human
        roots: frozenset[int] = _EMPTY
        human = False
        all_done = True
        for dep in dependencies[index]:
            dep_roots = failed_roots[dep]
            if dep_roots:
                roots = dep_roots if not roots else (roots | dep_roots)
            if behind_human[dep]:
                human = True
            if readiness[dep] is not done:
                all_done = False
        if state is TaskState.FAILED:
            readiness[index] = failed_word
            roots = frozenset({index})
        elif state is TaskState.RUNNING or state is TaskState.INTERRUPTED:
            readiness[index] = Readiness.ACTIVE
        elif state is TaskState.SUSPENDED:
            readiness[index] = Readiness.AWAITING_HUMAN
            human = True
        elif roots:
            readiness[index] = blocked_word
        elif all_done:
            readiness[index] = Readiness.RUNNABLE
        elif human:
            readiness[index] = Readiness.AWAITING_HUMAN
        else:
            readiness[index] = Readiness.WAITING
        # A task under way or suspended stands between its dependents and any failure behind
        # it: they wait for it, not for the failure.
        failed_roots[index] = _EMPTY if state in _SHIELDING else roots
        behind_human[index] = human

    ids = graph.ids
    by_readiness: dict[Readiness, list[str]] = {word: [] for word in Readiness}
    blocked: dict[str, tuple[str, ...]] = {}
    for index, word in enumerate(readiness):
        by_readiness[word].append(ids[index])
        if word is blocked_word:
            blocked[ids[index]] = tuple(ids[root] for root in sorted(failed_roots[index]))
    runnable = tuple(by_readiness[Readiness.RUNNABLE])
    active = tuple(by_readiness[Readiness.ACTIVE])
    waiting_human = by_readiness[Readiness.AWAITING_HUMAN]
    if len(by_readiness[done]) == count:
        status = RunStatus.COMPLETED
    elif runnable or active or by_readiness[Readiness.WAITING]:
        status = RunStatus.RUNNING
    elif waiting_human:
        status = RunStatus.AWAITING_HUMAN
    else:
        status = RunStatus.FAILED
    return Analysis(
        status=status,
        readiness=dict(zip(ids, readiness, strict=True)),
        runnable=runnable,
        active=active,
        awaiting_human=tuple(ids[i] for i in range(count) if states[i] is TaskState.SUSPENDED),
        blocked=blocked,
        failed=tuple(by_readiness[failed_word]),
    )
