"""The `stoic` console script: `stoic --version` is answered before the command line (typer,
the commands, the settings' models) is imported, and a command that runs a run confines its
environment before it too (re-executing, when it must, from an image that imported little);
everything else is `stoic.cli.app.main`."""

from __future__ import annotations

import os
import sys

from stoic import __version__

TYPE_CHECKING = False  # not `typing`'s: `stoic --version` imports nothing it does not use

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DEFAULT_WORKSPACE", "RUN_COMMANDS", "gate_command", "main", "run_workspace"]


def main() -> int:
    """Run `stoic` with this process's arguments; returns the exit code."""
    if sys.argv[1:] == ["--version"]:
        print(f"stoic {__version__}")
        return 0
    gate = gate_command(sys.argv[1:])
    if gate is not None:
        from stoic.cli.gate_hook import main as gate_hook

        return gate_hook(*gate)
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

    workspace = Path(os.environ.get("STOIC_WORKSPACE") or DEFAULT_WORKSPACE)
    index = 0
    while index < len(args):
        arg = args[index]
        if args[index : index + 2] == ["gate", "claude-code"]:
            rest = args[index + 2 :]
            return None if "--help" in rest or "-h" in rest else (workspace, rest)
        if arg in ("-w", "--workspace") and index + 1 < len(args):
            workspace, index = Path(args[index + 1]), index + 2
        elif arg.startswith("--workspace="):
            workspace, index = Path(arg.partition("=")[2]), index + 1
        elif arg == "--debug":
            index += 1
        else:
            return None
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
    workspace = Path(DEFAULT_WORKSPACE)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in RUN_COMMANDS:
            return workspace
        if arg in ("-w", "--workspace") and index + 1 < len(args):
            workspace, index = Path(args[index + 1]), index + 2
        elif arg.startswith("--workspace="):
            workspace, index = Path(arg.partition("=")[2]), index + 1
        elif arg == "--debug":
            index += 1
        else:
            return None
    return None
