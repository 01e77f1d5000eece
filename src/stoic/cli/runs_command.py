"""`stoic runs`: the runs of the workspace, newest first, as the log tells them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from stoic.cli.context import database_url, db_option, open_workspace
from stoic.cli.render import echo, echo_json

if TYPE_CHECKING:
    from stoic.services.run_list import RunRow

__all__ = ["register"]

_HEADINGS = ("run", "plan", "status", "started", "duration", "tasks", "runner")


def runs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs with this status: completed, running, awaiting_human, failed,"
            " paused, interrupted.",
        ),
    ] = None,
    plan: Annotated[
        str | None, typer.Option("--plan", help="Only runs of the plan with this name.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as a JSON array.")] = False,
    db: Annotated[
        str | None,
        db_option(
            "The runs of this PostgreSQL database instead (never printed back); default:"
            " [store] url in stoic.toml, if set."
        ),
    ] = None,
) -> None:
    """List the runs of the workspace, newest first: run id, plan, status (from the log),
    when it started, how long it took, its tasks by state, and the runner holding it now.
    With --db, the runs of a database, and how many workers run their tasks now."""
    from stoic.services import runs as runs_service
    from stoic.services.run_list import status_named

    status_named(status)  # a misspelt status is refused before anything is read
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services.db_runs import list_database_runs

        rows = list_database_runs(url, status=status, plan=plan)
    else:
        with open_workspace(ctx) as workspace:
            rows = runs_service.list_runs(workspace, status=status, plan=plan)
    if as_json:
        document = [row.document() for row in rows]
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    if not rows:
        echo("No runs." if status is None and plan is None else "No runs match.")
        return
    table = [_HEADINGS, *(_cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(_HEADINGS) - 1)]
    for line in table:
        echo("  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]]))


def _cells(row: RunRow) -> tuple[str, ...]:
    started = row.started_at[:19].replace("T", " ") if row.started_at else "—"
    tasks = ", ".join(f"{count} {state}" for state, count in row.tasks.items())
    if row.problem is not None:
        tasks = row.problem
    return (
        row.run_id,
        row.plan,
        row.status,
        started,
        _duration(row.duration_s),
        tasks or "no tasks",
        row.runner or "—",
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def register(app: typer.Typer) -> None:
    app.command()(runs)
