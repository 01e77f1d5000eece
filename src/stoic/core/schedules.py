"""Schedules (DESIGN §14): which are in force, the last slot of each on record, and whether a
slot was claimed twice — all folded from `schedule` records. Slots are RFC 3339 UTC text to
the second, so text order is time order; which slot is due (a clock and a cron expression)
is `stoic.services.schedule_slots`.

A schedule is a person's decision (`schedule/added`, `schedule/removed`); nothing but the log
says which are in force. Each slot of a schedule (a time its cron expression names) is claimed
by exactly one record before anything happens — `fired` (a run is being started), `skipped`
(no run: the plan was at its concurrency limit, the workspace paused, or the slot too old to
catch up) or `failed` (the plan could not be read or is invalid) — and a run started for a
fired slot is linked by `started` (or a `failed` of phase `launch` says why none started).
Slots only move forward: the slot due next is always later than the last one claimed, so a
slot on record is never fired again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "CLAIMS",
    "Book",
    "LastFire",
    "Schedule",
    "ScheduleProjection",
    "SlotChecker",
    "fold",
]

CLAIMS = frozenset({"fired", "skipped", "failed"})
"""The outcomes that claim a slot (a `failed` of phase `launch` claims nothing: it follows a
`fired`)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule in force, as its `schedule/added` record holds it."""

    name: str
    cron: str
    zone: str
    """The IANA time zone the cron expression is read in (`UTC` unless told)."""
    plan: str
    """The plan file's absolute path; it is read again at every fire."""
    plan_sha256: str
    """The plan file's sha256 when the schedule was added."""
    seq: int
    """The seq of its `added` record: what tells it from an earlier schedule of that name."""
    added_at: str
    added_by: str


@dataclass(frozen=True, slots=True)
class LastFire:
    """The last slot of a schedule on record, and what came of it."""

    slot: str
    outcome: str
    """fired (no run linked yet), started, skipped or failed."""
    seq: int
    reason: str
    slots_due: int = 1
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Book:
    """The schedules in force, by name, and the last fire of each."""

    schedules: Mapping[str, Schedule]
    last: Mapping[str, LastFire]


def _schedule_of(record: Mapping[str, Any]) -> Schedule:
    details, inputs = record["details"], record["decision_inputs"]
    return Schedule(
        name=str(inputs["schedule"]),
        cron=str(details["cron"]),
        zone=str(details.get("tz", "UTC")),
        plan=str(details["plan"]),
        plan_sha256=str(details["plan_sha256"]),
        seq=int(record["seq"]),
        added_at=str(record["decided_at"]),
        added_by=str(record["actor"]),
    )


def fold(book: Book, records: Iterable[Mapping[str, Any]]) -> Book:
    """The book after `records` (any records: those not about schedules change nothing)."""
    schedules, last = dict(book.schedules), dict(book.last)
    for record in records:
        if record["decision_type"] != "schedule":
            continue
        outcome, inputs = record["decision_outcome"], record["decision_inputs"]
        name = inputs.get("schedule")
        if outcome == "added":
            schedules[name] = _schedule_of(record)
            last.pop(name, None)
            continue
        in_force = schedules.get(name)
        if in_force is None or inputs.get("schedule_seq", in_force.seq) != in_force.seq:
            continue  # about a schedule no longer in force
        if outcome == "removed":
            del schedules[name]
            last.pop(name, None)
        elif outcome in CLAIMS and inputs.get("phase") != "launch":
            last[name] = LastFire(
                slot=str(inputs["slot"]),
                outcome=outcome,
                seq=int(record["seq"]),
                reason=str(record["decision_reason"]),
                slots_due=int(inputs.get("slots_due", 1)),
            )
        elif outcome in {"started", "failed"} and name in last:
            previous = last[name]
            if previous.slot == inputs.get("slot"):
                last[name] = replace(
                    previous,
                    outcome=outcome,
                    seq=int(record["seq"]),
                    reason=str(record["decision_reason"]),
                    run_id=inputs.get("run_id"),
                )
    return Book(schedules, last)


class ScheduleProjection:
    """Folds records into a `Book`: what the schedule service reads, caught up from the log."""

    name = "schedules"
    version = 1

    def initial(self) -> Book:
        return Book({}, {})

    def fold(self, state: Book, records: Iterable[Mapping[str, Any]]) -> Book:
        return fold(state, records)

    def to_json(self, state: Book) -> dict[str, Any]:
        return {
            "schedules": {name: _plain(s) for name, s in state.schedules.items()},
            "last": {name: _plain(fire) for name, fire in state.last.items()},
        }

    def from_json(self, data: Mapping[str, Any]) -> Book:
        return Book(
            {name: Schedule(**row) for name, row in data["schedules"].items()},
            {name: LastFire(**row) for name, row in data["last"].items()},
        )


def _plain(value: Schedule | LastFire) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__dataclass_fields__}


class SlotChecker:
    """The audit's rule for schedules: a slot is claimed once, and only forward — a claim of a
    slot at or before one already on record for the same schedule is named."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], str] = {}

    def feed(self, record: Mapping[str, Any]) -> str | None:
        """The violation `record` makes, in words, or None."""
        inputs = record["decision_inputs"]
        if record["decision_outcome"] not in CLAIMS or inputs.get("phase") == "launch":
            return None
        key = (str(inputs.get("schedule")), int(inputs.get("schedule_seq", 0)))
        slot = str(inputs.get("slot"))
        before = self._last.get(key)
        if before is not None and slot <= before:
            again = "was claimed already" if slot == before else f"comes before {before}"
            return (
                f"schedule {key[0]!r} (added at seq {key[1]}): slot {slot} is claimed by"
                f" {record['decision_outcome']} but {again}: a slot fires once"
            )
        self._last[key] = slot
        return None
