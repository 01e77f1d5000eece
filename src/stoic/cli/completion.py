"""Shell completion: `--show-completion [SHELL]` prints the script, `--install-completion
[SHELL]` installs it; `_STOIC_COMPLETE=complete_bash …` is the protocol the script speaks.

A shell that is named is used as named. Without one, the shell stoic runs under is detected,
and a shell that cannot be detected or is not supported is a usage error naming the supported
shells: a script for a shell other than the one asked for is never printed.
"""

from __future__ import annotations

import os

import typer

from stoic.exceptions import UsageError

__all__ = ["DETECT", "SHELLS", "install_completion", "prepare", "show_completion"]

SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
"""The shells typer has completion scripts for."""
DETECT = "detect"
"""The value of a completion option given without a shell: the shell is detected."""
_OPTIONS = ("--show-completion", "--install-completion")
_VALUED = ("-w", "--workspace", *_OPTIONS)
_PROG = "stoic"
_COMPLETE_VAR = "_STOIC_COMPLETE"


def prepare(args: list[str]) -> list[str]:
    """The arguments with a completion option given no shell completed by `DETECT` (the
    option parser has no optional values), and the completion protocol's shells registered
    when the script is asking (`$_STOIC_COMPLETE`) — only then, so no other command pays."""
    if _COMPLETE_VAR in os.environ:
        from typer._completion_classes import completion_init

        completion_init()
    index = 0
    while index < len(args) and args[index].startswith("-"):  # the options before a command
        arg = args[index]
        if arg in _OPTIONS and (index + 1 == len(args) or args[index + 1].startswith("-")):
            return [*args[: index + 1], DETECT, *args[index + 1 :]]
        index += 2 if arg in _VALUED else 1
    return args


def _shell(value: str) -> str:
    from typer._completion_shared import _get_shell_name

    shell = _get_shell_name() if value == DETECT else value.lower()
    if shell is None:
        raise UsageError(
            f"cannot tell which shell this is: name it ({', '.join(SHELLS)}), e.g."
            " --show-completion bash"
        )
    if shell not in SHELLS:
        raise UsageError(
            f"shell {shell!r} has no completion script (supported: {', '.join(SHELLS)})"
        )
    return shell


def show_completion(ctx: typer.Context, value: str | None) -> None:
    """Print the completion script for the shell named (or detected), and exit."""
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_shared import get_completion_script

    shell = _shell(value)
    typer.echo(get_completion_script(prog_name=_PROG, complete_var=_COMPLETE_VAR, shell=shell))
    raise typer.Exit(0)


def install_completion(ctx: typer.Context, value: str | None) -> None:
    """Install the completion script for the shell named (or detected), and exit."""
    if value is None or ctx.resilient_parsing:
        return
    from typer._completion_shared import install

    shell, path = install(shell=_shell(value), prog_name=_PROG, complete_var=_COMPLETE_VAR)
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell")
    raise typer.Exit(0)
