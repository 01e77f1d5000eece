"""Schedule commands: schedule add, list, remove. The slots are fired by `stoic serve`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.context import open_workspace
from stoic.cli.identity import human_actor
from stoic.cli.render import echo, echo_json
from stoic.services import schedules as schedules_service

__all__ = ["register"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]

schedule_app = typer.Typer(
    name="schedule",
    help="Schedules: run a plan at the times a cron expression names (the server fires them).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@schedule_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule's name (letters, digits, . _ -).")],
    plan: Annotated[Path, typer.Argument(help="The plan file; read again at every fire.")],
    cron: Annotated[
        str, typer.Option("--cron", help='Five-field cron expression, such as "0 2 * * *".')
    ],
    tz: Annotated[
        str, typer.Option("--tz", help="The time zone the expression is read in (IANA name).")
    ] = "UTC",
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Run PLAN at every time --cron names, from now on: recorded as your decision, with the
    plan's path and sha256. The plan must pass `stoic plan check`."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        schedule = schedules_service.add(workspace, name, cron, plan, actor=actor, tz=tz)
        row = next(
            r
            for r in schedules_service.list_schedules(workspace, datetime.now(UTC))
            if r.schedule.name == schedule.name
        )
    if as_json:
        echo_json(orjson.dumps(row.to_json()).decode())
        return
    echo(f"schedule {schedule.name} added: {schedule.plan} at {schedule.cron!r} ({schedule.zone})")
    echo(f"next fire: {row.next_fire or 'never'} (while the server runs)")


@schedule_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The schedules in force: cron, plan, next fire, and the last fire (time, run, outcome)."""
    with open_workspace(ctx) as workspace:
        rows = schedules_service.list_schedules(workspace, datetime.now(UTC))
    if as_json:
        echo_json(orjson.dumps([row.to_json() for row in rows]).decode())
        return
    if not rows:
        echo("no schedules")
    for row in rows:
        s, last = row.schedule, row.last
        if last is None:
            shown = "never fired"
        else:
            run = f" run {last.run_id}" if last.run_id else ""
            if last.outcome == "fired":
                run = " (no run on record: the launch never reported back)"
            shown = f"{last.slot} {last.outcome}{run}"
        echo(
            f"{s.name}  {s.cron!r} ({s.zone})  {s.plan}  next: {row.next_fire or 'never'}"
            f"  last: {shown}"
        )


@schedule_app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The schedule to take out of force.")],
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Stop a schedule: no slot of it fires from now on (recorded as your decision)."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        schedule = schedules_service.remove(workspace, name, actor=actor)
    if as_json:
        echo_json(orjson.dumps({"removed": schedule.name, "plan": schedule.plan}).decode())
        return
    echo(f"schedule {schedule.name} removed")


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app)
