"""Suspended tasks of database runs, in front of people and taken up again (DESIGN §7, §9, §13).

A worker whose recovery evaluation says R2 (a person decides) puts the task's proposal in the
database's review queue in the transaction of the evaluation, as a runner does in a workspace;
a task that escalates has its escalation raised there. A person's decision on either takes the
run up again in the transaction of the decision: approved (routed), the task's next attempt is
ready for any worker; rejected (aborted), the task's failure stands and a run that had ended
ends again from its whole graph. Nobody has to continue a database run by hand,
and no decision waits for a process that may never come.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson

from stoic.core import next_steps
from stoic.core.concurrency import admit, recorded_rule
from stoic.core.escalations import Escalation, EscalationDecision
from stoic.core.failure import Failure, FailureKind
from stoic.core.graph import TaskState
from stoic.core.projection import WorkspaceStatusProjection
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.core.records import Decision, Record
from stoic.core.recovery import AttemptKind
from stoic.core.retry import retry_refusal
from stoic.core.run_state import RunFolder, TaskView
from stoic.exceptions import UsageError, WorkspaceError, WorkspacePaused
from stoic.plan.loader import Plan
from stoic.plan.models import TaskSpec
from stoic.run import decisions as made
from stoic.run.admission import limit_reached
from stoic.run.attempt import Attempt
from stoic.run.fleet_plans import recorded_plan
from stoic.run.handoff import suspended_task_request
from stoic.run.run_end import lifecycle_reason, run_end_decision
from stoic.store import pg_work as work
from stoic.store.config import QueueSettings
from stoic.store.pg_escalations import raise_at
from stoic.store.pg_queue import propose_at
from stoic.store.pg_store import AtHead

__all__ = [
    "WORKERS_GO_ON",
    "carried",
    "escalate_task",
    "propose_recovery",
    "retry_at",
    "take_up_after",
    "take_up_answered",
]

WORKERS_GO_ON = "the run's workers"
"""Who takes a database run up once its task's proposal is approved."""

_TASK_PROPOSALS = frozenset({"recovery", "approval"})


def propose_recovery(
    writing: AtHead, run_id: str, spec: TaskSpec, suggestion: Mapping[str, Any]
) -> Proposal | None:
    """The R2 task's proposal, in the evaluation's transaction; None while the database is
    paused (a pause stops the queue's growth: the suggestion stays on record with the task)."""
    if work.PauseFollower().check(writing.conn) is not None:
        return None
    request = suspended_task_request(run_id, spec, suggestion, "recovery", goes_on=WORKERS_GO_ON)
    batch = writing.projected(WorkspaceStatusProjection()).batch_size
    return propose_at(writing, request, batch_size=batch or QueueSettings().batch_size)


def escalate_task(writing: AtHead, plan: Plan, run_id: str, task_id: str, failure: Failure) -> None:
    """A task that handed its decision to a person (`stoic.escalate`): its escalation, in
    the transaction of its evaluation, as a runner raises it in a workspace; the run waits on
    it. A request that is not one question leaves the failure standing, as in a workspace."""
    if failure.kind is not FailureKind.ESCALATED or failure.escalation is None:
        return
    with contextlib.suppress(UsageError):
        raise_at(
            writing,
            failure.escalation,
            actor=made.ACTOR,
            run_id=run_id,
            task_id=task_id,
            project=plan.name,
        )


def take_up_answered(writing: AtHead, escalation: Escalation, actor: str) -> str | None:
    """What a person's answer to a task's escalation does to its database run, in the
    answer's transaction (which has appended it): routed, the task's next attempt (a
    human-approved recovery, the note its guidance) is ready for any worker; aborted, its
    failure stands and a run that had ended ends again; passed on, nothing yet."""
    if escalation.open or escalation.run_id is None or escalation.task_id is None:
        return None
    return _take_up(
        writing,
        escalation.run_id,
        escalation.task_id,
        go_on=escalation.decision is EscalationDecision.ROUTED,
        actor=actor,
        why={"escalation_id": escalation.id},
    )


