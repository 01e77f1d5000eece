"""A person runs a failed task again inside its run (`stoic retry`, DESIGN §6 and §7): pure.

A retry is a person's decision about one failed attempt, and only a failure that stands can be
retried: a task that succeeded, was skipped, still waits to run, waits for a person, or whose
failure is not evaluated yet is refused with what it is instead. The decision is recorded as
`proposal/approved` with `decision_inputs.kind: retry`, linked to the failed attempt by its
`attempt_id` and `attempt` (no proposal sits in the queue: the person's decision is the record);
the attempt it allows is a human-approved recovery, so a failure of it stands (R3, loop
prevention).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stoic.core import next_steps
from stoic.core.graph import Analysis, TaskState
from stoic.core.run_state import RunView
from stoic.core.vocabulary import closest

__all__ = ["RETRY_KIND", "is_retry", "retry_refusal"]

RETRY_KIND = "retry"
"""`decision_inputs.kind` of a person's retry (a `proposal/approved` record)."""


def is_retry(record: Mapping[str, Any]) -> bool:
    """Whether the record is a person's retry of a failed task."""
    inputs = record.get("decision_inputs")
    return (
        record.get("decision_type") == "proposal"
        and record.get("decision_outcome") == "approved"
        and isinstance(inputs, Mapping)
        and inputs.get("kind") == RETRY_KIND
    )


def retry_refusal(
    run_id: str,
    task_id: str,
    ids: tuple[str, ...],
    view: RunView,
    analysis: Analysis,
    *,
    runner_working: bool = False,
    proposals: Mapping[str, str] | None = None,
) -> str | None:
    """Why `task_id` of the run cannot be retried now, in one line; None when it can.

    `runner_working`: a runner holds the run now; `proposals`: the pending proposal of each
    task of the run that has one, so a refusal can name the decision the task waits for."""
    if task_id not in ids:
        guess = closest(task_id, ids)
        hint = f" (did you mean {guess!r}?)" if guess else f" (its tasks: {', '.join(ids[:8])})"
        return f"run {run_id} has no task {task_id!r}{hint}"
    task = view.task(task_id)
    where = f"task {task_id} of run {run_id}"
    if task.open_attempt is not None and runner_working:
        return f"{where} did not fail: it is running right now"
    if task.open_attempt is not None or task.awaiting_evaluation:
        return (
            f"{where} has an attempt whose end or evaluation is not on record yet;"
            f" {next_steps.continue_run(run_id)} records it first"
        )
    state = task.state
    if state is TaskState.FAILED:
        return None
    if state is TaskState.SUCCEEDED:
        return f"{where} did not fail: it succeeded, so there is nothing to retry"
    if state is TaskState.SKIPPED:
        return f"{where} did not fail: it was skipped"
    if state is TaskState.SUSPENDED:
        if task.escalation_id:
            return (
                f"{where} did not fail: it waits for the answer to {task.escalation_id}"
                f" ({next_steps.answer_escalation(task.escalation_id, 'DECISION')})"
            )
        proposal = (proposals or {}).get(task_id, "PROPOSAL_ID")
        return (
            f"{where} did not fail: it is suspended, waiting for its proposal to be decided"
            f" ({next_steps.approve(proposal, continue_run=True)})"
        )
    roots = analysis.blocked.get(task_id)
    if roots:
        return (
            f"{where} did not fail: it is blocked by {', '.join(roots)}; retry"
            f" {'that' if len(roots) == 1 else 'those'} instead and it runs after"
        )
    return f"{where} did not fail: it is {state.value} and has not run yet"
