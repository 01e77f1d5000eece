"""The `stoic` console script: `stoic --version` is answered before the command line (typer,
the commands, the settings' models) is imported, `stoic status` of a workspace as well where its
quick path can (`stoic.services.standing`), and a command that runs a run confines its
environment before it too (re-executing, when it must, from an image that imported little);
everything else is `stoic.cli.app.main`."""

from __future__ import annotations

import os
import sys

from stoic import __version__

TYPE_CHECKING = False  # not `typing`'s: `stoic --version` imports nothing it does not use

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DEFAULT_WORKSPACE",
    "RUN_COMMANDS",
    "gate_command",
    "main",
    "run_workspace",
    "status_command",
]


def main() -> int:
    """Run `stoic` with this process's arguments; returns the exit code."""
    if sys.argv[1:] == ["--version"]:
        print(f"stoic {__version__}")
        return 0
    gate = gate_command(sys.argv[1:])
    if gate is not None:
        from stoic.cli.gate_hook import main as gate_hook

        return gate_hook(*gate, watchdog=True)
    status = status_command(sys.argv[1:])
    if status is not None:
        from stoic.cli.status_text import quick_status

        status_root, as_json = status
        code = quick_status(status_root, as_json=as_json)
        if code is not None:
            return code
    workspace = run_workspace(sys.argv[1:])
    if workspace is not None:
        from stoic.run.environment import HELD_FD_VARIABLE, confine_by_settings

        if HELD_FD_VARIABLE not in os.environb:  # not re-executed already
            confine_by_settings(workspace / "stoic.toml")
    from stoic.cli.app import main as command_line

    return command_line()


def gate_command(args: list[str]) -> tuple[Path, list[str]] | None:
    """The workspace and options of `stoic gate claude-code …` when only `-w`/`--workspace`
    and `--debug` come before it: answered without typer, at every tool call of an agent."""
    from pathlib import Path

    found = _command_at(args, Path(os.environ.get("STOIC_WORKSPACE") or DEFAULT_WORKSPACE))
    if found is None or args[found[1] : found[1] + 2] != ["gate", "claude-code"]:
        return None
    rest = args[found[1] + 2 :]
    return None if "--help" in rest or "-h" in rest else (found[0], rest)


def status_command(args: list[str]) -> tuple[Path, bool] | None:
    """The workspace of `stoic status` or `stoic status --json`, and whether JSON is asked
    for, when only `-w`/`--workspace` and `--debug` come before it; None for any other command
    line (a run's status, `--db`, `--help`, shell completion: typer's)."""
    from pathlib import Path

    if "_STOIC_COMPLETE" in os.environ or any(_unreadable(arg) for arg in args):
        return None
    found = _command_at(args, Path(os.environ.get("STOIC_WORKSPACE") or DEFAULT_WORKSPACE))
    if found is None or args[found[1]] != "status" or _unreadable(str(found[0])):
        return None
    rest = args[found[1] + 1 :]
    return (found[0], bool(rest)) if rest in ([], ["--json"]) else None


def _unreadable(arg: str) -> bool:
    """An argument `stoic.cli.app` refuses (not UTF-8, or holding a NUL): it says why."""
    return "\0" in arg or any("\ud800" <= char <= "\udfff" for char in arg)


def _command_at(args: list[str], workspace: Path) -> tuple[Path, int] | None:
    """The workspace the options before the command name, and the command's index, when those
    options are only `-w`/`--workspace` and `--debug`; None otherwise."""
    from pathlib import Path

    index = 0
    while index < len(args):
        arg = args[index]
        if arg in ("-w", "--workspace") and index + 1 < len(args):
            workspace, index = Path(args[index + 1]), index + 2
        elif arg.startswith("--workspace="):
            workspace, index = Path(arg.partition("=")[2]), index + 1
        elif arg == "--debug":
            index += 1
        elif arg.startswith("-"):
            return None
        else:
            return workspace, index
    return None


RUN_COMMANDS = frozenset({"run", "continue", "retry"})
DEFAULT_WORKSPACE = ".stoic"
"""`stoic.cli.app.DEFAULT_WORKSPACE`, named here so that typer is not imported to learn it (a
test checks that the two agree)."""


def run_workspace(args: list[str]) -> Path | None:
    """The workspace of `stoic run`, `continue` or `retry` when the options before the command
    are only `-w`/`--workspace` and `--debug` and $STOIC_WORKSPACE is unset; None for any other
    command line (the command confines itself once typer has read it)."""
    from pathlib import Path

    if "STOIC_WORKSPACE" in os.environ:
        return None
    found = _command_at(args, Path(DEFAULT_WORKSPACE))
    return found[0] if found is not None and args[found[1]] in RUN_COMMANDS else None
