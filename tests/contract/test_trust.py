"""services.trust: pause and resume, red flags, calibration notes, incidents, and the one pause
check that new work goes through."""

from __future__ import annotations

import pytest

from stoic.core import next_steps
from stoic.core.pause import Criterion, DetectedSignal, FlagDue, IncidentSeverity, PauseDue
from stoic.exceptions import UsageError, WorkspacePaused
from stoic.services import trust
from stoic.services.workspace import Workspace
from tests.contract.recorded import last, notified, outcomes, record_notices


def test_a_person_pauses_and_resumes(store: Workspace) -> None:
    record_notices(store)
    assert trust.pause(store, reason="the deploy looks wrong", actor="human:ana") is True
    paused = last(store, "pause")
    assert paused.decision_outcome == "paused"
    assert paused.decision_inputs["criterion"] == Criterion.HUMAN_STOP
    assert (paused.actor, paused.decision_source, paused.decision_trigger) == (
        "human:ana",
        "human",
        "explicit",
    )
    assert trust.pause(store, reason="again", actor="human:ana") is False  # one pause in force
    assert outcomes(store, "pause") == ["paused"]

    resumed = trust.resume(
        store, procedure="smaller-batch", reason="found the cause", actor="human:ana", batch_size=5
    )
    assert resumed == last(store, "pause")
    assert resumed.decision_outcome == "resumed"
    assert resumed.decision_inputs == {
        "procedure": "smaller-batch",
        "paused_by": "human_stop",
        "batch_size": 5,
    }
    assert store.status().paused is None
    assert store.status().batch_size == 5
    assert notified(store) == ["paused", "resumed"]


@pytest.mark.parametrize(
    ("procedure", "batch_size", "message"),
    [
        ("faster", None, "unknown procedure 'faster'"),
        ("smaller-batch", None, "--procedure smaller-batch needs --batch-size N"),
        ("manual-verification", 3, "--batch-size goes with --procedure smaller-batch"),
    ],
)
def test_a_resume_names_a_known_procedure(
    store: Workspace, procedure: str, batch_size: int | None, message: str
) -> None:
    trust.pause(store, reason="stop", actor="human:ana")
    with pytest.raises(UsageError, match=message):
        trust.resume(
            store, procedure=procedure, reason="r", actor="human:ana", batch_size=batch_size
        )
    assert outcomes(store, "pause") == ["paused"]


def test_resuming_what_is_not_paused_is_refused(store: Workspace) -> None:
    with pytest.raises(UsageError, match="the workspace is not paused"):
        trust.resume(store, procedure="manual-verification", reason="r", actor="human:ana")
    assert outcomes(store, "pause") == []


def test_the_pause_check_refuses_new_work_until_a_resume(store: Workspace) -> None:
    trust.refuse_if_paused(store, next_steps.propose())  # not paused: nothing happens
    trust.pause(store, reason="the deploy looks wrong", actor="human:ana")
    with pytest.raises(WorkspacePaused) as refused:
        trust.refuse_if_paused(store, next_steps.run())
    assert str(refused.value) == (
        "the workspace is paused (the deploy looks wrong); `stoic run` is refused until"
        " `stoic resume`"
    )
    assert refused.value.exit_code == 4
    trust.resume(store, procedure="manual-verification", reason="dealt with", actor="human:ana")
    trust.refuse_if_paused(store, next_steps.run())


def test_three_flags_pause_the_workspace(store: Workspace) -> None:
    raised = [
        trust.raise_flag(store, signal="rushed", actor="human:ana", note="too many at once"),
        trust.raise_flag(store, signal="dont-understand", actor="human:bo"),
        trust.raise_flag(store, signal="rubber-stamping", actor="human:ana", session="s-2"),
    ]
    assert raised == [False, False, True]
    flags = list(store.records(decision_type="red_flag"))
    assert [f.decision_inputs["signal"] for f in flags] == [
        "rushed",
        "dont-understand",
        "rubber-stamping",
    ]
    assert flags[0].decision_inputs["note"] == "too many at once"
    assert flags[2].decision_inputs["session"] == "s-2"
    pause = last(store, "pause")
    assert pause.decision_inputs == {"criterion": "red_flags", "flags": 3}
    assert store.status().flags_since_resume == 3


def test_an_unknown_signal_is_refused_with_a_guess(store: Workspace) -> None:
    with pytest.raises(UsageError, match=r"unknown signal 'rushd'; did you mean 'rushed'\?"):
        trust.raise_flag(store, signal="rushd", actor="human:ana")
    assert outcomes(store, "red_flag") == []


def test_a_calibration_note_is_on_record(store: Workspace) -> None:
    trust.calibrate(store, note="  Batches of 10 are too many on Fridays. ", actor="human:ana")
    note = last(store, "red_flag")
    assert note.decision_outcome == "noted"
    assert note.decision_inputs == {"kind": "calibration"}
    assert note.decision_reason == (
        "Calibration note by human:ana: Batches of 10 are too many on Fridays."
    )
    with pytest.raises(UsageError, match="cannot be empty"):
        trust.calibrate(store, note="  ", actor="human:ana")
    assert outcomes(store, "red_flag") == ["noted"]


