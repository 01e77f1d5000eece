"""The scheduling core of a run (pure): events in, commands out.

A runner's loop feeds it what happens — the run as the log tells it when the runner starts, the
clock, what became of each start it asked for, each attempt that ended, each recovery decision
recorded, a stop signal, a pause — and does what the commands say: start a task's next attempt,
stop the running attempts, evaluate a failure, wait, finish. It holds task positions, counts and
the clock values it was given; it reads no clock and does no I/O, so a test can drive it through
any run, and the loop around it only runs.

Readiness follows the dependents of each task that succeeds (a counter per task), so a start
costs O(log n) however big the plan; the run's end status is the graph analysis of its states.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from enum import StrEnum

from stoic.core.graph import DONE_STATES, RunStatus, TaskGraph, TaskState, analyse_states
from stoic.core.recovery import AttemptKind, RecoveryClass, RecoveryDecision, retry_wait_left
from stoic.core.run_state import RunView
from stoic.core.task_states import TaskEvent, advance

__all__ = [
    "FINISH",
    "Admission",
    "Evaluate",
    "Finish",
    "Scheduler",
    "Start",
    "StopRunning",
    "Wait",
    "newly_ready",
]


class Admission(StrEnum):
    """What became of a start the scheduler asked for."""

    STARTED = "started"  # its start record is on the log: the attempt runs
    GATED = "gated"  # it needs a person's approval first: it waits for one
    HALTED = "halted"  # a policy or budget refused it: failed before it began, evaluated next
    NOT_NOW = "not_now"  # the workspace is paused (or the run stopped): it stays pending


@dataclass(frozen=True, slots=True)
class Start:
    """Start the next attempt of a task (once its start record is durable)."""

    index: int
    """The task's position in the graph."""
    attempt: int


@dataclass(frozen=True, slots=True)
class Evaluate:
    """Give the failed attempt of a task its one recovery evaluation."""

    index: int


@dataclass(frozen=True, slots=True)
class StopRunning:
    """Stop every running attempt: each ends as interrupted."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for an attempt to end, or until `until` (a delayed retry is due), if given."""

    until: float | None


@dataclass(frozen=True, slots=True)
class Finish:
    """Nothing runs and nothing more will start: this stretch of the run is over."""


FINISH = Finish()
_WAIT_FOR_EVENT = Wait(None)
_STOP_RUNNING = StopRunning()


