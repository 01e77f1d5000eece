"""The runner: ready tasks run concurrently; every start is durable before the task starts.

One thread (the caller's) decides and records; executor threads only run attempts and hand
back results. Records are group-committed: the end of one attempt and the starts it unblocks
share one fsync, and nothing starts before its start record is on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.graph import DONE_STATES, Analysis, RunStatus, TaskState
from stoic.core.records import Decision
from stoic.core.run_state import RunFolder, RunView
from stoic.exceptions import UsageError, WorkspaceError
from stoic.plan.loader import Plan, PlanError, PlanInvalid, read_plan
from stoic.plan.models import TaskSpec
from stoic.run.attempt import Attempt, AttemptResult
from stoic.run.http import call_http
from stoic.run.process import kill_recorded_group
from stoic.run.python_pool import WorkerPool
from stoic.run.reporting import Reporter
from stoic.run.run_files import RunFiles
from stoic.run.shell import run_command
from stoic.store.atomic import atomic_write
from stoic.store.workspace import Workspace

__all__ = ["RunReport", "continue_run", "new_run_id", "start_run"]

_ACTOR = "system:runner"
_STATE_EVERY_SECONDS = 1.0
EXIT_CODES = {
    RunStatus.COMPLETED: 0,
    RunStatus.FAILED: 1,
    RunStatus.AWAITING_HUMAN: 3,
}
_LIFECYCLE = {
    RunStatus.COMPLETED: "completed",
    RunStatus.FAILED: "failed",
    RunStatus.AWAITING_HUMAN: "awaiting_approval",
}


@dataclass(frozen=True, slots=True)
class RunReport:
    """How a run (or this stretch of it) ended."""

    run_id: str
    status: str
    """completed, failed, awaiting_human or interrupted"""
    exit_code: int
    view: RunView
    analysis: Analysis
    plan: Plan


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"


def runnable_errors(plan: Plan) -> list[PlanError]:
    """What stops a valid plan from running here: tasks with nothing to run, agent tasks."""
    errors = []
    for task in plan.tasks:
        line, column = plan.task_positions.get(task.id, (1, 1))
        if task.agent is not None:
            errors.append(
                PlanError(
                    line,
                    column,
                    f"task {task.id!r} is an agent task; this workspace has no agent executor",
                    "give it run:, call: or http: instead",
                )
            )
        elif task.run is None and task.call is None and task.http is None:
            errors.append(
                PlanError(
                    line,
                    column,
                    f"task {task.id!r} has nothing to run",
                    "add run: [argv], call: module:function or http: {url: …}",
                )
            )
    return errors


def start_run(
    workspace: Workspace, plan: Plan, *, workers: int | None, reporter: Reporter
) -> RunReport:
    """Create a run of `plan` and run it until nothing more can happen without a person."""
    errors = runnable_errors(plan)
    if errors:
        raise PlanInvalid(plan.path, errors)
    run_id = new_run_id()
    files = RunFiles(workspace.root, run_id)
    files.folder.mkdir(parents=True)
    atomic_write(files.plan_copy, plan.text.encode("utf-8"))
    workers = workers or workspace.settings.runner.workers
    with _run_lock(files):
        record = workspace.record(
            "run_lifecycle",
            "started",
            f"Run {run_id} of plan {plan.name} started with {len(plan.tasks)} tasks.",
            actor=_ACTOR,
            trigger="explicit",
            causal_role="pre_run",
            run_id=run_id,
            inputs={"tasks": len(plan.tasks), "workers": workers},
            details={
                "plan": str(plan.path),
                "plan_name": plan.name,
                "plan_sha256": plan.sha256,
                "plan_copy": files.relative(files.plan_copy),
                "plan_dir": str(plan.path.absolute().parent),
            },
        )
        folder = RunFolder(run_id)
        folder.feed(record._asdict())
        runner = _Runner(workspace, plan, files, folder, workers, reporter)
        return runner.execute()


def load_run(workspace: Workspace, run_id: str) -> tuple[Plan, RunView, RunFiles]:
    """The plan copy and the log's view of an existing run."""
    files = RunFiles(workspace.root, run_id)
    view = _fold(workspace, run_id)
    if view.started is None:
        known = sorted(path.name for path in (workspace.root / "runs").glob("run-*"))[-5:]
        hint = f" (recent runs: {', '.join(known)})" if known else ""
        raise UsageError(f"no run {run_id!r} in this workspace{hint}")
    plan = read_plan(files.plan_copy)
    if plan.sha256 != view.started.get("plan_sha256"):
        raise WorkspaceError(
            f"{files.plan_copy} no longer matches the plan the run started with"
            f" (sha256 {view.started.get('plan_sha256')}); restore it before continuing"
        )
    return plan, view, files


