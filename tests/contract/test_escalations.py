"""services.escalations: raising one question for a person, and answering it (with an amended
plan or an incident's track) in one call."""

from __future__ import annotations

from pathlib import Path

import pytest

from stoic.core.escalations import EscalationMode
from stoic.exceptions import EscalationNotFound, TransitionRefused, UsageError
from stoic.services import escalations, trust
from stoic.services.workspace import Workspace
from tests.contract.recorded import last, notified, outcomes, record_notices


def _incident(store: Workspace) -> str:
    asked = escalations.request(
        "production-incident", "Which track should this take?", "checkout returns 500"
    )
    return escalations.raise_(store, asked, actor="human:ana").id


def test_raising_records_the_question_and_announces_it(store: Workspace) -> None:
    record_notices(store)
    asked = escalations.request("ambiguity", "Which region should the backfill use?", "eu or us")
    raised = escalations.raise_(store, asked, actor="agent:planner")
    assert raised.open and raised.mode is EscalationMode.AMBIGUITY
    (record,) = store.records(decision_type="escalation")
    assert (record.escalation_id, record.decision_outcome) == (raised.id, "raised")
    assert record.details["question"] == "Which region should the backfill use?"
    assert record.actor == "agent:planner"
    assert notified(store) == ["escalation_raised"]
    assert escalations.escalations(store) == [raised]
    assert escalations.get(store, raised.id) == raised
    shown = escalations.show(store, raised.id)
    assert shown.escalation == raised
    assert "Which region should the backfill use?" in shown.briefing


def test_a_request_without_exactly_one_question_is_refused(store: Workspace) -> None:
    with pytest.raises(UsageError, match="escalation refused"):
        escalations.request("ambiguity", "Which one? And when?")
    with pytest.raises(UsageError, match="escalation refused"):
        escalations.request("no-such-mode", "Which one?")
    assert outcomes(store, "escalation") == []


def test_raising_about_a_run_the_workspace_lacks_is_refused(store: Workspace) -> None:
    asked = escalations.request("ambiguity", "Which one?")
    with pytest.raises(UsageError, match="no run 'run-20260101-000000-abcdef'"):
        escalations.raise_(
            store, asked, actor="human:ana", run_id="run-20260101-000000-abcdef", task_id="t"
        )
    assert outcomes(store, "escalation") == []


def test_answering_with_a_track_follows_it_and_records_the_answer(store: Workspace) -> None:
    escalation_id = _incident(store)
    answered = escalations.answer(
        store,
        escalation_id,
        decision="routed",
        note="after the release",
        track="hotfix",
        actor="human:ana",
    )
    assert answered.track_done is not None
    assert answered.track_done.startswith("hotfix plan written to ")
    assert answered.amendment is None
    assert answered.continue_run is None  # not about a run
    assert not answered.escalation.open
    assert answered.escalation.decision == "routed"
    assert answered.escalation.decided_by == "human:ana"
    raised, resolved = store.records(decision_type="escalation")
    assert (raised.decision_outcome, resolved.decision_outcome) == ("raised", "resolved")
    assert resolved.escalation_id == escalation_id
    assert resolved.details["note"] == f"track: hotfix; {answered.track_done}; after the release"
    assert resolved.decision_inputs == {"decision": "routed", "mode": "production-incident"}
    assert escalations.escalations(store, open_only=True) == []
    with pytest.raises(TransitionRefused, match=f"{escalation_id} is closed"):
        escalations.answer(
            store, escalation_id, decision="routed", track="next-cycle", actor="human:bo"
        )
    assert outcomes(store, "escalation") == ["raised", "resolved"]


def test_passing_an_escalation_on_keeps_it_open(store: Workspace) -> None:
    escalation_id = _incident(store)
    answered = escalations.answer(
        store, escalation_id, decision="escalated", to="sre", note="theirs", actor="human:ana"
    )
    assert answered.escalation.open and answered.track_done is None
    assert outcomes(store, "escalation") == ["raised", "raised"]
    assert list(store.records(decision_type="escalation"))[-1].details["to"] == "sre"