class Scheduler:
    """Which task starts when, for one runner's stretch of a run."""

    def __init__(
        self,
        graph: TaskGraph,
        states: Sequence[TaskState],
        workers: int,
        now: float,
        *,
        attempts: Sequence[int] | None = None,
        retry_waits: Mapping[int, float] | None = None,
    ) -> None:
        """`states`: each task's state in graph order; `attempts`: attempts each has had;
        `retry_waits`: seconds still to wait before a task's automatic retry may start."""
        count = len(graph.ids)
        self.graph = graph
        self.workers = workers
        self.states = list(states)
        self.attempts = list(attempts) if attempts is not None else [0] * count
        self.running = 0
        self.evaluating = 0
        """Failures it asked to evaluate whose decision it has not been told yet."""
        self.stopped = False
        self.paused = False
        self._dependents: list[list[int]] = [[] for _ in range(count)]
        self._waiting_on = [0] * count
        for index, deps in enumerate(graph.dependencies):
            for dep in deps:
                self._dependents[dep].append(index)
                if self.states[dep] not in DONE_STATES:
                    self._waiting_on[index] += 1
        waits = retry_waits or {}
        self._ready: list[int] = []
        self._delayed: list[tuple[float, int]] = []
        for index, state in enumerate(self.states):
            if state is TaskState.PENDING and self._waiting_on[index] == 0:
                wait = waits.get(index, 0.0)
                if wait > 0:
                    self._delayed.append((now + wait, index))
                else:
                    self._ready.append(index)
        heapq.heapify(self._ready)
        heapq.heapify(self._delayed)

    @classmethod
    def from_view(
        cls, graph: TaskGraph, view: RunView, workers: int, now: float, wall_now: str
    ) -> Scheduler:
        """The scheduler of a run the log tells as `view`. `now` is the loop's clock; `wall_now`
        the time (RFC 3339) the records' `decided_at` is measured against: a retry decided
        before the run was continued waits only what is left of its delay."""
        attempts = [0] * len(graph.ids)
        waits: dict[int, float] = {}
        for index, task_id in enumerate(graph.ids):
            task = view.tasks.get(task_id)
            if task is None:
                continue
            attempts[index] = task.attempts
            if (
                task.state is TaskState.PENDING
                and task.next_attempt_kind is AttemptKind.AUTOMATIC_RETRY
                and task.retry_decided_at
            ):
                waits[index] = retry_wait_left(task.retry_delay_s, task.retry_decided_at, wall_now)
        return cls(graph, view.states(graph), workers, now, attempts=attempts, retry_waits=waits)

    # -- events ------------------------------------------------------------------------------

    def clock(self, now: float) -> None:
        """The time is `now`: retries whose delay is over become ready (unless stopped)."""
        delayed = self._delayed
        while delayed and delayed[0][0] <= now and not self.stopped:
            heapq.heappush(self._ready, heapq.heappop(delayed)[1])

    def next_start(self) -> Start | None:
        """The next start a free worker allows, in plan order; `admitted` says what became of
        it before the next is asked for. The starts of one step are one transaction."""
        if not self._ready or self.running >= self.workers or self.stopped or self.paused:
            return None
        index = heapq.heappop(self._ready)
        return Start(index, self.attempts[index] + 1)

    def admitted(self, start: Start, admission: Admission) -> Evaluate | None:
        """What became of `start`; a halted start is evaluated like any failure."""
        index = start.index
        if admission is Admission.NOT_NOW:
            heapq.heappush(self._ready, index)
            return None
        states = self.states
        if admission is Admission.GATED:
            states[index] = advance(states[index], TaskEvent.GATED)
            return None
        states[index] = advance(states[index], TaskEvent.STARTED)
        self.attempts[index] = start.attempt
        if admission is Admission.STARTED:
            self.running += 1
            return None
        states[index] = advance(states[index], TaskEvent.FAILED)
        self.evaluating += 1
        return Evaluate(index)

    def ended(self, index: int, succeeded: bool) -> Evaluate | None:
        """The running attempt of task `index` ended; a failure is evaluated next."""
        self.running -= 1
        states = self.states
        if not succeeded:
            states[index] = advance(states[index], TaskEvent.FAILED)
            self.evaluating += 1
            return Evaluate(index)
        states[index] = advance(states[index], TaskEvent.SUCCEEDED)
        waiting_on = self._waiting_on
        for dependent in self._dependents[index]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0 and states[dependent] is TaskState.PENDING:
                heapq.heappush(self._ready, dependent)
        return None

    def decided(self, index: int, decision: RecoveryDecision, escalated: bool, now: float) -> None:
        """The failure of task `index` got `decision` (recorded at `now`): an R1 retry is
        due after its delay; an R2 or an escalation waits for a person; anything else stands.
        """
        self.evaluating -= 1
        states = self.states
        if decision.recovery_class is RecoveryClass.R1:
            states[index] = advance(states[index], TaskEvent.RETRY_DECIDED)
            heapq.heappush(self._delayed, (now + (decision.delay_s or 0.0), index))
        elif decision.recovery_class is RecoveryClass.R2:
            states[index] = advance(states[index], TaskEvent.SUGGESTED)
        elif escalated:
            states[index] = advance(states[index], TaskEvent.ESCALATED)
        else:
            states[index] = advance(states[index], TaskEvent.NOT_RECOVERED)

    def stop(self) -> StopRunning | None:
        """A stop signal: nothing more starts; the running attempts are stopped, once."""
        if self.stopped:
            return None
        self.stopped = True
        return _STOP_RUNNING

    def pause(self) -> None:
        """The workspace is paused: nothing more starts; running attempts finish."""
        self.paused = True

    # -- what next ---------------------------------------------------------------------------

    def next(self) -> Wait | Finish:
        """Finish once nothing runs, no failure waits for its evaluation and nothing more can
        start; else wait for an attempt to end or for the next delayed retry."""
        if (
            not self.running
            and not self.evaluating
            and (self.stopped or self.paused or not (self._ready or self._delayed))
        ):
            return FINISH
        if self._delayed:
            return Wait(self._delayed[0][0])
        return _WAIT_FOR_EVENT

    def status(self) -> RunStatus:
        """The run's status by the graph analysis of the states the scheduler holds."""
        return analyse_states(self.graph, self.states).status


def newly_ready(
    succeeded: str,
    dependents: Mapping[str, Sequence[str]],
    dependencies: Mapping[str, Sequence[str]],
    done: Set[str],
) -> list[str]:
    """The tasks that may start once `succeeded` is done: its dependents whose every
    dependency is in `done` (which holds `succeeded`), in plan order — the readiness rule of
    `Scheduler.ended`, for a caller that holds no scheduler (a worker of a database run)."""
    return [
        task
        for task in dependents.get(succeeded, ())
        if all(dep in done for dep in dependencies.get(task, ()))
    ]
