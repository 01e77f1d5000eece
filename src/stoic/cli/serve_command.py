"""`stoic serve`: the workspace's long-running control plane and web console."""

from __future__ import annotations

import ipaddress
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from stoic.cli.context import cli_state
from stoic.cli.render import echo
from stoic.exceptions import UsageError

__all__ = ["exposed_warning", "register"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (default: 127.0.0.1).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="The port to listen on.")] = 8765,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert", help="Serve over TLS with this certificate (PEM).", show_default=False
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="The private key of --tls-cert (PEM).", show_default=False),
    ] = None,
    behind_proxy: Annotated[
        bool,
        typer.Option("--behind-proxy", help="A proxy in front terminates TLS: cookies are Secure."),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            help="Seconds to wait, on SIGTERM, for runners to record their stop before"
            " killing them.",
        ),
    ] = 30.0,
) -> None:
    """Serve the workspace: continue runs when what they wait for is decided (or their runner
    died), run schedules, and serve the review console, its JSON API, /healthz and /metrics.
    SIGTERM stops it gracefully: its runners record their running attempts interrupted."""
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: name both or neither")
    import uvicorn

    from stoic.server.app import ServerConfig, create_app
    from stoic.server.control import ControlPlane

    state = cli_state(ctx)
    tls = tls_cert is not None
    config = ServerConfig(workspace=state.workspace.absolute(), tls=tls, behind_proxy=behind_proxy)
    warning = exposed_warning(host, tls=tls, behind_proxy=behind_proxy)
    if warning is not None:
        echo(warning, err=True)
    scheme = "https" if tls else "http"
    echo(f"stoic: serving {config.workspace} on {scheme}://{host}:{port}", err=True)
    app = create_app(config)
    plane = ControlPlane(config.workspace, grace=grace)
    plane.duties.append(plane.scheduled_runs())
    app.state.control = plane
    # uvicorn raises the signal it stopped for again once it is done: this handler takes it,
    # so the runners are stopped below and the server exits 0.
    signal.signal(signal.SIGTERM, _stopped)
    plane.start()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            # uvicorn would take X-Forwarded-For from any loopback client as the client's
            # address; the console reads it itself, and only with --behind-proxy.
            proxy_headers=False,
            ssl_certfile=str(tls_cert) if tls_cert is not None else None,
            ssl_keyfile=str(tls_key) if tls_key is not None else None,
        )
    finally:
        plane.stop()
    echo("stoic: stopped", err=True)


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM after uvicorn let go of it: the server is stopping already."""


def exposed_warning(host: str, *, tls: bool, behind_proxy: bool) -> str | None:
    """One line saying the console is reachable from other machines in clear text, if so."""
    if tls or behind_proxy or _loopback(host):
        return None
    return (
        f"stoic: warning: serving on {host}, reachable from other machines, without TLS:"
        " sessions and decisions cross the network in clear text (use --tls-cert/--tls-key,"
        " or --behind-proxy when a proxy in front terminates TLS)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything
