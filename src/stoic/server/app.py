"""The web application of `stoic serve`: FastAPI routes over the services, pages rendered by
Jinja2 on the server (no build step, nothing fetched from elsewhere at run time)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stoic import __version__
from stoic.exceptions import StoicError
from stoic.server import access, gate_hook, metrics
from stoic.server.console import console_of
from stoic.server.hosts import KnownHosts
from stoic.server.routes import install as install_console
from stoic.server.sessions import Sessions
from stoic.server.throttle import LoginThrottle

__all__ = ["ServerConfig", "create_app"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """What one server serves, and how it is reached."""

    workspace: Path
    public_url: str | None = None
    """The address people open (`serve.public_url`), for links in notifications."""
    tls: bool = False
    """Served over TLS (`--tls-cert/--tls-key`): session cookies are `Secure`."""
    behind_proxy: bool = False
    """A proxy in front terminates TLS (`--behind-proxy`): cookies are `Secure` too."""
    host_names: frozenset[str] = frozenset()
    """The names it answers to besides IP addresses and `localhost` (`hosts.answered_names`)."""


def create_app(config: ServerConfig) -> FastAPI:
    """The application for one workspace; every request reads the log as it is now, through
    the console's shared handles."""
    app = FastAPI(
        title="stoic",
        version=__version__,
        docs_url=None,  # its page loads script from a CDN: nothing is fetched from elsewhere
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.config = config
    app.state.sessions = Sessions()
    app.add_middleware(KnownHosts, names=config.host_names)
    access.install(app)

    @app.get("/healthz")
    def healthz(request: Request) -> Response:
        """The workspace's log head, and the database's when the workspace names one: a
        database that cannot be reached is 503, saying so (the console cannot work without)."""
        console = console_of(request)
        with console.look() as workspace:
            head = workspace.head()
        said: dict[str, Any] = {"status": "ok", "version": __version__, "records": head.seq}
        url = console.database()
        if url is not None:
            try:
                said["database_records"] = console.database_seq(url)
            except StoicError as exc:
                said |= {"status": "database unreachable", "detail": " ".join(str(exc).split())}
                return JSONResponse(said, status_code=503)
        return JSONResponse(said)

    app.include_router(metrics.router)
    app.state.agent_tokens = gate_hook.AgentTokens()
    # Counted apart from logins: an agent with a wrong token locks no person out.
    app.state.token_throttle = LoginThrottle()
    app.include_router(gate_hook.router)

    install_console(app)
    return app
