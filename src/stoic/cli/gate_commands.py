"""`stoic gate`: the agent gate's hooks as commands (DESIGN §15). The console script answers
`stoic gate claude-code` before typer is imported (it runs at every tool call); this is the
same command for `stoic --help`, completion and a caller's `main([...])`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stoic.cli.context import cli_state
from stoic.cli.gate_hook import main as answer

gate_app = typer.Typer(
    name="gate",
    help="The agent gate: hooks that decide each tool call of an agent by the [gate] rules.",
    no_args_is_help=True,
)


AgentOption = Annotated[
    str | None,
    typer.Option(
        "--agent",
        help="The agent's name on record (agent:NAME; default: $STOIC_AGENT_ROLE, else"
        " claude-code).",
    ),
]
"""Who an agent interface speaks for: `stoic gate claude-code` and `stoic mcp`."""


@gate_app.command("claude-code")
def claude_code(
    ctx: typer.Context,
    agent: AgentOption = None,
    defer: Annotated[
        bool,
        typer.Option(
            "--defer",
            help="Answer `defer` when no one has decided in time (print mode: the session"
            " stops, to be resumed once it is decided); else `deny`.",
        ),
    ] = False,
    wait: Annotated[
        float | None,
        typer.Option("--wait", help="Seconds to wait for a person (default: gate.wait_seconds)."),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            help='The repository "inside" means (default: the session\'s cwd, which the agent'
            " can move).",
        ),
    ] = None,
) -> None:
    """A Claude Code PreToolUse hook: reads the hook's JSON on stdin, answers with the hook's
    JSON on stdout (allow, deny or defer), exit code 0; every answer is on record."""
    options = [*(["--agent", agent] if agent else []), *(["--defer"] if defer else [])]
    options += ["--wait", str(wait)] if wait is not None else []
    options += ["--repo", str(repo)] if repo is not None else []
    raise typer.Exit(answer(cli_state(ctx).workspace, options, sys.stdin.buffer))


def register(app: typer.Typer) -> None:
    app.add_typer(gate_app)
