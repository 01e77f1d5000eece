"""Schedules as a fold of the log, and which slot is due at a given moment (DESIGN §14).

The fold is checked against a plain model over any sequence of adds, removes and claims; the
due slot against a clock passed in: on time, missed slots counted, the catch-up bound, and the
days the clocks change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from stoic.core.schedules import Book, LastFire, Schedule, ScheduleProjection, SlotChecker, fold
from stoic.services.schedule_slots import cron_error, due, next_slot, slot_text

NAMES = ("a", "b", "c")


def _record(seq: int, outcome: str, inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": seq,
        "decided_at": f"2026-01-01T00:00:{seq % 60:02d}Z",
        "decision_type": "schedule",
        "decision_outcome": outcome,
        "decision_reason": f"{outcome} {inputs}",
        "decision_inputs": inputs,
        "actor": "human:ann",
        "details": {"cron": "0 2 * * *", "tz": "UTC", "plan": "/p.yaml", "plan_sha256": "0" * 64},
    }


ops = st.lists(
    st.tuples(st.sampled_from(("add", "remove", "claim")), st.sampled_from(NAMES)), max_size=40
)


def _records_of(sequence: list[tuple[str, str]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records a correct service would write for `sequence` (ops it would refuse are left
    out), and the model's answer: each name in force with its last claimed slot."""
    model: dict[str, tuple[int, str | None]] = {}
    out: list[dict[str, Any]] = []
    for op, name in sequence:
        seq = len(out) + 1
        if op == "add" and name not in model:
            out.append(_record(seq, "added", {"schedule": name}))
            model[name] = (seq, None)
        elif op == "remove" and name in model:
            out.append(_record(seq, "removed", {"schedule": name, "schedule_seq": model[name][0]}))
            del model[name]
        elif op == "claim" and name in model:
            added, _ = model[name]
            slot = f"2027-{seq:06d}"  # any text that grows with seq: slots only move forward
            inputs = {"schedule": name, "schedule_seq": added, "slot": slot, "slots_due": 1}
            out.append(_record(seq, "fired", inputs))
            out.append(_record(seq + 1, "started", {**inputs, "run_id": f"run-{seq}"}))
            model[name] = (added, slot)
    return out, {name: slot for name, (_, slot) in model.items()}


@given(ops)
def test_the_fold_keeps_the_schedules_in_force_and_each_last_slot(
    sequence: list[tuple[str, str]],
) -> None:
    records, model = _records_of(sequence)
    book = fold(Book({}, {}), records)
    assert set(book.schedules) == set(model)
    assert {name: (fire.slot if fire else None) for name, fire in _lasts(book).items()} == model
    for fire in book.last.values():
        assert fire.outcome == "started" and fire.run_id is not None


def _lasts(book: Book) -> dict[str, LastFire | None]:
    return {name: book.last.get(name) for name in book.schedules}


@given(ops, st.integers(min_value=0, max_value=80))
def test_folding_in_two_parts_is_folding_at_once(sequence: list[tuple[str, str]], cut: int) -> None:
    records, _ = _records_of(sequence)
    projection = ScheduleProjection()
    whole = projection.fold(projection.initial(), records)
    part = projection.fold(projection.initial(), records[:cut])
    part = projection.from_json(projection.to_json(part))  # a stored state, read back
    assert projection.fold(part, records[cut:]) == whole


@given(ops)
def test_the_audit_finds_no_refire_in_what_a_correct_service_writes(
    sequence: list[tuple[str, str]],
) -> None:
    records, _ = _records_of(sequence)
    checker = SlotChecker()
    assert [checker.feed(r) for r in records] == [None] * len(records)


def test_the_audit_names_a_slot_claimed_twice() -> None:
    checker = SlotChecker()
    inputs = {"schedule": "a", "schedule_seq": 1, "slot": "2026-01-02T02:00:00Z"}
    assert checker.feed(_record(2, "fired", inputs)) is None
    found = checker.feed(_record(3, "skipped", inputs))
    assert found is not None and "slot 2026-01-02T02:00:00Z" in found and "claimed already" in found
    earlier = {**inputs, "slot": "2026-01-01T02:00:00Z"}
    assert "comes before" in str(checker.feed(_record(4, "fired", earlier)))


