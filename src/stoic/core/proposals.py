"""Proposals and the review queue (DESIGN §8), as pure data and rules.

Decision records are the truth: a proposal's content is in its `proposal/created` record, and
every later record moves it along the transitions below. The status folders and the manifest
are projections of those records.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, cast

import orjson

from stoic.core.pause import reason_key
from stoic.core.provenance import PERSONS_DECISIONS, decided_by_a_person

__all__ = [
    "FOLDERS",
    "PERSONS_DECISIONS",
    "TRANSITIONS",
    "Proposal",
    "ProposalStatus",
    "QueueState",
    "confidence_band",
    "decided_by_a_person",
    "fold_proposal",
    "is_proposal_id",
    "is_rolled_back",
    "move",
    "next_batch",
    "next_status",
    "shown_confidence",
]


class ProposalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    EXECUTED = "executed"


FOLDERS = tuple(status.value for status in ProposalStatus)
"""One folder per status under `queue/`."""

S = ProposalStatus
TRANSITIONS: Mapping[str, Mapping[S, S]] = {
    "approved": {S.PENDING: S.APPROVED},
    "rejected": {S.PENDING: S.REJECTED},
    "deferred": {S.PENDING: S.DEFERRED},
    "undeferred": {S.DEFERRED: S.PENDING},
    "execution_started": {S.APPROVED: S.APPROVED, S.EXECUTED: S.EXECUTED},
    "executed": {S.APPROVED: S.EXECUTED},
    "rolled_back": {S.EXECUTED: S.EXECUTED},  # stays executed; its execution says rolled_back
}
"""decision outcome → {from status: to status}; anything else is refused."""


_ID = re.compile(r"^PROP-\d{8}-\d{3,}$")


def is_proposal_id(text: str) -> bool:
    """Whether `text` is a proposal id (and so safe as a file name)."""
    return bool(_ID.match(text))


def confidence_band(confidence: float | None) -> str:
    if confidence is None:
        return "unknown"
    if confidence >= 0.85:
        return "high"
    if confidence >= 0.60:
        return "medium"
    return "low"


def shown_confidence(confidence: float | None) -> str:
    """A proposal's confidence as a person reads it: "0.72 (medium)", or "not given" (never
    "None (unknown)")."""
    if confidence is None:
        return "not given"
    return f"{confidence:g} ({confidence_band(confidence)})"


def next_status(current: ProposalStatus, outcome: str) -> ProposalStatus | None:
    """Where `outcome` takes a proposal in `current`, or None when the move is not allowed."""
    return TRANSITIONS.get(outcome, {}).get(current)


def allowed_from(current: ProposalStatus) -> list[str]:
    """The decisions a person can take next on a proposal in `current`."""
    return [
        outcome
        for outcome, moves in TRANSITIONS.items()
        if current in moves and outcome != "execution_started"  # part of executing, not a choice
    ]


def move(proposal: Proposal, outcome: str) -> ProposalStatus | None:
    """Where a decision taken now takes the proposal as it stands, or None when it is refused:
    the transitions above, and nothing after a rollback that succeeded."""
    if is_rolled_back(proposal):
        return None
    return next_status(proposal.status, outcome)


def is_rolled_back(proposal: Proposal) -> bool:
    """Whether the proposal's rollback ran and succeeded: it stays `executed`, and a rollback
    runs once — a second would run its command again on what it already undid."""
    execution = proposal.execution
    return execution is not None and execution.get("result") == "rolled_back"


class Proposal(NamedTuple):
    """One proposal as its records tell it (a named tuple: folding 20,000 stays cheap)."""

    id: str
    status: ProposalStatus
    type: str
    title: str
    summary: str
    action: tuple[str, ...] | None
    reasoning_trace: tuple[str, ...]
    sources: tuple[str, ...]
    confidence: float | None
    trade_off: str | None
    rollback: tuple[str, ...] | None
    batch_id: str
    origin: str
    created_at: str
    created_seq: int
    run_id: str | None = None
    task_id: str | None = None
    decision: Mapping[str, Any] | None = None
    execution: Mapping[str, Any] | None = None
    history: tuple[Mapping[str, Any], ...] = ()
    running: Mapping[str, Any] | None = None
    """{at, by, rollback} from an execution's start until its result is on record."""

    @property
    def confidence_band(self) -> str:
        return confidence_band(self.confidence)

    def to_json(self) -> dict[str, Any]:
        """The proposal file's content (`queue/<status>/<id>.json`)."""
        return {
            "id": self.id,
            "status": self.status.value,
            "type": self.type,
            "title": self.title,
            "summary": self.summary,
            "action": list(self.action) if self.action is not None else None,
            "rollback": list(self.rollback) if self.rollback is not None else None,
            "reasoning_trace": list(self.reasoning_trace),
            "sources": list(self.sources),
            "confidence": self.confidence,
            "confidence_band": self.confidence_band,
            "trade_off": self.trade_off,
            "batch_id": self.batch_id,
            "origin": self.origin,
            "created_at": self.created_at,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "decision": dict(self.decision) if self.decision is not None else None,
            "execution": dict(self.execution) if self.execution is not None else None,
            "history": [dict(entry) for entry in self.history],
            "running": dict(self.running) if self.running is not None else None,
        }

    def manifest_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "type": self.type,
            "confidence_band": self.confidence_band,
            "created_at": self.created_at,
        }


