"""The scheduling core: driven through random runs, it keeps the rules of DESIGN §6 and §7."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.failure import Failure, FailureKind
from stoic.core.graph import DONE_STATES, RunStatus, TaskGraph, TaskState
from stoic.core.invariants import InvariantChecker
from stoic.core.recovery import (
    AttemptKind,
    RecoveryClass,
    RecoveryContext,
    RecoveryDecision,
    classify,
    retry_delay,
    retry_wait_left,
)
from stoic.core.run_state import RunFolder
from stoic.core.scheduling import Admission, Evaluate, Finish, Scheduler, Start, StopRunning
from stoic.core.task_states import TRANSITIONS, TaskEvent, allowed

S = TaskState
DECISIONS = {
    "R1": RecoveryDecision(RecoveryClass.R1, "safe", 0.0),
    "R1-later": RecoveryDecision(RecoveryClass.R1, "safe", 5.0),
    "R2": RecoveryDecision(RecoveryClass.R2, "risky"),
    "R3": RecoveryDecision(RecoveryClass.R3, "forbidden"),
    "escalated": RecoveryDecision(RecoveryClass.NONE, "escalated"),
}
_OUTCOME = {
    RecoveryClass.R1: "recovery_applied",
    RecoveryClass.R2: "recovery_suggested",
    RecoveryClass.R3: "recovery_skipped",
    RecoveryClass.NONE: "recovery_skipped",
}


@st.composite
def dags(draw: st.DrawFn) -> TaskGraph:
    count = draw(st.integers(1, 9))
    deps = [
        tuple(sorted(draw(st.sets(st.integers(0, index - 1), max_size=3)))) if index else ()
        for index in range(count)
    ]
    return TaskGraph.from_indices(tuple(f"t{i}" for i in range(count)), tuple(deps))


@dataclass
class _Log:
    """The records the run's driver would append, folded by the run fold."""

    run_id: str = "r"
    seq: int = 0
    folder: RunFolder = field(default_factory=lambda: RunFolder("r"))
    records: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, outcome: str, task_id: str, **extra: Any) -> None:
        self.seq += 1
        self.records.append(
            {
                "seq": self.seq,
                "run_id": self.run_id,
                "task_id": task_id,
                "decision_type": kind,
                "decision_outcome": outcome,
                "decided_at": "2026-01-01T00:00:00Z",
                "actor": "system:runner",
                "attempt": extra.pop("attempt", 1),
                "attempt_id": f"{task_id}-{self.seq}",
                "decision_inputs": extra.pop("inputs", {}),
                "details": extra.pop("details", {}),
            }
        )
        self.folder.feed(self.records[-1])


def _check_moves(before: list[TaskState], after: list[TaskState], event: TaskEvent) -> None:
    for old, new in zip(before, after, strict=True):
        if old is not new:
            assert new is TRANSITIONS[event].to and allowed(old, event), (old, event, new)


