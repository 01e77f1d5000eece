"""What one turn of the runner's loop holds: the attempts it admitted, the records it makes in
one append, and each failure's evaluation — plain data, kept apart from the loop itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from stoic.core.escalations import EscalationRequest
from stoic.core.failure import Deferral
from stoic.core.records import Decision, Record
from stoic.core.recovery import AttemptKind, RecoveryDecision
from stoic.plan.models import TaskSpec
from stoic.run.attempt import Attempt

__all__ = ["Evaluated", "Running", "Step"]


@dataclass(slots=True)
class Running:
    """One attempt the runner admitted: its place in the plan, its attempt, what it is."""

    index: int
    attempt: Attempt
    spec: TaskSpec
    kind: AttemptKind
    budget_bound: bool = False
    """The attempt's time limit comes from a budget, not the task's timeout."""
    timeout_default: str | None = None
    """The setting whose default timeout bounds the attempt, when the plan gave none."""


@dataclass(slots=True)
class Step:
    """What one turn of the loop records (in one append) and then does."""

    batch: list[Decision] = field(default_factory=list)
    evaluated: list[Evaluated] = field(default_factory=list)
    starting: list[Running] = field(default_factory=list)
    halted: list[tuple[int, str]] = field(default_factory=list)
    """Starts a policy or budget refused, with the rule."""
    waiting: list[int] = field(default_factory=list)
    """Starts that wait for a person's approval."""
    ends: dict[str | None, Record] = field(default_factory=dict)
    """Each ended attempt's end record, as appended, by attempt id."""


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A failure's one recovery evaluation, and what it hands a person (if anything)."""

    index: int
    decision: RecoveryDecision
    escalation: EscalationRequest | None = None
    deferral: Deferral | None = None
