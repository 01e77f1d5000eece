"""The pure parts of database runs: readiness without a scheduler, and the audit of work items
against the log (`core.scheduling.newly_ready`, `core.work_audit`)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.graph import TaskGraph, TaskState
from stoic.core.scheduling import Admission, Scheduler, newly_ready
from stoic.core.work_audit import WorkItem, WorkItemsChecker


@st.composite
def _dags(draw: st.DrawFn) -> list[list[int]]:
    """A random acyclic graph: each task depends on some of the tasks before it."""
    count = draw(st.integers(1, 12))
    return [
        sorted(draw(st.sets(st.integers(0, index - 1), max_size=3))) if index else []
        for index in range(count)
    ]


@given(_dags(), st.data())
def test_newly_ready_agrees_with_the_scheduler(deps: list[list[int]], data: st.DataObject) -> None:
    """Whatever order tasks succeed in, a worker's readiness is the local scheduler's."""
    ids = [f"t{index}" for index in range(len(deps))]
    graph = TaskGraph.build(ids, [[ids[d] for d in task] for task in deps])
    core = Scheduler(graph, [TaskState.PENDING] * len(ids), workers=len(ids), now=0.0)
    dependents = {
        task: [ids[i] for i, d in enumerate(deps) if ids.index(task) in d] for task in ids
    }
    dependencies = {ids[i]: [ids[d] for d in task] for i, task in enumerate(deps)}
    done: set[str] = set()
    running: list[int] = []
    while (start := core.next_start()) is not None:
        core.admitted(start, Admission.STARTED)
        running.append(start.index)
    while running:
        index = running.pop(data.draw(st.integers(0, len(running) - 1)))
        core.ended(index, succeeded=True)
        done.add(ids[index])
        expected = []
        while (start := core.next_start()) is not None:
            core.admitted(start, Admission.STARTED)
            expected.append(start.index)
        got = newly_ready(ids[index], dependents, dependencies, done)
        assert sorted(ids.index(task) for task in got) == sorted(expected)
        running.extend(expected)
    assert done == set(ids)


def _record(
    seq: int, kind: str, outcome: str, task: str | None = None, **fields: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "decision_type": kind,
        "decision_outcome": outcome,
        "run_id": "r",
        "task_id": task,
        **fields,
    }


_LOG = [
    _record(1, "run_lifecycle", "started"),
    _record(2, "execution", "started", "a", attempt=1, decision_inputs={"fence": 7}),
    _record(3, "execution", "started", "b", attempt=1, decision_inputs={"fence": 8}),
    _record(4, "execution", "interrupted", "b", attempt=1),
]


def _check(items: list[WorkItem], log: list[dict[str, Any]] = _LOG) -> list[str]:
    checker = WorkItemsChecker(items)
    checker.feed(log)
    return [violation.message for violation in checker.finish()]


def test_claims_and_ready_items_that_match_the_log_are_clean() -> None:
    assert _check([WorkItem("r", "a", 1, 7), WorkItem("r", "b", 2, None)]) == []


def test_a_claim_the_log_has_no_open_attempt_for_is_named() -> None:
    found = _check([WorkItem("r", "a", 1, 9), WorkItem("r", "b", 2, None)])
    assert any("claimed (attempt 1, fence 9)" in message for message in found)


def test_an_open_attempt_no_item_holds_is_named() -> None:
    found = _check([WorkItem("r", "b", 2, None)])
    assert found == [
        "attempt of r a (fence 7) is open on the log, but no work item holds it:"
        " no worker would ever end it"
    ]


def test_a_ready_item_for_a_done_task_or_the_wrong_attempt_is_named() -> None:
    log = [*_LOG, _record(5, "execution", "succeeded", "a", attempt=1)]
    found = _check([WorkItem("r", "a", 2, None), WorkItem("r", "b", 3, None)], log)
    assert any("r a is ready, but it is done" in message for message in found)
    assert any("ready for attempt 3, but the log's next attempt is 2" in m for m in found)


def test_a_claim_is_lost_when_a_later_renewal_did_not_keep_it_or_its_lease_ran_out() -> None:
    """The worker's own fencing (`Heartbeat.lost`), by this host's clock: no thread started."""
    from stoic.run.fleet_heartbeat import Claimed, Heartbeat

    beat = Heartbeat("postgresql://unused", "w", lease_s=3.0, say=lambda line: None)
    claims = {1: Claimed(asked=10.0, committed=10.1), 2: Claimed(asked=10.0, committed=10.1)}
    assert beat.lost(claims, now=12.9) == set()
    assert beat.lost(claims, now=13.0) == {1, 2}  # no renewal: the lease ran out here
    beat._renewed = (11.0, frozenset({1, 2}), frozenset({1}))  # after both; kept only 1
    assert beat.lost(claims, now=11.5) == {2}
    assert beat.lost(claims, now=13.9) == {2}  # 1 holds until 11.0 + 3
    assert beat.lost(claims, now=14.0) == {1, 2}
    beat._renewed = (10.05, frozenset({1, 2}), frozenset())  # began before they committed
    assert beat.lost(claims, now=12.0) == set()
    beat._renewed = (11.0, frozenset(), frozenset())  # did not ask for them: says nothing
    assert beat.lost(claims, now=12.0) == set()
    assert beat.next_deadline(claims) == 13.0
