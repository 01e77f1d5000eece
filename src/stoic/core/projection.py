"""Projections: pure folds from decision records to state (DESIGN §2).

A projection never reads or writes anything: given a state and records it returns the next state.
The store persists each state stamped with the `last_seq` (and `last_hash`) it reflects, catches
it up from the log's tail, and the audit compares it with a full replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "Projection",
    "WorkspaceStatus",
    "WorkspaceStatusProjection",
]

S = TypeVar("S")


class Projection(Protocol[S]):
    """A named fold from records to a JSON-serialisable state."""

    name: str
    """Stable name; also the projection file's stem."""
    version: int
    """Bumped when the state's shape changes: an older file is then rebuilt, not misread."""

    def initial(self) -> S: ...

    def fold(self, state: S, records: Iterable[Mapping[str, Any]]) -> S:
        """The state after `records`, which follow the ones `state` reflects."""
        ...

    def to_json(self, state: S) -> dict[str, Any]: ...

    def from_json(self, data: Mapping[str, Any]) -> S: ...


@dataclass(frozen=True, slots=True)
class WorkspaceStatus:
    """What the log holds at a glance: counts by type and outcome, and where it ends."""

    records: int
    last_seq: int
    last_decided_at: str | None
    by_type: Mapping[str, Mapping[str, int]]
    paused: Mapping[str, Any] | None = None
    """{reason, criterion, since, seq} while the workspace is paused (DESIGN §9), else None."""
    flags_since_resume: int = 0
    """Red flags raised since the workspace last resumed (or began)."""
    confirmations_due: int = 0
    """Executions that still need explicit confirmation (after a manual-verification resume)."""
    batch_size: int | None = None
    """The batch size the last resume named (a smaller batch after a trust issue), if any."""

    def count(self, decision_type: str, decision_outcome: str | None = None) -> int:
        outcomes = self.by_type.get(decision_type, {})
        if decision_outcome is None:
            return sum(outcomes.values())
        return outcomes.get(decision_outcome, 0)


MANUAL_CONFIRMATIONS = 3
"""After a manual-verification resume, this many executions each need explicit confirmation."""


class WorkspaceStatusProjection:
    """Folds records into a `WorkspaceStatus`."""

    name = "workspace_status"
    version = 1

    def initial(self) -> WorkspaceStatus:
        return WorkspaceStatus(records=0, last_seq=0, last_decided_at=None, by_type={})

    def fold(self, state: WorkspaceStatus, records: Iterable[Mapping[str, Any]]) -> WorkspaceStatus:
        by_type = {kind: dict(outcomes) for kind, outcomes in state.by_type.items()}
        count, last_seq, last_at = state.records, state.last_seq, state.last_decided_at
        paused = state.paused
        flags = state.flags_since_resume
        confirmations = state.confirmations_due
        batch_size = state.batch_size
        for record in records:
            outcomes = by_type.setdefault(record["decision_type"], {})
            outcome = record["decision_outcome"]
            if record["decision_type"] == "pause":
                if outcome == "paused":
                    paused = {
                        "reason": record["decision_reason"],
                        "criterion": record["decision_inputs"].get("criterion", "human_stop"),
                        "since": record["decided_at"],
                        "seq": record["seq"],
                    }
                elif outcome == "resumed":
                    paused = None
                    flags = 0
                    procedure = record["decision_inputs"].get("procedure")
                    confirmations = (
                        MANUAL_CONFIRMATIONS if procedure == "manual-verification" else 0
                    )
                    batch_size = record["decision_inputs"].get("batch_size")
            elif record["decision_type"] == "red_flag" and outcome == "raised":
                flags += 1
            elif record["decision_type"] == "proposal" and outcome == "executed":
                confirmations = max(0, confirmations - 1)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            count += 1
            last_seq = record["seq"]
            last_at = record["decided_at"]
        if count == state.records:
            return state
        return WorkspaceStatus(
            records=count,
            last_seq=last_seq,
            last_decided_at=last_at,
            by_type=by_type,
            paused=paused,
            flags_since_resume=flags,
            confirmations_due=confirmations,
            batch_size=batch_size,
        )

    def to_json(self, state: WorkspaceStatus) -> dict[str, Any]:
        return {
            "records": state.records,
            "last_seq": state.last_seq,
            "last_decided_at": state.last_decided_at,
            "by_type": {
                kind: dict(sorted(outcomes.items()))
                for kind, outcomes in sorted(state.by_type.items())
            },
            "paused": dict(state.paused) if state.paused is not None else None,
            "flags_since_resume": state.flags_since_resume,
            "confirmations_due": state.confirmations_due,
            "batch_size": state.batch_size,
        }

    def from_json(self, data: Mapping[str, Any]) -> WorkspaceStatus:
        return WorkspaceStatus(
            records=int(data["records"]),
            last_seq=int(data["last_seq"]),
            last_decided_at=data.get("last_decided_at"),
            by_type={
                str(kind): {str(outcome): int(n) for outcome, n in outcomes.items()}
                for kind, outcomes in data["by_type"].items()
            },
            paused=data.get("paused"),
            flags_since_resume=int(data.get("flags_since_resume", 0)),
            confirmations_due=int(data.get("confirmations_due", 0)),
            batch_size=int(data["batch_size"]) if data.get("batch_size") is not None else None,
        )
