"""Runs on a database (DESIGN §13): recorded here, carried out by `stoic worker`s anywhere.

`start_database_run` records a run's start, its plan copy and the tasks that may start at once
in one transaction, and returns: the workers take it from there. `database_run_state` reads a
run's state from its records (the log decides); `wait_for_database_run` follows it to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stoic.core import next_steps
from stoic.core.concurrency import DEFAULT_LIMIT, LiveRun, admit, plan_key
from stoic.core.graph import Analysis, RunStatus
from stoic.core.records import Record
from stoic.core.recovery import AttemptKind
from stoic.core.run_state import RunFolder, RunView
from stoic.exceptions import StoicError, UsageError, WorkspaceError, WorkspacePaused
from stoic.plan.loader import Plan, read_plan
from stoic.run import decisions as made
from stoic.run.fleet import FleetWorker, WorkerOptions
from stoic.run.fleet_plans import database_run_refusal, recorded_plan, run_settings
from stoic.run.fleet_review import retry_at
from stoic.run.lifecycle import chosen_run_id, run_started_decision
from stoic.run.run_end import (
    EXIT_CODES,
    RunReport,
    lifecycle_reason,
    run_end_decision,
    waiting_of,
)
from stoic.run.task_user import resolve_task_user
from stoic.services.run_list import (
    UNKNOWN,
    RunRow,
    fold_runs,
    plan_name,
    status_named,
    task_counts,
)
from stoic.services.runs import (
    RunStatusReport,
    RunTimeline,
    limit_reached,
    looked_at,
    output_tails,
)
from stoic.store import pg_work as work
from stoic.store.config import Settings
from stoic.store.pg_driver import Conn
from stoic.store.pg_run_files import store_run_files
from stoic.store.pg_store import PostgresStore
from stoic.store.run_evidence import RunFile

__all__ = [
    "DatabaseRun",
    "database_run_outputs",
    "database_run_state",
    "database_run_timeline",
    "database_timeline_outputs",
    "list_database_runs",
    "live_database_runs",
    "retry_database_run",
    "run_worker",
    "start_database_run",
    "wait_for_database_run",
]


@dataclass(frozen=True, slots=True)
class DatabaseRun:
    """A run of a database as its records tell it."""

    run_id: str
    plan: Plan
    view: RunView
    analysis: Analysis
    ended: bool
    """Whether its last lifecycle record ends it (else workers are on it)."""

    @property
    def status(self) -> RunStatus:
        return self.analysis.status if self.ended else RunStatus.RUNNING

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.status, 1) if self.ended else 0

    def document(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan.name,
            "status": self.status.value,
            "ended": self.ended,
            "tasks": {
                task: state.value
                for task, state in zip(
                    self.plan.graph.ids, self.view.states(self.plan.graph), strict=True
                )
            },
            "failed": list(self.analysis.failed),
            "awaiting_human": list(self.analysis.awaiting_human),
            "waiting": waiting_of(self.view, self.analysis),
        }

    def waits_on(self, task_id: str) -> str:
        """What a task waiting for a person waits on: its proposal or escalation, by id."""
        task = self.view.task(task_id)
        return task.escalation_id or task.proposal_id or "a person's decision"


def start_database_run(
    url: str,
    plan_path: str | Path,
    *,
    run_id: str | None = None,
    settings: Settings | None = None,
    allow_concurrent: bool = False,
) -> DatabaseRun:
    """Record a run of the plan in the database, ready for workers; returns it as started.

    `settings`: the workspace's it is started from (the defaults without one); its policy,
    runner limits and recovery settings are recorded in the start, and every worker runs the
    run by them. What database runs cannot do yet (agents, approvals, budgets, verifiers,
    secrets) is refused here, in one sentence, before anything is recorded. While as many runs
    of the plan as its `meta.concurrency` allows (one by default) are live in the database,
    the start is refused naming them; `allow_concurrent` overrides it, and the start says so."""
    plan = read_plan(plan_path)
    settings = settings or Settings()
    resolve_task_user(settings.runner.task_user)  # refused before anything is recorded
    refusal = database_run_refusal(plan, settings)
    if refusal is not None:
        raise UsageError(refusal)
    run_id = chosen_run_id(run_id)
    done = plan.done_in_file()
    copy = RunFile(run_id, "plan.yaml", plan.text.encode("utf-8"))
    started = run_started_decision(
        run_id, plan, {"tasks": len(plan.tasks), "on": "workers"}, copy.relative, len(done), False
    )
    started = replace(started, details={**started.details, "settings": run_settings(settings)})
    rule = plan.document.meta.concurrency
    key = plan_key(plan.document.meta.name, str(plan.path.absolute()))
    limit = rule.limit if rule is not None else DEFAULT_LIMIT
    skipped = [made.done_in_file_decision(run_id, task, word) for task, word in done.items()]
    ready = [
        work.Ready(run_id, spec.id, 1, AttemptKind.FIRST.value)
        for spec in plan.tasks
        if spec.id not in done and all(dep in done for dep in spec.dependency_ids)
    ]
    with PostgresStore.open(url) as store:
        with store.writing("record the start of a run") as writing:
            if work.run_exists(writing.conn, run_id):
                raise UsageError(f"run {run_id} exists already: a new run needs a new id")
            paused = work.PauseFollower().check(writing.conn)
            if paused is not None:  # no new task execution while paused
                raise WorkspacePaused(
                    f"the database is paused ({paused.reason}, record #{paused.seq}):"
                    f" {next_steps.run()} is refused until it is resumed"
                )
            admission = admit(  # under the head's lock: no run starts or ends meanwhile
                key, limit, allow_concurrent=allow_concurrent, live=work.live_runs(writing.conn)
            )
            if not admission.admitted:
                raise limit_reached(admission, plan.name, next_steps.run_alongside(str(plan_path)))
            started = replace(
                started,
                decision_inputs={**started.decision_inputs, "concurrency": admission.inputs()},
            )
            store_run_files(writing.conn, [copy])
            records = writing.append([started, *skipped])
            work.make_ready(writing.conn, ready)
            if not ready:  # every task done in the plan file: the run ends as it starts
                folder = RunFolder(run_id)
                for record in records:
                    folder.feed(record._asdict())
                analysis = folder.view().analyse(plan.graph)
                reason = lifecycle_reason(run_id, analysis)
                writing.append([run_end_decision(run_id, analysis.status, reason, analysis)])
        return _state(store, run_id, plan)


def database_run_state(url: str, run_id: str) -> DatabaseRun:
    """The run as its records tell it."""
    with PostgresStore.open(url) as store:
        return _read(store, run_id)[0]


def database_run_timeline(url: str, run_id: str) -> RunTimeline:
    """The run's status and its records, for the console's operator and customer views: its
    workers are at it until a lifecycle record ends it."""
    with PostgresStore.open(url) as store:
        state, records = _read(store, run_id)
    report = RunReport(
        run_id, state.status, state.exit_code, state.view, state.analysis, state.plan
    )
    return RunTimeline(RunStatusReport(report, runner_working=not state.ended), records)


def live_database_runs(url: str) -> list[LiveRun]:
    """The database's live runs (no lifecycle record ended them), each with its plan's key."""
    with PostgresStore.open(url) as store, store.connection() as conn:
        return work.live_runs(conn)


def _read(store: PostgresStore, run_id: str) -> tuple[DatabaseRun, tuple[dict[str, Any], ...]]:
    with store.connection() as conn:
        try:
            started, text = work.run_start(conn, run_id)
        except LookupError:
            raise UsageError(f"no run {run_id} in the database") from None
        records = tuple(dict(record) for record in work.run_records(conn, run_id))
    try:
        plan = recorded_plan(run_id, text, started)
    except ValueError as exc:  # UnicodeDecodeError too
        raise WorkspaceError(f"run {run_id} cannot be shown: {exc}") from None
    return _folded(run_id, plan, records), records


def _state(store: PostgresStore, run_id: str, plan: Plan) -> DatabaseRun:
    with store.connection() as conn:
        return _folded(run_id, plan, work.run_records(conn, run_id))


def _folded(run_id: str, plan: Plan, records: Iterable[Mapping[str, Any]]) -> DatabaseRun:
    folder = RunFolder(run_id)
    for record in records:
        folder.feed(record)
    view = folder.view()
    ended = view.lifecycle not in (None, "started")
    return DatabaseRun(run_id, plan, view, view.analyse(plan.graph), ended)


def retry_database_run(
    url: str, run_id: str, tasks: Sequence[str], *, reason: str | None, actor: str
) -> list[Record]:
    """A person runs failed tasks of a database run again, in their run: each retry recorded
    (with its reason, linked to the failed attempt) and the task ready for the run's workers,
    in one transaction; what it blocked runs after it."""
    if not tasks:
        raise UsageError("name the failed tasks to run again")
    with PostgresStore.open(url) as store, store.writing("record a retry") as writing:
        return retry_at(writing, run_id, tasks, actor=actor, reason=reason or "")


def list_database_runs(
    url: str, *, status: str | None = None, plan: str | None = None
) -> list[RunRow]:
    """Every run of the database, newest start first, as `stoic runs` lists a workspace's:
    the status from the log (a run with no end on record is running: its workers, if they
    died, leave leases that another worker takes over), and who runs its tasks now."""
    wanted = status_named(status)
    with PostgresStore.open(url) as store:
        folders, ended_at, _last = fold_runs(store.read())
        with store.connection() as conn:
            holders = work.claim_holders(conn)
            plans: dict[str, Plan | str] = {}
            rows: list[RunRow] = []
            for run_id, folder in folders.items():
                name = plan_name(folder)
                if plan is not None and name != plan:
                    continue
                sha = str((folder.started or {}).get("plan_sha256", ""))
                if sha not in plans:
                    plans[sha] = _plan_of(conn, run_id)
                rows.append(_row(folder, plans[sha], ended_at.get(run_id), holders.get(run_id)))
    rows.reverse()  # folders are in the order the runs started
    return [row for row in rows if wanted is None or row.status == wanted.value]


def _plan_of(conn: Conn, run_id: str) -> Plan | str:
    try:
        started, text = work.run_start(conn, run_id)
        return recorded_plan(run_id, text, started)
    except (LookupError, ValueError, StoicError) as exc:
        return f"its plan copy cannot be read: {exc}"


def _row(folder: RunFolder, plan: Plan | str, ended: str | None, holders: int | None) -> RunRow:
    name, view = plan_name(folder), folder.view()
    runner = f"{holders} worker{'s' if holders != 1 else ''}" if holders else None
    if not isinstance(plan, Plan):
        return RunRow(folder.run_id, name, UNKNOWN, view.started_at, None, {}, runner, plan)
    analysis = view.analyse(plan.graph)
    is_over = view.lifecycle not in (None, "started")
    shown = analysis.status if is_over else RunStatus.RUNNING
    counts = task_counts(view, plan, analysis, stopped=False)
    return RunRow(
        folder.run_id,
        name,
        shown.value,
        view.started_at,
        ended if is_over else None,
        counts,
        runner,
    )


def database_run_outputs(
    url: str, state: DatabaseRun, *, limit: int = 4096, every_task: bool = False
) -> dict[str, str]:
    """The end of the last attempt's output of each failed or waiting task (every task with
    `every_task`), as the database keeps it, by task: what a person looks at first."""
    tasks = (
        list(state.plan.graph.ids)
        if every_task
        else [*state.analysis.failed, *state.analysis.awaiting_human]
    )
    with PostgresStore.open(url) as store:
        return output_tails(store.outputs, state.run_id, state.view, tasks, limit=limit)


def database_timeline_outputs(url: str, timeline: RunTimeline) -> dict[str, str]:
    """The end of the output of what failed or waits in a database run, for its page."""
    with PostgresStore.open(url) as store:
        report = timeline.shown.report
        return output_tails(store.outputs, report.run_id, report.view, looked_at(timeline))


def wait_for_database_run(
    url: str, run_id: str, *, poll_s: float = 0.5, timeout_s: float | None = None
) -> DatabaseRun:
    """The run once a lifecycle record ends it (or as it stands when `timeout_s` is over)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        state = database_run_state(url, run_id)
        if state.ended or (deadline is not None and time.monotonic() >= deadline):
            return state
        time.sleep(poll_s)


def run_worker(url: str, options: WorkerOptions, say: Callable[[str], None]) -> dict[str, int]:
    """Work on the database's runs until a signal (or, idle, when `exit_when_idle`); returns
    what this worker did."""
    with PostgresStore.open(url) as store:
        worker = FleetWorker(store, url, options, say=say)
        say(f"worker {worker.name}: up to {options.concurrency} tasks at once")
        worker.serve()
        return dict(worker.stats)
