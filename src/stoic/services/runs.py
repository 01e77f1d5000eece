"""Runs: check a plan, start it, continue a run, say where it stands and how it went, and wait
for it to stop (DESIGN §6).

Every start and every continue is refused while the workspace is paused (DESIGN §1.4), before
anything is recorded. A run's status is one of: `running` (a runner is at it), `completed`,
`failed` (no task can run again), `awaiting_human`, `interrupted` (its runner is gone or was
stopped) and `paused` (it started nothing after the workspace was paused).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.graph import RunStatus
from stoic.core.run_document import state_document
from stoic.core.timeline import (
    customer_view,
    operator_timeline,
    run_reconciliation,
    shown_status,
)
from stoic.exceptions import WaitTimedOut
from stoic.plan.check import PlanCheck, check_plan, invalid_plan_check
from stoic.plan.loader import PlanInvalid, read_plan
from stoic.run.agents import AgentSetup, agents_of, default_setup
from stoic.run.lifecycle import (
    continue_run,
    load_run,
    load_run_folder,
    plan_policy,
    runnable_errors,
    runner_working,
    start_run,
)
from stoic.run.run_end import EXIT_CODES, RunReport
from stoic.run.stages import verifier_warnings
from stoic.services.trust import refuse_if_paused
from stoic.store.config import load_settings

if TYPE_CHECKING:
    from stoic.core.policy import Policy
    from stoic.core.run_state import RunFolder, RunView
    from stoic.plan.loader import Plan
    from stoic.run.reporting import Reporter
    from stoic.store.workspace import Workspace

__all__ = [
    "RunStatusReport",
    "RunTimeline",
    "Silent",
    "check",
    "continue_",
    "start",
    "status",
    "timeline",
    "wait",
]

BeforeStart = Callable[["Policy"], None]
"""Called with the policy the run obeys once every check has passed, before anything is
recorded: the CLI re-executes itself there with only the environment that policy allows."""


class Silent:
    """A reporter that shows nothing: what a run did is in its records and its report."""

    def run_started(self, *args: object) -> None: ...
    def attempt_started(self, *args: object) -> None: ...
    def attempt_ended(self, *args: object) -> None: ...
    def attempt_halted(self, *args: object) -> None: ...
    def verification_warning(self, *args: object) -> None: ...
    def stopping(self, *args: object) -> None: ...
    def pausing(self, *args: object) -> None: ...
    def run_ended(self, *args: object) -> None: ...


def check(
    plan_path: str | Path, *, settings_file: Path | None = None, fresh: bool = False
) -> PlanCheck:
    """The run's pre-flight (`stoic plan check`): what a plan's task statuses mean and what a
    run would do, or every error that makes it invalid — what `stoic run` refuses, refused in
    the same words by the same function (`runnable_errors`). Agent tasks are checked against
    the roles and profiles of `settings_file` (a workspace's `stoic.toml`), else the built-in
    ones, and the agent CLI against this PATH. A verifier whose program is not found is a
    warning: verifiers fail open."""
    path = os.environ.get("PATH")
    agents = (
        default_setup().settings if settings_file is None else load_settings(settings_file).agents
    )
    setup = AgentSetup(agents, path)
    try:
        plan = read_plan(Path(plan_path))
        errors = runnable_errors(plan, setup, fresh=fresh)
        if errors:
            raise PlanInvalid(plan.path, errors)
        warnings = verifier_warnings(plan, path)
        return check_plan(
            plan, str(plan_path), agents_of(plan, setup), fresh=fresh, warnings=warnings
        )
    except PlanInvalid as exc:
        return invalid_plan_check(str(plan_path), exc.errors)


def start(
    workspace: Workspace,
    plan_path: str | Path,
    *,
    workers: int | None = None,
    reporter: Reporter | None = None,
    before_start: BeforeStart | None = None,
    fresh: bool = False,
) -> RunReport:
    """Start a run of the plan at `plan_path` and run it until nothing more can happen without
    a person; an invalid plan raises `PlanInvalid` and records nothing. Tasks the plan file
    marks done are recorded done and not run, unless `fresh`."""
    plan = read_plan(Path(plan_path))
    refuse_if_paused(workspace, next_steps.run())
    if before_start is not None:
        before_start(plan_policy(workspace, plan))
    return start_run(workspace, plan, workers=workers, reporter=reporter or Silent(), fresh=fresh)


def continue_(
    workspace: Workspace,
    run_id: str,
    *,
    workers: int | None = None,
    reporter: Reporter | None = None,
    approve: Sequence[str] = (),
    actor: str = "human:unknown",
    before_start: BeforeStart | None = None,
) -> RunReport:
    """Continue a run after a crash, a stop or a person's decision: open attempts become
    interrupted failures (evaluated once), the suggestions named in `approve` are approved by
    `actor`, then every task that can run, runs. A run whose end is on record and that nobody
    decided anything about since appends nothing."""
    refuse_if_paused(workspace, next_steps.continue_run())
    if before_start is not None:
        before_start(plan_policy(workspace, load_run(workspace, run_id)[0]))
    return continue_run(
        workspace,
        run_id,
        workers=workers,
        reporter=reporter or Silent(),
        approve=approve,
        actor=actor,
    )


@dataclass(frozen=True, slots=True)
class RunStatusReport:
    """A run as its records tell it now, and whether a runner is at it right now."""

    report: RunReport
    runner_working: bool
    """A runner holds the run's lease: a reader's answer, never recorded."""

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def run_id(self) -> str:
        return self.report.run_id

    def document(self) -> dict[str, Any]:
        """state.json's document (the log's word) with the status and the runner said now."""
        report = self.report
        document = state_document(report.view, report.plan.graph, report.analysis)
        document["status"] = report.status
        document["runner"] = "working" if self.runner_working else "none"
        if report.status in ("interrupted", "paused"):
            for task_id, entry in document["tasks"].items():
                if report.view.task(task_id).open_attempt is not None:
                    entry["status"] = "interrupted"  # started on record; nobody runs it now
        return document


def status(workspace: Workspace, run_id: str) -> RunStatusReport:
    """Where the run stands: its status, each task's, and what blocks what."""
    plan, folder, files = load_run_folder(workspace, run_id)
    working = _caught_up(workspace, plan, folder, runner_working(files))
    return _status_report(run_id, plan, folder.view(), working)


