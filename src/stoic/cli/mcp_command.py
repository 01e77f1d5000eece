"""`stoic mcp`: the stdio MCP server an agent proposes, escalates and asks the gate through
(DESIGN §15). It prints nothing of its own on stdout: stdout is the protocol's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stoic.cli.context import cli_state
from stoic.cli.gate_commands import AgentOption

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("mcp")(mcp)


def mcp(
    ctx: typer.Context,
    agent: AgentOption = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            help='The repository "inside" means to the [gate] rules of request_permission'
            " (default: the folder it starts in).",
        ),
    ] = None,
) -> None:
    """Serve an agent over stdio (MCP): propose_action, get_proposal, wait_for_decision,
    escalate (one question) and request_permission (Claude Code's --permission-prompt-tool).
    No tool decides: a person does. Runs until the client closes stdin."""
    from stoic.mcp.server import serve_stdio  # the SDK only for this command

    serve_stdio(cli_state(ctx).workspace, agent=agent, repository=repo)
