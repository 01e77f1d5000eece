"""Hand-offs from a run to people: proposals for suspended tasks, escalations for questions.

A task suspended by R2 or by `approval: required` becomes a proposal in the review queue; a task
that escalated (its result file, `stoic.escalate`, a loop that did not converge, a blocked gate)
becomes an escalation with its briefing. Either way the run ends `awaiting_human` until a
person decides.

What a proposal or an escalation brings about follows the same rules as for the queue and
escalation services, in the same transaction: a queue that outgrows review raises a red flag
(the third since a resume pauses), and a mode escalated a third time raises a process issue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.escalations import EscalationRequest
from stoic.core.failure import Deferral, Failure, FailureKind
from stoic.core.gate import TOOL_CALL_TYPE
from stoic.core.graph import RunStatus, TaskState
from stoic.core.notifications import Event
from stoic.core.pause import growth_flag
from stoic.core.run_state import RunFolder
from stoic.exceptions import UsageError, WorkspacePaused
from stoic.plan.models import TaskSpec
from stoic.run import decisions as made
from stoic.run.guard import describe_command as describe
from stoic.run.reporting import summary_lines
from stoic.store.escalations import Escalations
from stoic.store.queue import Queue
from stoic.store.queue_decisions import ProposalRequest
from stoic.store.trust import flag
from stoic.store.workspace import Workspace

if TYPE_CHECKING:
    from stoic.run.run_end import RunReport

__all__ = ["Handoff"]

_DECIDED = frozenset({"approved", "rejected", "executed"})


def suspended_task_request(
    run_id: str, spec: TaskSpec, suggestion: Mapping[str, Any], kind: str, *, goes_on: str
) -> ProposalRequest:
    """The proposal a suspended task becomes: its suggested recovery (`kind` recovery), or
    its start; the same whoever runs the run, a runner or a database's workers (`goes_on`:
    who takes the run up once it is approved)."""
    task_id = spec.id
    if kind == "recovery":
        title = f"Recover task {task_id} of run {run_id}"
        trace = [
            f"what failed: {suggestion.get('what_failed', 'the task failed')}",
            f"rule: {suggestion.get('rule', 'R2')}",
            f"suggested: {suggestion.get('suggested', 'run it once more')}",
            f"approving lets {goes_on} run it once more (a failure then stands)",
        ]
    else:
        title = f"Approve task {task_id} of run {run_id}"
        trace = [
            f"policy: {suggestion.get('trade_off', 'the task needs approval')}",
            f"it would run: {describe(spec)}",
            f"approving lets {goes_on} start it; rejecting fails it",
        ]
    return ProposalRequest.checked(
        title=title,
        reasoning_trace=trace,
        sources=[run_id],
        type=kind,
        summary=spec.description or spec.name or "",
        trade_off=suggestion.get("trade_off"),
        origin=f"runner:{kind}",
        actor=made.ACTOR,
        run_id=run_id,
        task_id=task_id,
    )


class Handoff:
    """Puts a run's suspended tasks in front of people."""

    def __init__(
        self,
        workspace: Workspace,
        run_id: str,
        folder: RunFolder,
        specs: Mapping[str, TaskSpec],
    ) -> None:
        self.workspace = workspace
        self.run_id = run_id
        self.folder = folder
        self.specs = specs

    def propose(self, task_id: str, kind: str) -> None:
        """Put a suspended task in the review queue: its suggested recovery, or its start.

        While the workspace is paused no proposal is made; the suggestion stays on record with
        the task and `stoic continue --approve-suggestion` can still act on it.
        """
        task = self.folder.tasks.get(task_id)
        suggestion = dict(task.suggestion or {}) if task is not None else {}
        request = suspended_task_request(
            self.run_id,
            self.specs[task_id],
            suggestion,
            kind,
            goes_on=str(next_steps.continue_run()),
        )
        with contextlib.suppress(WorkspacePaused), self.workspace.transaction():
            proposed = Queue(self.workspace).propose(
                title=request.title,
                reasoning_trace=request.reasoning_trace,
                sources=request.sources,
                type=request.type,
                summary=request.summary,
                trade_off=request.trade_off,
                origin=request.origin,
                actor=request.actor,
                run_id=request.run_id,
                task_id=request.task_id,
            )
            due = growth_flag(proposed.pending, proposed.batch_size)
            if due is not None:
                flag(
                    self.workspace,
                    signal=due.signal,
                    actor="system:stoic",
                    note=due.note,
                    detected=True,
                )
            created = proposed.proposal.created_seq
            for record in self.workspace.records(
                since_seq=created - 1, run_id=self.run_id, decision_type="proposal"
            ):  # the run's view names the proposal its task waits on
                if record.seq == created:
                    self.folder.feed(record._asdict())
                    break

    def escalate(
        self,
        task_id: str,
        request: EscalationRequest,
        *,
        risks: Sequence[str] = (),
        status: str | None = None,
    ) -> str:
        """Raise the task's escalation; the task stays suspended until it is answered."""
        store = Escalations(self.workspace)
        with self.workspace.transaction():
            escalation = store.raise_(
                request,
                actor=made.ACTOR,
                run_id=self.run_id,
                task_id=task_id,
                risks=risks,
                status=status,
            )
            store.raise_process_issue(request.mode)
        self._catch_up()
        return escalation.id

    def escalate_owed(self) -> None:
        """Escalations a dead runner decided on but never raised (it died in between)."""
        for task_id, task in list(self.folder.tasks.items()):
            if (
                task.state is TaskState.FAILED
                and task.escalated_attempt != task.attempts
                and not task.awaiting_evaluation
                and task.failure is not None
                and task.failure.get("failure_kind") == FailureKind.ESCALATED.value
                and task.outcome == "failed"
            ):
                try:
                    failure = Failure.from_json(dict(task.failure))
                except ValueError:  # an earlier stoic asked two questions in one: not
                    continue  # raised, the failure stands for a person's retry
                if failure.escalation is not None:
                    with contextlib.suppress(UsageError):
                        self.escalate(task_id, failure.escalation)

    def propose_owed(self) -> None:
        """Proposals a dead runner owed: a task waits on its approval gate or on a suggested
        recovery, and the runner died before it put the proposal in the queue (a person would
        have nothing to approve)."""
        for task_id, task in list(self.folder.tasks.items()):
            if (
                task.state is TaskState.SUSPENDED
                and task.suggestion is not None
                and task.proposal_id is None
                and task.escalation_id is None
                and not task.resume_session
            ):
                self.propose(task_id, "approval" if task.gated else "recovery")

    # -- a gated agent's session (DESIGN §15) ------------------------------------------------

    def suspend(self, task_id: str, deferral: Deferral) -> None:
        """The task waits, suspended, on the tool-call proposal its session stopped on — only
        a proposal the gate made for this run's task: a result file naming another leaves the
        failure standing."""
        with self.workspace.transaction():
            proposal = Queue(self.workspace).state().proposals.get(deferral.proposal_id)
            if proposal is None or proposal.type != TOOL_CALL_TYPE:
                return
            if self.run_id not in proposal.sources or task_id not in proposal.sources:
                return
            self.workspace.record(
                "gate",
                "suspended",
                f"task {task_id} waits for a person to decide {proposal.id}; its agent's"
                f" session {deferral.session_id} resumes once it is decided",
                actor=made.ACTOR,
                trigger="reactive",
                run_id=self.run_id,
                task_id=task_id,
                proposal_id=proposal.id,
                details={"session_id": deferral.session_id},
            )
        self._catch_up()

    def suspend_owed(self) -> None:
        """Suspensions a dead runner owed: its session deferred, the failure was evaluated,
        and it died before the suspension was recorded."""
        for task_id, task in list(self.folder.tasks.items()):
            if (
                task.state is TaskState.FAILED
                and not task.awaiting_evaluation
                and task.outcome == "failed"
                and task.failure is not None
                and task.failure.get("failure_kind") == FailureKind.DEFERRED.value
            ):
                deferral = Failure.from_json(dict(task.failure)).deferral
                if deferral is not None:
                    self.suspend(task_id, deferral)

    def resume_decided(self) -> None:
        """Each suspended session whose call a person has decided may go on: approved, the
        gate allows that call when the session makes it again; rejected, it denies it with
        the reviewer's reason, and the agent takes another way."""
        if not any(
            task.state is TaskState.SUSPENDED and task.resume_session
            for task in self.folder.tasks.values()
        ):
            return  # every ordinary settle: no queue to load
        resumed = False
        with self.workspace.transaction():
            proposals = Queue(self.workspace).state().proposals
            for task_id, task in list(self.folder.tasks.items()):
                if task.state is not TaskState.SUSPENDED or not task.resume_session:
                    continue
                proposal = proposals.get(task.proposal_id or "")
                if proposal is None or proposal.status.value not in _DECIDED:
                    continue
                decided_by = (proposal.decision or {}).get("by")
                self.workspace.record(
                    "gate",
                    "resumed",
                    f"{proposal.id} was {proposal.status.value}: task {task_id}'s session"
                    f" {task.resume_session} goes on",
                    actor=made.ACTOR,
                    trigger="reactive",
                    run_id=self.run_id,
                    task_id=task_id,
                    proposal_id=proposal.id,
                    details={
                        "session_id": task.resume_session,
                        "decision": proposal.status.value,
                        "decided_by": decided_by,
                    },
                )
                resumed = True
        if resumed:
            self._catch_up()

    def _catch_up(self) -> None:
        for record in self.workspace.records(run_id=self.run_id, since_seq=self.folder.last_seq):
            self.folder.feed(record._asdict())

    def run_ended(self, report: RunReport, reason: str) -> None:
        """Run completed, failed (with the blocked list) or waiting: notifiers hear of it."""
        event = _EVENTS.get(report.analysis.status)
        if event is None or report.status == "interrupted":
            return
        analysis = report.analysis
        lines = [
            f"{task} is blocked by {', '.join(roots)}" for task, roots in analysis.blocked.items()
        ]
        lines += [f"{task} failed" for task in analysis.failed]
        for task_id in analysis.awaiting_human:
            escalation = report.view.task(task_id).escalation_id
            lines.append(f"{task_id} waits for " + (escalation or "a review decision"))
        lines += summary_lines(report)
        summaries = {
            task_id: report.view.task(task_id).summary
            for task_id in report.plan.graph.ids
            if report.view.task(task_id).summary
        }
        self.workspace.announce(
            event,
            reason,
            run_id=self.run_id,
            data={
                "status": report.status,
                "failed": list(analysis.failed),
                "blocked": {task: list(roots) for task, roots in analysis.blocked.items()},
                "awaiting_human": list(analysis.awaiting_human),
                "summaries": summaries,
            },
            lines=lines,
        )


_EVENTS = {
    RunStatus.COMPLETED: Event.RUN_COMPLETED,
    RunStatus.FAILED: Event.RUN_FAILED,
    RunStatus.AWAITING_HUMAN: Event.RUN_AWAITING_HUMAN,
}
