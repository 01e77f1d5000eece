"""What every command shares: the global options' decisions and the workspace they name."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stoic.cli.render import echo
from stoic.core import next_steps
from stoic.exceptions import StoicError

if TYPE_CHECKING:
    from stoic.services.workspace import Workspace

__all__ = ["CliState", "cli_state", "database_url", "db_option", "open_workspace"]


@dataclass(frozen=True, slots=True)
class CliState:
    """What the global options decided, handed to every command."""

    workspace: Path
    workspace_given: bool
    debug: bool
    own_process: bool = False
    """`stoic` is this process (not a caller's `main([...])`): it may re-execute itself."""


def cli_state(ctx: typer.Context) -> CliState:
    """The global options' decisions, set by the root callback."""
    state = ctx.obj
    assert isinstance(state, CliState)
    return state


def db_option(help: str) -> Any:
    """`--db URL` (or `STOIC_DB`): a PostgreSQL database, never printed back."""
    return typer.Option("--db", metavar="URL", envvar="STOIC_DB", show_envvar=True, help=help)


def database_url(ctx: typer.Context, given: str | None) -> str | None:
    """The database a command works on: `--db` (or `STOIC_DB`, which typer reads), else
    `[store] url` in the workspace's `stoic.toml` when there is one; None: the workspace."""
    if given:
        return given
    from stoic.store.config import load_settings
    from stoic.store.layout import SETTINGS_FILE

    settings_file = cli_state(ctx).workspace / SETTINGS_FILE
    if not settings_file.is_file():
        return None
    return load_settings(settings_file).store.url or None


def open_workspace(ctx: typer.Context, *, catch_up: bool = True) -> Workspace:
    """Open the workspace the global options name, warning on stderr about a torn tail."""
    from stoic.services.workspace import Workspace  # not for `stoic --help` or `plan check`

    workspace = Workspace.open(cli_state(ctx).workspace, catch_up=catch_up)
    ctx.call_on_close(lambda: _warn_lagging(workspace))
    with contextlib.suppress(StoicError):
        paused = workspace.status().paused
        if paused is not None:
            echo(
                f"stoic: PAUSED since {paused['since']}: {paused['reason']}"
                f" ({next_steps.resume()} after dealing with it)",
                err=True,
            )
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
