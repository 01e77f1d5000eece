"""The review queue on disk: decisions go to the log; folders and manifest follow (DESIGN §8).

Every change happens under the workspace's writer lock: read the queue as the log tells it,
check the transition, append the decision, then bring the proposal's file and the manifest in
line. Two people deciding the same proposal at once: the first wins, the second is told who
decided and when.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from stoic.core import next_steps
from stoic.core.notifications import Event
from stoic.core.proposals import (
    Proposal,
    ProposalStatus,
    QueueState,
)
from stoic.core.records import Record
from stoic.core.run_document import proposal_entry
from stoic.exceptions import (
    ProposalNotFound,
    UsageError,
    WorkspaceNotWritable,
)
from stoic.store import queue_snapshot as snapshot
from stoic.store.atomic import write_all
from stoic.store.confined import open_confined
from stoic.store.manifest import MANIFEST, reflected_seq
from stoic.store.processes import ProcessPolicy, run_plan_policy
from stoic.store.quarantine import Quarantine
from stoic.store.queue_decisions import (
    PAST,
    ExecutionClaim,
    ProposalRequest,
    check_id,
    created_decision,
    decided_decision,
    execution_argv,
)
from stoic.store.queue_files import rebuild_files, write_lagging, write_proposal
from stoic.store.trust import refuse_if_paused

if TYPE_CHECKING:
    from stoic.store.handle import WorkspaceHandle as Workspace

__all__ = ["MANIFEST", "ActionRan", "ExecutionClaim", "ExecutionResult", "Proposed", "Queue"]


@dataclass(frozen=True, slots=True)
class ActionRan:
    """What a claimed command did, as the runtime saw it."""

    exit_code: int
    """127 when it could not be started at all."""
    output: str
    """Its stdout then stderr, the named secrets it was given already masked."""
    duration_s: float


@dataclass(frozen=True, slots=True)
class Proposed:
    """A proposal as created, with the queue it joined, as read under the same writer."""

    proposal: Proposal
    pending: int
    """Proposals pending now, this one included."""
    batch_size: int
    """The batch size in effect when it was created."""


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """An execution's result as recorded."""

    proposal: Proposal
    exit_code: int
    output: str


_NEEDLE = b'"decision_type":"proposal"'


def load_queue(workspace: Workspace) -> QueueState:
    """Every proposal, folded from the proposal records of the log.

    The fold is kept with the open workspace and caught up from where it stopped, so a
    process that decides many proposals reads each record once. It never starts from the
    queue snapshot: anyone who can write the workspace can write that file, and what is
    decided (a transition, the action that runs, an id, a pause) comes from the log alone.
    The snapshot only speeds up listing (see `stoic.store.queue_snapshot`); a process that
    folded many records writes a new one.
    """
    tail = workspace.log.tail_state()
    cached = workspace.queue_cache
    if cached is not None and cached[1] <= tail.good_end:
        state, start = cached
    else:
        state, start = QueueState(), 0
    for _line_no, _offset, raw, _complete in workspace.log.lines(start, tail.good_end):
        if _NEEDLE in raw:
            state.feed([orjson.loads(raw)])
    state.last_seq = tail.last_seq
    workspace.queue_cache = (state, tail.good_end)
    if state.unsaved >= snapshot.WRITE_AFTER:
        snapshot.write_snapshot(workspace, state, tail.good_end, tail.last_seq)
    return state


def _caught_up(workspace: Workspace, state: QueueState) -> None:
    """After this process appended under the lock, the fold is current to the log's end."""
    tail = workspace.log.tail_state()
    workspace.queue_cache = (state, tail.good_end)
    if state.unsaved >= snapshot.WRITE_AFTER:  # a long-lived process saves it now and then
        snapshot.write_snapshot(workspace, state, tail.good_end, tail.last_seq)


