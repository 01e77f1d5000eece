"""The behavioural invariants of the decision log (DESIGN §12), checked as records stream by.

Pure: fed parsed records in order, it keeps a little state per task of each run and names every
record that breaks a rule. State for a run is dropped when the run ends, so memory follows the
runs in flight, not the length of the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stoic.core.audit import Violation, ViolationCode
from stoic.core.gate import GateChecker
from stoic.core.graph import DONE_STATES, TaskGraph, TaskState, analyse_states
from stoic.core.pause import PauseInForce, pause_after
from stoic.core.proposals import PERSONS_DECISIONS, decided_by_a_person
from stoic.core.provenance import decided_by_person, made_in_task
from stoic.core.retry import is_retry
from stoic.core.schedules import SlotChecker
from stoic.core.task_states import EVALUATION_MOVES, EXECUTION_MOVES, advance, event_of
from stoic.core.timeline import customer_view, mechanics_in

__all__ = ["InvariantChecker"]

_FAILED = frozenset({"failed", "halted", "interrupted"})
_TASK_TYPES = frozenset({"execution", "recovery_evaluation", "proposal", "escalation", "gate"})
_RUN_ENDS = frozenset({"completed", "failed", "awaiting_approval", "stuck"})
_ENDS = frozenset({"succeeded", *_FAILED})


@dataclass(slots=True)
class _Task:
    started: bool = False
    unevaluated: int | None = None
    """seq of a failure still waiting for its evaluation"""
    failed_kind: str = "first"
    """attempt kind of the last failed attempt"""
    failed_attempt_id: str | None = None
    """attempt_id of the last failed attempt: a person's retry must name it"""
    halted: bool = False
    """the last failure was a policy or budget halt"""
    retry_allowed: bool = False
    """a recovery_applied that no attempt has used yet"""
    approved: bool = False
    """a person's approval that no attempt has used yet"""
    attempt_kinds: dict[int, str] | None = None
    state: TaskState = TaskState.PENDING
    done_in_file: bool = False
    """recorded done at the run's start (execution/skipped): no attempt of it may start"""


def _move(task: _Task, record: Mapping[str, Any]) -> None:
    """The task's state after the record, by the one task state machine."""
    event = event_of(
        record["decision_type"],
        record["decision_outcome"],
        record["decision_inputs"],
        record["details"],
    )
    if event is not None:
        task.state = advance(task.state, event)


