"""The pause rules of DESIGN §9 as pure functions, and the tallies the queue keeps for them."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.pause import (
    FLAG_LIMIT,
    Criterion,
    DetectedSignal,
    FlagDue,
    IncidentSeverity,
    PauseDue,
    execution_failure_pause,
    flags_pause,
    flags_pause_due,
    growth_flag,
    incident_pause,
    queue_outgrows_review,
    reason_key,
    reason_repeats,
    rejection_rate_breached,
    rejection_rate_pause,
    repeated_reason_flag,
    resume_needs_clean_audit,
    too_fast_to_read,
)
from stoic.core.proposals import ProposalStatus, QueueState, next_batch


def test_the_third_rejection_in_a_batch_of_ten_pauses() -> None:
    assert [rejection_rate_breached(n, 10) for n in range(1, 6)] == [
        False,
        False,
        True,
        True,
        True,
    ]


@given(st.integers(1, 200), st.integers(0, 200))
def test_a_batch_pauses_past_twenty_percent_and_never_below_three(size: int, rejected: int) -> None:
    rejected = min(rejected, size)
    assert rejection_rate_breached(rejected, size) == (rejected >= 3 and rejected / size > 0.2)


@given(st.integers(1, 200))
def test_rejections_arriving_one_by_one_pause_at_the_first_breach(size: int) -> None:
    breaches = [n for n in range(1, size + 1) if rejection_rate_breached(n, size)]
    if breaches:
        assert breaches[0] == max(3, size // 5 + 1)
        assert breaches == list(range(breaches[0], size + 1))  # and stays breached


@given(st.integers(1, 100), st.integers(0, 2000))
def test_a_growing_queue_is_flagged_once_per_crossing(size: int, peak: int) -> None:
    flagged = [pending for pending in range(peak + 1) if queue_outgrows_review(pending, size)]
    assert flagged == ([3 * size + 1] if peak > 3 * size else [])


@given(st.text(), st.text(alphabet=" \t\n", max_size=3))
def test_rejection_reasons_compare_without_surrounding_space(reason: str, space: str) -> None:
    assert reason_key(space + reason + space) == reason_key(reason)
    assert reason_key(reason_key(reason)) == reason_key(reason)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ßΣσς"))
def test_rejection_reasons_compare_without_case(reason: str) -> None:
    assert reason_key(reason.upper()) == reason_key(reason.lower())


def test_the_same_reason_flags_at_its_third_time_only() -> None:
    assert [reason_repeats(n) for n in range(1, 6)] == [False, False, True, False, False]


@given(st.integers(0, 10))
def test_flags_pause_from_the_limit_on(flags: int) -> None:
    assert flags_pause(flags) == (flags >= FLAG_LIMIT)


@given(st.floats(0, 100), st.floats(0, 100))
def test_an_approval_sooner_than_the_reading_time_is_too_fast(shown: float, least: float) -> None:
    assert too_fast_to_read(shown, least) == (shown < least)
    assert not too_fast_to_read(shown, 0)


def test_incidents_by_severity_and_what_a_resume_needs() -> None:
    assert incident_pause(IncidentSeverity.MINOR) is None
    assert incident_pause(IncidentSeverity.MODERATE) is Criterion.INCIDENT
    assert incident_pause(IncidentSeverity.MAJOR) is Criterion.MAJOR_INCIDENT
    assert resume_needs_clean_audit("verification-batch", None)
    assert resume_needs_clean_audit("smaller-batch", "major_incident")
    assert not resume_needs_clean_audit("smaller-batch", "red_flags")
    assert not resume_needs_clean_audit("manual-verification", "execution_failure")


def _record(seq: int, proposal_id: str, outcome: str, batch: str, reason: str) -> dict[str, Any]:
    return {
        "seq": seq,
        "decision_type": "proposal",
        "decision_outcome": outcome,
        "proposal_id": proposal_id,
        "actor": "human:ana",
        "decided_at": "2026-11-23T10:00:00.000000Z",
        "decision_reason": reason,
        "decision_inputs": {},
        "details": {"batch_id": batch},
    }


decisions = st.lists(
    st.tuples(
        st.integers(0, 11),
        st.sampled_from(["approved", "rejected", "deferred", "undeferred"]),
        st.sampled_from(["Not now", " not now ", "wrong host", "NOT NOW", "unclear"]),
    ),
    max_size=40,
)


@pytest.mark.parametrize("split", [False, True])
@given(ops=decisions)
def test_the_rejection_tallies_are_what_counting_gives(split: bool, ops: list[Any]) -> None:
    records = [
        _record(n + 1, f"PROP-20261123-{n + 1:03d}", "created", f"B{n // 4}", "new")
        for n in range(12)
    ]
    for n, (which, outcome, reason) in enumerate(ops):
        records.append(_record(13 + n, f"PROP-20261123-{which + 1:03d}", outcome, "", reason))
    state = QueueState()
    if split:  # fed in two parts, as a snapshot and the log after it are
        state.feed(records[: len(records) // 2])
        second = QueueState()
        for proposal in state.proposals.values():
            second.adopt(proposal)
        state = second
        state.feed(records[len(records) // 2 :])
    else:
        state.feed(records)
    rejected = [p for p in state.proposals.values() if p.status is ProposalStatus.REJECTED]
    by_batch: dict[str, int] = {}
    by_reason: dict[str, set[str]] = {}
    for proposal in rejected:
        by_batch[proposal.batch_id] = by_batch.get(proposal.batch_id, 0) + 1
        key = reason_key(str((proposal.decision or {})["reason"]))
        by_reason.setdefault(key, set()).add(proposal.id)
    assert state.rejected_in_batch == by_batch
    assert {key: set(ids) for key, ids in state.rejected_for.items()} == by_reason


@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(1, 30))
def test_batches_fill_in_order_and_a_new_size_starts_a_new_batch(
    sizes: list[int], each: int
) -> None:
    last, fill, seen = None, 0, []
    for size in sizes:
        for _ in range(each):
            batch = next_batch(last, fill, size)
            fill = fill + 1 if batch == last else 1
            assert fill <= size  # never past the size in effect
            last = batch
            seen.append(batch)
    numbers = [int(batch.removeprefix("BATCH-")) for batch in seen]
    assert numbers[0] == 1
    assert all(b - a in (0, 1) for a, b in itertools.pairwise(numbers))
    if len(set(sizes)) == 1:  # one size throughout: the n-th proposal is in batch n // size + 1
        assert numbers == [n // sizes[0] + 1 for n in range(len(seen))]


def test_what_is_due_after_a_record_follows_the_rules() -> None:
    assert growth_flag(6, 2) is None and growth_flag(8, 2) is None
    assert growth_flag(7, 2) == FlagDue(
        DetectedSignal.QUEUE_GROWING, "7 proposals pending, more than three batches of 2"
    )
    assert repeated_reason_flag("too risky", ["P-1", "P-2"]) is None
    assert repeated_reason_flag("", ["P-1", "P-2", "P-3"]) is None  # no reason is no repeat
    assert repeated_reason_flag("too risky", ["P-1", "P-2", "P-3"]) == FlagDue(
        DetectedSignal.REPEATED_REJECTION_REASON, "'too risky' given 3 times (P-1, P-2, P-3)"
    )
    assert rejection_rate_pause("B-1", 2, 10) is None
    due = rejection_rate_pause("B-1", 3, 10)
    assert due is not None and due.criterion is Criterion.REJECTION_RATE
    assert due.inputs == {"batch_id": "B-1", "rejections": 3}
    assert execution_failure_pause("P-1", "make", 0, rollback=False) is None
    assert execution_failure_pause("P-1", "make", 2, rollback=True) is None
    assert execution_failure_pause("P-1", "make", 2, rollback=False) == PauseDue(
        "the approved action of P-1 failed: `make` exited 2",
        Criterion.EXECUTION_FAILURE,
        {"proposal_id": "P-1", "exit_code": 2},
    )
    assert flags_pause_due(FLAG_LIMIT - 1, "rushed") is None
    assert flags_pause_due(FLAG_LIMIT, "rushed") == PauseDue(
        f"{FLAG_LIMIT} red flags since the last resume (the last: decisions feel rushed)",
        Criterion.RED_FLAGS,
        {"flags": FLAG_LIMIT},
    )
