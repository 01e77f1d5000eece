"""The task this process runs for, if any: read from its environment and worker marker.

Every append to the decision log goes through `vet`, so no way of writing — the CLI, the
Python API, a queue decision — lets a task decide as a person (DESIGN §12), nor anyone record a
proposal's decision as anything but a person.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from stoic.core.provenance import TaskContext, not_a_persons, task_context, vet_decision
from stoic.core.records import Decision
from stoic.exceptions import ActingAsPerson, InvalidDecision

__all__ = ["current_task", "mark_task_process", "vet"]

_TASK_PROCESS = False


def mark_task_process() -> None:
    """This process runs tasks' code (a Python worker) for the rest of its life."""
    global _TASK_PROCESS  # one flag per process, set once, never cleared
    _TASK_PROCESS = True


def current_task() -> TaskContext | None:
    return task_context(os.environ, worker=_TASK_PROCESS)


def vet(decisions: Sequence[Decision]) -> list[Decision]:
    """The decisions as they may be recorded from this process; a person's from a task raises,
    and so does a proposal's decision that no person made."""
    context = current_task()
    vetted: list[Decision] = []
    for decision in decisions:
        if context is not None:
            outcome = vet_decision(decision, context)
            if isinstance(outcome, str):
                raise ActingAsPerson(outcome)
            decision = outcome
        refused = not_a_persons(decision)
        if refused is not None:
            raise InvalidDecision(refused)
        vetted.append(decision)
    return vetted
