"""Where the command line writes for people: every line passes `escape_controls`.

`echo` is for human views; `echo_json` writes machine views exactly (JSON escapes control
characters itself). Rich output goes through `console_for_output`, whose console escapes too;
table cells are built with `plain_text`.
"""

from __future__ import annotations

import typer

from stoic.core.text import escape_controls
from stoic.run.terminal import SafeConsole, console_for_output, plain_text

__all__ = ["SafeConsole", "console_for_output", "echo", "echo_json", "plain_text"]


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Print `text` for a person: control characters from any source appear escaped."""
    typer.echo(escape_controls(text), err=err, nl=nl)


def echo_json(text: str, *, err: bool = False) -> None:
    """Print a JSON document as it is: a machine reads it, and JSON escapes its own controls."""
    typer.echo(text, err=err)