@given(
    graph=dags(),
    workers=st.integers(1, 4),
    data=st.data(),
)
def test_random_runs_keep_the_rules(graph: TaskGraph, workers: int, data: st.DataObject) -> None:
    count = len(graph.ids)
    core = Scheduler(graph, [S.PENDING] * count, workers, 0.0)
    log = _Log()
    now = 0.0
    running: set[int] = set()
    starts: set[tuple[int, int]] = set()
    last_attempt = [0] * count
    owed: list[int] = []  # failures waiting for their evaluation
    next_kind = [AttemptKind.FIRST] * count  # what each task's next attempt is
    failed_kind: dict[int, AttemptKind | None] = {}  # None: a halt
    signalled = False
    for _ in range(200):
        core.clock(now)
        for index in owed:
            # What the recovery matrix may decide: a halt stands; an automatic retry is not
            # retried automatically again.
            kind = failed_kind[index]
            choices = ["R3"] if kind is None else sorted(DECISIONS)
            if kind is AttemptKind.AUTOMATIC_RETRY:
                choices = [name for name in choices if not name.startswith("R1")]
            name = data.draw(st.sampled_from(choices))
            decision = DECISIONS[name]
            if decision.recovery_class is RecoveryClass.R1:
                next_kind[index] = AttemptKind.AUTOMATIC_RETRY
            core.decided(index, decision, name == "escalated", now)
            log.add("recovery_evaluation", _OUTCOME[decision.recovery_class], graph.ids[index])
            if name == "escalated":
                log.add("escalation", "raised", graph.ids[index], details={"decision": "asked"})
            assert core.states[index] is log.folder.tasks[graph.ids[index]].state
        owed.clear()
        paused = data.draw(st.integers(0, 30)) == 0
        while (start := core.next_start()) is not None:
            assert isinstance(start, Start)
            deps = graph.dependencies[start.index]
            assert all(core.states[dep] in DONE_STATES for dep in deps), "a dependency not done"
            assert start.index not in running
            assert start.attempt == last_attempt[start.index] + 1
            assert (start.index, start.attempt) not in starts
            if paused:
                core.admitted(start, Admission.NOT_NOW)
                core.pause()
                break
            admission = data.draw(
                st.sampled_from([Admission.STARTED] * 6 + [Admission.GATED, Admission.HALTED])
            )
            before = list(core.states)
            task_id = graph.ids[start.index]
            command = core.admitted(start, admission)
            if admission is Admission.GATED:
                _check_moves(before, core.states, TaskEvent.GATED)
                log.add("policy_check", "blocked", task_id, inputs={"requires": "approval"})
                assert command is None
                continue
            starts.add((start.index, start.attempt))
            last_attempt[start.index] = start.attempt
            if admission is Admission.HALTED:
                assert command == Evaluate(start.index)
                log.add("execution", "halted", task_id, attempt=start.attempt)
                failed_kind[start.index] = None
                owed.append(start.index)
            else:
                _check_moves(before, core.states, TaskEvent.STARTED)
                kind = next_kind[start.index]
                inputs = {"attempt_kind": kind.value}
                log.add("execution", "started", task_id, attempt=start.attempt, inputs=inputs)
                failed_kind[start.index] = kind
                running.add(start.index)
            assert core.running <= workers
        assert core.running == len(running) <= workers
        if not signalled and data.draw(st.integers(0, 40)) == 0:
            signalled = True
            assert core.stop() == StopRunning()
            assert core.stop() is None  # once
        command = core.next()
        if isinstance(command, Finish):
            assert not running and not owed
            break
        if running and (command.until is None or data.draw(st.booleans())):
            index = data.draw(st.sampled_from(sorted(running)))
            running.discard(index)
            succeeded = signalled is False and data.draw(st.booleans())
            before = list(core.states)
            evaluate = core.ended(index, succeeded)
            task_id = graph.ids[index]
            outcome = "succeeded" if succeeded else "failed"
            log.add("execution", outcome, task_id, attempt=last_attempt[index])
            if succeeded:
                assert evaluate is None
                _check_moves(before, core.states, TaskEvent.SUCCEEDED)
            else:
                assert evaluate == Evaluate(index)
                _check_moves(before, core.states, TaskEvent.FAILED)
                owed.append(index)
        elif owed:
            continue  # evaluated at the top of the next step
        elif command.until is not None:
            assert not running or command.until >= now
            now = max(now, command.until)
        else:
            raise AssertionError(f"waits for nothing: {command}")
    else:
        raise AssertionError("the run never finished")
    assert core.running == 0
    # Its states and status are the run fold's of the records it led to.
    view = log.folder.view()
    assert core.states == view.states(graph)
    status = core.status()
    assert status is view.analyse(graph).status
    if not (signalled or core.paused):
        assert status is not RunStatus.RUNNING, "finished while work could go on"
    # And the log it led to breaks none of the audit's rules (DESIGN §12).
    checker = InvariantChecker()
    checker.feed(log.records)
    assert checker.finish() == []


def test_a_chain_runs_one_task_at_a_time_in_order() -> None:
    graph = TaskGraph.build(["a", "b", "c"], [[], ["a"], ["b"]])
    core = Scheduler(graph, [S.PENDING] * 3, 4, 0.0)
    for index in range(3):
        start = core.next_start()
        assert start == Start(index, 1)
        assert core.admitted(start, Admission.STARTED) is None
        assert core.next_start() is None  # its dependent waits for it
        assert core.next().until is None  # type: ignore[union-attr]
        core.ended(index, succeeded=True)
    assert isinstance(core.next(), Finish) and core.status() is RunStatus.COMPLETED


def test_an_r1_retry_starts_after_its_delay_with_the_next_attempt() -> None:
    graph = TaskGraph.build(["a"], [[]])
    core = Scheduler(graph, [S.PENDING], 1, 100.0)
    start = core.next_start()
    assert start is not None
    core.admitted(start, Admission.STARTED)
    assert core.ended(0, succeeded=False) == Evaluate(0)
    core.decided(0, RecoveryDecision(RecoveryClass.R1, "safe", 2.5), False, 100.0)
    waiting = core.next()
    assert not isinstance(waiting, Finish) and waiting.until == 102.5
    core.clock(102.4)
    assert core.next_start() is None
    core.clock(102.5)
    assert core.next_start() == Start(0, 2)


