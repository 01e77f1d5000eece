"""A review session through the service: what each answer brings about, on record, and a
session taken up by another workspace handle where the first left it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from stoic.core.pause import FLAG_LIMIT, Criterion, DetectedSignal
from stoic.core.proposals import ProposalStatus
from stoic.core.records import Record
from stoic.exceptions import TransitionRefused, UsageError
from stoic.services import queue
from stoic.services.review import ReviewDecision, ReviewSession
from stoic.services.trust import pause, resume
from stoic.services.workspace import Workspace

SLOW = 60.0
"""Seconds on screen: longer than anyone's minimum read time."""


def pending(store: Workspace, count: int) -> list[str]:
    return [
        queue.propose(store, title=f"p{n}", reasoning_trace=["r"], by="agent:ops").id
        for n in range(count)
    ]


def flags(store: Workspace) -> list[Record]:
    return list(store.records(decision_type="red_flag"))


def test_an_approval_too_fast_to_have_been_read_raises_the_red_flag(store: Workspace) -> None:
    first, second = pending(store, 2)
    session = ReviewSession.start(store, "human:rita")
    assert session.min_read == 3.0

    step = session.decide(first, ReviewDecision.APPROVE, seconds_spent=0.4)

    assert step.proposal.status is ProposalStatus.APPROVED and step.proposal.id == first
    assert step.flag is DetectedSignal.RUBBER_STAMPING and not step.paused
    (flag,) = flags(store)
    assert flag.actor == "system:review" and flag.decision_source == "system"
    assert flag.decision_inputs == {
        "signal": "rubber-stamping",
        "detected": True,
        "session": session.id,
        "note": f"{first} approved 0.4s after it was shown (minimum 3s)",
    }
    (decided,) = store.records(decision_type="proposal", since_seq=flag.seq - 2)
    assert decided.decision_outcome == "approved" and decided.actor == "human:rita"
    assert decided.decision_inputs["session"] == session.id

    slow = session.decide(second, ReviewDecision.APPROVE, seconds_spent=SLOW)
    assert slow.flag is None and len(flags(store)) == 1
    assert session.summary().decided == 2 and session.summary().flags_raised == 1


def test_the_third_flag_since_the_resume_pauses_and_ends_the_review(store: Workspace) -> None:
    ids = pending(store, 4)
    session = ReviewSession.start(store, "human:rita")
    steps = [session.decide(pid, "approved", seconds_spent=0.0) for pid in ids[:3]]
    assert [step.paused for step in steps] == [False, False, True]
    (paused,) = store.records(decision_type="pause")
    assert paused.decision_inputs["criterion"] == Criterion.RED_FLAGS
    assert "3 red flags since the last resume" in paused.decision_reason
    summary = session.summary()
    assert (summary.decided, summary.flags_raised, summary.flags_since_resume) == (3, 3, 3)
    assert summary.flag_limit == FLAG_LIMIT and summary.session_id == session.id
    assert session.paused()


def test_a_session_taken_up_elsewhere_continues_its_counts_from_the_records(
    store: Workspace, reopen_workspace: Callable[[], Workspace]
) -> None:
    ids = pending(store, 5)
    first = ReviewSession.start(store, "human:rita")
    first.decide(ids[0], ReviewDecision.APPROVE, seconds_spent=SLOW)
    first.decide(ids[1], ReviewDecision.REJECT, "wrong host", SLOW)
    assert first.flag("dont-understand", "what is p2 for?") is False
    ReviewSession.start(store, "human:ben").decide(ids[2], "deferred")  # another session

    with reopen_workspace() as other:
        taken_up = ReviewSession.take_up(other, "human:rita", first.id)
        summary = taken_up.summary()
        assert (summary.decided, summary.flags_raised, summary.flags_since_resume) == (2, 1, 1)
        assert [p.id for p in taken_up.batch()] == ids[3:]  # decided ones left the batch
        step = taken_up.decide(ids[3], ReviewDecision.APPROVE, seconds_spent=0.1)
        assert step.flag is DetectedSignal.RUBBER_STAMPING and not step.paused
        assert taken_up.summary().decided == 3 and taken_up.summary().flags_raised == 2

    again = ReviewSession.take_up(store, "human:rita", first.id)
    assert (again.summary().decided, again.summary().flags_raised) == (3, 2)
    (reader_flag, detected) = flags(store)
    assert reader_flag.actor == "human:rita" and reader_flag.decision_inputs["session"] == first.id
    assert detected.decision_inputs["session"] == first.id
    fresh = ReviewSession.start(store, "human:rita")
    assert fresh.id != first.id and fresh.summary().decided == 0
    assert fresh.summary().flags_since_resume == 2
    report = store.audit()
    assert report.ok, report.violations  # the session on the records is part of the story


