"""Database commands: `stoic export` and `stoic import` (DESIGN §13). They parse, call
`stoic.services.db_transfer` and render; `stoic audit --db` lives with the audit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.render import echo, echo_json
from stoic.core.text import counted
from stoic.services.db_transfer import export_database, import_workspace

__all__ = ["DbOption", "register"]

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        metavar="URL",
        envvar="STOIC_DB",
        show_envvar=True,
        help="The PostgreSQL database (postgresql://USER@HOST/NAME); never printed back.",
    ),
]


def export(
    directory: Annotated[
        Path, typer.Argument(help="Where to write the workspace: a new or empty folder.")
    ],
    db: DbOption,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the workspace, head and audit report as JSON.")
    ] = False,
) -> None:
    """Write a database's decision log as a files workspace (default stoic.toml), its runs'
    evidence files in their folders and its views built from that log, then audit it: ls, jq,
    grep and stoic audit work on it.

    Exit 0 when the export audits clean, 1 with every violation listed.
    """
    exported = export_database(db, directory)
    report = exported.report
    head = exported.head
    if as_json:
        document = {
            "workspace": str(exported.workspace),
            "records": head.seq,
            "head": f"{head.seq}:{head.hash}" if head.seq else None,
            "audit": report.to_dict(),
        }
        echo_json(orjson.dumps(document).decode())
    else:
        echo(
            f"Exported {counted(head.seq, 'record')} to {exported.workspace}"
            + (f"; head {head.seq}:{head.hash}" if head.seq else "")
        )
        if report.ok:
            echo(f"Audit clean: {counted(report.records, 'record')}, last seq {report.last_seq}.")
        else:
            echo(f"Audit FAILED: {counted(len(report.violations), 'violation')}:")
            for violation in report.violations:
                echo(f"  {violation.describe()}")
    raise typer.Exit(0 if report.ok else 1)


def import_(
    directory: Annotated[Path, typer.Argument(help="The files workspace to import.")],
    db: DbOption,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the records imported and the head as JSON.")
    ] = False,
) -> None:
    """Store a files workspace's decision log in a database whose log is empty, byte for byte
    (seq, hashes, canonical lines), with its runs' evidence files (plan copies, attempt logs,
    outputs and result files). The workspace must audit clean; a non-empty log is refused.
    """
    imported = import_workspace(directory, db)
    head = imported.head
    if imported.not_carried:
        echo(
            f"stoic: warning: {counted(len(imported.not_carried), 'file')} in runs/ that stoic"
            f" does not keep (first: {imported.not_carried[0]}) stay in the workspace",
            err=True,
        )
    if as_json:
        document = {
            "workspace": str(imported.workspace),
            "records": head.seq,
            "head": f"{head.seq}:{head.hash}" if head.seq else None,
            "runs": imported.runs,
            "run_files": imported.run_files,
            "not_carried": list(imported.not_carried),
        }
        echo_json(orjson.dumps(document).decode())
        return
    echo(
        f"Imported {counted(head.seq, 'record')} from {imported.workspace}"
        + (f"; head {head.seq}:{head.hash}" if head.seq else "")
        + (
            f"; {counted(imported.run_files, 'run file')} of {counted(imported.runs, 'run')}"
            if imported.runs
            else ""
        )
    )


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("import")(import_)