def test_a_moderate_incident_pauses_and_a_minor_one_does_not(store: Workspace) -> None:
    minor = trust.new_incident(
        store, severity="minor", title="A typo in a notice", description="", actor="human:ana"
    )
    assert minor.severity is IncidentSeverity.MINOR and not minor.paused
    assert outcomes(store, "pause") == []
    moderate = trust.new_incident(
        store,
        severity="moderate",
        title="Wrong region deployed",
        description="eu-west got the us build",
        actor="human:ana",
    )
    assert moderate.paused
    assert moderate.id != minor.id and moderate.id.startswith("ISSUE-")
    assert moderate.path.name == f"{moderate.id}.md"
    incident = last(store, "red_flag")
    assert incident.decision_inputs == {
        "signal": "incident",
        "incident": moderate.id,
        "severity": "moderate",
    }
    assert incident.details["file"] == f"incidents/{moderate.id}.md"
    pause = last(store, "pause")
    assert pause.decision_inputs == {"criterion": "incident", "incident": moderate.id}


def test_an_incident_needs_a_known_severity_and_a_title(store: Workspace) -> None:
    with pytest.raises(UsageError, match="unknown severity 'huge'"):
        trust.new_incident(store, severity="huge", title="t", description="", actor="human:a")
    with pytest.raises(UsageError, match="an incident needs a title"):
        trust.new_incident(store, severity="minor", title=" ", description="", actor="human:a")
    assert outcomes(store, "red_flag") == []


def test_an_incident_report_asks_for_a_track_or_follows_the_one_given(store: Workspace) -> None:
    asked = trust.report_incident(store, "checkout returns 500", track=None, actor="human:ana")
    assert asked.track_done is None and asked.escalation.open
    followed = trust.report_incident(store, "search is slow", track="next-cycle", actor="human:ana")
    assert followed.track_done is not None
    assert followed.track_done.startswith("recorded for the next plan in ")
    assert not followed.escalation.open
    assert followed.escalation.decision == "routed"
    records = list(store.records(decision_type="escalation"))
    assert [(r.escalation_id, r.decision_outcome) for r in records] == [
        (asked.escalation.id, "raised"),
        (followed.escalation.id, "raised"),
        (followed.escalation.id, "resolved"),
    ]
    assert records[2].details["note"] == f"track: next-cycle; {followed.track_done}"
    with pytest.raises(UsageError, match="unknown track 'later'"):
        trust.report_incident(store, "x", track="later", actor="human:ana")
    assert len(list(store.records(decision_type="escalation"))) == 3


def test_the_standing_names_the_batch_size_in_force(store: Workspace) -> None:
    before = trust.standing(store)
    assert before.batch_size == store.settings.queue.batch_size
    assert not before.batch_size_from_resume
    assert before.status.paused is None and before.status.records == 0
    trust.pause(store, reason="too many at once", actor="human:ana")
    assert trust.standing(store).status.paused is not None
    trust.resume(store, procedure="smaller-batch", reason="r", actor="human:ana", batch_size=4)
    after = trust.standing(store)
    assert (after.batch_size, after.batch_size_from_resume) == (4, True)
    assert after.status.records == 2 and after.status.paused is None


def test_a_flag_stoic_detects_counts_toward_the_pause_like_a_reviewers(store: Workspace) -> None:
    trust.raise_flag(store, signal="rushed", actor="human:ana")
    detected = FlagDue(DetectedSignal.QUEUE_GROWING, "31 proposals pending")
    assert trust.flag_detected(store, detected) is False
    assert trust.flag_detected(store, detected, actor="system:review", session="s-1") is True
    flags = list(store.records(decision_type="red_flag"))
    assert [(f.actor, f.decision_source, f.decision_trigger) for f in flags[1:]] == [
        ("system:stoic", "system", "reactive"),
        ("system:review", "system", "reactive"),
    ]
    assert flags[2].decision_inputs == {
        "signal": "queue-growing",
        "detected": True,
        "session": "s-1",
        "note": "31 proposals pending",
    }
    pause = last(store, "pause")
    assert pause.seq == flags[2].seq + 1  # the flag and its pause: one transaction
    assert pause.decision_inputs == {"criterion": "red_flags", "flags": 3}
    assert pause.decision_reason == "3 red flags since the last resume (the last: queue-growing)"


def test_a_pause_a_rule_calls_for_is_recorded_once(store: Workspace) -> None:
    due = PauseDue("the approved action of PROP-1 failed", Criterion.EXECUTION_FAILURE, {"x": 1})
    assert trust.pause_for(store, due) is True
    assert trust.pause_for(store, due) is False
    (paused,) = store.records(decision_type="pause")
    assert paused.decision_inputs == {"criterion": "execution_failure", "x": 1}
    assert (paused.actor, paused.decision_trigger) == ("system:stoic", "reactive")
