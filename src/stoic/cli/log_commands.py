"""Workspace and decision-log commands: init, log, audit, status."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from itertools import islice
from pathlib import Path
from typing import Annotated, NoReturn

import orjson
import typer
from rich.table import Table

from stoic.cli.context import cli_state, database_url, db_option, open_workspace
from stoic.cli.render import console_for_output, echo, echo_json, plain_text
from stoic.cli.status_text import status_document, status_lines
from stoic.core import next_steps
from stoic.core.audit import Anchor, AuditReport, ViolationCode
from stoic.core.records import Record
from stoic.core.text import counted
from stoic.core.vocabulary import is_failure
from stoic.exceptions import StoicError, UsageError
from stoic.services import log as log_service
from stoic.services.audit import audit as audit_workspace
from stoic.services.trust import database_standing, standing
from stoic.services.workspace import Workspace
from stoic.store.interface import Store

__all__ = ["register"]

_TABLE_CHUNK = 500


def init(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where to create the workspace (default: the --workspace folder)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the workspace and settings paths as JSON.")
    ] = False,
    db: Annotated[
        str | None,
        db_option(
            "Give a PostgreSQL database stoic's schema instead (named migrations, each"
            " recorded); the URL is never printed back."
        ),
    ] = None,
) -> None:
    """Create a workspace: folders, an empty decision log, and a commented stoic.toml — or,
    with --db, the schema of a PostgreSQL database."""
    if db is not None:
        if directory is not None:
            raise UsageError("init takes a folder or --db, not both")
        _init_database(db, as_json=as_json)
        return
    target = directory if directory is not None else cli_state(ctx).workspace
    workspace = Workspace.init(target)
    workspace.close()
    if as_json:
        document = {
            "workspace": str(workspace.root),
            "settings": str(workspace.root / "stoic.toml"),
            "log": str(workspace.log.path),
        }
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    echo(f"Created a stoic workspace at {workspace.root}")
    echo(f"Settings: {workspace.root / 'stoic.toml'} (every setting shows its default)")


def _init_database(url: str, *, as_json: bool) -> None:
    from stoic.services.db_transfer import create_database_schema  # psycopg only when asked

    created = create_database_schema(url)
    if as_json:
        document = {"applied": list(created.applied), "migrations": list(created.migrations)}
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    if created.applied:
        echo(f"Gave the database stoic's schema: {', '.join(created.applied)}")
    else:
        echo(f"The database has stoic's schema already ({created.migrations[-1]})")


def log(
    ctx: typer.Context,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", min=0, help="Only the last N matching records.")
    ] = None,
    decision_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Only records of this decision type.")
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", "-r", help="Only records of this run.")
    ] = None,
    failures: Annotated[
        bool, typer.Option("--failures", help="Only records that report a failure.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the stored records as NDJSON, byte for byte.")
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Read a PostgreSQL database's log instead (the URL is never printed back).",
        ),
    ] = None,
) -> None:
    """Show the decision log, oldest first (streamed; --tail reads backwards from the end)."""
    log_service.check_decision_type(decision_type)
    opened: AbstractContextManager[Store] = (
        open_workspace(ctx, catch_up=False) if db is None else log_service.database(db)
    )
    with opened as workspace:
        records = log_service.records(
            workspace, tail=tail, decision_type=decision_type, run_id=run, failures=failures
        )
        if as_json:
            out = sys.stdout.buffer
            for record in records:
                out.write(orjson.dumps(record.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\n")
            out.flush()
            return
        _print_table(records)


def _print_table(records: Iterable[Record]) -> None:
    console = console_for_output()
    iterator: Iterator[Record] = iter(records)
    shown = 0
    while chunk := list(islice(iterator, _TABLE_CHUNK)):
        table = Table(show_header=shown == 0, box=None, pad_edge=False, expand=False)
        table.add_column("seq", justify="right", min_width=5, no_wrap=True)
        table.add_column("decided at (UTC)", min_width=19, no_wrap=True)
        table.add_column("decision", min_width=20, overflow="fold")
        table.add_column("actor", min_width=12, overflow="fold")
        table.add_column("run / task", min_width=10, overflow="fold")
        table.add_column("reason", min_width=30, ratio=1)
        for record in chunk:
            outcome = record.decision_outcome
            style = "red" if is_failure(record.decision_type, outcome) else ""
            link = "/".join(part for part in (record.run_id, record.task_id) if part) or "-"
            table.add_row(  # Text, not markup: actors and reasons hold anything
                str(record.seq),
                record.decided_at[:19].replace("T", " "),
                plain_text(f"{record.decision_type}/{outcome}", style=style),
                plain_text(record.actor),
                plain_text(link),
                plain_text(record.decision_reason),
            )
        console.print(table)
        shown += len(chunk)
    if shown == 0:
        console.print("No matching records.")


def audit(
    ctx: typer.Context,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Remove a torn last line and rebuild projections from the log, and record it.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    head: Annotated[
        bool,
        typer.Option(
            "--head",
            help="Print only the last record's SEQ:HASH on stdout (the report goes to stderr):"
            " keep it outside the workspace and pass it to --expect later.",
        ),
    ] = False,
    expect: Annotated[
        list[str] | None,
        typer.Option(
            "--expect",
            metavar="SEQ:HASH",
            help="Fail unless the log holds exactly this record (an anchor kept elsewhere);"
            " repeatable.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Audit the log of this PostgreSQL database instead: chain, sequence, head row"
            " and the behavioural invariants (a check only: nothing is recorded).",
        ),
    ] = None,
) -> None:
    """Verify the decision log: hash chain, sequence, torn tail, projections against a replay.

    Exit 0 when clean, 1 with every violation listed.
    """
    if db is not None:
        _audit_database(db, repair=repair, expect=expect, as_json=as_json, head=head)
    anchors: list[Anchor] = []
    for text in expect or ():
        try:
            anchors.append(Anchor.parse(text))
        except ValueError as exc:
            raise UsageError(f"--expect {exc}") from None
    workspace = Workspace.open(cli_state(ctx).workspace, catch_up=False)
    try:
        audited = audit_workspace(workspace, repair=repair, anchors=anchors)
    finally:
        # Closing catches projections up; over a damaged log that fails, and the report
        # (which names the damage) must still be printed.
        with contextlib.suppress(StoicError):
            workspace.close()
    already = audited.paused_before
    if already is not None:
        echo(f"stoic: PAUSED since {already['since']}: {already['reason']}", err=True)
    if audited.paused:
        echo("stoic: the workspace is now paused: the audit failed", err=True)
    if audited.unrecorded is not None:
        why = audited.unrecorded.removesuffix(f"; run {next_steps.audit()}")  # this command
        echo(
            f"stoic: the failed audit could not record its pause: {why}; mend that and what the"
            f" violations name, then {next_steps.audit()} again records it",
            err=True,
        )
    report = audited.report
    if as_json:
        echo_json(orjson.dumps(report.to_dict()).decode(), err=head)
    else:
        _print_report(report, repair=repair, err=head)
    if head:
        if audited.head is None:
            echo("stoic: the log is empty: there is no head to anchor yet", err=True)
        else:
            echo(str(audited.head))
    raise typer.Exit(0 if report.ok else 1)


def _audit_database(
    url: str, *, repair: bool, expect: list[str] | None, as_json: bool, head: bool
) -> NoReturn:
    if repair or expect:
        raise UsageError("--db audits only: --repair and --expect are for a files workspace")
    from stoic.services.db_transfer import audit_database  # psycopg only when asked for

    report = audit_database(url)
    if as_json:
        echo_json(orjson.dumps(report.to_dict()).decode(), err=head)
    else:
        _print_report(report, repair=False, err=head)
    if head:
        if report.head is None:
            echo("stoic: the log is empty: there is no head to anchor yet", err=True)
        else:
            echo(str(report.head))
    raise typer.Exit(0 if report.ok else 1)


def _print_report(report: AuditReport, *, repair: bool, err: bool = False) -> None:
    def say(text: str) -> None:
        echo(text, err=err)

    if report.repaired is not None:
        moved = report.repaired.get("quarantined") or []
        aside = (
            f"; moved {counted(len(moved), 'file')} to {report.repaired['quarantine']}"
            if moved
            else ""
        )
        say(
            f"Repaired: removed {report.repaired['bytes_removed']} bytes,"
            f" rebuilt {', '.join(report.repaired['projections_rebuilt'])}{aside};"
            f" recorded as seq {report.repaired['seq']}."
        )
    elif repair and any(v.code is ViolationCode.RECORDS_LOST for v in report.violations):
        say(
            "Nothing was repaired: records were lost. Files below reflect records the log no"
            " longer holds, and rebuilding them from this log would hide that; restore"
            " logs/decision_log.ndjson from a backup."
        )
    elif repair and not report.ok:
        say(
            "Nothing was repaired: not every violation below can be. Repair only removes a torn"
            " last line and rebuilds file views; a damaged record before the last, a broken"
            " rule or a changed plan copy is never changed."
        )
    if report.ok:
        say(f"Audit clean: {counted(report.records, 'record')}, last seq {report.last_seq}.")
        return
    count = len(report.violations)
    say(
        f"Audit FAILED: {counted(count, 'violation')}"
        f" in {counted(report.records, 'record')} (last seq {report.last_seq}):"
    )
    for violation in report.violations:
        say(f"  {violation.describe()}")


def _show_database_run(db: str, run_id: str, as_json: bool, every_task: bool) -> None:
    """A run of a database: its status, tasks by state, and the last output of what failed or
    waits (of every task with --tasks), kept in the database by the workers that ran them."""
    from stoic.services.db_runs import database_run_outputs, database_run_state

    state = database_run_state(db, run_id)
    outputs = database_run_outputs(db, state, every_task=every_task)
    if as_json:
        document = {**state.document(), "outputs": outputs}
        echo_json(orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode())
        return
    counts: dict[str, int] = {}
    for task_state in state.document()["tasks"].values():
        counts[task_state] = counts.get(task_state, 0) + 1
    echo(
        f"Run {run_id} ({state.plan.name}, database): {state.status.value}; "
        + ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))
    )
    for task_id in state.analysis.failed:
        echo(f"  failed: {task_id}")
    for task_id, roots in state.analysis.blocked.items():
        echo(f"  blocked: {task_id} (by {', '.join(roots)})")
    for task_id in state.analysis.awaiting_human:
        echo(f"  waiting for a person: {task_id} ({state.waits_on(task_id)})")
    for task_id, text in outputs.items():
        echo(f"--- {task_id}, attempt {state.view.task(task_id).attempts}: the end of its output")
        echo(text.rstrip("\n"))


def status(
    ctx: typer.Context,
    run_id: Annotated[
        str | None, typer.Argument(help="A run: show its tasks instead.", show_default=False)
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    every_task: Annotated[
        bool,
        typer.Option(
            "--tasks", help="With RUN_ID: every task's row, not only those that need a look."
        ),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="A PostgreSQL database's log instead (the URL is never printed back).",
        ),
    ] = None,
) -> None:
    """Show the workspace (records, counts by type and outcome), or with RUN_ID one run:
    its tasks counted by status, the failed, blocked and waiting ones with what blocks them
    (--tasks: every task's status, attempts and duration). With RUN_ID and --db (or [store]
    url in stoic.toml), a database run, with the end of the output of what failed or waits
    (--tasks: of every task)."""
    if run_id is not None and (url := database_url(ctx, db)) is not None:
        _show_database_run(url, run_id, as_json, every_task)
        return
    if run_id is not None:
        from stoic.cli.run_commands import show_run_status

        show_run_status(ctx, run_id, as_json, every_task)
        return
    if every_task:
        shown = next_steps.run_status("RUN_ID", tasks=True)
        raise UsageError(f"--tasks shows one run's tasks: name the run ({shown})")
    if db is not None:
        stands, where = database_standing(db), "The database (--db)"
    else:
        with open_workspace(ctx) as workspace:
            stands = standing(workspace)
            where = str(workspace.root)
    if as_json:
        document = status_document(stands, None if db is not None else where)
        echo_json(orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode())
        return
    heading = where if db is not None else f"Workspace {where}"
    echo("\n".join(status_lines(stands, heading)))


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(log)
    app.command()(audit)
    app.command()(status)
