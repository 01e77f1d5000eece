"""The console on an application: its pages, its JSON API, its static files, and the answer
to a request without a session (a page redirects to the login page; the API says 401)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from stoic.server import api, escalation_pages, events, pages, run_pages
from stoic.server.auth import LoginRequired
from stoic.server.console import Console

__all__ = ["install"]


def _login_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": str(getattr(exc, "detail", "log in first"))}, 401)
    return RedirectResponse("/login", status_code=303)


def install(app: FastAPI, clock: Callable[[], float] = time.time) -> None:
    """Serve the console's pages, its JSON API and its static files from `app`."""
    config: Any = app.state.config
    app.state.console = Console(Path(config.workspace), clock)
    app.add_exception_handler(LoginRequired, _login_required)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(pages.router)
    app.include_router(run_pages.router)
    app.include_router(escalation_pages.router)
    app.include_router(api.router)
    app.include_router(events.router)
