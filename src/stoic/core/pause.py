"""The pause rules (DESIGN §9): when the workspace stops taking new work, and how it resumes.

Pure rules over counts the store already keeps. After each relevant record the use case asks
them whether a red flag or a pause is due (`FlagDue`, `PauseDue`) and records what they say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stoic.core.text import counted

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FLAG_LIMIT",
    "READER_SIGNALS",
    "REPEATED_REASON_LIMIT",
    "RESUME_PROCEDURES",
    "Criterion",
    "DetectedSignal",
    "FlagDue",
    "IncidentSeverity",
    "PauseDue",
    "PauseInForce",
    "execution_failure_pause",
    "flags_pause",
    "flags_pause_due",
    "growth_flag",
    "incident_pause",
    "pause_after",
    "queue_outgrows_review",
    "reason_key",
    "reason_repeats",
    "rejection_rate_breached",
    "rejection_rate_pause",
    "repeated_reason_flag",
    "resume_needs_clean_audit",
    "too_fast_to_read",
]


class Criterion(StrEnum):
    """Why the workspace is paused: the five criteria of DESIGN §9, incidents split by weight."""

    RED_FLAGS = "red_flags"
    REJECTION_RATE = "rejection_rate"
    AUDIT_FAILURE = "audit_failure"
    HUMAN_STOP = "human_stop"
    EXECUTION_FAILURE = "execution_failure"
    INCIDENT = "incident"
    MAJOR_INCIDENT = "major_incident"


class DetectedSignal(StrEnum):
    """Red flags stoic raises itself."""

    QUEUE_GROWING = "queue-growing"
    REPEATED_REJECTION_REASON = "repeated-rejection-reason"
    RUBBER_STAMPING = "rubber-stamping"


class IncidentSeverity(StrEnum):
    MINOR = "minor"
    MODERATE = "moderate"
    MAJOR = "major"


READER_SIGNALS = {
    "dont-understand": "I don't fully understand this proposal",
    "rubber-stamping": "I'm approving without really reading",
    "spot-checking": "I'm only spot-checking external systems",
    "rushed": "decisions feel rushed",
    "unsure-effect": "I'm unsure what executing this would do",
    "batch-too-large": "the batch is too large to review well",
    "rejection-needs-investigation": "the rejections need investigating",
}
"""The trust signals a reviewer reports with `stoic flag`, and what each means."""

FLAG_LIMIT = 3
"""Red flags since the last resume that pause, however many review sessions they came from."""
REPEATED_REASON_LIMIT = 3
"""The same rejection reason this many times is a red flag: the same mistake repeats."""
DEFAULT_BATCH_SIZE = 10
"""Proposals reviewed together in one batch, unless `[queue] batch_size` says otherwise."""
REVIEW_BATCHES_AHEAD = 3
"""More batches than this waiting: proposals arrive faster than they are reviewed."""

RESUME_PROCEDURES = {
    "smaller-batch": "after a trust issue: review in smaller batches",
    "verification-batch": "after a system error: a verification batch, the audit clean first",
    "manual-verification": "after an execution failure: the next executions are confirmed by hand",
}


def flags_pause(flags: int) -> bool:
    """Three red flags since the last resume pause the workspace."""
    return flags >= FLAG_LIMIT


def rejection_rate_breached(rejected_in_batch: int, batch_size: int) -> bool:
    """More than 20% of a batch rejected pauses at once — the 3rd rejection in a batch of 10.

    Never fewer than three: in a small batch one or two rejections are judgment, not a trend.
    """
    return rejected_in_batch >= 3 and rejected_in_batch * 5 > batch_size


def queue_outgrows_review(pending: int, batch_size: int) -> bool:
    """True at the proposal that makes more than three batches wait (once per crossing)."""
    return pending == REVIEW_BATCHES_AHEAD * batch_size + 1


def reason_key(reason: str) -> str:
    """Rejection reasons compared as a reviewer would: case and surrounding space aside."""
    return reason.strip().casefold()


def reason_repeats(times_given: int) -> bool:
    """True at the rejection giving the same reason the 3rd time (once, not every time after)."""
    return times_given == REPEATED_REASON_LIMIT


def too_fast_to_read(seconds_shown: float, min_read_seconds: float) -> bool:
    """An approval sooner than anyone could read the proposal: rubber-stamping."""
    return seconds_shown < min_read_seconds


def incident_pause(severity: IncidentSeverity) -> Criterion | None:
    """Minor incidents are calibration notes; moderate ones pause; major ones pause harder."""
    return {
        IncidentSeverity.MINOR: None,
        IncidentSeverity.MODERATE: Criterion.INCIDENT,
        IncidentSeverity.MAJOR: Criterion.MAJOR_INCIDENT,
    }[severity]


def resume_needs_clean_audit(procedure: str, paused_by: str | None) -> bool:
    """A verification batch, or any resume after a major incident, needs a clean audit first."""
    return procedure == "verification-batch" or paused_by == Criterion.MAJOR_INCIDENT


@dataclass(frozen=True, slots=True)
class PauseInForce:
    """A pause on record that no resume has ended yet."""

    seq: int
    reason: str
    criterion: str


def pause_after(current: PauseInForce | None, record: Mapping[str, Any]) -> PauseInForce | None:
    """The pause in force after `record`: a pause record begins one, a resume ends it.

    The runner (no start after a pause) and the audit (no start on record after one) fold the
    log with this one rule.
    """
    if record["decision_type"] != "pause":
        return current
    outcome = record["decision_outcome"]
    if outcome == "resumed":
        return None
    if outcome == "paused" and current is None:
        criterion = record["decision_inputs"].get("criterion", Criterion.HUMAN_STOP)
        return PauseInForce(int(record["seq"]), str(record["decision_reason"]), str(criterion))
    return current


# -- what is due after a record ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FlagDue:
    """A red flag stoic raises itself, and what it saw."""

    signal: DetectedSignal
    note: str


@dataclass(frozen=True, slots=True)
class PauseDue:
    """A pause a rule calls for: its reason, criterion and the facts it used."""

    reason: str
    criterion: Criterion
    inputs: Mapping[str, Any]


def growth_flag(pending: int, batch_size: int) -> FlagDue | None:
    """After a proposal: more than three batches waiting is a red flag (once per crossing)."""
    if not queue_outgrows_review(pending, batch_size):
        return None
    return FlagDue(
        DetectedSignal.QUEUE_GROWING,
        f"{counted(pending, 'proposal')} pending, more than three batches of {batch_size}",
    )


def repeated_reason_flag(reason: str, rejected_for: Sequence[str]) -> FlagDue | None:
    """After a rejection: the same reason (`reason_key`) a third time is a red flag;
    `rejected_for` are the proposals rejected for it, this one included."""
    if not (reason and reason_repeats(len(rejected_for))):
        return None
    return FlagDue(
        DetectedSignal.REPEATED_REJECTION_REASON,
        f"{reason!r} given {counted(len(rejected_for), 'time')} ({', '.join(rejected_for)})",
    )


def rejection_rate_pause(batch_id: str, rejected: int, batch_size: int) -> PauseDue | None:
    """After a rejection: the 3rd rejection in a batch of 10 (more than 20%) pauses at once."""
    if not rejection_rate_breached(rejected, batch_size):
        return None
    return PauseDue(
        f"{rejected} rejections in batch {batch_id} of {batch_size}: more than 20%"
        " — the proposals need investigating before more are made",
        Criterion.REJECTION_RATE,
        {"batch_id": batch_id, "rejections": rejected},
    )


def execution_failure_pause(
    proposal_id: str, command: str, exit_code: int, *, rollback: bool
) -> PauseDue | None:
    """After an execution: an approved action that failed pauses (a failed rollback is on
    record as a failure and pauses nothing more)."""
    if exit_code == 0 or rollback:
        return None
    return PauseDue(
        f"the approved action of {proposal_id} failed: `{command}` exited {exit_code}",
        Criterion.EXECUTION_FAILURE,
        {"proposal_id": proposal_id, "exit_code": exit_code},
    )


def flags_pause_due(flags: int, last_signal: str) -> PauseDue | None:
    """After a red flag: the third since the last resume pauses, whichever session raised it."""
    if not flags_pause(flags):
        return None
    what = READER_SIGNALS.get(last_signal, last_signal)
    return PauseDue(
        f"{counted(flags, 'red flag')} since the last resume (the last: {what})",
        Criterion.RED_FLAGS,
        {"flags": flags},
    )
