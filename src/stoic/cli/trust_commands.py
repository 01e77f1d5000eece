"""Trust commands: stop, resume, flag, calibrate, incident new."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from stoic.cli.context import database_url, db_option, open_workspace, workspace_settings
from stoic.cli.identity import human_actor
from stoic.cli.render import echo, echo_json
from stoic.core.pause import READER_SIGNALS
from stoic.services import trust

if TYPE_CHECKING:
    from stoic.services.workspace import Workspace

__all__ = ["incident_app", "register"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print what was recorded as JSON.")]
Database = Annotated[
    str | None, db_option("A PostgreSQL database's pause: its workers and its queue.")
]


@contextlib.contextmanager
def _told(ctx: typer.Context) -> Iterator[Workspace | None]:
    """The workspace the command runs from, whose notifiers hear of a database's pause and
    resume; None when there is none (nothing to tell)."""
    if workspace_settings(ctx) is None:
        yield None
        return
    with open_workspace(ctx) as workspace:
        yield workspace


def _print_json(document: dict[str, Any]) -> None:
    echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def stop(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", help="Why the workspace is paused.")],
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Pause the workspace by hand: new proposals and runs are refused until `stoic resume`.
    With a database (--db, or [store] url in stoic.toml): its workers start no task and its
    queue takes no proposal until it is resumed."""
    url = database_url(ctx, db)
    if url is not None:
        with _told(ctx) as workspace:
            recorded = trust.pause_database(
                url, reason=reason, actor=human_actor(as_name), workspace=workspace
            )
        paused = trust.database_standing(url).status.paused
    else:
        with open_workspace(ctx) as workspace:
            recorded = trust.pause(workspace, reason=reason, actor=human_actor(as_name))
            paused = trust.standing(workspace).status.paused
    if as_json:  # the pause in force: this one, or the one it found
        _print_json({"recorded": recorded, "paused": dict(paused) if paused else None})
        return
    if recorded or paused is None:
        echo(f"Paused: {reason}")
        return
    echo(  # nothing recorded: the pause in force keeps its own reason
        f"Paused already, since {paused.get('since')}: {paused.get('reason')}; nothing recorded"
    )


def resume_(
    ctx: typer.Context,
    procedure: Annotated[
        str,
        typer.Option(
            "--procedure", help="smaller-batch, verification-batch or manual-verification."
        ),
    ],
    reason: Annotated[str, typer.Option("--reason", help="What was done about the cause.")],
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="The smaller batch size.")
    ] = None,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Resume a paused workspace (or database: --db, or [store] url in stoic.toml), naming
    the recovery procedure that was followed."""
    url = database_url(ctx, db)
    if url is not None:
        with _told(ctx) as workspace:
            record = trust.resume_database(
                url,
                procedure=procedure,
                reason=reason,
                actor=human_actor(as_name),
                batch_size=batch_size,
                workspace=workspace,
            )
    else:
        with open_workspace(ctx) as workspace:
            record = trust.resume(
                workspace,
                procedure=procedure,
                reason=reason,
                actor=human_actor(as_name),
                batch_size=batch_size,
            )
    if as_json:
        _print_json(
            {
                "seq": record.seq,
                "decision_id": record.decision_id,
                "procedure": procedure,
                "batch_size": batch_size,
            }
        )
        return
    echo(f"Resumed ({procedure}).")


def flag(
    ctx: typer.Context,
    signal: Annotated[
        str, typer.Argument(help="One of: " + ", ".join(READER_SIGNALS), show_default=False)
    ],
    note: Annotated[str | None, typer.Option("--note", help="What you noticed.")] = None,
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Report a trust signal as a reviewer; three since the last resume pause the workspace."""
    with open_workspace(ctx) as workspace:
        paused = trust.raise_flag(workspace, signal=signal, actor=human_actor(as_name), note=note)
        flags = trust.standing(workspace).status.flags_since_resume
    if as_json:
        _print_json({"signal": signal, "flags_since_resume": flags, "paused": paused})
        return
    echo("Flag recorded." + (" The workspace is now paused." if paused else ""))


def calibrate_(
    ctx: typer.Context,
    note: Annotated[str, typer.Argument(help="What you learned.", show_default=False)],
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Append a calibration note to calibration_log.md (and record it)."""
    with open_workspace(ctx) as workspace:
        record = trust.calibrate(workspace, note=note, actor=human_actor(as_name))
    if as_json:
        _print_json(
            {"seq": record.seq, "decision_id": record.decision_id, "file": "calibration_log.md"}
        )
        return
    echo("Noted in calibration_log.md.")


incident_app = typer.Typer(name="incident", help="Incident records.", rich_markup_mode=None)


@incident_app.command("new")
def incident_new(
    ctx: typer.Context,
    severity: Annotated[str, typer.Option("--severity", help="minor, moderate or major.")],
    title: Annotated[str, typer.Option("--title", help="What happened, in a few words.")],
    description: Annotated[str, typer.Option("--description", help="What is known.")] = "",
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Write incidents/ISSUE-YYYYMMDD-NNN.md from the template; moderate pauses the workspace,
    major pauses it and needs a clean audit before resuming."""
    with open_workspace(ctx) as workspace:
        incident = trust.new_incident(
            workspace,
            severity=severity,
            title=title,
            description=description,
            actor=human_actor(as_name),
        )
    if as_json:
        _print_json(
            {
                "incident_id": incident.id,
                "severity": incident.severity.value,
                "seq": incident.seq,
                "path": str(incident.path),
                "paused": incident.paused,
            }
        )
        return
    echo(str(incident.path))


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate_)
    app.add_typer(incident_app)
    app.command()(flag)
    app.command()(stop)
    app.command("resume")(resume_)