def carried(writing: AtHead, attempt: Attempt, kind: AttemptKind) -> Attempt:
    """The attempt with what the task's records hand its next attempt, as a runner gives it
    (`RunFolder`): an automatic retry's hint (`$STOIC_HINT`), a routed answer's note
    (`$STOIC_GUIDANCE`). A first attempt has none: nothing is read for it."""
    if kind is AttemptKind.FIRST:
        return attempt
    rows = writing.conn.execute(
        "SELECT line FROM decision_log WHERE run_id = %s AND task_id = %s ORDER BY seq",
        (attempt.run_id, attempt.task_id),
    ).fetchall()
    folder = RunFolder(attempt.run_id)
    for (line,) in rows:
        folder.feed(orjson.loads(line))
    task = folder.view(shared=True).task(attempt.task_id)
    env = {"STOIC_HINT": task.hint, "STOIC_GUIDANCE": task.guidance}
    given = {name: value for name, value in env.items() if value is not None}
    return attempt.with_env(given) if given else attempt


def take_up_after(writing: AtHead, proposal: Proposal, actor: str) -> str | None:
    """What a person's decision on `proposal` does to its database run, in the decision's
    transaction (which has appended it); a line saying so, or None when the proposal is no
    suspended task of a run its workers carry."""
    run_id, task_id = proposal.run_id, proposal.task_id
    if run_id is None or task_id is None or proposal.type not in _TASK_PROPOSALS:
        return None
    return _take_up(
        writing,
        run_id,
        task_id,
        go_on=proposal.status is ProposalStatus.APPROVED,
        actor=actor,
        why={"proposal_id": proposal.id},
    )


def _take_up(
    writing: AtHead, run_id: str, task_id: str, *, go_on: bool, actor: str, why: dict[str, str]
) -> str | None:
    """The task's next attempt made ready (`go_on`), or its failure left standing; a run
    that had ended is taken up again, naming the decision (`why`) that did."""
    try:
        started, text = work.run_start(writing.conn, run_id)
    except LookupError:
        return None
    if (started.get("decision_inputs") or {}).get("on") != "workers":
        return None  # a workspace's run, imported: `continue` takes it up where it runs
    plan = _plan_of(run_id, text, started)
    folder = RunFolder(run_id)
    for record in work.run_records(writing.conn, run_id):
        folder.feed(record)
    view = folder.view()
    ended = view.lifecycle not in (None, "started")
    task = view.task(task_id)
    if not go_on:  # rejected or aborted: its failure stands
        if not ended:
            return None  # the run's workers end it once nothing of it is left
        writing.append([_taken_up(run_id, actor, why)])
        folder.feed(writing.records[-1]._asdict())
        analysis = folder.view().analyse(plan.graph)
        reason = lifecycle_reason(run_id, analysis)
        writing.append([run_end_decision(run_id, analysis.status, reason, analysis)])
        return f"run {run_id} ended again: {analysis.status.value}"
    if ended:
        _admit_again(writing, run_id, started)
        writing.append([_taken_up(run_id, actor, why)])
    kind = task.next_attempt_kind if task.attempts else AttemptKind.FIRST
    work.make_ready(writing.conn, [work.Ready(run_id, task_id, task.attempts + 1, kind.value)])
    return f"task {task_id} of run {run_id} is ready for its workers (attempt {task.attempts + 1})"


