"""The `stoic` console script: `stoic --version` is answered before the command line (typer,
the commands, the settings' models) is imported; everything else is `stoic.cli.app.main`."""

from __future__ import annotations

import sys

from stoic import __version__

__all__ = ["main"]


def main() -> int:
    """Run `stoic` with this process's arguments; returns the exit code."""
    if sys.argv[1:] == ["--version"]:
        print(f"stoic {__version__}")
        return 0
    from stoic.cli.app import main as command_line

    return command_line()
