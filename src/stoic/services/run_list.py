"""The runs of a workspace, newest first (`stoic runs`): each one's status from the log.

One pass over the log folds every run (the run fold `stoic status RUN_ID` uses, never
state.json); each run's plan copy is read once per distinct plan (runs of one plan share its
sha256), and a run the log says is going is asked whether a runner holds its lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stoic.core.graph import Analysis, RunStatus, TaskState
from stoic.core.records import Record
from stoic.core.run_state import RunFolder, RunView
from stoic.core.timeline import shown_status
from stoic.core.vocabulary import closest
from stoic.exceptions import UsageError, WorkspaceError
from stoic.plan.loader import Plan, PlanInvalid, read_plan
from stoic.run.lifecycle import run_files

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = [
    "UNKNOWN",
    "RunPlans",
    "RunRow",
    "fold_runs",
    "list_runs",
    "plan_name",
    "status_named",
    "task_counts",
]

UNKNOWN = "unknown"
"""The status of a run whose plan copy cannot be read: its graph, and so its status, is not
known (the row says why)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the listing shows it."""

    run_id: str
    plan: str
    """The plan's name (meta.name, else its file's name) as the start record has it."""
    status: str
    """A run status (`RunStatus`), or `unknown` with `problem` saying why."""
    started_at: str | None
    ended_at: str | None
    """When its last stretch ended, if the run is not going now."""
    tasks: Mapping[str, int]
    """How many tasks are in each state; `blocked` counts pending tasks that can never run."""
    runner: str | None
    """Who holds the run's lease right now (`pid 4242 on build-1`), if anyone."""
    problem: str | None = None

    @property
    def duration_s(self) -> float | None:
        """From its start to the end of its last stretch; None while it goes on."""
        if self.started_at is None or self.ended_at is None:
            return None
        started = datetime.fromisoformat(self.started_at)
        return max(0.0, (datetime.fromisoformat(self.ended_at) - started).total_seconds())

    def document(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "tasks": dict(self.tasks),
            "runner": self.runner,
            "problem": self.problem,
        }


def status_named(name: str | None) -> RunStatus | None:
    """The run status a person named to filter by (None: all)."""
    if name is None:
        return None
    try:
        return RunStatus(name)
    except ValueError:
        known = [status.value for status in RunStatus]
        guess = closest(name, known)
        hint = f"did you mean {guess!r}?" if guess else f"statuses: {', '.join(known)}"
        raise UsageError(f"unknown run status {name!r} ({hint})") from None


def list_runs(
    workspace: Workspace, *, status: str | None = None, plan: str | None = None
) -> list[RunRow]:
    """Every run of the workspace, newest start first; only those with `status` (a run
    status, checked) or of the plan named `plan`, when given."""
    wanted = status_named(status)
    folders, ended_at, last_seq = fold_runs(workspace.records())
    if plan is not None:
        folders = {r: f for r, f in folders.items() if plan_name(f) == plan}
    plans = _Plans(workspace)
    rows = [
        _row(workspace, folder, plans, ended_at.get(r), last_seq) for r, folder in folders.items()
    ]
    rows.reverse()  # folders are in the order the runs started
    return [row for row in rows if wanted is None or row.status == wanted.value]


def fold_runs(records: Iterable[Record]) -> tuple[dict[str, RunFolder], dict[str, str], int]:
    """Every run the records start, folded in one pass, in the order they started; when
    each last ended a stretch (by run); the last seq read."""
    folders: dict[str, RunFolder] = {}
    ended_at: dict[str, str] = {}
    last_seq = 0
    for record in records:
        last_seq = record.seq
        run_id = record.run_id
        if run_id is None:
            continue
        folder = folders.get(run_id)
        if folder is None:
            if record.decision_type != "run_lifecycle" or record.decision_outcome != "started":
                continue  # records that name no run these records start
            folder = folders[run_id] = RunFolder(run_id)
        folder.feed(record._asdict())
        if record.decision_type == "run_lifecycle" and record.decision_outcome != "started":
            ended_at[run_id] = record.decided_at
    return folders, ended_at, last_seq


def plan_name(folder: RunFolder) -> str:
    """The run's plan name, as its start record has it."""
    return str((folder.started or {}).get("plan_name", ""))


class _Plans:
    """Each run's plan as it runs now (as amended), read once per distinct sha256."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.by_sha: dict[str, Plan] = {}

    def of(self, folder: RunFolder) -> Plan | str:
        """The plan, or why it cannot be read."""
        source = folder.amendment if folder.amendment is not None else folder.started or {}
        sha = str(source.get("plan_sha256", ""))
        known = self.by_sha.get(sha)
        if known is not None:
            return known
        try:
            files = run_files(self.workspace, folder.run_id)
            copy = (
                files.plan_copy
                if folder.amendment is None
                else self.workspace.root / str(folder.amendment["plan_copy"])
            )
            plan = read_plan(Path(copy))
        except (PlanInvalid, UsageError, WorkspaceError) as exc:
            return f"its plan copy cannot be read: {exc}"
        if plan.sha256 != sha:
            return f"{copy} no longer matches the plan the run started with (sha256 {sha})"
        self.by_sha[sha] = plan
        return plan


RunPlans = _Plans
"""Each run's plan, read once per distinct sha256, for other services folding every run."""


def _row(
    workspace: Workspace, folder: RunFolder, plans: _Plans, ended: str | None, last_seq: int
) -> RunRow:
    plan = plans.of(folder)
    name = plan_name(folder)
    if not isinstance(plan, Plan):
        lease = workspace.leases.held_by(folder.run_id)
        runner = lease.holder if lease is not None else None
        return RunRow(folder.run_id, name, UNKNOWN, folder.started_at, None, {}, runner, plan)
    analysis = folder.view(shared=True).analyse(plan.graph)
    lease = None
    if analysis.status is RunStatus.RUNNING:  # only a run going on record can have a runner
        lease = workspace.leases.held_by(folder.run_id)
        if lease is None:
            # Its runner may have recorded its end and let go after the log was read.
            for record in workspace.records(since_seq=last_seq, run_id=folder.run_id):
                folder.feed(record._asdict())
            analysis = folder.view(shared=True).analyse(plan.graph)
    view = folder.view(shared=True)
    shown = shown_status(view, analysis, runner_working=lease is not None)
    if shown is RunStatus.RUNNING or view.stopped is None:
        ended = None  # going on, or its runner died before it recorded an end
    counts = task_counts(view, plan, analysis, stopped=shown in _STOPPED)
    runner = lease.holder if lease is not None else None
    return RunRow(folder.run_id, name, shown.value, view.started_at, ended, counts, runner)


_STOPPED = frozenset({RunStatus.INTERRUPTED, RunStatus.PAUSED})


def task_counts(view: RunView, plan: Plan, analysis: Analysis, *, stopped: bool) -> dict[str, int]:
    """Tasks by state, in the order a run goes through them; a pending task that can never
    run is `blocked`, and one nobody runs now in a stopped run is `interrupted`."""
    counts: dict[str, int] = {}
    for task_id, state in zip(plan.graph.ids, view.states(plan.graph), strict=True):
        word = state.value
        if task_id in analysis.blocked:
            word = "blocked"
        elif stopped and state is TaskState.RUNNING:
            word = TaskState.INTERRUPTED.value
        counts[word] = counts.get(word, 0) + 1
    return counts