def continue_run(
    workspace: Workspace, run_id: str, *, workers: int | None, reporter: Reporter
) -> RunReport:
    """Continue a run: attempts its dead runner left open are recorded as interrupted first."""
    plan, _, files = load_run(workspace, run_id)
    with _run_lock(files):
        folder = RunFolder(run_id)
        for record in workspace.records(run_id=run_id):
            folder.feed(record._asdict())
        view = folder.view()
        endings = []
        for task_id in plan.graph.ids:
            open_attempt = view.task(task_id).open_attempt
            if open_attempt is None:
                continue
            pid_file = files.attempt_log(task_id, open_attempt.attempt).with_suffix(".pid")
            killed = kill_recorded_group(pid_file)
            failure = Failure(
                FailureKind.INTERRUPTED,
                "the runner stopped during this attempt"
                + ("; its leftover processes were killed" if killed else ""),
                partial=Partial.UNKNOWN,
            )
            endings.append(
                Decision(
                    decision_type="execution",
                    decision_outcome="interrupted",
                    decision_reason=(
                        f"Task {task_id} attempt {open_attempt.attempt} was interrupted: its"
                        " runner stopped before recording an end; partial: unknown."
                    ),
                    actor=_ACTOR,
                    decision_trigger="reactive",
                    decision_inputs=failure.to_json(),
                    causal_role="in_run",
                    run_id=run_id,
                    request_id=_request_id(run_id, task_id),
                    task_id=task_id,
                    attempt_id=open_attempt.attempt_id,
                    attempt=open_attempt.attempt,
                    details={"duration_s": 0.0, "leftover_processes_killed": killed},
                )
            )
        for record in workspace.record_many(endings):
            folder.feed(record._asdict())
        runner = _Runner(
            workspace, plan, files, folder, workers or workspace.settings.runner.workers, reporter
        )
        return runner.execute()


def _fold(workspace: Workspace, run_id: str) -> RunView:
    folder = RunFolder(run_id)
    for record in workspace.records(run_id=run_id):
        folder.feed(record._asdict())
    return folder.view()


