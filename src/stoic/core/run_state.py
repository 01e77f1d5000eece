"""A run's state, folded from its decision records (pure): the truth behind state.json.

Tasks the log does not mention are pending. An attempt with a start record and no end is
`open`: its runner died, and the next runner records it as interrupted. A failed attempt is
`awaiting_evaluation` until its recovery_evaluation record says what follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass, field
from typing import Any

from stoic.core.graph import Analysis, TaskGraph, TaskState, analyse_states
from stoic.core.proposals import PERSONS_DECISIONS, decided_by_a_person
from stoic.core.recovery import AttemptKind
from stoic.core.task_outputs import outputs_ref
from stoic.core.task_states import TaskEvent, advance, event_of
from stoic.core.verification import state_entry

__all__ = ["OpenAttempt", "RunFolder", "RunView", "TaskView", "reconciliation"]

_FAILED_ENDS = frozenset({"failed", "halted", "interrupted"})
_TASK_TYPES = frozenset(
    {
        "execution",
        "recovery_evaluation",
        "proposal",
        "policy_check",
        "escalation",
        "verification",
        "gate",
    }
)


@dataclass(frozen=True, slots=True)
class OpenAttempt:
    attempt: int
    attempt_id: str
    started_at: str
    kind: AttemptKind = AttemptKind.FIRST


@dataclass(slots=True)
class TaskView:
    """One task of a run, as the log tells it.

    A RunFolder updates its own TaskViews in place as records arrive (a runner feeds it every
    record it writes); `RunFolder.view()` hands out copies.
    """

    state: TaskState = TaskState.PENDING
    attempts: int = 0
    last_attempt_id: str | None = None
    last_attempt_kind: AttemptKind = AttemptKind.FIRST
    open_attempt: OpenAttempt | None = None
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float = 0.0
    """Summed over attempts."""
    cost: float = 0.0
    """Cost units the task's result files reported, summed over attempts."""
    log_bytes: int = 0
    """Output the last ended attempt left in its log (0: it has no log file)."""
    failure: Mapping[str, Any] | None = None
    """The last attempt's failure, as recorded."""
    outcome: str | None = None
    """The last end record's outcome: succeeded, failed, halted, interrupted."""
    awaiting_evaluation: bool = False
    next_attempt_kind: AttemptKind = AttemptKind.FIRST
    retry_delay_s: float = 0.0
    retry_decided_at: str | None = None
    hint: str | None = None
    """STOIC_HINT for the next attempt (`reduce_input` after a context overflow)."""
    suggestion: Mapping[str, Any] | None = None
    """An R2 suggestion waiting for a person, or what an approval gate asks approved."""
    gated: bool = False
    """The suggestion is an approval gate's (`approval: required`), not a recovery's."""
    approved_by: str | None = None
    rejected_by: str | None = None
    """Who rejected the task's approval or suggested recovery (the task failed for it)."""
    rejected_reason: str | None = None
    escalation_id: str | None = None
    """The open escalation the task waits on."""
    proposal_id: str | None = None
    """The proposal in the review queue the task waits on (its recovery or its start)."""
    resume_session: str | None = None
    """The gated agent session its next attempt resumes (`gate/suspended`)."""
    escalated_attempt: int = -1
    """The attempt count when the task's last escalation was raised."""
    guidance: str | None = None
    """STOIC_GUIDANCE for the next attempt: a person's answer to its escalation."""
    verifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Verifier id → its state.json sub-entry (absent verifiers have none)."""
    summary: str | None = None
    """The completion summary from the task's linked document."""
    summary_error: str | None = None
    """Why the linked document gave no summary."""
    outputs: Mapping[str, Any] | None = None
    """What its last success handed its dependents, as the end record names it
    (see `task_outputs.outputs_ref`)."""
    # Outcome reconciliation (DESIGN §7).
    original_failure: Mapping[str, Any] | None = None
    recovery_evaluated: bool = False
    recovery_class: str | None = None
    recovery_applied: bool = False
    recovery_succeeded: bool | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    """A run as the log tells it."""

    run_id: str
    started: Mapping[str, Any] | None = None
    """Details of the run's start record: plan path, sha256, plan_dir …"""
    started_at: str | None = None
    lifecycle: str | None = None
    """The last run_lifecycle outcome after the start: completed, failed, awaiting_approval …"""
    stopped: str | None = None
    """How the last runner said it stopped (the status of a run_lifecycle end with no start
    after it: interrupted, paused, completed …); None while the log has work going on."""
    tasks: dict[str, TaskView] = field(default_factory=dict)
    last_seq: int = 0
    amendment: Mapping[str, Any] | None = None
    """The latest amended plan (plan_copy, plan_sha256, changes), if a person amended it."""

    def task(self, task_id: str) -> TaskView:
        return self.tasks.get(task_id, TaskView())

    def states(self, graph: TaskGraph) -> list[TaskState]:
        """Each task's state in graph order; an open attempt counts as running."""
        result = []
        for task_id in graph.ids:
            view = self.tasks.get(task_id)
            if view is None:
                result.append(TaskState.PENDING)
            elif view.open_attempt is not None:
                result.append(TaskState.RUNNING)
            else:
                result.append(view.state)
        return result

    def analyse(self, graph: TaskGraph) -> Analysis:
        return analyse_states(graph, self.states(graph))


