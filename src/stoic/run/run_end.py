"""How a run ends: its status from the whole graph, one lifecycle record, and its report.

A run's end is decided by its graph, never by "no task left to start" (DESIGN §6); a signal or a
pause ends this stretch of it without deciding it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from stoic.core import next_steps
from stoic.core.graph import Analysis, RunStatus
from stoic.core.pause import PauseInForce
from stoic.core.policy import mask_secrets
from stoic.core.records import Decision
from stoic.core.run_state import RunFolder, RunView
from stoic.core.text import one_line, shortened
from stoic.core.vocabulary import LIFECYCLE_OUTCOME
from stoic.exceptions import StoicError, WorkspacePaused
from stoic.plan.loader import Plan
from stoic.run import decisions as made
from stoic.run.run_files import RunFiles
from stoic.store.interface import AttemptOutputs
from stoic.store.workspace import Workspace

__all__ = [
    "EXIT_CODES",
    "RunReport",
    "lifecycle_reason",
    "output_end",
    "record_end",
    "recorded_end",
    "run_end_decision",
    "waiting_of",
    "with_output_ends",
]

EXIT_CODES = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.AWAITING_HUMAN: 3,
    RunStatus.PAUSED: WorkspacePaused.exit_code,
}
"""`stoic run`'s exit code by status (DESIGN §6); a signal's is 128 + its number."""


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run (or this stretch of it) ended."""

    run_id: str
    status: RunStatus
    """completed, failed, awaiting_human, interrupted (a signal) or paused (the workspace)"""
    exit_code: int
    view: RunView
    analysis: Analysis
    plan: Plan
    runner_gone: bool = False
    """Read, not run: the log says the run is going, but no runner holds its lock."""
    output_ends: Mapping[str, str] = field(default_factory=dict)
    """The last line the last attempt of a failed task wrote, by task (`with_output_ends`)."""

    def to_json(self) -> dict[str, Any]:
        """The run as it stands, for a machine (`stoic run --json`): each task's status and
        attempts, what waits for a person (proposal and escalation ids), what failed and the
        root failures that block each blocked task."""
        tasks: dict[str, dict[str, Any]] = {}
        for task_id in self.plan.graph.ids:
            task = self.view.task(task_id)
            gone = self.runner_gone and task.open_attempt is not None
            tasks[task_id] = {
                "status": "interrupted" if gone else task.state.value,
                "attempts": task.attempts,
            }
        waiting = waiting_of(self.view, self.analysis)
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "plan": self.plan.name,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "tasks": tasks,
            "waiting": waiting,
            "proposal_ids": [w["proposal_id"] for w in waiting if w["proposal_id"]],
            "escalation_ids": [w["escalation_id"] for w in waiting if w["escalation_id"]],
            "failed": list(self.analysis.failed),
            "blocked": {task: list(roots) for task, roots in self.analysis.blocked.items()},
        }
        if self.status in (RunStatus.INTERRUPTED, RunStatus.PAUSED):
            document["continue_with"] = next_steps.continue_run(self.run_id).text
        return document


_OUTPUT_ENDS_READ = 20
"""The failed tasks whose output's end a report reads: the summary names a few, not thousands."""
_OUTPUT_TAIL_BYTES = 4096
_CUT_MARK = "[stoic: output cut at "


def with_output_ends(
    report: RunReport, outputs: AttemptOutputs, masks: Mapping[str, str] | None = None
) -> RunReport:
    """`report` with the last line each of its first failed tasks' last attempt wrote: what a
    person reading the summary of a failed run wants first ("exit status 1" says little).
    The attempt logs are masked as they are written; `masks` (the secrets of the run, where
    they are known) are masked again, for what a task wrote into its log file by itself."""
    ends: dict[str, str] = {}
    for task_id in report.analysis.failed[:_OUTPUT_ENDS_READ]:
        attempts = report.view.task(task_id).attempts
        if not attempts:
            continue
        try:
            line = output_end(outputs.read(report.run_id, task_id, attempts))
        except StoicError:  # an attempt log that cannot be read safely is not shown
            continue
        if line:
            ends[task_id] = mask_secrets(line, masks) if masks else line
    return replace(report, output_ends=ends) if ends else report


def output_end(chunks: Iterable[bytes]) -> str:
    """The last line with something on it, of an output read in chunks (only its tail is
    kept), shortened to one line."""
    tail = b""
    for chunk in chunks:
        tail = (tail + chunk)[-_OUTPUT_TAIL_BYTES:]
    for line in reversed(tail.decode("utf-8", "replace").splitlines()):
        if line.strip() and not line.startswith(_CUT_MARK):  # stoic's own, not the task's
            return shortened(one_line(line.strip()), 200)
    return ""


