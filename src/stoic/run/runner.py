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
import shlex
import signal
import threading
import time
from collections.abc import Iterator
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
from stoic.run.http import HttpAttempt
from stoic.run.loop import EventLoop, Handle
from stoic.run.process import kill_leftovers
from stoic.run.python_pool import WorkerPool
from stoic.run.reporting import Reporter
from stoic.run.run_files import RunFiles
from stoic.run.shell import ShellAttempt
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
    files.results.mkdir(parents=True)
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
            killed = kill_leftovers(run_id, task_id, open_attempt.attempt) > 0
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
        self.base_env = dict(os.environb)
        self.stdin_fd = -1
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
        running: dict[int, tuple[_Running, Handle]] = {}
        ended: list[tuple[_Running, AttemptResult, str]] = []
        self.reporter.run_started(self.files.run_id, self.plan, len(graph.ids))
        self._write_state()
        self.files.results.mkdir(parents=True, exist_ok=True)
        self.stdin_fd = os.open(os.devnull, os.O_RDONLY)
        loop = EventLoop()
        wake = self._install_signal_handlers(loop)
        stop_sent = False
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
                for item in starting:  # each start is on disk: now the task may begin
                    running[item.index] = (item, self._launch(item))
                for item, result, outcome in ended:
                    task_id = graph.ids[item.index]
                    self.files.append_execution_entry(
                        task_id, item.attempt.attempt, result, outcome
                    )
                    self.reporter.attempt_ended(task_id, item.attempt.attempt, outcome, result)
                ended.clear()
                for item in starting:
                    self.reporter.attempt_started(
                        graph.ids[item.index], item.attempt.attempt, _describe(item.spec)
                    )
                self._maybe_write_state()
                if not running:
                    break
                done = _finished(running)
                if not done:
                    extras = loop.step([handle for _, handle in running.values()], 0.5)
                    if extras:
                        _drain(extras)
                    done = _finished(running)
                if self.stop_signal is not None and not stop_sent:
                    stop_sent = True
                    for _, handle in running.values():
                        handle.stop()
                for index in done:
                    item, handle = running.pop(index)
                    finished = handle.result
                    assert finished is not None
                    outcome = _outcome_of(finished)
                    ended.append((item, finished, outcome))
                    if outcome == "succeeded":
                        states[index] = TaskState.SUCCEEDED
                        for dependent in dependents[index]:
                            waiting_on[dependent] -= 1
                            if (
                                waiting_on[dependent] == 0
                                and states[dependent] is TaskState.PENDING
                            ):
                                heapq.heappush(ready, dependent)
                    else:
                        states[index] = TaskState.FAILED
        finally:
            for _, handle in running.values():
                handle.stop()  # on an error here, running tasks must not linger
            while any(handle.result is None for _, handle in running.values()):
                loop.step([h for _, h in running.values() if h.result is None], 0.1)
            self.pool.close()
            self._restore_signal_handlers(wake)
            loop.close()
            os.close(self.stdin_fd)
            self.files.close()
        return self._finish()

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

    def _launch(self, item: _Running) -> Handle:
        spec, attempt = item.spec, item.attempt
        try:
            if spec.run is not None:
                return ShellAttempt(
                    spec.run,
                    attempt,
                    shell=spec.shell,
                    base_env=self.base_env,
                    stdin_fd=self.stdin_fd,
                )
            if spec.call is not None:
                return self.pool.start(spec.call, dict(spec.params), attempt)
            if spec.http is not None:
                return HttpAttempt(spec.http, attempt)
            raise AssertionError(f"task {spec.id} has no executor")  # refused before the run
        except Exception as exc:  # an executor fault must still end the attempt on record
            failure = Failure(
                FailureKind.ERROR, f"stoic could not run the task: {type(exc).__name__}: {exc}"
            )
            return _Ended(AttemptResult(failure=failure, duration_s=0.0, command=_describe(spec)))

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
            details={"log": self.files.relative_log(attempt.task_id, attempt.attempt)},
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

    def _install_signal_handlers(self, loop: EventLoop) -> _SignalState | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum: int, frame: FrameType | None) -> None:
            del frame
            if self.stop_signal is None:
                self.stop_signal = signum
                self.reporter.stopping(signal.Signals(signum).name)

        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        loop.watch_extra(read_end)
        previous_fd = signal.set_wakeup_fd(write_end)
        handlers: dict[int, Any] = {
            signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        return _SignalState(handlers, previous_fd, read_end, write_end)

    @staticmethod
    def _restore_signal_handlers(state: _SignalState | None) -> None:
        if state is None:
            return
        for signum, handler in state.handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(state.previous_fd)
        os.close(state.read_end)
        os.close(state.write_end)


@dataclass(frozen=True, slots=True)
class _SignalState:
    handlers: dict[int, Any]
    previous_fd: int
    read_end: int
    write_end: int


class _Ended:
    """An attempt that ended before it began (its executor could not start it)."""

    def __init__(self, result: AttemptResult) -> None:
        self.result: AttemptResult | None = result

    def fds(self) -> list[int]:
        return []

    def deadline(self) -> float | None:
        return None

    def on_ready(self, fd: int) -> None:
        del fd

    def tick(self, now: float) -> None:
        del now

    def stop(self) -> None:
        pass


def _finished(running: dict[int, tuple[_Running, Handle]]) -> list[int]:
    return [index for index, (_, handle) in running.items() if handle.result is not None]


def _drain(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(BlockingIOError):
            while os.read(fd, 512):
                pass


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
        return spec.run if isinstance(spec.run, str) else shlex.join(spec.run)
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