class Queue:
    """The review queue of one workspace."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.root = workspace.root

    # -- reading -----------------------------------------------------------------------------

    def state(self) -> QueueState:
        return load_queue(self.workspace)

    def batch_size(self) -> int:
        """The batch size in effect: the one the last resume named, else `stoic.toml`'s."""
        return self.workspace.status().batch_size or self.workspace.settings.queue.batch_size

    def get(self, proposal_id: str) -> Proposal:
        check_id(proposal_id)
        proposal = self.state().proposals.get(proposal_id)
        if proposal is None:
            raise ProposalNotFound(f"no proposal {proposal_id}")
        return proposal

    # -- proposing ---------------------------------------------------------------------------

    def propose(
        self,
        *,
        title: str,
        reasoning_trace: Sequence[str],
        sources: Sequence[str] = (),
        action: Sequence[str] | None = None,
        rollback: Sequence[str] | None = None,
        type: str = "action",
        summary: str = "",
        confidence: float | None = None,
        trade_off: str | None = None,
        origin: str | None = None,
        actor: str = "human:unknown",
        run_id: str | None = None,
        task_id: str | None = None,
    ) -> Proposed:
        """Create a pending proposal; refused without reasoning or with a missing source.

        What a growing queue brings about is the queue service's to decide (`Proposed` holds
        what it needs)."""
        refuse_if_paused(self.workspace, next_steps.propose())
        request = ProposalRequest.checked(
            title=title,
            reasoning_trace=reasoning_trace,
            sources=sources,
            action=action,
            rollback=rollback,
            type=type,
            summary=summary,
            confidence=confidence,
            trade_off=trade_off,
            origin=origin,
            actor=actor,
            run_id=run_id,
            task_id=task_id,
        )
        with self.workspace.transaction():
            state = self.state()
            missing = [source for source in sources if not self._source_exists(source, state)]
            if missing:
                raise UsageError(
                    f"proposal refused: source {missing[0]!r} does not exist (a run, task or"
                    " decision id, a proposal, or a file in the workspace)"
                )
            batch_size = self.batch_size()
            proposal_id, decision = created_decision(
                request, state, day=time.strftime("%Y%m%d", time.gmtime()), batch_size=batch_size
            )
            record = self.workspace.record_many([decision])[0]
            reflected = state.queue_seq
            state.feed([record._asdict()])
            _caught_up(self.workspace, state)
            with self.workspace.projecting(f"{proposal_id}'s queue file and manifest row"):
                write_proposal(self.root, state, proposal_id, reflected)
            proposed = Proposed(
                state.proposals[proposal_id], state.counts[ProposalStatus.PENDING], batch_size
            )
        self.workspace.announce(
            Event.SUGGESTION_CREATED,
            f"{proposal_id}: {title}",
            run_id=run_id,
            data={"proposal_id": proposal_id, "type": type, "task_id": task_id},
            lines=[f"{next_steps.show_proposal(proposal_id)}, then approve or reject it"],
        )
        return proposed

    # -- deciding ----------------------------------------------------------------------------

    def decide(
        self,
        proposal_id: str,
        outcome: str,
        *,
        actor: str,
        reason: str | None = None,
        inputs: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
    ) -> Proposal:
        """Move a proposal along one allowed transition, on record (what a rejection brings
        about is the queue service's to decide)."""
        return self._decide(proposal_id, outcome, actor, reason, inputs, details)[0]

    def _decide(
        self,
        proposal_id: str,
        outcome: str,
        actor: str,
        reason: str | None,
        inputs: dict[str, Any] | None,
        details: dict[str, Any] | None,
        claim: ExecutionClaim | None = None,
    ) -> tuple[Proposal, Record]:
        with self.workspace.transaction():
            state = self.state()
            decision = decided_decision(
                state,
                proposal_id,
                outcome,
                actor=actor,
                reason=reason,
                inputs=inputs,
                details=details,
                claim=claim,
            )
            record = self.workspace.record_many([decision])[0]
            reflected = state.queue_seq
            state.feed([record._asdict()])
            _caught_up(self.workspace, state)
            with self.workspace.projecting(f"{proposal_id}'s queue file and manifest row"):
                write_proposal(self.root, state, proposal_id, reflected)
            decided = state.proposals[proposal_id]
        return decided, record

    def begin_execution(
        self,
        proposal_id: str,
        *,
        actor: str,
        rollback: bool = False,
        confirmed: bool = False,
        again: bool = False,
    ) -> ExecutionClaim:
        """Claim an approved proposal's action (or an executed one's rollback) for running.

        Every check comes first: the transition, the command, the pause, the policy (a
        refusal goes on record). The claim is then on record before the command runs, so a
        second `stoic execute` is refused while this one works, and a process that dies
        mid-way is known to have begun. After a manual-verification resume, the next
        executions need `confirmed`.
        """
        proposal = self.get(proposal_id)
        argv = execution_argv(
            proposal,
            rollback=rollback,
            confirmed=confirmed,
            confirmations_due=self.workspace.status().confirmations_due,
        )
        if not rollback:
            refuse_if_paused(self.workspace, next_steps.execute())
        what = "rollback" if rollback else "action"
        narrowed_by = run_plan_policy(self.workspace, proposal.run_id) if proposal.run_id else None
        process = ProcessPolicy.for_command(self.workspace.settings, argv, narrowed_by=narrowed_by)
        process.refuse_on_record(self.workspace, proposal_id=proposal_id, what=what)
        _, started = self._decide(
            proposal_id,
            "execution_started",
            actor,
            f"{proposal_id}: its {what} `{process.command}` starts" + (" again." if again else "."),
            {"rollback": rollback, **({"again": True} if again else {})},
            None,
        )
        return ExecutionClaim(
            proposal_id, actor, rollback, process, started.seq, started.decided_at
        )

    def finish_execution(self, claim: ExecutionClaim, ran: ActionRan) -> ExecutionResult:
        """Record what a claimed command did: the proposal's result and its execution_log.md
        entry (the pause a failed action brings is the queue service's to record).

        Only the claim the proposal shows running (its start's seq, time, actor and command)
        has its result recorded; any other is refused and nothing is recorded."""
        proposal_id, shown, code = claim.proposal_id, claim.process.command, ran.exit_code
        outcome = "rolled_back" if claim.rollback else "executed"
        result = "success" if code == 0 else "failure"
        if claim.rollback:
            result = "rolled_back" if code == 0 else "failure"
        decided, record = self._decide(
            proposal_id,
            outcome,
            claim.actor,
            f"{proposal_id} {PAST[outcome]}: `{shown}` exited {code}.",
            {"result": result, "exit_code": code},
            {
                "command": shown,
                "exit_code": code,
                "duration_s": round(ran.duration_s, 6),
                "output": ran.output[-4000:],
            },
            claim,
        )
        with self.workspace.projecting("logs/execution_log.md"):
            self._execution_entry(record)
        return ExecutionResult(decided, code, ran.output)

    # -- projections -------------------------------------------------------------------------

    def catch_up(self, since_offset: int) -> list[str]:
        """Bring proposal files and the manifest up to the log after a writer was killed
        between a proposal record and its files; returns the proposals whose files lagged.

        Like every projection that lags the log, they are caught up when the workspace is
        opened; a manifest that cannot be read is left for `stoic audit` to name. Only the
        log after `since_offset` is read to see whether the manifest lags at all, so a live
        writer's proposals cost a reader no fold of the queue.
        """
        since = reflected_seq(self.root)
        if since is None or since >= self._last_proposal_seq(since_offset):
            return []
        with self.workspace.transaction():
            state = self.state()
            since = reflected_seq(self.root)
            if since is None or since >= state.queue_seq:
                return []
            return write_lagging(self.root, state, since)

    def _last_proposal_seq(self, start: int) -> int:
        last = 0
        end = self.workspace.log.tail_state().good_end
        for _line_no, _offset, raw, _complete in self.workspace.log.lines(start, end):
            if _NEEDLE in raw:
                last = int(orjson.loads(raw)["seq"])
        return last

    def rebuild(self, quarantine: Quarantine) -> list[str]:
        """Rewrite every proposal file and the manifest from the log (see `rebuild_files`)."""
        with self.workspace.transaction():
            return rebuild_files(self.root, self.state(), quarantine)

    def _source_exists(self, source: str, state: QueueState) -> bool:
        if source in state.proposals:
            return True
        relative = Path(source)
        inside = not relative.is_absolute() and ".." not in relative.parts
        if not inside:  # nothing outside the workspace is a source, nor probed for one
            return False
        if (self.root / "runs" / source).is_dir():
            return True
        if (self.root / relative).exists():
            return True
        needle = orjson.dumps(source)
        return any(
            needle in raw
            and (
                b'"decision_id":' + needle in raw
                or b'"task_id":' + needle in raw
                or b'"run_id":' + needle in raw
            )
            for _, _, raw, _ in self.workspace.log.lines(
                0, self.workspace.log.tail_state().good_end
            )
        )

    def _execution_entry(self, record: Record) -> None:
        """Its entry in execution_log.md, rendered from its record (see
        `stoic.core.run_document`), so the audit can render it again and compare."""
        path = self.root / "logs" / "execution_log.md"
        try:
            fd = open_confined(self.root, path, os.O_WRONLY | os.O_APPEND)
            try:
                write_all(fd, proposal_entry(record._asdict()).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise WorkspaceNotWritable(f"cannot write {path}: {exc.strerror or exc}") from exc
