"""Schedules (DESIGN §14): add, list and remove them, and fire the slots that are due.

Which schedules are in force, and which slot of each was last claimed, is the fold of the log
(`stoic.core.schedules`), read under the writer lock before anything is recorded: two callers
firing at once (two servers, a server and a test) claim a slot once between them, because the
second finds the first's claim on record. A slot is claimed before its run is launched, so a
crash in between leaves the slot fired with no run linked — never fired twice.

`run_due_schedules(workspace, now, launch)` is the one call `stoic serve`'s control loop makes;
`launch(plan_path, schedule_name)` starts the run (a `stoic run` child) and returns its id once
the run's own start record is on the log, or raises (`LaunchFailed`: the child exited first):
`started` names only a run that started. Slots are fired one at a time, so the next slot's
concurrency check counts the run just started.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stoic.core import next_steps
from stoic.core.concurrency import DEFAULT_LIMIT, admit, plan_key
from stoic.core.schedules import Book, LastFire, Schedule, ScheduleProjection
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import UsageError
from stoic.plan.loader import PlanInvalid, read_plan
from stoic.services import db_runs, runs, trust
from stoic.services.schedule_slots import Due, cron_error, next_slot, slot_text
from stoic.services.schedule_slots import due as due_slot
from stoic.store.layout import SETTINGS_FILE
from stoic.store.workspace import Workspace

__all__ = [
    "ACTOR",
    "Fire",
    "Fired",
    "Launch",
    "LaunchFailed",
    "ScheduleRow",
    "add",
    "due",
    "fire",
    "list_schedules",
    "remove",
    "run_due_schedules",
]

Launch = Callable[[Path, str], str]
"""Starts a run of the plan at the path for the named schedule and returns the run's id."""