def _tuple(value: Any) -> tuple[str, ...] | None:
    return tuple(map(str, value)) if isinstance(value, list) else None


def fold_proposal(current: Proposal | None, record: Mapping[str, Any]) -> Proposal | None:
    """The proposal after one of its records (None for a record that does not apply)."""
    outcome = record["decision_outcome"]
    step = {
        "seq": record["seq"],
        "decision": outcome,
        "by": record["actor"],
        "at": record["decided_at"],
        "reason": record["decision_reason"],
    }
    if outcome == "created":
        details = record["details"]
        from_task = details.get("from_task")
        task = from_task if isinstance(from_task, Mapping) else {}
        return Proposal(
            id=record["proposal_id"],
            status=ProposalStatus.PENDING,
            type=str(details.get("type", "action")),
            title=str(details.get("title", "")),
            summary=str(details.get("summary", "")),
            action=_tuple(details.get("action")),
            reasoning_trace=_tuple(details.get("reasoning_trace")) or (),
            sources=_tuple(details.get("sources")) or (),
            confidence=details.get("confidence"),
            trade_off=details.get("trade_off"),
            rollback=_tuple(details.get("rollback")),
            batch_id=str(details.get("batch_id", "")),
            # A proposal made from inside a task is the task's, whatever origin it wrote.
            origin=str(task.get("actor") or details.get("origin", record["actor"])),
            created_at=record["decided_at"],
            created_seq=record["seq"],
            run_id=record.get("run_id") or task.get("run_id"),
            task_id=record.get("task_id") or task.get("task_id"),
            history=(step,),
        )
    if current is None or (outcome in PERSONS_DECISIONS and not decided_by_a_person(record)):
        return None
    target = next_status(current.status, outcome)  # the record as made, even a second
    if target is None:  # rollback an earlier stoic let through: history replays as it is
        return None
    changes: dict[str, Any] = {"status": target, "history": (*current.history, step)}
    if outcome in ("approved", "rejected", "deferred"):
        changes["decision"] = {
            "by": record["actor"],
            "at": record["decided_at"],
            "reason": record["decision_reason"],
            "outcome": outcome,
        }
    if outcome == "execution_started":
        changes["running"] = {
            "at": record["decided_at"],
            "by": record["actor"],
            "rollback": bool(record["decision_inputs"].get("rollback", False)),
        }
    if outcome in ("executed", "rolled_back"):
        changes["running"] = None
        changes["execution"] = {
            "at": record["decided_at"],
            "result": record["decision_inputs"].get("result", outcome),
            "details": dict(record["details"]),
        }
    return current._replace(**changes)