@contextlib.contextmanager
def _run_lock(files: RunFiles) -> Iterator[None]:
    """One runner per run: a second `stoic run`/`continue` of the same run is refused."""
    fd = os.open(files.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(
                f"run {files.run_id} is being run by another stoic process right now"
            ) from None
        yield
    finally:
        os.close(fd)


def _request_id(run_id: str, task_id: str) -> str:
    return f"{run_id}/{task_id}"


@dataclass(slots=True)
class _Running:
    index: int
    attempt: Attempt
    spec: TaskSpec


class _Runner:
    def __init__(
        self,
        workspace: Workspace,
        plan: Plan,
        files: RunFiles,
        folder: RunFolder,
        workers: int,
        reporter: Reporter,
    ) -> None:
        self.workspace = workspace
        self.plan = plan
        self.files = files
        self.folder = folder
        self.workers = workers
        self.reporter = reporter
        settings = workspace.settings.runner
        self.output_cap = settings.output_cap_bytes
        self.kill_grace = settings.kill_grace_seconds
        started = folder.started or {}
        self.plan_dir = Path(str(started.get("plan_dir", plan.path.absolute().parent)))
        self.pool = WorkerPool(workers)
        self.completions: queue.SimpleQueue[tuple[_Running, AttemptResult]] = queue.SimpleQueue()
        self.stop_signal: int | None = None
        self._state_written = 0.0

    # -- the loop ------------------------------------------------------------------------------

    def execute(self) -> RunReport:
        graph = self.plan.graph
        view = self.folder.view()
        states = view.states(graph)
        attempts = [view.task(task_id).attempts for task_id in graph.ids]
        dependents: list[list[int]] = [[] for _ in graph.ids]
        waiting_on = [0] * len(graph.ids)
        for index, deps in enumerate(graph.dependencies):
            for dep in deps:
                dependents[dep].append(index)
                if states[dep] not in DONE_STATES:
                    waiting_on[index] += 1
        ready = [
            index
            for index, state in enumerate(states)
            if state is TaskState.PENDING and waiting_on[index] == 0
        ]
        heapq.heapify(ready)
        running: dict[int, _Running] = {}
        ended: list[tuple[_Running, AttemptResult, str]] = []
        self.reporter.run_started(self.files.run_id, self.plan, len(graph.ids))
        self._write_state()
        previous = self._install_signal_handlers()
        threads = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="stoic-task")
        try:
            while True:
                starting: list[_Running] = []
                while ready and len(running) + len(starting) < self.workers:
                    if self.stop_signal is not None:
                        break
                    index = heapq.heappop(ready)
                    attempts[index] += 1
                    starting.append(self._prepare(index, attempts[index]))
                decisions = [self._end_decision(*item) for item in ended]
                decisions += [self._start_decision(item) for item in starting]
                if decisions:
                    for record in self.workspace.record_many(decisions):
                        self.folder.feed(record._asdict())
                for item, result, outcome in ended:
                    task_id = graph.ids[item.index]
                    self.files.append_execution_entry(
                        task_id, item.attempt.attempt, result, outcome
                    )
                    self.reporter.attempt_ended(task_id, item.attempt.attempt, outcome, result)
                ended.clear()
                for item in starting:
                    running[item.index] = item
                    self.reporter.attempt_started(
                        graph.ids[item.index], item.attempt.attempt, _describe(item.spec)
                    )
                    threads.submit(self._attempt, item)
                self._maybe_write_state()
                if not running:
                    break
                for item, result in self._next_completions():
                    del running[item.index]
                    outcome = _outcome_of(result)
                    ended.append((item, result, outcome))
                    if outcome == "succeeded":
                        states[item.index] = TaskState.SUCCEEDED
                        for dependent in dependents[item.index]:
                            waiting_on[dependent] -= 1
                            if (
                                waiting_on[dependent] == 0
                                and states[dependent] is TaskState.PENDING
                            ):
                                heapq.heappush(ready, dependent)
                    else:
                        states[item.index] = TaskState.FAILED
                if self.stop_signal is not None:
                    for item in running.values():
                        item.attempt.stop.set()
        finally:
            for item in running.values():
                item.attempt.stop.set()  # on an error here, running tasks must not linger
            threads.shutdown(wait=True)
            self.pool.close()
            self._restore_signal_handlers(previous)
        return self._finish()

    def _next_completions(self) -> list[tuple[_Running, AttemptResult]]:
        """Wait for at least one attempt to end (waking up for signals), then take all ended."""
        while True:
            try:
                first = self.completions.get(timeout=0.2)
                break
            except queue.Empty:
                if self.stop_signal is not None:
                    return []
        found = [first]
        while True:
            try:
                found.append(self.completions.get_nowait())
            except queue.Empty:
                return found

    def _finish(self) -> RunReport:
        view = self.folder.view()
        analysis = view.analyse(self.plan.graph)
        if self.stop_signal is not None:
            name = signal.Signals(self.stop_signal).name
            status, code = "interrupted", 128 + self.stop_signal
            lifecycle = "paused"
            reason = (
                f"Run {self.files.run_id} was stopped by {name}: running tasks were stopped and"
                f" recorded as interrupted; `stoic continue {self.files.run_id}` goes on."
            )
        else:
            status = analysis.status.value
            code = EXIT_CODES.get(analysis.status, 1)
            lifecycle = _LIFECYCLE.get(analysis.status, "stuck")
            reason = _lifecycle_reason(self.files.run_id, analysis)
        record = self.workspace.record(
            "run_lifecycle",
            lifecycle,
            reason,
            actor=_ACTOR,
            causal_role="post_run",
            run_id=self.files.run_id,
            inputs={
                "status": status,
                "failed": list(analysis.failed),
                "blocked": {task: list(roots) for task, roots in analysis.blocked.items()},
                "awaiting_human": list(analysis.awaiting_human),
            },
        )
        self.folder.feed(record._asdict())
        view = self.folder.view()
        self.files.write_state(view, self.plan.graph, analysis)
        report = RunReport(self.files.run_id, status, code, view, analysis, self.plan)
        self.reporter.run_ended(report)
        return report

    # -- attempts ------------------------------------------------------------------------------

    def _prepare(self, index: int, attempt_number: int) -> _Running:
        spec = self.plan.tasks[index]
        task_id = spec.id
        attempt = Attempt(
            run_id=self.files.run_id,
            request_id=_request_id(self.files.run_id, task_id),
            task_id=task_id,
            attempt=attempt_number,
            attempt_id=os.urandom(8).hex(),
            log_path=self.files.attempt_log(task_id, attempt_number),
            result_path=self.files.attempt_result(task_id, attempt_number),
            plan_dir=self.plan_dir,
            timeout=spec.timeout,
            output_cap_bytes=self.output_cap,
            kill_grace_seconds=self.kill_grace,
            env=dict(spec.env),
        )
        return _Running(index, attempt, spec)

    def _attempt(self, item: _Running) -> None:
        try:
            result = self._execute(item.spec, item.attempt)
        except Exception as exc:  # an executor fault must still end the attempt on record
            failure = Failure(
                FailureKind.ERROR, f"stoic could not run the task: {type(exc).__name__}: {exc}"
            )
            result = AttemptResult(failure=failure, duration_s=0.0, command=_describe(item.spec))
        self.completions.put((item, result))

    def _execute(self, spec: TaskSpec, attempt: Attempt) -> AttemptResult:
        attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
        if spec.run is not None:
            return run_command(spec.run, attempt, shell=spec.shell)
        if spec.call is not None:
            return self.pool.run(spec.call, dict(spec.params), attempt)
        if spec.http is not None:
            return call_http(spec.http, attempt)
        raise AssertionError(f"task {spec.id} has no executor")  # refused before the run

    def _start_decision(self, item: _Running) -> Decision:
        attempt = item.attempt
        command = _describe(item.spec)
        return Decision(
            decision_type="execution",
            decision_outcome="started",
            decision_reason=f"Task {attempt.task_id} attempt {attempt.attempt} started: {command}",
            actor=_ACTOR,
            decision_trigger="autonomous",
            decision_inputs={"executor": _executor_of(item.spec), "command": command},
            causal_role="in_run",
            run_id=attempt.run_id,
            request_id=attempt.request_id,
            task_id=attempt.task_id,
            attempt_id=attempt.attempt_id,
            attempt=attempt.attempt,
            details={"log": self.files.relative(attempt.log_path)},
        )

    def _end_decision(self, item: _Running, result: AttemptResult, outcome: str) -> Decision:
        attempt = item.attempt
        if result.failure is None:
            reason = f"Task {attempt.task_id} succeeded in {result.duration_s:.3f}s."
            inputs: dict[str, Any] = {}
            trigger = "autonomous"
        else:
            reason = (
                f"Task {attempt.task_id} attempt {attempt.attempt} {outcome}:"
                f" {result.failure.kind.value}: {result.failure.message}"
            )
            inputs = result.failure.to_json()
            trigger = "reactive"
        return Decision(
            decision_type="execution",
            decision_outcome=outcome,
            decision_reason=reason,
            actor=_ACTOR,
            decision_trigger=trigger,
            decision_inputs=inputs,
            causal_role="in_run",
            run_id=attempt.run_id,
            request_id=attempt.request_id,
            task_id=attempt.task_id,
            attempt_id=attempt.attempt_id,
            attempt=attempt.attempt,
            details=result.details(),
        )

    # -- projections and signals ---------------------------------------------------------------

    def _write_state(self) -> None:
        view = self.folder.view()
        self.files.write_state(view, self.plan.graph, view.analyse(self.plan.graph))
        self._state_written = time.monotonic()

    def _maybe_write_state(self) -> None:
        if time.monotonic() - self._state_written >= _STATE_EVERY_SECONDS:
            self._write_state()

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, frame: FrameType | None) -> None:
            del frame
            if self.stop_signal is None:
                self.stop_signal = signum
                self.reporter.stopping(signal.Signals(signum).name)

        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, stop)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Callable[..., Any] | int | None]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _outcome_of(result: AttemptResult) -> str:
    if result.failure is None:
        return "succeeded"
    if result.failure.kind is FailureKind.INTERRUPTED:
        return "interrupted"
    return "failed"


def _executor_of(spec: TaskSpec) -> str:
    if spec.run is not None:
        return "shell"
    if spec.call is not None:
        return "python"
    return "http"


def _describe(spec: TaskSpec) -> str:
    if spec.run is not None:
        return spec.run if isinstance(spec.run, str) else " ".join(spec.run)
    if spec.call is not None:
        return spec.call
    if spec.http is not None:
        return f"{spec.http.method} {spec.http.url}"
    return "(nothing)"


def _lifecycle_reason(run_id: str, analysis: Analysis) -> str:
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