def waiting_of(view: RunView, analysis: Analysis) -> list[dict[str, Any]]:
    """Each task waiting for a person, with the proposal or escalation it waits on."""
    return [
        {
            "task_id": task_id,
            "proposal_id": view.task(task_id).proposal_id,
            "escalation_id": view.task(task_id).escalation_id,
        }
        for task_id in analysis.awaiting_human
    ]


def recorded_end(run_id: str, plan: Plan, folder: RunFolder, since_seq: int) -> RunReport | None:
    """The run's end as the log already holds it, if nothing since `since_seq` changed it.

    Continuing a completed or failed run appends nothing and notifies nobody: its end is on
    record, and was announced, once. So does continuing a run that waits for a person when
    nothing but notices about the run was recorded after it said so: nobody has decided
    anything yet.
    """
    view = folder.view()
    analysis = view.analyse(plan.graph)
    waiting_still = (
        analysis.status is RunStatus.AWAITING_HUMAN and folder.ended_seq == folder.decided_seq
    )
    if (
        folder.last_seq != since_seq
        or not (analysis.status in (RunStatus.COMPLETED, RunStatus.FAILED) or waiting_still)
        or view.lifecycle != LIFECYCLE_OUTCOME[analysis.status]
    ):
        return None
    return RunReport(run_id, analysis.status, EXIT_CODES[analysis.status], view, analysis, plan)


def record_end(
    workspace: Workspace,
    files: RunFiles,
    plan: Plan,
    folder: RunFolder,
    stop_signal: int | None,
    paused: PauseInForce | None,
) -> RunReport:
    """Record how this stretch of the run ended, and write its state.json to match."""
    run_id = files.run_id
    analysis = folder.view(shared=True).analyse(plan.graph)  # read before the next feed
    # A signal ends the run as stopped, whatever the stopped tasks' evaluations made of
    # them (a non-idempotent one fails: R3); only a run that got done regardless is done.
    if stop_signal is not None and analysis.status is not RunStatus.COMPLETED:
        name = signal.Signals(stop_signal).name
        status, code = RunStatus.INTERRUPTED, 128 + stop_signal
        reason = (
            f"Run {run_id} was stopped by {name}: running tasks were stopped and"
            f" recorded as interrupted; {next_steps.continue_run(run_id)} goes on."
        )
    elif paused is not None and analysis.status is RunStatus.RUNNING:
        status = RunStatus.PAUSED
        code = EXIT_CODES[status]
        reason = (
            f"Run {run_id} started nothing after the workspace was paused"
            f" ({paused.reason}); after {next_steps.resume()},"
            f" {next_steps.continue_run(run_id)} goes on."
        )
    else:
        status = analysis.status
        code = EXIT_CODES.get(status, 1)  # running: stuck, which is not done
        reason = lifecycle_reason(run_id, analysis)
    (record,) = workspace.append([run_end_decision(run_id, status, reason, analysis)])
    folder.feed(record._asdict())
    view = folder.view()
    with workspace.projecting(files.relative(files.state_file)):
        files.write_state(view, plan.graph, analysis)
    report = RunReport(run_id, status, code, view, analysis, plan)
    return with_output_ends(report, workspace.outputs, workspace.masked)


def run_end_decision(run_id: str, status: RunStatus, reason: str, analysis: Analysis) -> Decision:
    """The one lifecycle record that ends a stretch of a run, with how its graph stands."""
    return Decision(
        decision_type="run_lifecycle",
        decision_outcome=LIFECYCLE_OUTCOME[status],
        decision_reason=reason,
        actor=made.ACTOR,
        causal_role="post_run",
        run_id=run_id,
        decision_inputs={
            "status": status.value,
            "failed": list(analysis.failed),
            "blocked": {task: list(roots) for task, roots in analysis.blocked.items()},
            "awaiting_human": list(analysis.awaiting_human),
        },
    )


def lifecycle_reason(run_id: str, analysis: Analysis) -> str:
    """The reason of the record that ends a run: how the graph stands, in one sentence."""
    if analysis.status is RunStatus.COMPLETED:
        return f"Run {run_id} completed: every task succeeded or was skipped."
    if analysis.status is RunStatus.AWAITING_HUMAN:
        waiting = ", ".join(analysis.awaiting_human)
        return f"Run {run_id} is waiting for a person: {waiting}."
    roots = sorted({root for roots in analysis.blocked.values() for root in roots})
    return (
        f"Run {run_id} failed: no task can run again; failed: {', '.join(analysis.failed)}"
        + (f"; {len(analysis.blocked)} blocked by {', '.join(roots)}" if analysis.blocked else "")
        + "."
    )