def _caught_up(workspace: Workspace, plan: Plan, folder: RunFolder, working: bool) -> bool:
    """`working`, with what a runner appended before it let go of the run fed in: the log read
    before the lock was asked may lack the end a runner recorded just before it left."""
    if not working and folder.view().analyse(plan.graph).status is RunStatus.RUNNING:
        for record in workspace.records(since_seq=folder.last_seq, run_id=folder.run_id):
            folder.feed(record._asdict())
    return working


def _status_report(run_id: str, plan: Plan, view: RunView, working: bool) -> RunStatusReport:
    analysis = view.analyse(plan.graph)
    shown = shown_status(view, analysis, runner_working=working)
    gone = shown in ("interrupted", "paused") and view.stopped is None
    code = EXIT_CODES.get(analysis.status, 0)
    report = RunReport(run_id, shown, code, view, analysis, plan, runner_gone=gone)
    return RunStatusReport(report, working)


@dataclass(frozen=True, slots=True)
class RunTimeline:
    """The story of a run: where it stands now and every record of it, in order."""

    shown: RunStatusReport
    records: tuple[dict[str, Any], ...]

    def customer(self) -> dict[str, Any]:
        """The final status of each task and of the run, with none of the mechanics."""
        report = self.shown.report
        rows = [(t.id, t.name, report.view.task(t.id).state) for t in report.plan.tasks]
        stopped = not self.shown.runner_working
        return customer_view(report.run_id, rows, report.analysis, stopped=stopped)

    def operator(self) -> dict[str, Any]:
        """Every record in order, and the same records grouped by task and attempt."""
        return operator_timeline(self.records, self.shown.report.plan.graph.ids)

    def reconciliation(self) -> dict[str, Any]:
        """Per task and for the run: what failed, what was evaluated and applied, the end."""
        return run_reconciliation(self.shown.report.view, self.shown.report.plan.graph.ids)


def timeline(workspace: Workspace, run_id: str) -> RunTimeline:
    """The run's status and its records, for the operator's and the customer's story."""
    shown = status(workspace, run_id)
    records = tuple(record._asdict() for record in workspace.records(run_id=run_id))
    return RunTimeline(shown, records)


def wait(
    workspace: Workspace, run_id: str, *, timeout: float | None = None, interval: float = 0.1
) -> str:
    """Block until the run is no longer `running` — it ended, waits for a person, was paused
    or stopped, or its runner is gone — and return its status. The run's new records are read
    every `interval` seconds; still running after `timeout` seconds raises `WaitTimedOut`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    plan, folder, files = load_run_folder(workspace, run_id)
    working = _caught_up(workspace, plan, folder, runner_working(files))
    while True:
        view = folder.view()
        shown = shown_status(view, view.analyse(plan.graph), runner_working=working)
        if shown != RunStatus.RUNNING.value:
            return shown
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimedOut(
                f"run {run_id} is still running after {timeout:g} s (last record #{view.last_seq})"
            )
        time.sleep(interval if left is None else min(interval, left))
        working = runner_working(files)
        amendment = folder.amendment
        for record in workspace.records(since_seq=folder.last_seq, run_id=run_id):
            folder.feed(record._asdict())
        if folder.amendment is not amendment:  # the run goes on with an amended plan
            plan, folder, _ = load_run_folder(workspace, run_id)