class LaunchFailed(Exception):
    """A launch whose run did not start: its starter exited before the run's start record."""

    def __init__(self, message: str, *, exit_code: int, stderr: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.stderr = stderr


ACTOR = "system:scheduler"
"""Who claims slots and links runs: the system, on the schedule a person decided."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_PROJECTION = ScheduleProjection()


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    """A schedule in force, when it fires next and how its last slot went."""

    schedule: Schedule
    next_fire: str | None
    last: LastFire | None

    def to_json(self) -> dict[str, Any]:
        s, last = self.schedule, self.last
        return {
            "name": s.name,
            "cron": s.cron,
            "tz": s.zone,
            "plan": s.plan,
            "plan_sha256": s.plan_sha256,
            "added_at": s.added_at,
            "added_by": s.added_by,
            "next_fire": self.next_fire,
            "last_fire": None
            if last is None
            else {
                "slot": last.slot,
                "outcome": last.outcome,
                "run_id": last.run_id,
                "reason": last.reason,
                "slots_due": last.slots_due,
                "seq": last.seq,
            },
        }


Fire = Due
"""A slot due to be claimed: what `due` finds and `fire` takes."""


@dataclass(frozen=True, slots=True)
class Fired:
    """What came of a slot: its claim and, once fired, the run started for it."""

    name: str
    slot: str
    outcome: str
    """started, skipped or failed (fired, when the run is being started)."""
    reason: str
    run_id: str | None = None
    slots_due: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "schedule": self.name,
            "slot": self.slot,
            "outcome": self.outcome,
            "reason": self.reason,
            "run_id": self.run_id,
            "slots_due": self.slots_due,
        }


def _book(workspace: Workspace) -> Book:
    return workspace.projected(_PROJECTION).state


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r} (an IANA name such as UTC or Europe/Riga)"
        ) from None


def add(
    workspace: Workspace,
    name: str,
    cron: str,
    plan_path: str | Path,
    *,
    actor: str,
    tz: str = "UTC",
) -> Schedule:
    """Put a schedule in force: a person's decision, recorded with the plan's absolute path
    and sha256. A bad name, cron expression or time zone, a name in use, or a plan that
    `stoic plan check` refuses is refused, and nothing is recorded."""
    if not _NAME.match(name):
        raise UsageError(
            f"invalid schedule name {name!r}: letters, digits, '.', '_' and '-', at most 64,"
            " starting with a letter or digit"
        )
    problem = cron_error(cron)
    if problem is not None:
        raise UsageError(problem)
    _zone(tz)
    path = Path(plan_path).absolute()
    errors = _plan_errors(workspace, str(path))
    if errors:
        raise UsageError(f"{path} does not pass plan check:\n" + "\n".join(errors))
    sha256 = read_plan(path).sha256
    with workspace.transaction():
        if name in _book(workspace).schedules:
            raise UsageError(
                f"a schedule named {name!r} is in force already"
                f" ({next_steps.schedule_remove(name)} first)"
            )
        record = workspace.record(
            "schedule",
            "added",
            f"Schedule {name} runs plan {path} at {cron!r} ({tz}).",
            source="human",
            actor=actor,
            trigger="explicit",
            causal_role="pre_run",
            inputs={"schedule": name},
            details={"cron": cron, "tz": tz, "plan": str(path), "plan_sha256": sha256},
        )
    return _book_after(workspace, record.seq, name)


def _plan_errors(workspace: Workspace, path: str) -> list[str]:
    """What `stoic plan check` refuses the plan at `path` for, in this workspace, each error
    with its line; none when it could run."""
    try:
        verdict = runs.check(path, settings_file=workspace.root / SETTINGS_FILE)
    except OSError as exc:
        return [f"{path}: cannot be read: {exc.strerror or exc}"]
    return [error.format(path) for error in verdict.errors]


def _book_after(workspace: Workspace, seq: int, name: str) -> Schedule:
    schedule = _book(workspace).schedules[name]
    assert schedule.seq == seq
    return schedule


def remove(workspace: Workspace, name: str, *, actor: str) -> Schedule:
    """Take a schedule out of force (a person's decision); an unknown name is refused with the
    closest one in force."""
    with workspace.transaction():
        schedules = _book(workspace).schedules
        schedule = schedules.get(name)
        if schedule is None:
            raise UsageError(unknown_word("schedule", name, sorted(schedules), listed="in force"))
        workspace.record(
            "schedule",
            "removed",
            f"Schedule {name} removed: plan {schedule.plan} no longer runs at {schedule.cron!r}.",
            source="human",
            actor=actor,
            trigger="explicit",
            causal_role="pre_run",
            inputs={"schedule": name, "schedule_seq": schedule.seq},
        )
    return schedule


def list_schedules(workspace: Workspace, now: datetime) -> list[ScheduleRow]:
    """Every schedule in force, by name, with its next fire after `now` and its last fire."""
    book = _book(workspace)
    rows = []
    for name in sorted(book.schedules):
        schedule = book.schedules[name]
        upcoming = next_slot(schedule.cron, _zone(schedule.zone), now)
        rows.append(
            ScheduleRow(schedule, slot_text(upcoming) if upcoming else None, book.last.get(name))
        )
    return rows


def due(workspace: Workspace, now: datetime) -> list[Fire]:
    """The slots that have come by `now` and are not on record, one per schedule, by name."""
    return _due(workspace, _book(workspace), now)


def _due(workspace: Workspace, book: Book, now: datetime) -> list[Fire]:
    bound = workspace.settings.schedules.catch_up_seconds
    found = []
    for name in sorted(book.schedules):
        schedule = book.schedules[name]
        slot = due_slot(schedule, book.last.get(name), now, _zone(schedule.zone), bound)
        if slot is not None:
            found.append(slot)
    return found


def fire(workspace: Workspace, due_fire: Fire, launch: Launch) -> Fired | None:
    """Claim the slot and, when it may run, launch its run; None when the slot is no longer
    due (another caller claimed it, or the schedule was removed).

    The claim is one record, made under the writer lock after the log has been read again:
    `fired` before the launch, or `skipped` (too old to catch up, the workspace paused, the
    plan at its concurrency limit: the live runs named) or `failed` (the plan file gone,
    unreadable, changed into an invalid plan). After the launch, `started` names the run (the
    launch returns once the run's start is on record), or `failed` (phase launch) says why there
    is none: the starter's exit code and last stderr line when it exited first."""
    with workspace.transaction():
        book = _book(workspace)
        schedule = book.schedules.get(due_fire.name)
        last = book.last.get(due_fire.name)
        slot = slot_text(due_fire.slot)
        if schedule is None or schedule.seq != due_fire.schedule_seq:
            return None
        if last is not None and last.slot >= slot:
            return None
        outcome, reason, facts = _verdict(workspace, schedule, due_fire)
        inputs = {
            "schedule": schedule.name,
            "schedule_seq": schedule.seq,
            "slot": slot,
            "slots_due": due_fire.slots_due,
            **facts,
        }
        workspace.record(
            "schedule",
            outcome,
            reason,
            actor=ACTOR,
            trigger="autonomous",
            causal_role="pre_run",
            inputs=inputs,
            details={"cron": schedule.cron, "tz": schedule.zone, "plan": schedule.plan},
        )
    if outcome != "fired":
        return Fired(schedule.name, slot, outcome, reason, slots_due=due_fire.slots_due)
    link = {"schedule": schedule.name, "schedule_seq": schedule.seq, "slot": slot}
    try:
        run_id = launch(Path(schedule.plan), schedule.name)
    except Exception as exc:  # whatever stopped the launch is recorded: the slot stays claimed
        why = f"Schedule {schedule.name}: the run for slot {slot} did not start: {exc}"
        child = (
            {"exit_code": exc.exit_code, "stderr": exc.stderr}
            if isinstance(exc, LaunchFailed)
            else {}
        )
        workspace.record(
            "schedule",
            "failed",
            why,
            actor=ACTOR,
            trigger="reactive",
            causal_role="pre_run",
            inputs={**link, "phase": "launch", **child},
        )
        return Fired(schedule.name, slot, "failed", why, slots_due=due_fire.slots_due)
    started = f"Schedule {schedule.name}: run {run_id} started for slot {slot}."
    workspace.record(
        "schedule",
        "started",
        started,
        actor=ACTOR,
        trigger="autonomous",
        causal_role="pre_run",
        # Not the record's run_id link: a record of the run is the run's own (its fold, and
        # what wakes its continuation); this one is the schedule's, naming the run it started.
        inputs={**link, "run_id": run_id},
    )
    return Fired(schedule.name, slot, "started", started, run_id, due_fire.slots_due)


def _verdict(
    workspace: Workspace, schedule: Schedule, due_fire: Fire
) -> tuple[str, str, dict[str, Any]]:
    """How the slot is claimed: fired, skipped or failed, with the reason and the facts."""
    name, slot = schedule.name, slot_text(due_fire.slot)
    missed = due_fire.slots_due - 1
    missed_note = f" ({missed} earlier missed slot{'s' if missed != 1 else ''} not run)"
    if due_fire.too_old:
        bound = workspace.settings.schedules.catch_up_seconds
        return (
            "skipped",
            f"Schedule {name}: slot {slot} was missed and is older than the catch-up bound"
            f" ({bound:g} s){missed_note if missed else ''}.",
            {"why": "too_old", "catch_up_seconds": bound},
        )
    url = workspace.settings.store.url  # its runs are its database's: so are the pause, the live
    paused = trust.database_standing(url).status.paused if url else workspace.status().paused
    if paused is not None:
        whose = "database" if url else "workspace"
        return (
            "skipped",
            f"Schedule {name}: slot {slot} not run: the {whose} is paused ({paused['reason']}).",
            {"why": "paused"},
        )
    try:
        errors = _plan_errors(workspace, schedule.plan)
        if errors:
            return (
                "failed",
                f"Schedule {name}: slot {slot} not run: the plan does not pass plan check:"
                f" {errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
                {"why": "plan_invalid", "errors": errors},
            )
        plan = read_plan(Path(schedule.plan))
    except (OSError, PlanInvalid) as exc:
        return (
            "failed",
            f"Schedule {name}: slot {slot} not run: the plan cannot be read: {exc}.",
            {"why": "plan_unreadable"},
        )
    rule = plan.document.meta.concurrency
    key = plan_key(plan.document.meta.name, str(plan.path.absolute()))
    limit = rule.limit if rule is not None else DEFAULT_LIMIT
    others = db_runs.live_database_runs(url) if url else runs.live_runs(workspace)
    admission = admit(key, limit, allow_concurrent=False, live=others)
    facts: dict[str, Any] = {"plan_sha256": plan.sha256}
    if plan.sha256 != schedule.plan_sha256:
        facts["plan_changed"] = True
    if not admission.admitted:
        live = ", ".join(run.run_id for run in admission.live)
        return (
            "skipped",
            f"Schedule {name}: slot {slot} not run: plan {plan.name} allows {limit} live"
            f" run{'s' if limit != 1 else ''} and has {live}.",
            {**facts, "why": "concurrency", "live_runs": [r.run_id for r in admission.live]},
        )
    when = f" (slots due: {due_fire.slots_due}, the latest run once{missed_note})" if missed else ""
    return ("fired", f"Schedule {name}: slot {slot} fired{when}.", facts)


def run_due_schedules(workspace: Workspace, now: datetime, launch: Launch) -> list[Fired]:
    """Fire every slot due at `now`: the control loop's one call. Slots another caller claimed
    first are left out."""
    fired = []
    for due_fire in due(workspace, now.astimezone(UTC)):
        outcome = fire(workspace, due_fire, launch)
        if outcome is not None:
            fired.append(outcome)
    return fired
