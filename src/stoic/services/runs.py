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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core import next_steps
from stoic.core.concurrency import (
    DEFAULT_LIMIT,
    Admission,
    LiveRun,
    admit,
    plan_key,
    recorded_rule,
)
from stoic.core.graph import RunStatus
from stoic.core.proposals import ProposalStatus
from stoic.core.retry import retry_refusal
from stoic.core.run_document import state_document
from stoic.core.timeline import (
    customer_view,
    operator_timeline,
    run_reconciliation,
    shown_status,
)
from stoic.exceptions import ActingAsPerson, UsageError, WaitTimedOut
from stoic.plan.check import PlanCheck, check_plan, invalid_plan_check
from stoic.plan.loader import PlanInvalid, read_plan
from stoic.run.admission import limit_reached
from stoic.run.agents import AgentSetup, agents_of, default_setup
from stoic.run.guard import policy_warnings, run_policy
from stoic.run.lifecycle import (
    check_run_id,
    continue_run,
    load_run,
    load_run_folder,
    new_run_id,
    plan_policy,
    retry_run,
    runnable_errors,
    runner_working,
    start_run,
    unapprovable,
)
from stoic.run.run_end import EXIT_CODES, RunReport, with_output_ends
from stoic.run.stages import verifier_warnings
from stoic.services import queue
from stoic.services.run_list import RunRow, list_runs
from stoic.services.trust import refuse_if_paused
from stoic.store.config import SecretSource, Settings, load_settings
from stoic.store.interface import AttemptOutputs
from stoic.store.processes import workspace_policy
from stoic.store.provenance import current_task
from stoic.store.secrets import secrets_of_plan

if TYPE_CHECKING:
    from stoic.core.policy import Policy
    from stoic.core.proposals import Proposal
    from stoic.core.records import Record
    from stoic.core.run_state import RunFolder, RunView
    from stoic.plan.loader import Plan
    from stoic.run.reporting import Reporter
    from stoic.store.workspace import Workspace

