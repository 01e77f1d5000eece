"""Where a decision comes from: a person at a terminal, or a process a run started.

A task (or an agent, check or verifier a run started) must never decide as a person (DESIGN
§12): a decision made from inside one is refused when it is a person's to make, and otherwise
carries the task it came from (`details.from_task`), so the audit can tell the two apart. Pure:
the caller hands in the environment and whether it is a task's worker process.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from stoic.core.records import Decision

__all__ = [
    "PERSONS_DECISIONS",
    "PERSON_ONLY",
    "TASK_VARIABLES",
    "TaskContext",
    "decided_by_a_person",
    "decided_by_person",
    "made_in_task",
    "not_a_persons",
    "task_context",
    "vet_decision",
]

TASK_VARIABLES = ("STOIC_RUN_ID", "STOIC_TASK_ID", "STOIC_ATTEMPT", "STOIC_RESULT")
"""The variables the runner sets for every process it starts for a task."""

PERSON_ONLY = frozenset(
    {
        ("proposal", "approved"),
        ("proposal", "rejected"),
        ("proposal", "deferred"),
        ("proposal", "undeferred"),
        ("proposal", "execution_started"),
        ("proposal", "executed"),
        ("proposal", "rolled_back"),
        ("escalation", "resolved"),
        ("pause", "resumed"),
        ("user", "added"),
        ("user", "removed"),
        ("user", "role_changed"),
        ("user", "secret_reset"),
    }
)
"""Decisions only a person makes, whoever the record names as actor."""

PERSONS_DECISIONS = frozenset({"approved", "rejected", "deferred", "undeferred"})
"""What only a person may do to a proposal: an agent or a task proposes, it never decides —
its own proposal or another's."""


@dataclass(frozen=True, slots=True)
class TaskContext:
    """The task a process runs for, as its environment tells it."""

    run_id: str | None
    task_id: str | None
    attempt: str | None
    agent_role: str | None
    worker: bool
    """A Python task's worker process: inside a task whatever its environment says."""

    @property
    def actor(self) -> str:
        """Who the task is on record: its agent role, else the task itself."""
        return f"agent:{self.agent_role}" if self.agent_role else "system:task"

    def describe(self) -> str:
        parts = [
            f"run {self.run_id}" if self.run_id else "",
            f"task {self.task_id}" if self.task_id else "",
        ]
        named = ", ".join(part for part in parts if part)
        return f"inside a task ({named})" if named else "inside a task's worker process"

    def to_json(self) -> dict[str, Any]:
        found = {"run_id": self.run_id, "task_id": self.task_id, "attempt": self.attempt}
        return {
            **{name: value for name, value in found.items() if value is not None},
            "actor": self.actor,
            **({"worker": True} if self.worker else {}),
        }


def task_context(env: Mapping[str, str], *, worker: bool = False) -> TaskContext | None:
    """The task this process runs for, or None when no run started it."""
    if not worker and not any(name in env for name in TASK_VARIABLES):
        return None
    return TaskContext(
        run_id=env.get("STOIC_RUN_ID"),
        task_id=env.get("STOIC_TASK_ID"),
        attempt=env.get("STOIC_ATTEMPT"),
        agent_role=env.get("STOIC_AGENT_ROLE") or None,
        worker=worker,
    )


def made_in_task(record: Mapping[str, Any]) -> bool:
    """Whether the record was made from inside a task (it carries `details.from_task`)."""
    details = record.get("details")
    return isinstance(details, Mapping) and details.get("from_task") is not None


def decided_by_person(record: Mapping[str, Any]) -> bool:
    """A record a person's decision (by source, actor, or what was decided)."""
    return (
        record.get("decision_source") in ("human", "hybrid")
        or str(record.get("actor", "")).startswith("human:")
        or (record.get("decision_type"), record.get("decision_outcome")) in PERSON_ONLY
    )


def decided_by_a_person(record: Mapping[str, Any]) -> bool:
    """Whether a proposal record is one a person's decision can be: decided by `human:…` as a
    person, outside any task. Any other approval, rejection or deferral was never recorded by
    stoic (it refuses them) and moves nothing."""
    return (
        record.get("decision_source") == "human"
        and str(record.get("actor", "")).startswith("human:")
        and not made_in_task(record)
    )


def not_a_persons(decision: Decision) -> str | None:
    """Why `decision` may be recorded by nobody: a proposal approved, rejected, deferred or
    undeferred that `decided_by_a_person` would not take. Every fold would skip such a record
    and the audit would name it for good, so it is refused before it is written."""
    if decision.decision_type != "proposal" or decision.decision_outcome not in PERSONS_DECISIONS:
        return None
    fields = {
        "decision_source": decision.decision_source,
        "actor": decision.actor,
        "details": decision.details,
    }
    if decided_by_a_person(fields):
        return None
    return (
        f"refused: proposal/{decision.decision_outcome} by {decision.actor or '(no actor)'}"
        f" (source {decision.decision_source}): only a person decides a proposal, recorded as"
        " actor human:NAME with source human"
    )


def vet_decision(decision: Decision, context: TaskContext | None) -> Decision | str:
    """The decision as it may be recorded, or why it is refused (a person's, from a task)."""
    if context is None:
        return decision
    fields = {
        "decision_source": decision.decision_source,
        "actor": decision.actor,
        "decision_type": decision.decision_type,
        "decision_outcome": decision.decision_outcome,
    }
    if decided_by_person(fields):
        what = f"{decision.decision_type}/{decision.decision_outcome}"
        return (
            f"refused: {what} is a person's decision, and this process runs {context.describe()};"
            " a task cannot act as a person (a person decides from their own shell)"
        )
    return replace(decision, details={**decision.details, "from_task": context.to_json()})
