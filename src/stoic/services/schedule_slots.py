"""Which slot of a schedule is due at a given moment (DESIGN §14): the cron arithmetic, with
the clock passed in.

Cron expressions have five fields and are read by `cronsim` in the schedule's time zone.
Missed slots (nothing was watching when they came) are not taken one by one: only the latest
is due, once, counting the slots it stands for (`slots_due`); when even the latest is older
than the catch-up bound it is due as `too_old`, to be recorded skipped with the same count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

from stoic.core.schedules import LastFire, Schedule
from stoic.core.text import counted

__all__ = ["MAX_COUNTED", "Due", "cron_error", "due", "next_slot", "parse_time", "slot_text"]

MAX_COUNTED = 10_000
"""Missed slots counted at most: a minutely schedule down for a year is "at least 10000"."""

_FIELDS = 5


@dataclass(frozen=True, slots=True)
class Due:
    """A slot of a schedule that has come and is not on record yet."""

    name: str
    schedule_seq: int
    slot: datetime
    """The latest slot that has come (UTC)."""
    slots_due: int
    """How many slots have come since the last one on record (the schedule's add): 1 on time,
    more when slots were missed; at most `MAX_COUNTED`."""
    too_old: bool
    """Even the latest is older than the catch-up bound: it is recorded skipped, not run."""


def slot_text(moment: datetime) -> str:
    """A slot as records hold it: RFC 3339 UTC to the second, so text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time from a record, as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a five-field cron expression, or None when it is one."""
    fields = expression.split()
    if len(fields) != _FIELDS:
        return (
            f"invalid cron expression {expression!r}: it has {counted(len(fields), 'field')},"
            " not 5"
            " (minute hour day-of-month month day-of-week, such as '0 2 * * *')"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return f"invalid cron expression {expression!r}: {str(exc).lower()}"
    return None


def next_slot(cron: str, zone: tzinfo, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (UTC), or None when the expression names none."""
    try:
        return next(CronSim(cron, after.astimezone(zone))).astimezone(UTC)
    except StopIteration:
        return None


def _latest_slot(cron: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The last slot at or before `now`, to the second, counted backwards: only for a gap too
    long to walk forwards."""
    probe = now.astimezone(zone).replace(microsecond=0) + timedelta(seconds=1)
    try:
        return next(CronSim(cron, probe, reverse=True)).astimezone(UTC)
    except StopIteration:
        return None


def due(
    schedule: Schedule,
    last: LastFire | None,
    now: datetime,
    zone: tzinfo,
    catch_up_seconds: float,
) -> Due | None:
    """The slot of `schedule` to claim at `now`, or None while no slot has come since the last
    one on record (or since the schedule was added: slots before it are not its own)."""
    since = parse_time(last.slot if last is not None else schedule.added_at)
    # Walked forwards, as `next_slot` walks: a slot that happens twice in local time (when the
    # clocks go back) is one slot, the first, however the walk is begun.
    latest: datetime | None = None
    counted = 0
    moment = next_slot(schedule.cron, zone, since)
    while moment is not None and moment <= now:
        latest, counted = moment, counted + 1
        if counted == MAX_COUNTED:
            latest = max(moment, _latest_slot(schedule.cron, zone, now) or moment)
            break
        moment = next_slot(schedule.cron, zone, moment)
    if latest is None:
        return None
    too_old = (now - latest).total_seconds() > catch_up_seconds
    return Due(schedule.name, schedule.seq, latest, counted, too_old)