class InvariantChecker:
    """Feed records in log order; `finish` names what is still owed at the end."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, _Task]] = {}
        self.violations: list[Violation] = []
        self.paused: PauseInForce | None = None
        """The workspace pause in force: no task may start until a resume ends it."""
        self.schedules = SlotChecker()
        self.gate = GateChecker()

    def _flag(self, code: ViolationCode, record: Mapping[str, Any], message: str) -> None:
        self.violations.append(Violation(code, message, seq=record["seq"]))

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self._check_provenance(record)
            kind, outcome = record["decision_type"], record["decision_outcome"]
            if kind == "pause":
                self.paused = pause_after(self.paused, record)
                continue
            if (
                kind == "proposal"
                and outcome in PERSONS_DECISIONS
                and not decided_by_a_person(record)
                and not is_retry(record)  # a retry's own check names it
            ):
                if not made_in_task(record):  # that one is a person_inside_task already
                    self._flag(
                        ViolationCode.NOT_A_PERSONS_DECISION,
                        record,
                        f"proposal/{outcome} of {record.get('proposal_id')} by"
                        f" {record.get('actor')} ({record.get('decision_source')}): only a"
                        " person decides a proposal, so it moves nothing",
                    )
                continue
            if kind in ("gate", "proposal"):
                unbacked = self.gate.feed(record)
                if unbacked is not None:
                    self._flag(ViolationCode.GATE_ALLOW_UNAPPROVED, record, unbacked)
                if kind == "gate" and record.get("task_id") is None:
                    continue  # a call's answer; a task's suspension and resumption go on
            if kind == "schedule":
                refired = self.schedules.feed(record)
                if refired is not None:
                    self._flag(ViolationCode.SCHEDULE_SLOT_REFIRED, record, refired)
                continue
            run_id = record.get("run_id")
            if run_id is None:
                continue
            if kind == "run_lifecycle":
                if outcome in _RUN_ENDS and run_id in self.runs:
                    ended = self.runs.pop(run_id)
                    self._check_customer_view(record, ended)
                    # A run's end is not final: a person may retry or approve what did not
                    # succeed, and what runs then is held to the same rules.
                    open_tasks = {
                        t: v
                        for t, v in ended.items()
                        if v.state not in DONE_STATES and v.unevaluated is None
                    }
                    if open_tasks:
                        self.runs[run_id] = open_tasks
                continue
            task_id = record.get("task_id")
            if task_id is None or kind not in _TASK_TYPES:
                continue
            tasks = self.runs.setdefault(run_id, {})
            task = tasks.get(task_id)
            if task is None:
                if kind == "execution" and outcome == "succeeded":
                    continue  # nothing to hold against a task that only succeeded
                task = tasks[task_id] = _Task()
            if kind == "execution":
                self._execution(task, record, outcome)
            elif kind == "recovery_evaluation":
                self._evaluation(task, record, outcome)
            else:
                if kind == "escalation":
                    self._escalation(task, record, outcome)
                elif kind == "gate":
                    self._gate_resumed(task, record, outcome)
                elif is_retry(record):
                    self._retry(task, record)
                elif outcome == "approved" and record["decision_inputs"].get("kind") != "tool_call":
                    task.approved = True
                _move(task, record)

    def _check_provenance(self, record: Mapping[str, Any]) -> None:
        """No human decision made from inside a task (DESIGN §12)."""
        details = record.get("details")
        from_task = details.get("from_task") if isinstance(details, Mapping) else None
        if from_task is not None and decided_by_person(record):
            where = from_task if isinstance(from_task, Mapping) else {}
            self._flag(
                ViolationCode.PERSON_INSIDE_TASK,
                record,
                f"{record['decision_type']}/{record['decision_outcome']} by {record.get('actor')}"
                f" was decided from inside task {where.get('task_id', '?')} of run"
                f" {where.get('run_id', '?')}: a task cannot decide as a person",
            )

    def _retry(self, task: _Task, record: Mapping[str, Any]) -> None:
        """A person's retry lets its task run again only when it is a person's, made outside
        any task, about the task's last failed attempt, after that failure's evaluation."""
        problem = None
        if task.state is not TaskState.FAILED or task.unevaluated is not None:
            problem = f"the task is {task.state.value}, not a failure that stands"
        elif record.get("attempt_id") != task.failed_attempt_id:
            problem = (
                f"it names attempt {record.get('attempt_id')!r}, not the failed attempt"
                f" {task.failed_attempt_id!r}"
            )
        elif record.get("decision_source") != "human" or not str(
            record.get("actor", "")
        ).startswith("human:"):
            problem = f"it was decided by {record.get('actor')}, not a person"
        elif made_in_task(record):
            problem = "it was decided from inside a task"
        if problem is None:
            task.approved = True
            return
        self._flag(
            ViolationCode.RETRY_UNFOUNDED,
            record,
            f"the retry of task {record['task_id']} lets nothing run: {problem}",
        )

    def _gate_resumed(self, task: _Task, record: Mapping[str, Any], outcome: str) -> None:
        """A gated agent's session resumes only once a person decided the call it waits on."""
        if outcome != "resumed":
            return
        proposal_id = record.get("proposal_id")
        if isinstance(proposal_id, str) and self.gate.decided(proposal_id):
            task.approved = True
            return
        self._flag(
            ViolationCode.GATE_RESUME_UNDECIDED,
            record,
            f"task {record['task_id']} was resumed on {proposal_id}, which no one decided before",
        )

    @staticmethod
    def _escalation(task: _Task, record: Mapping[str, Any], outcome: str) -> None:
        """A person's answer to an escalation (other than an abort) lets its task run again."""
        if outcome != "raised" and record["details"].get("decision") != "aborted":
            task.approved = True

    def _execution(self, task: _Task, record: Mapping[str, Any], outcome: str) -> None:
        seq, attempt = record["seq"], record.get("attempt") or 1
        where = f"task {record['task_id']} attempt {attempt}"
        if outcome == "started":
            if self.paused is not None:
                self._flag(
                    ViolationCode.START_AFTER_PAUSE,
                    record,
                    f"{where} started while the workspace was paused (seq {self.paused.seq}) and"
                    " not resumed",
                )
            if task.done_in_file:
                self._flag(
                    ViolationCode.START_AFTER_DONE,
                    record,
                    f"{where} started after the run recorded it done, as its plan file marks it"
                    " (execution/skipped): a done task never runs in that run",
                )
            if task.attempt_kinds is None:
                task.attempt_kinds = {}
            task.attempt_kinds[attempt] = record["decision_inputs"].get("attempt_kind", "first")
            if task.started or task.unevaluated is not None:
                if task.unevaluated is not None:
                    self._flag(
                        ViolationCode.RETRY_WITHOUT_DECISION,
                        record,
                        f"{where} started while the failure at seq {task.unevaluated} had no"
                        " recovery evaluation",
                    )
                elif task.halted and not task.approved:
                    self._flag(
                        ViolationCode.EXECUTION_AFTER_HALT,
                        record,
                        f"{where} started after a policy or budget halt without a new human"
                        " decision",
                    )
                elif not (task.retry_allowed or task.approved):
                    self._flag(
                        ViolationCode.RETRY_WITHOUT_DECISION,
                        record,
                        f"{where} is a retry not preceded by recovery_applied or an approval",
                    )
            task.started = True
            task.retry_allowed = task.approved = task.halted = False
            task.state = EXECUTION_MOVES["started"]
            return
        if outcome == "skipped":
            task.state = EXECUTION_MOVES[outcome]
            task.done_in_file = True
            return
        if outcome not in _ENDS:
            return
        task.state = EXECUTION_MOVES[outcome]
        if outcome in _FAILED:
            if task.unevaluated is not None:
                self._flag(
                    ViolationCode.MISSING_EVALUATION,
                    record,
                    f"the failure at seq {task.unevaluated} got no recovery evaluation before"
                    f" the next failure (seq {seq})",
                )
            task.unevaluated = seq
            task.halted = outcome == "halted"
            task.failed_attempt_id = record.get("attempt_id")
            task.failed_kind = (task.attempt_kinds or {}).get(attempt, "first")
            if outcome == "halted":
                task.started = True  # a halted attempt counts: what follows needs a decision

    def _evaluation(self, task: _Task, record: Mapping[str, Any], outcome: str) -> None:
        where = f"task {record['task_id']}"
        if task.unevaluated is None:
            self._flag(
                ViolationCode.EVALUATION_WITHOUT_FAILURE,
                record,
                f"recovery evaluation for {where} with no failure waiting for one",
            )
            return
        task.unevaluated = None
        if task.failed_kind == "approved_recovery" and outcome != "recovery_skipped":
            self._flag(
                ViolationCode.RECOVERY_OF_RECOVERY,
                record,
                f"{where}: a failed human-approved recovery was given {outcome}; only"
                " recovery_skipped (loop prevention) is allowed",
            )
        if task.failed_kind == "automatic_retry" and outcome == "recovery_applied":
            self._flag(
                ViolationCode.SECOND_AUTOMATIC_RETRY,
                record,
                f"{where}: a failed automatic retry was retried automatically again",
            )
        if task.halted and outcome != "recovery_skipped":
            self._flag(
                ViolationCode.EXECUTION_AFTER_HALT,
                record,
                f"{where}: a policy or budget halt was given {outcome}",
            )
        if outcome == "recovery_applied":
            task.retry_allowed = True
        task.state = EVALUATION_MOVES.get(outcome, task.state)

    def _check_customer_view(self, record: Mapping[str, Any], tasks: dict[str, _Task]) -> None:
        """The customer view of the run as it ended must carry no mechanics."""
        ids = tuple(tasks)
        graph = TaskGraph.from_indices(ids, tuple(() for _ in ids))
        states = [task.state for task in tasks.values()]
        view = customer_view(
            record["run_id"],
            [(t, None, s) for t, s in zip(ids, states, strict=True)],
            analyse_states(graph, states),
        )
        found = mechanics_in(view)
        if found:
            self._flag(
                ViolationCode.CUSTOMER_VIEW_MECHANICS,
                record,
                f"the customer view of run {record['run_id']} mentions {', '.join(found)}",
            )

    def finish(self) -> list[Violation]:
        """Failures that never got their evaluation."""
        for run_id, tasks in self.runs.items():
            for task_id, task in tasks.items():
                if task.unevaluated is not None:
                    self.violations.append(
                        Violation(
                            ViolationCode.MISSING_EVALUATION,
                            f"run {run_id} task {task_id}: the failure has no recovery evaluation",
                            seq=task.unevaluated,
                        )
                    )
        return self.violations
