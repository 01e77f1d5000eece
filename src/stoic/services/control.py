"""Which runs the control plane of `stoic serve` can take up now, and why (DESIGN §14).

A run is taken up — continued, as `stoic continue` continues it — when what it waited for is
decided, when the workspace it paused for is resumed, or when its runner died. The answer is
computed from the log alone: one pass folds every run (the run fold `stoic status` uses), and a
run the log leaves going is asked whether a runner holds its lease. No answer rests on what a
server remembers; a server that restarts asks again and gets the same answer.

A run a signal stopped (`interrupted`: someone stopped its runner, or a server shut down) is
left for a person's `stoic continue`: stopping it was a decision, and nothing since undid it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stoic.core.graph import Analysis, RunStatus, TaskState
from stoic.core.records import GENESIS_HASH
from stoic.core.run_state import RunFolder, RunView
from stoic.core.vocabulary import LIFECYCLE_OUTCOME
from stoic.plan.loader import Plan
from stoic.services.log_head import holds
from stoic.services.run_list import RunPlans
from stoic.store.interface import Head

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["RUNNER_GONE", "Survey", "Surveyor", "TakeUp", "survey", "take_up_reason"]

RUNNER_GONE = "its runner is gone: the log says the run is going and no runner holds its lease"


@dataclass(frozen=True, slots=True)
class TakeUp:
    """A run that can be continued now, and what on record says so."""

    run_id: str
    why: str
    seq: int
    """The run's last record the answer rests on."""


@dataclass(frozen=True, slots=True)
class Survey:
    """The workspace as the control plane sees it at one log head."""

    head: int
    """The log's last seq when the survey was read."""
    paused: bool
    """A paused workspace continues nothing (`stoic continue` is refused too)."""
    take_up: tuple[TakeUp, ...]
    """In the order the runs started."""


def take_up_reason(view: RunView, analysis: Analysis, *, held: bool, paused: bool) -> str | None:
    """Why the run of `view` should be continued now, or None. Pure: the log's fold in.

    `held`: a runner holds the run's lease (then nobody else may take it up). `analysis`: the
    run's graph analysis now, where an attempt started on record counts as running."""
    if held or paused:
        return None
    if view.stopped is None:
        # Work was started on record and no end followed: whoever ran it is gone.
        return RUNNER_GONE
    if view.stopped == RunStatus.PAUSED.value:
        return "the workspace was resumed after the run stopped for its pause"
    if view.stopped == RunStatus.INTERRUPTED.value:
        return None
    outcome = LIFECYCLE_OUTCOME.get(analysis.status)
    if outcome == view.lifecycle:
        return None  # as it ended: nobody decided anything that moves it
    if analysis.status is RunStatus.RUNNING:
        return "a decision since its end lets a task run (an approval, an answer or a retry)"
    return f"a decision since its end makes the run {analysis.status.value}; its end is recorded"


def survey(workspace: Workspace) -> Survey:
    """Every run that can be taken up now, from one pass over the log."""
    return Surveyor().survey(workspace)


class Surveyor:
    """Surveys a workspace again and again, each time folding only the records appended since
    the last: the fold is the log's, fed in order, and begun again from the first record if the
    log no longer holds the last record it folded (a torn tail cut off by a repair, or a log
    restored from a backup, perhaps appended past where the fold had got to)."""

    def __init__(self) -> None:
        self.folders: dict[str, RunFolder] = {}
        self.seq = 0
        self.hash = GENESIS_HASH
        """The hash of the record at `seq`: the log must still hold it for the fold to stand."""
        self.plans: RunPlans | None = None
        self.quiet: dict[str, int] = {}
        """Runs their records leave as they are (no reason, whoever holds them), by the seq
        of their last record: a run's reason is a function of its fold, so it is asked again
        only once the run has a new record."""
        self.decided_calls: set[str] = set()
        """Tool-call proposals a person decided: a gated agent's session suspended on one goes
        on, though the decision is no record of its run."""

    def survey(self, workspace: Workspace) -> Survey:
        if not holds(workspace, Head(self.seq, self.hash)):  # cut, or rewritten past it
            self.folders, self.seq, self.hash, self.quiet = {}, 0, GENESIS_HASH, {}
            self.decided_calls = set()
        self._feed(workspace)
        head = self.seq
        if workspace.status().paused is not None:
            return Survey(head, True, ())
        if self.plans is None or self.plans.workspace is not workspace:
            self.plans = RunPlans(workspace)
        found = []
        for folder in self.folders.values():
            decided_call = next(
                (
                    task.proposal_id
                    for task in folder.tasks.values()
                    if task.state is TaskState.SUSPENDED
                    and task.resume_session
                    and task.proposal_id in self.decided_calls
                ),
                None,
            )
            if decided_call is not None:
                why = _unless_taken(
                    workspace,
                    folder.run_id,
                    f"{decided_call}, the tool call a gated agent's session waits on, is decided",
                    head,
                )
                if why is not None:
                    found.append(TakeUp(folder.run_id, why, folder.last_seq))
                continue
            if self.quiet.get(folder.run_id) == folder.last_seq:
                continue
            plan = self.plans.of(folder)
            if not isinstance(plan, Plan):
                continue  # its plan copy cannot be read: `stoic runs` says why
            view = folder.view(shared=True)
            why = take_up_reason(view, view.analyse(plan.graph), held=False, paused=False)
            if why is None:
                self.quiet[folder.run_id] = folder.last_seq
                continue
            why = _unless_taken(workspace, folder.run_id, why, head)
            if why is not None:
                found.append(TakeUp(folder.run_id, why, folder.last_seq))
        return Survey(head, False, tuple(found))

    def _feed(self, workspace: Workspace) -> None:
        for record in workspace.records(since_seq=self.seq):
            self.seq, self.hash = record.seq, record.hash
            run_id = record.run_id
            if (
                record.decision_type == "proposal"
                and record.decision_outcome in ("approved", "rejected")
                and record.decision_inputs.get("kind") == "tool_call"
            ):
                self.decided_calls.add(str(record.proposal_id))
            if run_id is None:
                continue
            folder = self.folders.get(run_id)
            if folder is None:
                if record.decision_type != "run_lifecycle" or record.decision_outcome != "started":
                    continue
                folder = self.folders[run_id] = RunFolder(run_id)
            folder.feed(record._asdict())


def _unless_taken(workspace: Workspace, run_id: str, why: str, head: int) -> str | None:
    """`why`, unless a runner holds the run now, or its runner may just have ended it."""
    if workspace.leases.held_by(run_id) is not None:
        return None
    if why == RUNNER_GONE and workspace.head().seq != head:
        # Its runner may have recorded its end and let go after the log was read: the next
        # survey, of the log as it is now, tells.
        return None
    return why
