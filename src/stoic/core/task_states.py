"""The task state machine (DESIGN §6): which records move a task, and where to (pure).

One table serves the run fold (`run_state.py`), the audit's invariants (`invariants.py`) and
the scheduling core (`scheduling.py`), so the three cannot disagree on what a record does to a
task. A record moves a task through one `TaskEvent`; `advance` gives the state after it. The
fold and the invariants read logs as they were written, so a record always moves its task to the
event's state; `allowed` says whether the state it came from is one a well-formed run leaves it
in (the scheduler's moves are property-tested against it; the audit's rules say which records
break the log and why).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stoic.core.graph import TaskState

__all__ = [
    "EVALUATION_MOVES",
    "EXECUTION_MOVES",
    "TRANSITIONS",
    "TaskEvent",
    "Transition",
    "advance",
    "allowed",
    "event_of",
]


class TaskEvent(StrEnum):
    """What a record says happened to a task."""

    STARTED = "started"  # execution/started: an attempt began
    SUCCEEDED = "succeeded"  # execution/succeeded
    FAILED = "failed"  # execution/failed, halted or interrupted: evaluated next
    RETRY_DECIDED = "retry_decided"  # recovery_evaluation/recovery_applied (R1)
    SUGGESTED = "suggested"  # recovery_evaluation/recovery_suggested (R2): a person decides
    NOT_RECOVERED = "not_recovered"  # recovery_evaluation/recovery_skipped: the failure stands
    GATED = "gated"  # policy_check requiring approval: it waits for a person
    APPROVED = "approved"  # proposal/approved: it may run again
    APPROVED_ESCALATED = "approved_escalated"  # approved while an escalation still holds it
    REJECTED = "rejected"  # proposal/rejected: the failure stands
    ESCALATED = "escalated"  # escalation/raised (not passed on): a person decides
    ANSWERED = "answered"  # escalation/resolved with an answer: it may run again
    ABORTED = "aborted"  # escalation/resolved as aborted
    SKIPPED = "skipped"  # execution/skipped: done in the plan file, recorded at the start
    DEFERRED = "deferred"  # gate/suspended: a gated agent's call waits for a person
    RESUMED = "resumed"  # gate/resumed: that call is decided; the session may go on


_P, _R, _S, _F, _W = (
    TaskState.PENDING,
    TaskState.RUNNING,
    TaskState.SUCCEEDED,
    TaskState.FAILED,
    TaskState.SUSPENDED,
)


@dataclass(frozen=True, slots=True)
class Transition:
    to: TaskState
    """The state the record leaves its task in."""
    from_states: frozenset[TaskState]
    """The states a well-formed run has the task in when the record is written."""


TRANSITIONS: Mapping[TaskEvent, Transition] = {
    TaskEvent.STARTED: Transition(_R, frozenset({_P})),
    TaskEvent.SUCCEEDED: Transition(_S, frozenset({_R})),
    # A halt fails an attempt that never started: the task was pending.
    TaskEvent.FAILED: Transition(_F, frozenset({_R, _P})),
    TaskEvent.RETRY_DECIDED: Transition(_P, frozenset({_F})),
    TaskEvent.SUGGESTED: Transition(_W, frozenset({_F})),
    TaskEvent.NOT_RECOVERED: Transition(_F, frozenset({_F})),
    TaskEvent.GATED: Transition(_W, frozenset({_P})),
    TaskEvent.APPROVED: Transition(_P, frozenset({_W, _F, _P})),
    TaskEvent.APPROVED_ESCALATED: Transition(_W, frozenset({_W})),
    TaskEvent.REJECTED: Transition(_F, frozenset({_W})),
    TaskEvent.ESCALATED: Transition(_W, frozenset({_F, _W, _P})),
    TaskEvent.ANSWERED: Transition(_P, frozenset({_W})),
    TaskEvent.ABORTED: Transition(_F, frozenset({_W})),
    TaskEvent.SKIPPED: Transition(TaskState.SKIPPED, frozenset({_P})),
    TaskEvent.DEFERRED: Transition(_W, frozenset({_F})),
    TaskEvent.RESUMED: Transition(_P, frozenset({_W})),
}
_TO: Mapping[TaskEvent, TaskState] = {event: t.to for event, t in TRANSITIONS.items()}

_EXECUTION = {
    "started": TaskEvent.STARTED,
    "succeeded": TaskEvent.SUCCEEDED,
    "failed": TaskEvent.FAILED,
    "halted": TaskEvent.FAILED,
    "interrupted": TaskEvent.FAILED,
    "skipped": TaskEvent.SKIPPED,
}
_EVALUATION = {
    "recovery_applied": TaskEvent.RETRY_DECIDED,
    "recovery_suggested": TaskEvent.SUGGESTED,
    "recovery_skipped": TaskEvent.NOT_RECOVERED,
}

TOOL_CALL_KIND = "tool_call"
"""A proposal decision's `kind` when the proposal is a gated agent's tool call."""
TASK_PROPOSAL_KIND = "task_proposal"
"""A proposal decision's `kind` when a task made the proposal while it ran (`stoic propose` in
its shell): the task's own doing, so deciding it starts, stops or holds no task."""
_GATE = {"suspended": TaskEvent.DEFERRED, "resumed": TaskEvent.RESUMED}


EXECUTION_MOVES: Mapping[str, TaskState] = {
    outcome: _TO[event] for outcome, event in _EXECUTION.items()
}
"""Where each `execution` outcome moves its task: the table above, read once for hot folds."""
EVALUATION_MOVES: Mapping[str, TaskState] = {
    outcome: _TO[event] for outcome, event in _EVALUATION.items()
}
"""Where each `recovery_evaluation` outcome moves its task, likewise."""


def advance(state: TaskState, event: TaskEvent) -> TaskState:
    """The task's state after `event` (a log is folded as written: see `allowed`)."""
    del state  # every event leaves its task in one state, wherever it was
    return _TO[event]


def allowed(state: TaskState, event: TaskEvent) -> bool:
    """Whether a well-formed run has a task in `state` when `event` is recorded."""
    return state in TRANSITIONS[event].from_states


def event_of(
    decision_type: str,
    outcome: str,
    inputs: Mapping[str, Any],
    details: Mapping[str, Any],
    *,
    escalation_open: bool = False,
) -> TaskEvent | None:
    """What a task's record does to it; None for a record that leaves its state alone (a
    verification, an escalation passed on, a policy check that needs no approval …).

    `escalation_open`: an escalation holds the task, so an approval counts once it is answered.
    """
    if decision_type == "execution":
        return _EXECUTION.get(outcome)
    if decision_type == "recovery_evaluation":
        return _EVALUATION.get(outcome)
    if decision_type == "proposal":
        if inputs.get("kind") in (TOOL_CALL_KIND, TASK_PROPOSAL_KIND):
            return None  # the agent's call (its task moves by the gate's records), or a task's
        if outcome == "approved":
            return TaskEvent.APPROVED_ESCALATED if escalation_open else TaskEvent.APPROVED
        return TaskEvent.REJECTED if outcome == "rejected" else None
    if decision_type == "escalation":
        decision = details.get("decision")
        if outcome == "raised":
            return None if decision == "escalated" else TaskEvent.ESCALATED
        return TaskEvent.ABORTED if decision == "aborted" else TaskEvent.ANSWERED
    if decision_type == "gate":
        return _GATE.get(outcome)
    if decision_type == "policy_check" and inputs.get("requires") == "approval":
        return TaskEvent.GATED
    return None
