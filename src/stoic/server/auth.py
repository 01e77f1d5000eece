"""The console's access checks, as FastAPI dependencies: who is asking, whether their role may
do this, and whether a form carries its session's CSRF token.

A request without a session is refused before anything is read (401; a page redirects to the
login page); a role that may not act, or a write without the right CSRF token, is refused
with 403 — in every case before a service is called, so nothing is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request
from starlette.concurrency import run_in_threadpool

from stoic.server.console import console_of
from stoic.server.sessions import Person, Role, Session, Sessions
from stoic.services import users

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "check_csrf", "require", "session_of"]

COOKIE = "stoic_session"
CSRF_FIELD = "csrf"
"""The form field that carries the CSRF token."""
CSRF_HEADER = "X-CSRF-Token"
"""The header that carries it for the JSON API."""


_ROLES = frozenset(role.value for role in Role)


class LoginRequired(HTTPException):
    """No live session: 401 for the API, a redirect to the login page for a page."""

    def __init__(self) -> None:
        super().__init__(status_code=401, detail="log in first")


def sessions_of(request: Request) -> Sessions:
    sessions = request.app.state.sessions
    assert isinstance(sessions, Sessions)
    return sessions


def session_of(request: Request) -> Session:
    """The live session of the request's cookie, with the role the log gives its person now;
    refused with 401 without one, or when the log no longer backs that person."""
    known = getattr(request.state, "stoic_session", None)
    if isinstance(known, Session):
        return known
    sessions = sessions_of(request)
    session = sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired
    with console_of(request).look() as workspace:
        roster = request.app.state.user_roster
        assert isinstance(roster, users.Roster)
        user = roster.backed(workspace, session.person.name)
    replaced = user is not None and session.issued_seq not in (0, user.issued_seq)
    if user is None or user.role not in _ROLES or replaced:
        # Removed, or given a new secret, since the login (perhaps by `stoic users`).
        sessions.close(session.token)
        raise LoginRequired
    role = Role(user.role)
    if role != session.person.role:
        session = dataclasses.replace(session, person=Person(session.person.name, role))
    request.state.stoic_session = session
    return session


def require(needed: Role) -> Callable[[Request], Awaitable[Person]]:
    """A dependency that admits a logged-in person whose role may do what `needed` may.

    Async so that a session already looked up for this request (by `check_csrf`) costs no
    hop to the threadpool; a first look-up reads the log, so it goes there."""

    async def dependency(request: Request) -> Person:
        known = getattr(request.state, "stoic_session", None)
        session = (
            known if isinstance(known, Session) else await run_in_threadpool(session_of, request)
        )
        person = session.person
        if not person.role.may(needed):
            raise HTTPException(
                status_code=403, detail=f"{person.role} may not do this: it needs {needed}"
            )
        return person

    return dependency


async def check_csrf(request: Request) -> None:
    """Refuse (403) a write whose form field or header does not carry its session's token.

    Async only to read the form; the session's look-up reads the log and waits for its lock,
    so it runs in the threadpool: on the event loop it would hold up every connection."""
    session = await run_in_threadpool(session_of, request)
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not Sessions.csrf_matches(session, given):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or wrong")
