"""The `stoic` command line: global options, error handling, and the command groups.

Commands are thin: open the workspace, call the library, render. Every `StoicError`, and every
usage error the option parser finds, becomes one line on stderr and its exit code; a traceback
is shown only with `--debug`. A command's module is imported when it is used
(`stoic.cli.commands`), so a command starts without loading every other one.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from stoic import __version__
from stoic.cli import completion
from stoic.cli.commands import LazyGroup
from stoic.cli.context import CliState
from stoic.cli.render import echo
from stoic.core.text import shortened
from stoic.exceptions import StoicError

__all__ = ["CliState", "app", "main"]

DEFAULT_WORKSPACE = Path(".stoic")
_own_process = False

app = typer.Typer(
    name="stoic",
    help="A control plane for autonomous work that stays honest when things go wrong.",
    no_args_is_help=True,
    add_completion=False,  # stoic.cli.completion: a named shell is used as named
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    cls=LazyGroup,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"stoic {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            envvar="STOIC_WORKSPACE",
            help="The workspace folder (default: ./.stoic).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Work on the workspace's own runs, queue and pause, not on the database its"
            " stoic.toml names ([store] url): for what it held before it named one.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    show_completion: Annotated[
        str | None,
        typer.Option(
            "--show-completion",
            metavar="[SHELL]",
            callback=completion.show_completion,
            is_eager=True,
            help=f"Print the shell completion script ({', '.join(completion.SHELLS)}; default:"
            " the shell this runs under) and exit.",
            show_default=False,
        ),
    ] = None,
    install_completion: Annotated[
        str | None,
        typer.Option(
            "--install-completion",
            metavar="[SHELL]",
            callback=completion.install_completion,
            is_eager=True,
            help="Install shell completion for SHELL (default: the shell this runs under) and"
            " exit.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """A control plane for autonomous work that stays honest when things go wrong."""
    del version, show_completion, install_completion
    ctx.obj = CliState(
        workspace=workspace if workspace is not None else DEFAULT_WORKSPACE,
        workspace_given=workspace is not None,
        debug=debug,
        own_process=_own_process,
        local=local,
    )


HELD_FD_NAME = "STOIC_HELD_ENV_FD"
"""`stoic.run.environment.HELD_FD_VARIABLE`, named here so that a command that was not
re-executed (`stoic status`) does not import the environment's policy code to find out."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `stoic` console script; returns the exit code."""
    global _own_process
    _own_process = argv is None
    args = completion.prepare(list(sys.argv[1:] if argv is None else argv))
    debug = "--debug" in args
    unreadable = _unreadable_argument(args)
    if unreadable is not None:
        echo(f"stoic: error: {unreadable}", err=True)
        return 2
    try:
        if _own_process and HELD_FD_NAME in os.environ:  # only a re-executed stoic holds any
            from stoic.run.environment import take_held

            take_held()  # what a re-executed stoic holds in memory only
        code = app(args=args, prog_name="stoic", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except typer.Abort:
        echo("stoic: aborted", err=True)
        return 1
    except typer.TyperException as exc:  # a usage error typer found: one line, like ours
        message = exc.format_message()
        if message.startswith("Usage:"):  # a group called without a command: its help
            echo(message)
            return exc.exit_code
        command = getattr(getattr(exc, "ctx", None), "command_path", "stoic")
        echo(f"{command}: error: {shortened(message, 500)} (see `{command} --help`)", err=True)
        return exc.exit_code
    except StoicError as exc:
        if debug:
            raise
        echo(f"stoic: error: {exc}", err=True)
        return exc.exit_code
    except OSError as exc:
        if debug:
            raise
        if exc.errno == errno.ENAMETOOLONG:  # an id or path given that no filesystem can hold
            name = shortened(str(exc.filename or ""), 80)
            echo(
                f"stoic: error: a name is too long for the filesystem: {name!r} (a file or"
                " folder name is at most 255 bytes, a path at most 4096; check the ids and paths"
                " given)",
                err=True,
            )
            return 2
        return _internal_error(exc)
    except Exception as exc:
        if debug:
            raise
        return _internal_error(exc)
    return 0


def _unreadable_argument(args: list[str]) -> str | None:
    """Why an argument cannot be used at all, if one cannot: everything stoic records is UTF-8
    JSON, and no path holds a NUL, so such an argument is refused before any command runs."""
    for number, arg in enumerate(args, start=1):
        if any("\ud800" <= char <= "\udfff" for char in arg):
            try:
                raw = arg.encode("utf-8", "surrogateescape")  # the bytes the shell passed
            except UnicodeEncodeError:
                raw = arg.encode("utf-8", "backslashreplace")
            return (
                f"argument {number} is not UTF-8 text ({shortened(repr(raw), 80)}); stoic records"
                " only UTF-8 (rename the file, or pass the text as UTF-8)"
            )
        if "\0" in arg:
            return f"argument {number} holds a NUL character, which no name or text may hold"
    return None


def _internal_error(exc: Exception) -> int:
    echo(
        f"stoic: internal error: {type(exc).__name__}: {shortened(str(exc), 500)} (run with"
        " --debug for the traceback)",
        err=True,
    )
    return 70


if __name__ == "__main__":
    sys.exit(main())
