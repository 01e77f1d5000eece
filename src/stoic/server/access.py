"""People and access in the console: the login page, sessions' cookies, the users' pages, and
what a request without a session gets (a page: a redirect to the login; the API: 401).

`install` is the one call `create_app` makes for all of it. Every answer to a request that
carries a session cookie, and the login page, is sent with `Cache-Control: no-store`: such a
page may hold a one-time secret or a CSRF token, and no cache on the way or on disk should
keep it. A store that fails under a request is one line, 503.
"""

from __future__ import annotations

import html

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stoic.exceptions import WorkspaceError
from stoic.server.auth import COOKIE, LoginRequired
from stoic.server.throttle import LoginThrottle
from stoic.services import users

__all__ = ["install"]


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": "log in first"}, status_code=401)
    return RedirectResponse("/login", status_code=303)


class NoStore:
    """ASGI middleware: `Cache-Control: no-store` on the answers that must not be kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _private(scope):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, sending)


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none';"
        " object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
"""On every answer: the console runs only its own script and style, in no other page's frame,
and its content types are taken as sent. (`same-origin`, not `no-referrer`: a browser sends
`Origin: null` on a form post under `no-referrer`, which the login's check refuses.)"""


class SecurityHeaders:
    """ASGI middleware: `SECURITY_HEADERS` on every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, sending)


def _private(scope: Scope) -> bool:
    if scope.get("path") == "/login":
        return True
    for key, value in scope.get("headers", ()):
        if key == b"cookie" and COOKIE in cookie_parser(value.decode("latin-1")):
            return True
    return False


async def _store_failed(request: Request, exc: Exception) -> Response:
    """A store that cannot be read now (a database down, a log that cannot be opened) is one
    line saying so, 503 — never a traceback, and never a page shown from half the records."""
    said = " ".join(str(exc).split()) or type(exc).__name__
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": said}, status_code=503)
    return HTMLResponse(
        f"<!doctype html><title>unavailable</title><p>{html.escape(said)}</p>", status_code=503
    )


def install(app: FastAPI) -> None:
    """The login, logout and users' routes, and the login throttle (which a test may replace
    with one on its own clock)."""
    from stoic.server import login, user_pages

    app.state.login_throttle = LoginThrottle()
    app.state.user_roster = users.Roster()
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(WorkspaceError, _store_failed)
    app.add_middleware(NoStore)
    app.add_middleware(SecurityHeaders)
    app.include_router(login.router)
    app.include_router(user_pages.router)