@dataclass(slots=True)
class QueueState:
    """Every proposal by id, folded from the log, with what the manifest needs kept current.

    A decision touches one proposal: the counts, the pending set, its manifest row and the
    oldest/newest pending are updated for it alone, so the cost of a decision does not grow
    with the queue.
    """

    proposals: dict[str, Proposal] = field(default_factory=dict)
    last_seq: int = 0
    row_bytes: dict[str, bytes | None] = field(default_factory=dict)
    """Each proposal's manifest row as JSON, in creation order (None: to serialize again)."""
    counts: dict[ProposalStatus, int] = field(
        default_factory=lambda: dict.fromkeys(ProposalStatus, 0)
    )
    pending: dict[str, Proposal] = field(default_factory=dict)
    pending_by_type: dict[str, int] = field(default_factory=dict)
    pending_by_band: dict[str, int] = field(default_factory=dict)
    day_max: dict[str, int] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)
    """Each proposal's place in creation order: its row's slot in the manifest."""
    queue_seq: int = 0
    """The seq of the last proposal record folded (`last_seq` is the log's, whatever the type)."""
    batch_fill: dict[str, int] = field(default_factory=dict)
    """How many proposals each batch was given."""
    last_batch: str | None = None
    """The batch of the newest proposal: the one a new proposal joins while it has room."""
    rejected_in_batch: dict[str, int] = field(default_factory=dict)
    rejected_for: dict[str, list[str]] = field(default_factory=dict)
    """Rejected proposals by their reason (as `reason_key` compares them), oldest first."""
    unsaved: int = 0
    """Proposal records folded since the fold was last saved as a snapshot (or loaded)."""
    _oldest: list[tuple[int, str]] = field(default_factory=list)
    _newest: list[tuple[int, str]] = field(default_factory=list)

    def feed(self, records: Iterable[Mapping[str, Any]]) -> None:
        for record in records:
            self.last_seq = record["seq"]
            if record["decision_type"] != "proposal" or not record.get("proposal_id"):
                continue
            proposal_id = record["proposal_id"]
            before = self.proposals.get(proposal_id)
            folded = fold_proposal(before, record)
            if folded is not None:
                self.adopt(folded, before)
                self.unsaved += 1

    def adopt(self, proposal: Proposal, before: Proposal | None = None) -> None:
        """Put `proposal` in place of `before` (a fold step, or a snapshot's proposal)."""
        proposal_id = proposal.id
        if before is not None:
            self.counts[before.status] -= 1
            if self.pending.pop(proposal_id, None) is not None:
                _count(self.pending_by_type, before.type, -1)
                _count(self.pending_by_band, before.confidence_band, -1)
        else:
            day, _, number = proposal_id[len("PROP-") :].partition("-")
            self.day_max[day] = max(self.day_max.get(day, 0), int(number))
            self.position.setdefault(proposal_id, len(self.position))
            self.batch_fill[proposal.batch_id] = self.batch_fill.get(proposal.batch_id, 0) + 1
            self.last_batch = proposal.batch_id
        if proposal.history:
            self.queue_seq = max(self.queue_seq, int(proposal.history[-1]["seq"]))
        self.counts[proposal.status] += 1
        if proposal.status is ProposalStatus.REJECTED and (
            before is None or before.status is not ProposalStatus.REJECTED
        ):
            batch = proposal.batch_id
            self.rejected_in_batch[batch] = self.rejected_in_batch.get(batch, 0) + 1
            reason = reason_key(str((proposal.decision or {}).get("reason", "")))
            self.rejected_for.setdefault(reason, []).append(proposal_id)
        if proposal.status is ProposalStatus.PENDING:
            self.pending[proposal_id] = proposal
            _count(self.pending_by_type, proposal.type, 1)
            _count(self.pending_by_band, proposal.confidence_band, 1)
            heapq.heappush(self._oldest, (proposal.created_seq, proposal_id))
            heapq.heappush(self._newest, (-proposal.created_seq, proposal_id))
        self.proposals[proposal_id] = proposal
        self.row_bytes[proposal_id] = None

    def next_batch(self, size: int) -> str:
        """The batch a new proposal joins: the newest while it has fewer than `size`."""
        return next_batch(self.last_batch, self.batch_fill.get(self.last_batch or "", 0), size)

    def next_id(self, day: str) -> str:
        """The next free id of `day` (YYYYMMDD)."""
        return f"PROP-{day}-{self.day_max.get(day, 0) + 1:03d}"

    def oldest_pending(self) -> str | None:
        return _top(self._oldest, self.pending)

    def newest_pending(self) -> str | None:
        return _top(self._newest, self.pending)

    def row(self, proposal_id: str) -> bytes:
        """One proposal's manifest row as JSON."""
        cached = self.row_bytes.get(proposal_id)
        if cached is None:
            cached = orjson.dumps(self.proposals[proposal_id].manifest_row())
            self.row_bytes[proposal_id] = cached
        return cached

    def rows(self) -> list[bytes]:
        """Every manifest row as JSON; only rows changed since the last call are serialized."""
        cached = self.row_bytes
        for proposal_id, row in cached.items():
            if row is None:
                cached[proposal_id] = orjson.dumps(self.proposals[proposal_id].manifest_row())
        return cast(list[bytes], list(cached.values()))


def next_batch(last: str | None, fill: int, size: int) -> str:
    """Batches of `size` in order (`BATCH-0001`, …); a smaller size starts a new one early."""
    if last is None:
        return "BATCH-0001"
    if fill < size:
        return last
    return f"BATCH-{int(last.removeprefix('BATCH-')) + 1:04d}"


def _count(counts: dict[str, int], key: str, delta: int) -> None:
    value = counts.get(key, 0) + delta
    if value:
        counts[key] = value
    else:
        counts.pop(key, None)


def _top(heap: list[tuple[int, str]], pending: Mapping[str, Proposal]) -> str | None:
    """The heap's first id still pending; entries of decided proposals are dropped lazily."""
    while heap:
        seq, proposal_id = heap[0]
        current = pending.get(proposal_id)
        if current is not None and current.created_seq == abs(seq):
            return proposal_id
        heapq.heappop(heap)
    return None