def test_a_pause_gives_the_start_back_and_finishes_once_nothing_runs() -> None:
    graph = TaskGraph.build(["a", "b"], [[], []])
    core = Scheduler(graph, [S.PENDING] * 2, 2, 0.0)
    first = core.next_start()
    assert first is not None
    core.admitted(first, Admission.STARTED)
    second = core.next_start()
    assert second == Start(1, 1)
    core.admitted(second, Admission.NOT_NOW)
    core.pause()
    assert core.next_start() is None and not isinstance(core.next(), Finish)
    core.ended(0, succeeded=True)
    assert isinstance(core.next(), Finish)
    assert core.states == [S.SUCCEEDED, S.PENDING] and core.status() is RunStatus.RUNNING


def test_a_gate_or_an_r2_waits_for_a_person() -> None:
    graph = TaskGraph.build(["a", "b", "c"], [[], [], ["a"]])
    core = Scheduler(graph, [S.PENDING] * 3, 2, 0.0)
    gated, failing = core.next_start(), core.next_start()
    assert gated is not None and failing is not None
    core.admitted(gated, Admission.GATED)
    core.admitted(failing, Admission.STARTED)
    core.ended(failing.index, succeeded=False)
    core.decided(failing.index, RecoveryDecision(RecoveryClass.R2, "risky"), False, 0.0)
    assert isinstance(core.next(), Finish)
    assert core.states == [S.SUSPENDED, S.SUSPENDED, S.PENDING]
    assert core.status() is RunStatus.AWAITING_HUMAN


def _folded(*records: tuple[str, str, dict[str, Any]]) -> RunFolder:
    folder = RunFolder("r")
    for seq, (kind, outcome, extra) in enumerate(records, start=1):
        folder.feed(
            {
                "seq": seq,
                "run_id": "r",
                "task_id": "a",
                "attempt": 1,
                "attempt_id": "x",
                "actor": "system:runner",
                "decision_type": kind,
                "decision_outcome": outcome,
                "decision_inputs": extra.get("inputs", {}),
                "details": {},
                "decided_at": extra.get("at", "2026-01-01T00:00:00Z"),
            }
        )
    return folder


def test_a_continued_run_waits_only_what_is_left_of_a_retry_delay() -> None:
    decided = datetime(2026, 1, 1, tzinfo=UTC)
    folder = _folded(
        ("execution", "started", {}),
        ("execution", "failed", {"inputs": {"failure_kind": "timeout"}}),
        (
            "recovery_evaluation",
            "recovery_applied",
            {"inputs": {"retry_delay_s": 20}, "at": decided.isoformat()},
        ),
    )
    graph = TaskGraph.build(["a"], [[]])
    later = (decided + timedelta(seconds=15)).isoformat()
    core = Scheduler.from_view(graph, folder.view(), 1, 50.0, later)
    assert core.next_start() is None
    waiting = core.next()
    assert not isinstance(waiting, Finish) and waiting.until == 55.0
    core.clock(55.0)
    assert core.next_start() == Start(0, 2)
    long_after = (decided + timedelta(seconds=60)).isoformat()
    assert Scheduler.from_view(graph, folder.view(), 1, 0.0, long_after).next_start() == Start(0, 2)


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.just(UTC),
    ),
    st.floats(0, 10_000),
    st.integers(-14 * 60, 14 * 60),
)
def test_retry_wait_left_reads_rfc3339_times(
    decided: datetime, waited: float, offset_minutes: int
) -> None:
    now = decided + timedelta(seconds=waited)
    zone = timezone(timedelta(minutes=offset_minutes))
    at = decided.isoformat().replace("+00:00", "Z")
    left = retry_wait_left(30.0, at, now.astimezone(zone).isoformat())
    assert abs(left - max(0.0, 30.0 - (now - decided).total_seconds())) < 1e-3


def test_retry_wait_left_refuses_a_time_without_an_offset() -> None:
    try:
        retry_wait_left(1.0, "2026-01-01T00:00:00", "2026-01-01T00:00:01Z")
    except ValueError as exc:
        assert "RFC 3339" in str(exc)
    else:
        raise AssertionError("a time without an offset was read")


def test_an_r1_decision_carries_its_delay() -> None:
    delays = {FailureKind.TIMEOUT: 7.0}
    context = RecoveryContext(True, AttemptKind.FIRST, retry_delays=delays)
    timeout = Failure(FailureKind.TIMEOUT, "slow")
    told = Failure(FailureKind.RATE_LIMITED, "429", retry_after_s=3.0)
    assert classify(timeout, context).delay_s == 7.0 == retry_delay(timeout, delays)
    assert classify(told, context).delay_s == 3.0  # what the upstream said wins
    assert classify(Failure(FailureKind.CONTEXT_OVERFLOW, "big"), context).delay_s == 0.0
    assert classify(Failure(FailureKind.TOOL_ERROR, "bad"), context).delay_s is None  # R2