def cost_of(details: Mapping[str, Any]) -> float:
    """The cost an attempt's result file reported (0 when it reported none)."""
    result = details.get("result")
    cost = result.get("cost") if isinstance(result, Mapping) else None
    return float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else 0.0


class RunFolder:
    """Builds a RunView record by record, so a runner can keep it current as it appends."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.tasks: dict[str, TaskView] = {}
        self.started: Mapping[str, Any] | None = None
        self.started_at: str | None = None
        self.lifecycle: str | None = None
        self.stopped: str | None = None
        self.last_seq = 0
        self.ended_seq = 0
        """The seq of the last run_lifecycle end (completed, awaiting_approval, paused …)."""
        self.decided_seq = 0
        """The seq of the run's last record that is not a notice sent about it."""
        self.attempts_made = 0
        """Attempts started or halted in the whole run."""
        self.cost_spent = 0.0
        """Cost units reported by every attempt of the run."""
        self.amendment: Mapping[str, Any] | None = None

    def feed(self, record: Mapping[str, Any]) -> None:
        if record.get("run_id") != self.run_id:
            return
        self.last_seq = record["seq"]
        kind, outcome = record["decision_type"], record["decision_outcome"]
        if kind != "notification":
            self.decided_seq = record["seq"]
        if kind == "run_lifecycle":
            if outcome == "started" and self.started is None:
                self.started, self.started_at = record["details"], record["decided_at"]
            elif outcome == "started":  # taken up again after its end (a database run)
                self.lifecycle = outcome
            else:
                self.lifecycle = outcome
                self.ended_seq = record["seq"]
                self.stopped = str(record["decision_inputs"].get("status") or outcome)
            return
        task_id = record.get("task_id")
        if task_id is None:
            return
        if kind not in _TASK_TYPES:
            return
        if kind == "policy_check" and record["decision_inputs"].get("requires") != "approval":
            return
        if kind == "proposal" and outcome in PERSONS_DECISIONS and not decided_by_a_person(record):
            return  # no person decided it: it moves no task (the audit names it)
        task = self.tasks.get(task_id)
        if task is None:
            task = self.tasks[task_id] = TaskView()
        details = record["details"]
        event = event_of(
            kind,
            outcome,
            record["decision_inputs"],
            details,
            escalation_open=task.escalation_id is not None,
        )
        if event is not None:
            task.state = advance(task.state, event)
        if kind == "proposal":
            if outcome == "created":
                task.proposal_id = record.get("proposal_id")
            elif event is not None:  # approved or rejected, through its proposal or not
                task.proposal_id = None
        if kind == "execution":
            if outcome == "started":
                self.stopped = None
            if outcome in ("started", "halted"):
                self.attempts_made += 1
            else:
                self.cost_spent += cost_of(details)
            _execution(task, record, outcome)
        elif kind == "recovery_evaluation":
            _evaluation(task, record, outcome)
        elif kind == "policy_check":
            task.suggestion = details.get("suggestion")
            task.gated = record["decision_inputs"].get("requires") == "approval"
        elif kind == "escalation":
            self._escalation(task, record, event)
        elif kind == "gate":
            _gate(task, record, event)
        elif kind == "verification":
            entry = state_entry(details, outcome)
            if entry is not None:  # copied on write: views handed out keep what they saw
                verifier = str(details.get("verifier"))
                task.verifications = {**task.verifications, verifier: entry}
        elif event is TaskEvent.APPROVED or event is TaskEvent.APPROVED_ESCALATED:
            # An open escalation still holds the task; the approval counts once it is answered.
            task.suggestion = None
            task.approved_by = record["actor"]
            kind = record["decision_inputs"].get("kind", "recovery")
            if kind == "recovery" or (kind == "retry" and task.attempts > 0):
                # A person's retry of a failed attempt is a human-approved recovery (DESIGN §7).
                task.next_attempt_kind = AttemptKind.APPROVED_RECOVERY
                task.recovery_applied = True
        elif event is TaskEvent.REJECTED:
            task.suggestion = None
            task.rejected_by = record["actor"]
            task.rejected_reason = record["decision_reason"]

    def _escalation(
        self, task: TaskView, record: Mapping[str, Any], event: TaskEvent | None
    ) -> None:
        details = record["details"]
        if event is None:  # passing it on changes nothing here
            return
        if event is TaskEvent.ESCALATED:
            task.escalation_id = record.get("escalation_id")
            task.escalated_attempt = task.attempts
            return
        task.escalation_id = None
        if event is TaskEvent.ABORTED:
            return
        task.approved_by = record["actor"]
        task.guidance = str(details.get("note") or "") or None
        task.next_attempt_kind = (
            AttemptKind.APPROVED_RECOVERY if task.attempts > 0 else AttemptKind.FIRST
        )
        if details.get("decision") == "amended" and isinstance(details.get("amendment"), Mapping):
            self.amendment = details["amendment"]

    def view(self, *, shared: bool = False) -> RunView:
        """The run as fed so far; `shared` skips copying the tasks, for a reader that only
        reads and is done before the next record is fed."""
        tasks = self.tasks if shared else {t: copy(task) for t, task in self.tasks.items()}
        return RunView(
            run_id=self.run_id,
            started=self.started,
            started_at=self.started_at,
            lifecycle=self.lifecycle,
            stopped=self.stopped,
            tasks=dict(tasks) if shared else tasks,
            last_seq=self.last_seq,
            amendment=self.amendment,
        )