def test_an_answer_that_cannot_apply_records_nothing(store: Workspace, tmp_path: Path) -> None:
    asked = escalations.request("ambiguity", "Which one?")
    escalation_id = escalations.raise_(store, asked, actor="human:ana").id
    plan = tmp_path / "amended.yaml"
    with pytest.raises(UsageError, match="--plan goes with --decision amended"):
        escalations.answer(store, escalation_id, decision="routed", plan=plan, actor="human:a")
    with pytest.raises(UsageError, match="is not about a run: nothing to amend"):
        escalations.answer(store, escalation_id, decision="amended", plan=plan, actor="human:a")
    with pytest.raises(UsageError, match="--track is for production incidents"):
        escalations.answer(store, escalation_id, decision="routed", track="hotfix", actor="human:a")
    with pytest.raises(UsageError, match="unknown track 'soon'"):
        escalations.answer(store, _incident(store), decision="routed", track="soon", actor="h:a")
    with pytest.raises(EscalationNotFound):
        escalations.answer(store, "ESC-099", decision="routed", actor="human:a")
    assert outcomes(store, "escalation") == ["raised", "raised"]


def test_the_third_escalation_of_a_mode_raises_one_process_issue(store: Workspace) -> None:
    record_notices(store)
    raised = [
        escalations.raise_(
            store, escalations.request("infeasible", f"Can step {n} be done?"), actor="agent:a"
        )
        for n in range(4)
    ]
    items = escalations.escalations(store)
    assert [item.mode.value for item in items] == ["infeasible"] * 3 + [
        "process-issue",
        "infeasible",
    ]
    issue = items[3]
    assert issue.raised_by == "system:stoic" and issue.for_mode == "infeasible"
    assert issue.question == (
        "The failure mode infeasible has been escalated 3 times in this workspace: what should"
        " change in the process that produces it?"
    )
    assert (
        issue.context == f"{', '.join(e.id for e in raised[:3])} were all escalated as infeasible."
    )
    records = list(store.records(decision_type="escalation"))
    assert records[3].seq == records[2].seq + 1  # raised in the third one's transaction
    assert notified(store) == ["escalation_raised"] * 5


def test_incident_reports_count_toward_their_process_issue(store: Workspace) -> None:
    for n in range(3):
        trust.report_incident(store, f"checkout returns 500 ({n})", track=None, actor="human:ana")
    modes = [item.mode.value for item in escalations.escalations(store)]
    assert modes == ["production-incident"] * 3 + ["process-issue"]


def test_a_refused_answer_follows_no_track_and_records_nothing(store: Workspace) -> None:
    escalation_id = _incident(store)
    with pytest.raises(UsageError, match="unknown decision 'bogus'"):
        escalations.answer(
            store, escalation_id, decision="bogus", track="next-cycle", actor="human:ana"
        )
    with pytest.raises(UsageError, match=f"--track settles {escalation_id}, and --decision"):
        escalations.answer(
            store,
            escalation_id,
            decision="escalated",
            to="sre",
            note="theirs",
            track="hotfix",
            actor="human:ana",
        )
    assert outcomes(store, "escalation") == ["raised"]
    assert escalations.get(store, escalation_id).open
    assert store.audit().ok
    answered = escalations.answer(
        store, escalation_id, decision="routed", track="next-cycle", actor="human:ana"
    )
    assert answered.track_done is not None
    assert answered.track_done.startswith("recorded for the next plan in ")
    assert outcomes(store, "escalation") == ["raised", "resolved"]
    assert last(store, "escalation").details["note"] == f"track: next-cycle; {answered.track_done}"


def test_a_track_is_an_answers_why(store: Workspace) -> None:
    escalation_id = _incident(store)
    answered = escalations.answer(
        store, escalation_id, decision="aborted", track="next-cycle", actor="human:ana"
    )
    assert answered.escalation.decision == "aborted"
    assert last(store, "escalation").details["note"] == f"track: next-cycle; {answered.track_done}"
