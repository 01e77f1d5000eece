"""The keys of another orchestrator's plans that change how a task runs, as stoic's own
(DESIGN §5): a task's `max_attempts` bounds its attempts as `budget.max_attempts` does, and
the plan's `meta.validation` block becomes verifiers (§10).

That orchestrator runs each agent named in `validators` after every task whose agent is in
`run_after`, reading the validator's definition from `.claude/agents/<name>.md` beside its
plans folder. Here each becomes an agent verifier on those tasks, with that file as its
`agent_file`: where the file is not there, the verifier is not there either (tier 1). Verifiers
fail open and never send their task round again, so `max_validation_attempts` bounds nothing
here; the README says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from stoic.plan.models import Budget, TaskSpec, Validation, Verifier

__all__ = ["as_stoic_tasks", "validation_verifiers"]


def validation_verifiers(block: Validation | None, task: TaskSpec) -> list[Verifier]:
    """The verifiers `block` (a plan's `meta.validation`) adds to `task`: none unless enabled."""
    if block is None or not block.enabled:
        return []
    if task.agent is None or task.agent not in block.run_after:
        return []
    return [
        Verifier(
            id=f"validation-{name}",
            agent=name,
            agent_file=f"../agents/{name}.md",
            prompt=f"Validate the work of task {task.id}"
            + (f" ({task.name})" if task.name else "")
            + ": did it do what its description asks, and do its tests pass?",
        )
        for name in block.validators
    ]


def as_stoic_tasks(block: Validation | None, tasks: Sequence[TaskSpec]) -> tuple[TaskSpec, ...]:
    """`tasks`, each with the verifiers the validation block adds after its own, and its
    `max_attempts` as its budget's bound on attempts (unless the budget sets one)."""
    result = []
    for task in tasks:
        update: dict[str, object] = {}
        added = validation_verifiers(block, task)
        if added:
            update["verify"] = [*(task.verify or ()), *added]
        bound = task.max_attempts
        budget = task.budget or Budget()
        if bound is not None and budget.max_attempts is None:
            update["budget"] = budget.model_copy(update={"max_attempts": bound})
        result.append(task.model_copy(update=update) if update else task)
    return tuple(result)
