"""What every command shares: the global options' decisions and the workspace they name."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stoic.cli.render import echo
from stoic.cli.status_text import pause_warning
from stoic.core import next_steps
from stoic.exceptions import StoicError, UsageError

if TYPE_CHECKING:
    from stoic.services.workspace import Workspace
    from stoic.store.config import Settings

__all__ = [
    "CliState",
    "cli_state",
    "database_url",
    "db_option",
    "open_workspace",
    "workspace_settings",
]


@dataclass(frozen=True, slots=True)
class CliState:
    """What the global options decided, handed to every command."""

    workspace: Path
    workspace_given: bool
    debug: bool
    own_process: bool = False
    """`stoic` is this process (not a caller's `main([...])`): it may re-execute itself."""
    local: bool = False
    """`--local`: the workspace's own files, whatever database its `stoic.toml` names."""


def cli_state(ctx: typer.Context) -> CliState:
    """The global options' decisions, set by the root callback."""
    state = ctx.obj
    assert isinstance(state, CliState)
    return state


def db_option(help: str) -> Any:
    """`--db URL` (or `STOIC_DB`): a PostgreSQL database, never printed back."""
    return typer.Option("--db", metavar="URL", envvar="STOIC_DB", show_envvar=True, help=help)


def database_url(
    ctx: typer.Context, given: str | None, *, warn_left_behind: bool = True
) -> str | None:
    """The database a command works on: `--db` (or `STOIC_DB`, which typer reads), else
    `[store] url` in the workspace's `stoic.toml` when there is one; None: the workspace
    (and always with `--local`). A database taken from `stoic.toml` leaves behind what the
    workspace's own files hold undecided: a warning names it."""
    if cli_state(ctx).local:
        source = ctx.get_parameter_source("db")  # typer's own click: compared by name
        if given and source is not None and source.name == "COMMANDLINE":
            raise UsageError("--local and --db name two different stores: give one of them")
        return None
    if given:
        if cli_state(ctx).own_process and _password_on_command_line(given):
            echo(
                "stoic: warning: the --db URL holds a password, which every user of this host"
                " can read in the process list; give it in STOIC_DB or ~/.pgpass instead",
                err=True,
            )
        return given
    settings = workspace_settings(ctx)
    url = settings.store.url or None if settings is not None else None
    if url is not None and warn_left_behind:
        _warn_left_behind(ctx)
    return url


def _warn_left_behind(ctx: typer.Context) -> None:
    """Say what waits in the workspace's own queue, escalations and pause, which a command
    sent to its database does not see (a workspace that named a database after it had used
    its own)."""
    from stoic.services.escalations import escalations
    from stoic.services.queue import left_behind

    try:
        with open_workspace(ctx, announce_pause=False) as workspace:
            waiting, paused = left_behind(workspace)
            asking = [item.id for item in escalations(workspace, open_only=True)]
    except StoicError as exc:
        echo(f"stoic: warning: the workspace's own files cannot be read: {exc}", err=True)
        return
    if waiting:
        shown = ", ".join(waiting[:3]) + (", …" if len(waiting) > 3 else "")
        echo(
            f"stoic: warning: {len(waiting)} proposal(s) wait in the workspace's own queue"
            f" ({shown}), not in the database its stoic.toml names;"
            f" {next_steps.queue(local=True)} lists them",
            err=True,
        )
    if asking:
        shown = ", ".join(asking[:3]) + (", …" if len(asking) > 3 else "")
        echo(
            f"stoic: warning: {len(asking)} escalation(s) are open in the workspace's own files"
            f" ({shown}), not in the database its stoic.toml names;"
            f" {next_steps.open_escalations(local=True)} lists them",
            err=True,
        )
    if paused:
        echo(
            "stoic: warning: the workspace's own log is paused, apart from its database;"
            f" {next_steps.resume(procedure='…', reason='…', local=True)} resumes it",
            err=True,
        )


def _password_on_command_line(url: str) -> bool:
    """Whether `url`, given on this process's command line, holds a password."""
    import sys
    from urllib.parse import urlsplit

    on_line = any(arg == url or arg == f"--db={url}" for arg in sys.argv[1:])
    try:
        return on_line and bool(urlsplit(url).password)
    except ValueError:
        return False


def workspace_settings(ctx: typer.Context) -> Settings | None:
    """The settings of the workspace the global options name, when it has a `stoic.toml`;
    one that cannot be read is an error naming its file and line."""
    from stoic.store.config import load_settings
    from stoic.store.layout import SETTINGS_FILE

    settings_file = cli_state(ctx).workspace / SETTINGS_FILE
    if not settings_file.is_file():
        return None
    return load_settings(settings_file)


def open_workspace(
    ctx: typer.Context, *, catch_up: bool = True, announce_pause: bool = True
) -> Workspace:
    """Open the workspace the global options name, warning on stderr about a torn tail (and
    a pause). With `--local` its settings name no database, for every service it reaches."""
    from stoic.services.workspace import Workspace  # not for `stoic --help` or `plan check`

    state = cli_state(ctx)
    workspace = Workspace.open(state.workspace, catch_up=catch_up)
    ctx.call_on_close(lambda: _warn_lagging(workspace))
    named_database = bool(workspace.settings.store.url)
    if state.local and named_database:
        workspace.settings = workspace.settings.without_database()
    with contextlib.suppress(StoicError):
        paused = workspace.status().paused if announce_pause else None
        if paused is not None:
            local = named_database and not state.local  # a bare `resume` goes to the database
            echo(pause_warning(paused, local=local), err=True)
    torn = workspace.torn_tail
    if torn is not None:
        echo(
            f"stoic: warning: {torn.describe(workspace.log.path)};"
            f" run {next_steps.audit(repair=True)}",
            err=True,
        )
    return workspace


def _warn_lagging(workspace: Workspace) -> None:
    """What was recorded stands; say which views of it could not be written (a full disk)."""
    for message in workspace.lagging:
        typer.echo(
            f"stoic: warning: recorded, but could not write {message}: it lags the log until"
            f" the next command that can write catches it up (or {next_steps.audit(repair=True)})",
            err=True,
        )
