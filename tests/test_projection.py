"""The workspace status projection: a fold that gives the same state however the log is cut."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.projection import MANUAL_CONFIRMATIONS, WorkspaceStatusProjection

PROJECTION = WorkspaceStatusProjection()

_STEPS = [
    ("pause", "paused", {"criterion": "red_flags"}),
    ("pause", "resumed", {"procedure": "smaller-batch", "batch_size": 4}),
    ("pause", "resumed", {"procedure": "manual-verification"}),
    ("pause", "resumed", {"procedure": "verification-batch"}),
    ("red_flag", "raised", {"signal": "rushed"}),
    ("proposal", "executed", {}),
    ("proposal", "created", {}),
    ("execution", "failed", {}),
    ("audit", "passed", {}),
]


def _records(steps: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "seq": seq,
            "decision_type": _STEPS[step][0],
            "decision_outcome": _STEPS[step][1],
            "decision_inputs": _STEPS[step][2],
            "decision_reason": f"step {seq}",
            "decided_at": f"2026-11-23T10:00:{seq % 60:02d}.000000Z",
        }
        for seq, step in enumerate(steps, 1)
    ]


histories = st.lists(st.integers(0, len(_STEPS) - 1), max_size=40)


@given(histories, st.lists(st.integers(0, 40), max_size=4))
def test_folding_in_any_pieces_gives_the_state_of_folding_at_once(
    steps: list[int], cuts: list[int]
) -> None:
    records = _records(steps)
    whole = PROJECTION.fold(PROJECTION.initial(), records)
    state, start = PROJECTION.initial(), 0
    for cut in [*sorted({min(cut, len(records)) for cut in cuts}), len(records)]:
        state = PROJECTION.fold(state, records[start:cut])
        state = PROJECTION.from_json(PROJECTION.to_json(state))  # as the file keeps it
        start = cut
    assert state == whole


@given(histories)
def test_what_a_resume_leaves_behind(steps: list[int]) -> None:
    records = _records(steps)
    state = PROJECTION.fold(PROJECTION.initial(), records)
    resumes = [r for r in records if r["decision_outcome"] == "resumed"]
    assert state.records == len(records)
    assert state.batch_size == (
        resumes[-1]["decision_inputs"].get("batch_size") if resumes else None
    )
    after = records[records.index(resumes[-1]) + 1 :] if resumes else records
    flags = sum(r["decision_type"] == "red_flag" for r in after)
    assert state.flags_since_resume == flags
    if resumes and resumes[-1]["decision_inputs"]["procedure"] == "manual-verification":
        executed = sum(r["decision_outcome"] == "executed" for r in after)
        assert state.confirmations_due == max(0, MANUAL_CONFIRMATIONS - executed)
    else:
        assert state.confirmations_due == 0
