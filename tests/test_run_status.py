"""One run-status vocabulary (DESIGN §6): RunStatus is the source; each format that must say it
differently has an explicit mapping, pinned here; the task state machine is one table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.graph import GRAPH_STATUSES, RunStatus, TaskGraph, TaskState, analyse_states
from stoic.core.run_state import RunFolder
from stoic.core.task_states import TRANSITIONS, TaskEvent, advance, allowed, event_of
from stoic.core.timeline import customer_view, shown_status
from stoic.core.vocabulary import LIFECYCLE_OUTCOME, OUTCOMES, PLAN_CHECK_WORD, DecisionType
from stoic.plan.check import CheckStatus
from stoic.run.run_end import EXIT_CODES


def test_the_words_are_those_of_design_section_6() -> None:
    assert {status.value for status in RunStatus} == {
        "completed",
        "failed",
        "awaiting_human",
        "paused",
        "running",
        "interrupted",  # a signal stopped the runner, or the runner is gone
    }
    assert {RunStatus.PAUSED, RunStatus.INTERRUPTED}.isdisjoint(GRAPH_STATUSES)


def test_every_status_ends_a_run_with_a_recorded_outcome() -> None:
    assert set(LIFECYCLE_OUTCOME) == set(RunStatus)
    assert set(LIFECYCLE_OUTCOME.values()) <= OUTCOMES[DecisionType.RUN_LIFECYCLE]
    assert LIFECYCLE_OUTCOME[RunStatus.AWAITING_HUMAN] == "awaiting_approval"  # as on disk
    assert LIFECYCLE_OUTCOME[RunStatus.INTERRUPTED] == "paused"
    assert LIFECYCLE_OUTCOME[RunStatus.RUNNING] == "stuck"


def test_plan_check_says_runnable_for_running() -> None:
    assert set(PLAN_CHECK_WORD) == GRAPH_STATUSES
    assert PLAN_CHECK_WORD[RunStatus.RUNNING] == CheckStatus.RUNNABLE.value == "runnable"
    for status, word in PLAN_CHECK_WORD.items():
        assert CheckStatus(word).value == word
        assert word == status.value or status is RunStatus.RUNNING


def test_exit_codes_are_those_of_design_section_6() -> None:
    assert EXIT_CODES == {
        RunStatus.COMPLETED: 0,
        RunStatus.FAILED: 1,
        RunStatus.AWAITING_HUMAN: 3,
        RunStatus.PAUSED: 4,
    }


@given(st.lists(st.sampled_from(list(TaskState)), min_size=1, max_size=8))
def test_the_graph_gives_only_graph_statuses(states: list[TaskState]) -> None:
    ids = tuple(f"t{i}" for i in range(len(states)))
    graph = TaskGraph.from_indices(ids, tuple(() for _ in ids))
    analysis = analyse_states(graph, states)
    assert analysis.status in GRAPH_STATUSES
    view = RunFolder("r").view()
    shown = shown_status(view, analysis, runner_working=False)
    assert isinstance(shown, RunStatus)
    if analysis.status is RunStatus.RUNNING:
        assert shown is RunStatus.INTERRUPTED  # nobody works on it
    else:
        assert shown is analysis.status
    assert customer_view("r", [(t, None, s) for t, s in zip(ids, states, strict=True)], analysis)


def test_a_run_a_runner_stopped_as_paused_shows_paused() -> None:
    folder = RunFolder("r")
    folder.feed(
        {
            "seq": 1,
            "run_id": "r",
            "decision_type": "run_lifecycle",
            "decision_outcome": "paused",
            "decision_inputs": {"status": "paused"},
            "details": {},
            "decided_at": "2026-01-01T00:00:00Z",
        }
    )
    graph = TaskGraph.build(["a"], [[]])
    analysis = folder.view().analyse(graph)
    assert shown_status(folder.view(), analysis, runner_working=False) is RunStatus.PAUSED
    assert shown_status(folder.view(), analysis, runner_working=True) is RunStatus.RUNNING


def test_every_record_that_moves_a_task_is_one_event_of_the_table() -> None:
    assert set(TRANSITIONS) == set(TaskEvent)
    cases = {
        ("execution", "started", ""): TaskEvent.STARTED,
        ("execution", "succeeded", ""): TaskEvent.SUCCEEDED,
        ("execution", "halted", ""): TaskEvent.FAILED,
        ("execution", "interrupted", ""): TaskEvent.FAILED,
        ("recovery_evaluation", "recovery_applied", ""): TaskEvent.RETRY_DECIDED,
        ("recovery_evaluation", "recovery_suggested", ""): TaskEvent.SUGGESTED,
        ("recovery_evaluation", "recovery_skipped", ""): TaskEvent.NOT_RECOVERED,
        ("proposal", "approved", ""): TaskEvent.APPROVED,
        ("proposal", "rejected", ""): TaskEvent.REJECTED,
        ("proposal", "created", ""): None,
        ("escalation", "raised", "asked"): TaskEvent.ESCALATED,
        ("escalation", "raised", "escalated"): None,  # passed on: nothing changes
        ("escalation", "resolved", "aborted"): TaskEvent.ABORTED,
        ("escalation", "resolved", "amended"): TaskEvent.ANSWERED,
        ("verification", "failed", ""): None,
    }
    for (kind, outcome, decision), event in cases.items():
        assert event_of(kind, outcome, {}, {"decision": decision}) is event, (kind, outcome)
    assert event_of("policy_check", "blocked", {"requires": "approval"}, {}) is TaskEvent.GATED
    assert event_of("policy_check", "blocked", {}, {}) is None
    assert (
        event_of("proposal", "approved", {}, {}, escalation_open=True)
        is TaskEvent.APPROVED_ESCALATED
    )


def test_a_well_formed_life_is_allowed_step_by_step() -> None:
    life = [
        TaskEvent.STARTED,
        TaskEvent.FAILED,
        TaskEvent.RETRY_DECIDED,
        TaskEvent.STARTED,
        TaskEvent.FAILED,
        TaskEvent.SUGGESTED,
        TaskEvent.APPROVED,
        TaskEvent.STARTED,
        TaskEvent.SUCCEEDED,
    ]
    state = TaskState.PENDING
    for event in life:
        assert allowed(state, event), (state, event)
        state = advance(state, event)
    assert state is TaskState.SUCCEEDED
    assert not allowed(TaskState.FAILED, TaskEvent.STARTED)  # a retry needs a decision first
    assert not allowed(TaskState.SUSPENDED, TaskEvent.STARTED)  # so does a waiting task
