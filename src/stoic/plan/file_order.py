"""The order another orchestrator's plan runs in: its file order (DESIGN §5).

A plan written with `sections:` is the format of other agent plan orchestrators, which run one
task at a time, top to bottom, and run the tasks of one `parallel_group` together. That order
becomes dependencies here, so the runner, `stoic plan check` and the audit all read one graph:
each step (a task, or a run of consecutive tasks sharing a `parallel_group`) depends on every
task of the step before it, besides the dependencies it names. A step after a failed one is
blocked, as any dependent is: stoic does not start work the file put after work that failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["file_order", "steps_of"]


def steps_of(groups: Sequence[Any], resources: Sequence[frozenset[str]] = ()) -> list[list[int]]:
    """Task positions grouped into steps: consecutive tasks with one `parallel_group` value
    (not None) share a step, unless two of them claim one of the same `exclusive_resources`
    (then each is a step of its own, as that orchestrator fell back to one at a time); every
    other task is a step of its own."""
    steps: list[list[int]] = []
    previous: Any = None
    for index, group in enumerate(groups):
        if group is not None and steps and group == previous:
            steps[-1].append(index)
        else:
            steps.append([index])
        previous = group
    if not resources:
        return steps
    apart: list[list[int]] = []
    for step in steps:
        claimed = [resources[index] for index in step]
        clash = any(a & b for n, a in enumerate(claimed) for b in claimed[n + 1 :])
        apart.extend([[index] for index in step] if clash else [step])
    return apart


def file_order(
    tasks: Sequence[Mapping[str, Any]],
    index_of: Mapping[str, int],
    numbered: Sequence[tuple[int, ...]],
) -> list[tuple[int, ...]]:
    """`numbered` (each task's named dependencies, by position) with the file's order added."""
    groups: list[Any] = [None] * len(index_of)
    resources: list[frozenset[str]] = [frozenset()] * len(index_of)
    seen: set[int] = set()
    for task in tasks:
        task_id = task.get("id")
        index = index_of.get(task_id) if type(task_id) is str else None
        if index is None or index in seen:
            continue  # no id, or a duplicate: reported by the graph pass
        seen.add(index)
        group = task.get("parallel_group")
        plain = isinstance(group, str | int) and not isinstance(group, bool) and group != ""
        groups[index] = group if plain else None
        claimed = task.get("exclusive_resources")
        if isinstance(claimed, list):
            resources[index] = frozenset(item for item in claimed if isinstance(item, str))
    ordered = list(numbered)
    before: list[int] = []
    for step in steps_of(groups, resources):
        for index in step:
            named = ordered[index]
            ordered[index] = (*named, *(dep for dep in before if dep not in named))
        before = step
    return ordered
