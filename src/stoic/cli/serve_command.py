"""`stoic serve`: the workspace's long-running control plane and web console."""

from __future__ import annotations

import ipaddress
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from stoic.cli.context import cli_state, workspace_settings
from stoic.cli.render import echo
from stoic.exceptions import StoicError, UsageError

if TYPE_CHECKING:
    import uvicorn

    from stoic.server.control import ControlPlane

__all__ = ["exposed_warning", "register"]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="The address to listen on (default: 127.0.0.1).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="The port to listen on (1 to 65535).")
    ] = 8765,
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
    from stoic.server.hosts import answered_names
    from stoic.store.config import Settings

    state = cli_state(ctx)
    serve_settings = (workspace_settings(ctx) or Settings()).serve
    tls = tls_cert is not None
    config = ServerConfig(
        workspace=state.workspace.absolute(),
        tls=tls,
        behind_proxy=behind_proxy,
        host_names=answered_names(
            host,
            serve_settings.public_url,
            serve_settings.allowed_hosts,
            own=(socket.gethostname(), socket.getfqdn()),
        ),
    )
    warning = exposed_warning(host, tls=tls, behind_proxy=behind_proxy)
    if warning is not None:
        echo(warning, err=True)
    scheme = "https" if tls else "http"
    app = create_app(config)
    plane = ControlPlane(config.workspace, grace=grace)
    plane.duties.append(plane.scheduled_runs())
    plane.duties.append(plane.database_notices())
    app.state.control = plane
    # Bound here, before anything is started: a port in use is one line and nothing recorded.
    listening = _listen(host, port)
    echo(f"stoic: serving {config.workspace} on {scheme}://{host}:{port}", err=True)
    served = uvicorn.Config(
        app,
        log_level="warning",
        # uvicorn would take X-Forwarded-For from any loopback client as the client's
        # address; the console reads it itself, and only with --behind-proxy.
        proxy_headers=False,
        # An open page's live updates are a request that lasts: on SIGTERM they are cut
        # after this long, so they do not hold the runners' stop back.
        timeout_graceful_shutdown=2,
        ssl_certfile=str(tls_cert) if tls_cert is not None else None,
        ssl_keyfile=str(tls_key) if tls_key is not None else None,
    )
    # uvicorn raises the signal it stopped for again once it is done: this handler takes it,
    # so the runners are stopped below and the server exits 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        started = _serve(served, listening, plane)
    finally:
        listening.close()
    if not started:
        raise StoicError(f"the server on {host}:{port} did not start")
    echo("stoic: stopped", err=True)


def _serve(config: uvicorn.Config, listening: socket.socket, plane: ControlPlane) -> bool:
    """Serve on `listening` until stopped; True when the server started. The plane starts only
    once the server listens, and only a started plane is stopped: a server that fails to start
    signals no runner, so no run is recorded stopped by it."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                plane.start()

    server = Server(config)
    try:
        server.run(sockets=[listening])
    except SystemExit:  # uvicorn's startup failure: what failed is logged above
        pass
    finally:
        if plane.started:
            plane.stop()
    return server.started


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port`, or a one-line refusal (the port in use, say)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        listening = socket.socket(family, kind, proto)
    except OSError as exc:
        raise StoicError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as exc:
        listening.close()
        raise StoicError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listening


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
