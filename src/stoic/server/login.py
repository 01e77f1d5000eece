"""Logging in and out of the console.

A failed login says only "wrong name or secret", whichever was wrong, and costs one scrypt
whether the name exists or not; too many attempts for a name from an address, from an
address, or for a name refuse further ones for a while (429, see `stoic.server.throttle`),
as does a login while as many secrets as the server checks at once are being checked.
Logins and their failures are not decisions: they are never recorded in the log.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stoic.core.users import AGENT_ROLE
from stoic.server.access_render import client_address, page
from stoic.server.auth import COOKIE, check_csrf, session_of, sessions_of
from stoic.server.sessions import SESSION_SECONDS, Person, Role, Session
from stoic.server.throttle import LoginThrottle, keys_of
from stoic.services import users
from stoic.services.workspace import Workspace

__all__ = ["LOGIN_COOKIE", "router"]

router = APIRouter()

WRONG = "wrong name or secret"
LOGIN_COOKIE = "stoic_login"
"""The login page's pre-session token, which its form must send back (double submit)."""
_LONGEST_NAME = 64


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request) -> HTMLResponse:
    return _login_page(request, {"error": None, "name": ""})


def _login_page(
    request: Request,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The login page, its form carrying the pre-session token its cookie holds too."""
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    answer = page(
        request, "login.html", context | {"csrf": token}, status_code=status_code, headers=headers
    )
    config = request.app.state.config
    answer.set_cookie(
        LOGIN_COOKIE,
        token,
        path="/login",
        secure=config.tls or config.behind_proxy,
        httponly=True,
        samesite="strict",
    )
    return answer


def _cross_site(request: Request) -> bool:
    """Whether the browser says the form was sent from another site's page."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    name: Annotated[str, Form()] = "",
    secret: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Open a session for the person whose secret this is; the cookie is HttpOnly,
    SameSite=Strict, and Secure when the console is reached over TLS.

    Refused (403) from another site's page, or without the pre-session token of the login
    page's cookie: else a page elsewhere could log a browser in as someone else, whose
    decisions the victim would then make on their record."""
    held = request.cookies.get(LOGIN_COOKIE)
    if _cross_site(request) or not held or not hmac.compare_digest(held, csrf):
        why = "the login form's token is missing or wrong: reload the page"
        return _login_page(request, {"error": why, "name": ""}, status_code=403)
    config = request.app.state.config
    throttle = request.app.state.login_throttle
    assert isinstance(throttle, LoginThrottle)
    keys = keys_of(name[:_LONGEST_NAME], client_address(request))
    with throttle.checking() as free:
        if not free:
            return _refused(request, name, "too many logins at once: try again", 1)
        admission = throttle.admit(keys)
        if admission.wait is not None:
            minutes = -(-admission.wait // 60)
            why = f"too many failed logins: try again in {minutes} min"
            return _refused(request, name, why, admission.wait)
        with Workspace.open(config.workspace) as workspace:
            user = users.authenticate(workspace, name, secret)
    if user is None:
        return _login_page(request, {"error": WRONG, "name": name}, status_code=401)
    throttle.succeeded(keys, admission)
    if user.role == AGENT_ROLE:  # its secret is right, and it is not a person's
        why = f"{user.name} is an agent: its token is for the gate, not the console"
        return _login_page(request, {"error": why, "name": name}, status_code=403)
    person = Person(user.name, Role(user.role))
    session = sessions_of(request).open(person, issued_seq=user.issued_seq)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=SESSION_SECONDS,
        path="/",
        secure=config.tls or config.behind_proxy,
        httponly=True,
        samesite="strict",
    )
    return response


def _refused(request: Request, name: str, why: str, wait: int) -> Response:
    context = {"error": why, "name": name}
    return _login_page(request, context, status_code=429, headers={"Retry-After": str(wait)})


@router.post("/logout", include_in_schema=False, dependencies=[Depends(check_csrf)])
def logout(request: Request, session: Annotated[Session, Depends(session_of)]) -> Response:
    sessions_of(request).close(session.token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/api/session")
def who(session: Annotated[Session, Depends(session_of)]) -> dict[str, Any]:
    """Who this session is, their role as the log has it now, and the CSRF token every write
    sends (`X-CSRF-Token`)."""
    person = session.person
    return {"name": person.name, "role": person.role.value, "csrf": session.csrf}
