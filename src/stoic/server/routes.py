"""The console on an application: its pages, its JSON API and its static files (what a request
without a session gets is `stoic.server.access`'s)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from stoic.server import api, audit_pages, escalation_pages, events, pages, run_pages
from stoic.server.console import Console

__all__ = ["install"]


def install(app: FastAPI, clock: Callable[[], float] = time.time) -> None:
    """Serve the console's pages, its JSON API and its static files from `app`."""
    config: Any = app.state.config
    app.state.console = Console(Path(config.workspace), clock)
    app.mount("/static", StaticFiles(directory=Path(__file__).with_name("static")), name="static")
    app.include_router(pages.router)
    app.include_router(run_pages.router)
    app.include_router(escalation_pages.router)
    app.include_router(audit_pages.router)
    app.include_router(api.router)
    app.include_router(audit_pages.api_router)
    app.include_router(events.router)
