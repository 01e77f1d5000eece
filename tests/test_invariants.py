"""Each behavioural invariant of DESIGN §12: a log that breaks it, and the exact violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import stoic
from stoic.core import timeline
from stoic.core.audit import ViolationCode as V
from stoic.core.graph import TaskGraph, TaskState, analyse_states
from tests.conftest import forge

RUN = "run-x"


def ex(outcome: str, attempt: int = 1, **inputs: Any) -> dict[str, Any]:
    return {
        "type": "execution",
        "outcome": outcome,
        "reason": f"{outcome}.",
        "run_id": RUN,
        "task_id": "t",
        "attempt": attempt,
        "inputs": inputs,
    }


def ev(outcome: str, attempt: int = 1) -> dict[str, Any]:
    return {
        "type": "recovery_evaluation",
        "outcome": outcome,
        "reason": "R?: test.",
        "run_id": RUN,
        "task_id": "t",
        "attempt": attempt,
        "trigger": "reactive",
    }


APPROVED = {
    "type": "proposal",
    "outcome": "approved",
    "reason": "approved.",
    "run_id": RUN,
    "task_id": "t",
    "source": "human",
    "actor": "human:ada",
}
POLICY = {
    "type": "policy_check",
    "outcome": "blocked",
    "reason": "no.",
    "run_id": RUN,
    "task_id": "t",
}
END = {"type": "run_lifecycle", "outcome": "completed", "reason": "done.", "run_id": RUN}
PAUSED = {
    "type": "pause",
    "outcome": "paused",
    "reason": "stop.",
    "source": "human",
    "actor": "human:ada",
    "inputs": {"criterion": "human_stop"},
}
RESUMED = {
    "type": "pause",
    "outcome": "resumed",
    "reason": "go.",
    "source": "human",
    "actor": "human:ada",
    "inputs": {"procedure": "smaller-batch", "batch_size": 5},
}


def audit_codes(ws_path: Path, decisions: list[dict[str, Any]]) -> list[tuple[V, int | None]]:
    forge(ws_path, *decisions)  # every hash right, whether or not a writer would record it
    with stoic.Workspace.open(ws_path) as ws:
        report = ws.audit()
    return [(v.code, v.seq) for v in report.violations]


@pytest.mark.parametrize(
    ("decisions", "expected"),
    [
        (
            [ex("started"), ex("failed"), ev("recovery_skipped"), ex("started", 2)],
            [(V.RETRY_WITHOUT_DECISION, 4)],
        ),
        ([ex("started"), ex("failed")], [(V.MISSING_EVALUATION, 2)]),
        (
            [
                ex("started"),
                ex("failed"),
                ex("started", 2),
                ex("failed", 2),
                ev("recovery_skipped"),
            ],
            [(V.RETRY_WITHOUT_DECISION, 3), (V.MISSING_EVALUATION, 4)],
        ),
        (
            [ex("started"), ex("succeeded"), ev("recovery_applied")],
            [(V.EVALUATION_WITHOUT_FAILURE, 3)],
        ),
        (
            [
                ex("started"),
                ex("failed"),
                ev("recovery_suggested"),
                APPROVED,
                ex("started", 2, attempt_kind="approved_recovery"),
                ex("failed", 2),
                ev("recovery_applied", 2),
            ],
            [(V.RECOVERY_OF_RECOVERY, 7)],
        ),
        (
            [
                ex("started"),
                ex("failed"),
                ev("recovery_applied"),
                ex("started", 2, attempt_kind="automatic_retry"),
                ex("failed", 2),
                ev("recovery_applied", 2),
            ],
            [(V.SECOND_AUTOMATIC_RETRY, 6)],
        ),
        (
            [POLICY, ex("halted"), ev("recovery_skipped"), ex("started", 2)],
            [(V.EXECUTION_AFTER_HALT, 4)],
        ),
        (
            [POLICY, ex("halted"), ev("recovery_applied")],
            [(V.EXECUTION_AFTER_HALT, 3)],
        ),
        (
            [ex("started"), PAUSED, ex("succeeded"), ex("started", 2), ex("succeeded", 2)],
            [(V.START_AFTER_PAUSE, 4), (V.RETRY_WITHOUT_DECISION, 4)],
        ),
    ],
    ids=[
        "retry-without-decision",
        "failure-without-evaluation",
        "two-failures-one-evaluation",
        "evaluation-without-failure",
        "recovery-of-a-recovery",
        "second-automatic-retry",
        "execution-after-policy-halt",
        "halt-given-a-recovery",
        "start-after-a-pause",
    ],
)
def test_each_invariant_names_the_violating_record(
    ws_path: Path, decisions: list[dict[str, Any]], expected: list[tuple[V, int]]
) -> None:
    assert audit_codes(ws_path, decisions) == expected


def test_a_proper_story_is_clean(ws_path: Path) -> None:
    story = [
        ex("started"),
        ex("failed"),
        ev("recovery_applied"),
        ex("started", 2, attempt_kind="automatic_retry"),
        ex("failed", 2),
        ev("recovery_suggested", 2),
        APPROVED,
        ex("started", 3, attempt_kind="approved_recovery"),
        ex("failed", 3),
        ev("recovery_skipped", 3),
        END,
    ]
    assert audit_codes(ws_path, story) == []


def test_a_start_after_a_resume_is_clean_and_an_end_after_a_pause_too(ws_path: Path) -> None:
    other = {**ex("started"), "task_id": "u"}
    done = {**other, "outcome": "succeeded"}
    story = [ex("started"), PAUSED, ex("succeeded"), RESUMED, other, done]
    assert audit_codes(ws_path, story) == []


def test_customer_view_with_mechanics_is_a_violation(
    ws_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wording = dict(timeline._CUSTOMER_TASK)
    wording[TaskState.SUCCEEDED] = "done after a retry"
    monkeypatch.setattr(timeline, "_CUSTOMER_TASK", wording)
    assert audit_codes(ws_path, [ex("started"), ex("succeeded"), END]) == [
        (V.CUSTOMER_VIEW_MECHANICS, 3)
    ]


def test_mechanics_words_are_found_but_task_names_are_the_users() -> None:
    view: dict[str, Any] = {
        "run": "r",
        "status": "failed",
        "tasks": [
            {"task": "retry-sync", "name": "retry-sync", "status": "done"},
            {
                "task": "b",
                "name": "b",
                "status": "not started: work it needs failed",
                "needs": ["retry-sync"],
            },
        ],
    }
    assert timeline.mechanics_in(view) == []
    view["tasks"][0]["status"] = "recovered by R1"
    assert timeline.mechanics_in(view) == ["R1", "recover"]


def test_a_stopped_run_customer_view_says_so_without_mechanics() -> None:
    ids = ("a", "b")
    graph = TaskGraph.from_indices(ids, ((), (0,)))
    states = [TaskState.RUNNING, TaskState.PENDING]
    rows = [(t, None, s) for t, s in zip(ids, states, strict=True)]
    analysis = analyse_states(graph, states)
    assert timeline.customer_view("r", rows, analysis)["status"] == "in progress"
    view = timeline.customer_view("r", rows, analysis, stopped=True)
    assert view["status"] == "stopped before it finished"
    assert [row["status"] for row in view["tasks"]] == ["stopped before it finished", "not started"]
    assert timeline.mechanics_in(view) == []