def test_the_flag_count_starts_again_at_a_resume_but_the_sessions_own_does_not(
    store: Workspace,
) -> None:
    ids = pending(store, 2)
    session = ReviewSession.start(store, "human:rita")
    session.decide(ids[0], "approved", seconds_spent=0.0)
    pause(store, reason="a look at the queue", criterion=Criterion.HUMAN_STOP, actor="human:rita")
    resume(
        store, procedure="smaller-batch", reason="talked it over", actor="human:rita", batch_size=5
    )
    assert session.summary().flags_since_resume == 0 and session.summary().flags_raised == 1
    assert [p.id for p in session.batch()] == ids[1:]


def test_the_batch_is_the_oldest_pending_batch_at_its_size(store: Workspace) -> None:
    ids = pending(store, 12)
    session = ReviewSession.start(store, "human:rita")
    assert [p.id for p in session.batch()] == ids[:10]
    assert {p.batch_id for p in session.batch()} == {"BATCH-0001"}
    for pid in ids[:10]:
        queue.decide(store, pid, "deferred", by="human:ben")  # decided outside the session
    assert [p.id for p in session.batch()] == ids[10:]
    for pid in ids[10:]:
        queue.decide(store, pid, "deferred", by="human:ben")
    assert session.batch() == []
    assert session.summary().decided == 0


def test_what_a_session_refuses_records_nothing(store: Workspace) -> None:
    (only,) = pending(store, 1)
    session = ReviewSession.start(store, "human:rita")
    count = len(list(store.records()))
    with pytest.raises(UsageError, match="a rejection needs a reason"):
        session.decide(only, ReviewDecision.REJECT)
    with pytest.raises(UsageError, match="unknown decision 'undeferred'"):
        session.decide(only, "undeferred")
    with pytest.raises(UsageError, match="unknown signal 'bored'"):
        session.flag("bored")
    with pytest.raises(UsageError, match="is not a review session id"):
        ReviewSession.take_up(store, "human:rita", "REVIEW-../../x")
    assert len(list(store.records())) == count
    session.decide(only, ReviewDecision.DEFER)
    with pytest.raises(TransitionRefused, match="is deferred by human:rita"):
        session.decide(only, ReviewDecision.APPROVE, seconds_spent=SLOW)
    assert session.summary().decided == 1


def test_rejections_in_a_session_bring_what_the_queue_service_decides(store: Workspace) -> None:
    ids = pending(store, 3)
    session = ReviewSession.start(store, "human:rita")
    steps = [session.decide(pid, "rejected", reason="too risky") for pid in ids]
    assert [step.paused for step in steps] == [False, False, True]
    (flag,) = flags(store)
    assert flag.decision_inputs["signal"] == "repeated-rejection-reason"
    (paused,) = store.records(decision_type="pause")
    assert paused.decision_inputs["criterion"] == Criterion.REJECTION_RATE
    rejected = [
        r for r in store.records(decision_type="proposal") if r.decision_outcome == "rejected"
    ]
    assert [r.decision_inputs["session"] for r in rejected] == [session.id] * 3
    assert session.summary().decided == 3
