"""Projections: the status fold gives the same state however the log is cut, and the file
backend keeps, catches up and rebuilds its views through one registry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import stoic
from stoic.core.audit import ViolationCode
from stoic.core.projection import MANUAL_CONFIRMATIONS, WorkspaceStatusProjection
from tests.conftest import fill, log_path

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


# -- the file backend's projections -------------------------------------------------------------


def test_every_file_view_is_caught_up_audited_and_rebuilt_through_one_registry(
    ws_path: Path,
) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        names = [view.name for view in ws.views]
        assert names == ["workspace_status", "queue", "escalations", "runs", "users"]
        fill(ws, 3)
    (ws_path / "manifests" / "workspace_status.json").unlink()
    with stoic.Workspace.open(ws_path, catch_up=False) as ws:
        report = ws.audit()
        assert {v.code for v in report.violations} == {ViolationCode.PROJECTION_MISSING}
        repaired = ws.audit(repair=True)
        assert repaired.ok and repaired.repaired is not None
        assert repaired.repaired["projections_rebuilt"] == names
        assert ws.status().records == 4


class _Seqs:
    """A projection of the test's own: the seqs it has folded."""

    name = "seqs"
    version = 1

    def initial(self) -> list[int]:
        return []

    def fold(self, state: list[int], records: Iterable[Mapping[str, Any]]) -> list[int]:
        return [*state, *(record["seq"] for record in records)]

    def to_json(self, state: list[int]) -> dict[str, Any]:
        return {"seqs": state}

    def from_json(self, data: Mapping[str, Any]) -> list[int]:
        return list(data["seqs"])


def test_a_projection_kept_by_a_handle_is_caught_up_from_where_it_stopped(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 3)
    with stoic.Workspace.open(ws_path) as ws:
        assert ws.projected(_Seqs()).state == [1, 2, 3]
        # Damage record 1 without changing its length: folding from the top would trip over it.
        path = log_path(ws_path)
        path.write_bytes(path.read_bytes().replace(b'"seq":1}', b'"seq":X}', 1))
        fill(ws, 2)
        stamped = ws.projected(_Seqs())
        assert (stamped.seq, stamped.state) == (5, [1, 2, 3, 4, 5])
        assert stamped.hash == ws.head().hash
