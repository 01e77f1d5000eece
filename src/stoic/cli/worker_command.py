"""`stoic worker`: carry out the runs of a database on this host (DESIGN §13). It parses, calls
`stoic.services.db_runs` and prints what the worker does, one line at a time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.context import database_url, db_option, workspace_settings
from stoic.cli.render import echo, echo_json
from stoic.exceptions import UsageError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        db_option(
            "The PostgreSQL database whose runs to carry out (never printed back); default:"
            " [store] url in the workspace's stoic.toml."
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Tasks run at the same time.")
    ] = 4,
    lease_seconds: Annotated[
        float,
        typer.Option(
            "--lease-seconds",
            min=1.0,
            max=3600.0,
            help="How long a claimed task stays this worker's without a heartbeat (renewed"
            " every third of it); past it, another worker takes the task over.",
        ),
    ] = 30.0,
    poll_seconds: Annotated[
        float,
        typer.Option(
            "--poll-seconds",
            min=0.05,
            max=600.0,
            help="The longest it waits, whatever it hears, before looking for work and for"
            " leases that ran out.",
        ),
    ] = 2.0,
    scratch: Annotated[
        Path,
        typer.Option(
            "--scratch",
            help="Where attempts write their logs and result files on this host before the"
            " database keeps them.",
        ),
    ] = Path(".stoic-worker"),
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds",
            min=0.0,
            max=86400.0,
            help="After the first SIGTERM or Ctrl-C, how long running tasks may go on (nothing"
            " more is claimed); then, or at a second signal, they are stopped and recorded"
            " interrupted. 0: at once.",
        ),
    ] = 30.0,
    exit_when_idle: Annotated[
        bool,
        typer.Option(
            "--exit-when-idle", help="Exit once nothing runs here and nothing is left to claim."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what it did, on exit, as one JSON document.")
    ] = False,
) -> None:
    """Claim the ready tasks of the database's runs, run them and record their ends, until
    SIGTERM or Ctrl-C: nothing more is claimed, the running tasks have --drain-seconds to end,
    then (or at a second signal) they are stopped and recorded interrupted — the recovery
    matrix decides. Start as many as you like, on as many hosts."""
    # Before anything else: the worker starts tasks, so its environment block (which any
    # process of the same user reads in /proc) holds only what they may see — never the URL.
    from stoic.cli.run_commands import confine
    from stoic.run.fleet import WorkerOptions
    from stoic.services.db_runs import run_worker
    from stoic.store.config import Settings
    from stoic.store.processes import workspace_policy

    settings = workspace_settings(ctx)
    confine(ctx, workspace_policy(settings or Settings()))
    url = database_url(ctx, db, warn_left_behind=False)
    if url is None:
        raise UsageError(
            "a worker needs a database: --db URL, STOIC_DB, or [store] url in stoic.toml"
        )
    options = WorkerOptions(
        concurrency=concurrency,
        lease_s=lease_seconds,
        poll_s=poll_seconds,
        scratch=scratch.absolute(),
        drain_s=drain_seconds,
        exit_when_idle=exit_when_idle,
    )
    say = (lambda line: None) if as_json else (lambda line: echo(line, err=True))
    # The driver's own warnings (a connection discarded, a pipeline cut) repeat what the worker
    # says in one line when a turn fails: they stay out of its output.
    logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    stats = run_worker(url, options, say)
    if as_json:
        echo_json(orjson.dumps(stats).decode())