__all__ = [
    "Approved",
    "Retried",
    "RunRow",
    "RunStatusReport",
    "RunTimeline",
    "Silent",
    "approve_and_continue",
    "check",
    "check_run_id",
    "continue_",
    "has_run",
    "limit_reached",
    "list_runs",
    "live_runs",
    "looked_at",
    "new_run_id",
    "output_tails",
    "retry",
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
    the same words by the same functions (`runnable_errors`, the secrets the plan names). Agent
    tasks are checked against the roles and profiles of `settings_file` (a workspace's
    `stoic.toml`), else the built-in ones, and the agent CLI against this PATH. A verifier whose
    program is not found is a warning: verifiers fail open."""
    path = os.environ.get("PATH")
    settings = Settings() if settings_file is None else load_settings(settings_file)
    if settings_file is None:
        agents = default_setup().settings
        sources: dict[str, SecretSource] = {}
        root = Path.cwd()
    else:
        agents, sources, root = settings.agents, settings.secrets, settings_file.parent
    setup = AgentSetup(agents, path)
    try:
        plan = read_plan(Path(plan_path))
        errors = runnable_errors(plan, setup, fresh=fresh)
        errors += secrets_of_plan(plan, sources, root, os.environ).errors
        if errors:
            raise PlanInvalid(plan.path, sorted(errors, key=lambda e: (e.line, e.column)))
        policy = run_policy(workspace_policy(settings), plan.document.meta.policy)
        warnings = [*policy_warnings(plan, policy), *verifier_warnings(plan, path)]
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
    approve: Sequence[str] = (),
    actor: str = "human:unknown",
    allow_concurrent: bool = False,
    fresh: bool = False,
    run_id: str | None = None,
) -> RunReport:
    """Start a run of the plan at `plan_path` and run it until nothing more can happen without
    a person; its id is `run_id` when given (refused when malformed or taken). An invalid plan
    raises `PlanInvalid` and records nothing. The gated tasks named in `approve` are approved
    by `actor` before the first start: they run when the run reaches them, with no proposal in
    between. Tasks the plan file marks done are recorded done and not run, unless `fresh`.

    While as many runs of the plan as its `meta.concurrency` allows (one by default) are live,
    the start is refused with `RunLimitReached`, naming them; `allow_concurrent` overrides the
    limit for this run, and its start record says so."""
    if run_id is not None:
        check_run_id(run_id)
    if approve:
        _refuse_unless_a_person(actor, "an approval")
    plan = read_plan(Path(plan_path))
    refuse_if_paused(workspace, next_steps.run())
    for task_id in approve:
        refusal = unapprovable(workspace, plan, task_id, fresh=fresh)
        if refusal is not None:
            raise UsageError(refusal)
    rule = plan.document.meta.concurrency
    key = plan_key(plan.document.meta.name, str(plan.path.absolute()))
    limit = rule.limit if rule is not None else DEFAULT_LIMIT
    _refuse_past_limit(workspace, plan, key, limit, allow_concurrent)  # before re-executing
    if before_start is not None:
        before_start(plan_policy(workspace, plan))

    def admitted(_run_id: str | None) -> dict[str, Any]:
        admission = _refuse_past_limit(workspace, plan, key, limit, allow_concurrent)
        return {"concurrency": admission.inputs()}

    return start_run(
        workspace,
        plan,
        workers=workers,
        reporter=reporter or Silent(),
        approve=approve,
        actor=actor,
        admit=admitted,
        fresh=fresh,
        run_id=run_id,
    )


def _refuse_unless_a_person(actor: str, what: str) -> None:
    if not actor.startswith("human:") or actor == "human:":
        raise UsageError(f"{what} is a person's decision: actor {actor!r} is not human:NAME")


def _refuse_past_limit(
    workspace: Workspace, plan: Plan, key: str, limit: int, allow_concurrent: bool
) -> Admission:
    """The admission of a new run of `plan`; refused past its limit, naming the live runs."""
    admission = admit(
        key, limit, allow_concurrent=allow_concurrent, live=_live_runs(workspace, other_than=None)
    )
    if not admission.admitted:
        raise limit_reached(admission, plan.name, next_steps.run_alongside(str(plan.path)))
    return admission


def _continue_admitted(workspace: Workspace, run_id: str | None) -> dict[str, Any]:
    """A run is taken up again only within its plan's limit, as its start record states it; a
    run started with the override keeps it. Nothing more is recorded for it."""
    live = _live_runs(workspace, other_than=run_id)
    if not live or run_id is None:
        return {}
    started = _start_records(workspace, {run_id}).get(run_id)
    if started is None:
        return {}  # not a run: loading it says so
    key, limit, allow = recorded_rule(started.decision_inputs, started.details)
    admission = admit(key, limit, allow_concurrent=allow, live=live)
    if not admission.admitted:
        name = str(started.details.get("plan_name", key))
        raise limit_reached(admission, name, None)
    return {}


def live_runs(workspace: Workspace) -> list[LiveRun]:
    """The runs a runner holds right now, each with its plan's key: what a plan's concurrency
    rule counts (asked under the writer lock, nothing starts meanwhile)."""
    return _live_runs(workspace, other_than=None)


def _live_runs(workspace: Workspace, *, other_than: str | None) -> list[LiveRun]:
    """The runs a runner holds right now (but `other_than`), each with its plan's key from its
    start record. Asked under the writer lock, so no run starts or is taken up meanwhile."""
    held = [lease for lease in workspace.leases.held() if lease.run_id != other_than]
    if not held:
        return []
    starts = _start_records(workspace, {lease.run_id for lease in held})
    live = []
    for lease in held:
        started = starts.get(lease.run_id)
        if started is not None:  # a lease with no start on record runs nothing
            key = recorded_rule(started.decision_inputs, started.details)[0]
            live.append(LiveRun(lease.run_id, key, lease.holder, lease.since))
    return live


def _start_records(workspace: Workspace, run_ids: set[str]) -> dict[str, Record]:
    """The start record of each of `run_ids`, read in one pass that stops once all are found."""
    found: dict[str, Record] = {}
    for record in workspace.records(decision_type="run_lifecycle"):
        if record.decision_outcome != "started" or record.run_id not in run_ids:
            continue
        found.setdefault(record.run_id, record)
        if len(found) == len(run_ids):
            break
    return found


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
    decided anything about since appends nothing. While as many other runs of its plan as the
    limit its start record holds are live, it is refused like a start (`RunLimitReached`)."""
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
        admit=lambda taken_up: _continue_admitted(workspace, taken_up),
    )


@dataclass(frozen=True, slots=True)
class Retried:
    """A person's retries, as recorded, and how the run went on after them."""

    records: tuple[Record, ...]
    """One `proposal/approved` (kind `retry`) record per retried task."""
    report: RunReport