def retry_at(
    writing: AtHead, run_id: str, task_ids: Sequence[str], *, actor: str, reason: str
) -> list[Record]:
    """A person's retry of failed tasks of a database run, in one transaction: each checked
    against the log as it is now (one that cannot be retried refuses them all, nothing
    recorded), each recorded linked to its failed attempt, its next attempt — a human-approved
    recovery: if it fails, the failure stands — ready for the run's workers. A task suspended
    for a person while the database was paused (so with no proposal) has its suggested
    recovery approved instead, the record a workspace's `continue --approve-suggestion` makes."""
    if not reason.strip():
        raise UsageError("a retry needs its reason: --reason …")
    paused = work.PauseFollower().check(writing.conn)
    if paused is not None:  # no new task execution while paused
        raise WorkspacePaused(
            f"the database is paused ({paused.reason}, record #{paused.seq}): a retry is"
            " refused until it is resumed"
        )
    try:
        started, text = work.run_start(writing.conn, run_id)
    except LookupError:
        raise UsageError(f"no run {run_id} in the database") from None
    if (started.get("decision_inputs") or {}).get("on") != "workers":
        raise UsageError(f"run {run_id} is a workspace's run: it is retried where it runs")
    plan = _plan_of(run_id, text, started)
    folder = RunFolder(run_id)
    for record in work.run_records(writing.conn, run_id):
        folder.feed(record)
    view = folder.view(shared=True)
    analysis = view.analyse(plan.graph)
    claimed = bool(work.claim_holders(writing.conn).get(run_id))
    proposals = {
        t: str(view.task(t).proposal_id) for t in plan.graph.ids if view.task(t).proposal_id
    }
    for task_id in task_ids:
        if task_id in plan.graph.ids and _unproposed(view.task(task_id)):
            continue  # suspended while paused, so no proposal: a person's retry decides it
        if task_id in proposals and view.task(task_id).state is TaskState.SUSPENDED:
            raise UsageError(
                f"task {task_id} of run {run_id} did not fail: it waits for"
                f" {proposals[task_id]} to be decided ({next_steps.approve(proposals[task_id])}"
                " --db …, or reject it)"
            )
        refusal = retry_refusal(
            run_id,
            task_id,
            plan.graph.ids,
            view,
            analysis,
            runner_working=claimed,
            proposals=proposals,
        )
        if refusal is not None:
            raise UsageError(refusal)
    retries, ready = [], []
    for task_id in dict.fromkeys(task_ids):
        task = view.task(task_id)
        if _unproposed(task):  # its suggested recovery, approved: what the matrix asked for
            approval = made.approval_decision(
                run_id, task_id, actor, dict(task.suggestion or {}) or None, recovery=True
            )
            inputs = {**approval.decision_inputs, "reason": reason.strip()}
            retries.append(replace(approval, decision_inputs=inputs))
            ready.append(
                work.Ready(run_id, task_id, task.attempts + 1, AttemptKind.APPROVED_RECOVERY.value)
            )
            continue
        retries.append(
            made.retry_decision(
                run_id,
                task_id,
                actor,
                reason.strip(),
                attempt=task.attempts,
                attempt_id=task.last_attempt_id if task.attempts > 0 else None,
                failure_kind=(task.failure or {}).get("failure_kind"),
            )
        )
        kind = AttemptKind.APPROVED_RECOVERY if task.attempts else AttemptKind.FIRST
        ready.append(work.Ready(run_id, task_id, task.attempts + 1, kind.value))
    if view.lifecycle not in (None, "started"):
        _admit_again(writing, run_id, started)
        writing.append([_taken_up(run_id, actor, {"retried": list(dict.fromkeys(task_ids))})])
    recorded = writing.append(retries)
    work.make_ready(writing.conn, ready)
    return recorded


def _admit_again(writing: AtHead, run_id: str, started: Mapping[str, Any]) -> None:
    """An ended run is taken up again only within its plan's limit, as its start records the
    rule (a run started with the override keeps it), against the runs live now."""
    key, limit, allow = recorded_rule(
        started.get("decision_inputs") or {}, started.get("details") or {}
    )
    admission = admit(
        key, limit, allow_concurrent=allow, live=work.live_runs(writing.conn, other_than=run_id)
    )
    if not admission.admitted:
        name = str((started.get("details") or {}).get("plan_name", key))
        raise limit_reached(admission, name, None)


def _unproposed(task: TaskView) -> bool:
    """A task suspended by its recovery's evaluation with nothing in front of people: its
    proposal was not made because the database was paused when it failed."""
    return (
        task.state is TaskState.SUSPENDED
        and task.proposal_id is None
        and task.escalation_id is None
        and task.attempts > 0
        and task.open_attempt is None
    )


def _plan_of(run_id: str, text: bytes, started: Mapping[str, Any]) -> Plan:
    """The run's plan copy, held to its start; a copy that is not is one clear error."""
    try:
        return recorded_plan(run_id, text, started)
    except ValueError as exc:  # UnicodeDecodeError too
        raise WorkspaceError(f"run {run_id} cannot be taken up: {exc}") from None


def _taken_up(run_id: str, actor: str, why: Mapping[str, Any]) -> Decision:
    """The record that takes an ended run up again, naming the decision that did."""
    if "proposal_id" in why:
        what = f"decided {why['proposal_id']}"
    elif "escalation_id" in why:
        what = f"answered {why['escalation_id']}"
    else:
        what = f"retried {', '.join(why.get('retried', ()))}"
    return Decision(
        decision_type="run_lifecycle",
        decision_outcome="started",
        decision_reason=f"Run {run_id} goes on: {actor} {what}.",
        actor=made.ACTOR,
        decision_source="system",
        decision_trigger="explicit",
        decision_inputs={"on": "workers", "taken_up_by": actor, **why},
        causal_role="pre_run",
        run_id=run_id,
        details={},
    )
