"""services.audit: every audit is announced with the head; a failed one pauses the workspace."""

from __future__ import annotations

from stoic.core.audit import ViolationCode
from stoic.services import trust
from stoic.services.audit import audit
from stoic.services.workspace import Workspace
from tests.contract.recorded import last, notified, outcomes, record_notices


def _tamper(store: Workspace) -> None:
    """A recovery decision about a failure that never happened: every record is well formed
    and chained, but the history breaks an invariant."""
    store.record(
        "recovery_evaluation",
        "recovery_applied",
        "Retrying build after its failure.",
        actor="system:runner",
        trigger="reactive",
        causal_role="in_run",
        run_id="RUN-20260101-001",
        task_id="build",
        attempt=1,
    )


def test_a_clean_audit_passes_and_is_announced_with_the_head(store: Workspace) -> None:
    record_notices(store)
    trust.calibrate(store, note="The batches were fine.", actor="human:ana")
    (newest,) = store.tail(1)
    audited = audit(store)
    assert audited.report.ok
    assert audited.paused is False
    assert audited.paused_before is None
    assert audited.unrecorded is None
    assert audited.head is not None
    assert audited.head.seq == audited.report.last_seq == newest.seq
    assert audited.head.hash == newest.hash
    assert notified(store) == ["audit_passed"]
    assert outcomes(store, "pause") == []


def test_a_failed_audit_pauses_and_notifies(store: Workspace) -> None:
    record_notices(store)
    _tamper(store)
    audited = audit(store)
    assert not audited.report.ok
    codes = {violation.code for violation in audited.report.violations}
    assert ViolationCode.EVALUATION_WITHOUT_FAILURE in codes
    assert audited.paused is True
    assert audited.head is not None and audited.head.seq == 1
    pause = last(store, "pause")
    assert pause.decision_outcome == "paused"
    assert pause.decision_inputs["criterion"] == "audit_failure"
    assert pause.decision_inputs["violations"] == len(audited.report.violations)
    assert pause.actor == "system:stoic"
    assert pause.decision_reason.startswith("the audit failed: ")
    assert notified(store) == ["audit_failed", "paused"]
    assert store.status().paused is not None


def test_a_second_failed_audit_reports_the_pause_it_found(store: Workspace) -> None:
    _tamper(store)
    first = audit(store)
    again = audit(store)
    assert first.paused and not again.paused  # one pause on record, not one per audit
    assert again.paused_before is not None
    assert again.paused_before["criterion"] == "audit_failure"
    assert outcomes(store, "pause") == ["paused"]


def test_an_anchor_the_log_does_not_hold_fails_the_audit(store: Workspace) -> None:
    from stoic.core.audit import Anchor

    trust.calibrate(store, note="Noted.", actor="human:ana")
    wrong = Anchor.parse("1:" + "0" * 64)
    audited = audit(store, anchors=[wrong])
    assert not audited.report.ok
    assert audited.paused
    assert outcomes(store, "pause") == ["paused"]


def test_the_python_api_audit_is_the_audit_service(store: Workspace) -> None:
    """`stoic.Workspace.audit()` is a caller like `stoic audit`: a failure pauses the workspace."""
    store.record(
        "recovery_evaluation",
        "recovery_applied",
        "A retry with no failure before it.",
        run_id="r1",
        task_id="t1",
        attempt_id="a1",
        attempt=1,
    )
    report = store.audit()
    assert not report.ok
    paused = store.status().paused
    assert paused is not None and paused["criterion"] == "audit_failure"
    assert [r.decision_outcome for r in store.records(decision_type="pause")] == ["paused"]
