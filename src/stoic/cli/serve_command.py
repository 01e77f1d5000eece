"""`stoic serve`: the workspace's long-running control plane and web console."""

from __future__ import annotations

from typing import Annotated

import typer

from stoic.cli.context import cli_state
from stoic.cli.render import echo

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (default: 127.0.0.1).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8765,
) -> None:
    """Serve the workspace: continue runs when what they wait for is decided, run schedules,
    and serve the review console and its JSON API."""
    import uvicorn

    from stoic.server.app import ServerConfig, create_app

    state = cli_state(ctx)
    config = ServerConfig(workspace=state.workspace.absolute())
    echo(f"stoic: serving {config.workspace} on http://{host}:{port}", err=True)
    # proxy_headers off: uvicorn would take X-Forwarded-For from any loopback client as the
    # client's address; the console reads it itself, and only with --behind-proxy.
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", proxy_headers=False)