def test_a_removed_and_re_added_schedule_starts_again() -> None:
    records, _ = _records_of([("add", "a"), ("claim", "a"), ("remove", "a"), ("add", "a")])
    book = fold(Book({}, {}), records)
    assert "a" in book.schedules and "a" not in book.last


def _schedule(cron: str, added_at: str, zone: str = "UTC") -> Schedule:
    return Schedule("s", cron, zone, "/p.yaml", "0" * 64, 1, added_at, "human:ann")


def _last(slot: datetime) -> LastFire:
    return LastFire(slot_text(slot), "started", 5, "", 1, "run-1")


UTC_ZONE = ZoneInfo("UTC")
DAY = timedelta(days=1)


def test_nothing_is_due_before_the_first_slot_after_the_add() -> None:
    schedule = _schedule("0 2 * * *", "2026-01-01T03:00:00Z")
    assert due(schedule, None, datetime(2026, 1, 2, 1, 59, tzinfo=UTC), UTC_ZONE, 86400) is None


def test_the_slot_is_due_once_it_has_come_and_only_until_it_is_on_record() -> None:
    schedule = _schedule("0 2 * * *", "2026-01-01T03:00:00Z")
    now = datetime(2026, 1, 2, 2, 0, 0, tzinfo=UTC)
    found = due(schedule, None, now, UTC_ZONE, 86400)
    assert found is not None
    assert (found.slot, found.slots_due, found.too_old) == (now, 1, False)
    assert due(schedule, _last(found.slot), now + timedelta(hours=5), UTC_ZONE, 86400) is None


def test_missed_slots_come_as_the_latest_once_with_their_count() -> None:
    schedule = _schedule("0 2 * * *", "2026-01-01T03:00:00Z")
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # down since before the 2nd's slot
    found = due(schedule, None, now, UTC_ZONE, 86400)
    assert found is not None
    assert found.slot == datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    assert found.slots_due == 4 and not found.too_old


def test_a_latest_slot_older_than_the_bound_is_too_old() -> None:
    schedule = _schedule("0 2 * * 1", "2026-01-01T03:00:00Z")  # Mondays
    now = datetime(2026, 1, 7, 2, 0, tzinfo=UTC)  # Wednesday: Monday's slot is 48 h old
    found = due(schedule, None, now, UTC_ZONE, 86400)
    assert found is not None and found.too_old and found.slots_due == 1
    assert due(schedule, None, now, UTC_ZONE, 3 * 86400) == found.__class__(
        "s", 1, found.slot, 1, False
    )


def _walk(cron: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    """Every slot the schedule fires, polling each minute from `start` to `end`."""
    schedule = _schedule(cron, slot_text(start), zone)
    last: LastFire | None = None
    fired = []
    now = start
    while now < end:
        found = due(schedule, last, now, ZoneInfo(zone), 86400)
        if found is not None:
            fired.append(found.slot)
            last = _last(found.slot)
        now += timedelta(minutes=1)
    return fired


def test_when_the_clocks_go_back_the_doubled_hour_fires_once() -> None:
    zone = ZoneInfo("America/New_York")
    start, end = datetime(2026, 10, 31, 12, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC)
    fired = _walk("30 1 * * *", "America/New_York", start, end)
    days = [slot.astimezone(zone).date() for slot in fired]
    assert len(days) == len(set(days)) == 3


def test_when_the_clocks_go_forward_the_missing_time_fires_once_that_day() -> None:
    zone = ZoneInfo("America/New_York")
    start, end = datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 10, 12, tzinfo=UTC)
    fired = _walk("30 2 * * *", "America/New_York", start, end)
    days = [slot.astimezone(zone).date() for slot in fired]
    assert len(days) == len(set(days)) == 3
    assert fired == sorted(fired)


def test_next_slot_is_strictly_after() -> None:
    moment = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    assert next_slot("0 2 * * *", UTC_ZONE, moment) == moment + DAY


def test_a_cron_expression_is_checked_in_one_line() -> None:
    assert cron_error("0 2 * * *") is None
    assert "has 3 fields, not 5" in str(cron_error("0 2 *"))
    assert "has 1 field, not 5" in str(cron_error("@daily"))
    bad = cron_error("61 2 * * *")
    assert bad is not None and "'61 2 * * *'" in bad and "\n" not in bad