def retry(
    workspace: Workspace,
    run_id: str,
    tasks: Sequence[str],
    *,
    reason: str | None,
    actor: str,
    workers: int | None = None,
    reporter: Reporter | None = None,
    before_start: BeforeStart | None = None,
) -> Retried:
    """Run failed tasks of a run again, in that run (`stoic retry`): `actor`'s decision, with
    its reason, recorded per task and linked to its failed attempt; the run then goes on, and
    what the tasks blocked runs after them. Each new attempt is a human-approved recovery: if
    it fails, the failure stands (R3, loop prevention).

    Refused, before anything is recorded: no reason, no tasks, a paused workspace, an unknown
    run or task, a task that did not fail (succeeded, skipped, pending, blocked, waiting for a
    person), a run a runner is at right now, a run whose plan has as many other live runs as
    its start record allows (`RunLimitReached`, as for a continue)."""
    if reason is None or not reason.strip():
        raise UsageError(
            "a retry is a person's decision and needs its reason: say why running the task"
            f" again is right ({next_steps.retry(run_id, tasks[0] if tasks else 'TASK')})"
        )
    if not tasks:
        raise UsageError(f"name the failed task to retry ({next_steps.retry(run_id, 'TASK')})")
    inside = current_task()
    if inside is not None:
        raise ActingAsPerson(
            f"refused: a retry is a person's decision, and this process runs {inside.describe()};"
            " a task cannot act as a person (a person retries from their own shell)"
        )
    _refuse_unless_a_person(actor, "a retry")
    refuse_if_paused(workspace, next_steps.retry(run_id, tasks[0], reason=reason.strip()))
    plan, view, files = load_run(workspace, run_id)
    analysis = view.analyse(plan.graph)
    waiting = {
        str(p.task_id): p.id
        for p in queue.list_proposals(workspace, ProposalStatus.PENDING)
        if p.run_id == run_id and p.task_id is not None
    }
    working = runner_working(files)
    for task_id in tasks:
        refusal = retry_refusal(
            run_id,
            task_id,
            plan.graph.ids,
            view,
            analysis,
            runner_working=working,
            proposals=waiting,
        )
        if refusal is not None:
            raise UsageError(refusal)
    if working:
        raise UsageError(
            f"run {run_id} is running right now; retry its failed tasks once its runner has"
            f" stopped ({next_steps.retry(run_id, tasks[0], reason=reason.strip())})"
        )
    if before_start is not None:
        before_start(plan_policy(workspace, plan))
    records, report = retry_run(
        workspace,
        run_id,
        tasks,
        reason=reason.strip(),
        actor=actor,
        workers=workers,
        reporter=reporter or Silent(),
        admit=lambda taken_up: _continue_admitted(workspace, taken_up),
    )
    return Retried(tuple(records), report)


@dataclass(frozen=True, slots=True)
class Approved:
    """A proposal approved, and how the run it belongs to went on after it."""

    proposal: Proposal
    report: RunReport


def approve_and_continue(
    workspace: Workspace,
    proposal_id: str,
    *,
    by: str,
    reason: str | None = None,
    workers: int | None = None,
    reporter: Reporter | None = None,
    before_start: BeforeStart | None = None,
) -> Approved:
    """Approve a pending proposal a run's task made and continue that run (`stoic approve ID
    --continue`). A proposal that belongs to no run, a paused workspace or a run a runner is
    at right now is refused before the approval is recorded."""
    proposal = queue.get(workspace, proposal_id)
    run_id = proposal.run_id
    if run_id is None:
        raise UsageError(
            f"{proposal_id} belongs to no run (no run's task made it), so there is no run to"
            f" continue; approve it alone: {next_steps.approve(proposal_id)}"
        )
    refuse_if_paused(workspace, next_steps.approve(proposal_id, continue_run=True))
    plan, _, files = load_run(workspace, run_id)
    if runner_working(files):
        raise UsageError(
            f"run {run_id} of {proposal_id} is running right now; approve it alone"
            f" ({next_steps.approve(proposal_id)}) and {next_steps.continue_run(run_id)} once"
            " its runner has stopped"
        )
    if before_start is not None:
        before_start(plan_policy(workspace, plan))
    approved = queue.decide(workspace, proposal_id, "approved", by=by, reason=reason)
    report = continue_(workspace, run_id, workers=workers, reporter=reporter, actor=by)
    return Approved(approved, report)


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
    shown = _status_report(run_id, plan, folder.view(), working)
    return replace(shown, report=with_output_ends(shown.report, workspace.outputs))


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


def output_tails(
    outputs: AttemptOutputs, run_id: str, view: RunView, tasks: Iterable[str], *, limit: int = 4096
) -> dict[str, str]:
    """The end of the last attempt's output of each of `tasks` that ran, by task, as the store
    keeps it (a workspace's attempt logs, a database's chunked rows): what a person looks at
    first when a task failed or waits."""
    shown: dict[str, str] = {}
    for task_id in tasks:
        attempts = view.task(task_id).attempts
        if attempts:
            data = b"".join(outputs.read(run_id, task_id, attempts))
            shown[task_id] = data[-limit:].decode("utf-8", "replace")
    return shown


def looked_at(timeline: RunTimeline) -> list[str]:
    """The tasks of a run a person looks at first: the failed and the waiting ones."""
    analysis = timeline.shown.report.analysis
    return [*analysis.failed, *analysis.awaiting_human]


def has_run(workspace: Workspace, run_id: str) -> bool:
    """Whether the workspace's log has the run's start (else it may be a database's)."""
    return any(
        record.decision_outcome == "started"
        for record in workspace.records(run_id=run_id, decision_type="run_lifecycle")
    )


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
