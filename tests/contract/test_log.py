"""The log service (`stoic.services.log`): what `stoic log` and any other interface show."""

from __future__ import annotations

import pytest

from stoic.exceptions import UsageError
from stoic.services import log
from stoic.services.workspace import Workspace


def _fill(store: Workspace) -> None:
    store.record("execution", "started", "Task a started.", run_id="r1", task_id="a")
    store.record("execution", "failed", "Task a failed.", run_id="r1", task_id="a")
    store.record("execution", "started", "Task b started.", run_id="r2", task_id="b")
    store.record("execution", "succeeded", "Task b succeeded.", run_id="r2", task_id="b")


def test_records_filter_by_run_type_and_failure_oldest_first(store: Workspace) -> None:
    _fill(store)
    assert [r.decision_reason for r in log.records(store, run_id="r2")] == [
        "Task b started.",
        "Task b succeeded.",
    ]
    assert [r.decision_outcome for r in log.records(store, decision_type="execution")] == [
        "started",
        "failed",
        "started",
        "succeeded",
    ]
    assert [r.decision_reason for r in log.records(store, failures=True)] == ["Task a failed."]


def test_tail_is_the_last_matching_records(store: Workspace) -> None:
    _fill(store)
    assert [r.seq for r in log.records(store, tail=2)] == [3, 4]
    assert [r.seq for r in log.records(store, tail=5, run_id="r1")] == [1, 2]
    assert list(log.records(store, tail=0)) == []


def test_an_unknown_decision_type_is_refused_with_the_closest_one(store: Workspace) -> None:
    with pytest.raises(UsageError, match="did you mean 'execution'"):
        list(log.records(store, decision_type="executoin"))
