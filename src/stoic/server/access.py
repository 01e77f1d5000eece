"""People and access in the console: the login page, sessions' cookies, the users' pages, and
what a request without a session gets (a page: a redirect to the login; the API: 401).

`install` is the one call `create_app` makes for all of it.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from stoic.server.auth import LoginRequired
from stoic.server.throttle import LoginThrottle
from stoic.services import users

__all__ = ["install"]


async def _login_required(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": "log in first"}, status_code=401)
    return RedirectResponse("/login", status_code=303)


def install(app: FastAPI) -> None:
    """The login, logout and users' routes, and the login throttle (which a test may replace
    with one on its own clock)."""
    from stoic.server import login, user_pages

    app.state.login_throttle = LoginThrottle()
    app.state.user_roster = users.Roster()
    app.add_exception_handler(LoginRequired, _login_required)
    app.include_router(login.router)
    app.include_router(user_pages.router)