def _execution(task: TaskView, record: Mapping[str, Any], outcome: str) -> None:
    attempt = record.get("attempt") or 1
    if outcome == "started":
        attempt_kind = AttemptKind(record["decision_inputs"].get("attempt_kind", "first"))
        task.attempts = max(task.attempts, attempt)
        task.last_attempt_id = record.get("attempt_id")
        task.last_attempt_kind = attempt_kind
        task.open_attempt = OpenAttempt(
            attempt, record.get("attempt_id") or "", record["decided_at"], attempt_kind
        )
        task.started_at = task.started_at or record["decided_at"]
        task.hint = None
        task.guidance = None
        task.verifications = {}
        task.rejected_by = task.rejected_reason = None
        if attempt_kind is not AttemptKind.RESUMED:
            task.resume_session = None
        return
    if outcome == "skipped":  # done in the plan file: not run, no attempt
        task.outcome = outcome
        return
    details = record["details"]
    task.ended_at = record["decided_at"]
    task.duration_s += float(details.get("duration_s", 0.0) or 0.0)
    task.cost += cost_of(details)
    task.log_bytes = int(details.get("output_bytes", 0) or 0)
    task.outcome = outcome
    task.attempts = max(task.attempts, attempt)
    if "summary" in details or "summary_error" in details:
        task.summary = details.get("summary")
        task.summary_error = details.get("summary_error")
    if outcome == "succeeded":
        task.open_attempt = None
        task.failure = None
        task.outputs = outputs_ref(details)
        if task.recovery_applied:
            task.recovery_succeeded = True
    elif outcome in _FAILED_ENDS:
        inputs = record["decision_inputs"]
        if task.open_attempt is not None:
            task.last_attempt_kind = task.open_attempt.kind
        else:
            task.last_attempt_kind = task.next_attempt_kind
        task.open_attempt = None
        # A halted attempt never started, yet it is the failure a retry or evaluation names.
        task.last_attempt_id = record.get("attempt_id") or task.last_attempt_id
        task.failure = inputs
        task.awaiting_evaluation = True
        task.original_failure = task.original_failure or inputs
        if task.recovery_applied:
            task.recovery_succeeded = False


def _gate(task: TaskView, record: Mapping[str, Any], event: TaskEvent | None) -> None:
    """A gated agent's session: suspended on its call's proposal, resumed once it is decided."""
    if event is TaskEvent.DEFERRED:
        task.proposal_id = record.get("proposal_id")
        session = record["details"].get("session_id")
        task.resume_session = session if isinstance(session, str) else None
    elif event is TaskEvent.RESUMED:
        task.proposal_id = None
        task.next_attempt_kind = AttemptKind.RESUMED
        task.approved_by = record["details"].get("decided_by")


def _evaluation(task: TaskView, record: Mapping[str, Any], outcome: str) -> None:
    inputs = record["decision_inputs"]
    task.awaiting_evaluation = False
    task.recovery_evaluated = True
    task.recovery_class = inputs.get("recovery_class")
    if outcome == "recovery_applied":
        task.next_attempt_kind = AttemptKind.AUTOMATIC_RETRY
        task.retry_delay_s = float(inputs.get("retry_delay_s", 0.0))
        task.retry_decided_at = record["decided_at"]
        task.hint = inputs.get("hint")
        task.recovery_applied = True
    elif outcome == "recovery_suggested":
        task.suggestion = record["details"].get("suggestion")
        task.gated = False


def reconciliation(task: TaskView) -> dict[str, Any]:
    """The outcome reconciliation of one task (DESIGN §7)."""
    return {
        "original_failure": dict(task.original_failure) if task.original_failure else None,
        "recovery_evaluated": task.recovery_evaluated,
        "recovery_class": task.recovery_class,
        "recovery_applied": task.recovery_applied,
        "recovery_succeeded": task.recovery_succeeded,
        "final_status": task.state.value,
    }
