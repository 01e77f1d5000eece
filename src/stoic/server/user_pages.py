"""The admin's pages and API for users: list, add (showing the one-time secret once),
reset and remove — the same use cases as `stoic users`, on record as the logged-in admin."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from stoic.core.users import ROLES, name_problem
from stoic.exceptions import UsageError
from stoic.server.access_render import page
from stoic.server.auth import check_csrf, require, session_of, sessions_of
from stoic.server.sessions import Person, Role
from stoic.services import users
from stoic.services.workspace import Workspace

__all__ = ["router"]

router = APIRouter()

Admin = Annotated[Person, Depends(require(Role.ADMIN))]
_WRITE = [Depends(check_csrf)]


class NewUser(BaseModel):
    """A user to add through the API."""

    name: str
    role: str


def _open(request: Request) -> Workspace:
    return Workspace.open(request.app.state.config.workspace)


def _entries(request: Request) -> list[users.UserEntry]:
    with _open(request) as workspace:
        return users.list_users(workspace)


def _known(name: str) -> str:
    """404 for a name that cannot be a user's (`..`, `%2e%2e%2f`): nothing is looked up."""
    if name_problem(name) is not None:
        raise HTTPException(status_code=404, detail="no such user")
    return name


def _users_page(
    request: Request,
    person: Person,
    *,
    issued: users.Issued | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {
        "person": person,
        "csrf": session_of(request).csrf,
        "users": _entries(request),
        "roles": ROLES,
        "issued": issued,
        "error": error,
    }
    return page(request, "users.html", context, status_code=status_code)


@router.get("/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(request: Request, person: Admin) -> HTMLResponse:
    return _users_page(request, person)


@router.post("/users", response_class=HTMLResponse, include_in_schema=False, dependencies=_WRITE)
def add_user(
    request: Request,
    person: Admin,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()],
) -> HTMLResponse:
    try:
        with _open(request) as workspace:
            issued = users.add(workspace, name, role=role, actor=person.actor)
    except UsageError as exc:
        return _users_page(request, person, error=str(exc), status_code=400)
    return _users_page(request, person, issued=issued)


@router.post("/users/{name}/reset", include_in_schema=False, dependencies=_WRITE)
def reset_user(request: Request, person: Admin, name: str) -> HTMLResponse:
    issued = _reset(request, person, _known(name))
    sessions_of(request).close_person(name)
    return _users_page(request, person, issued=issued)


@router.post("/users/{name}/remove", include_in_schema=False, dependencies=_WRITE)
def remove_user(request: Request, person: Admin, name: str) -> Response:
    _remove(request, person, _known(name))
    return RedirectResponse("/users", status_code=303)


@router.get("/api/users")
def list_users(request: Request, person: Admin) -> list[dict[str, Any]]:
    """The users on record, their roles, and whether each can log in."""
    return [
        {"name": e.name, "role": e.role, "added_at": e.added_at, "can_log_in": e.can_log_in}
        for e in _entries(request)
    ]


@router.post("/api/users", dependencies=_WRITE)
def add_user_api(request: Request, person: Admin, new: NewUser) -> dict[str, Any]:
    """Add a user; the answer holds their one-time secret, shown only this once."""
    try:
        with _open(request) as workspace:
            issued = users.add(workspace, new.name, role=new.role, actor=person.actor)
    except UsageError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    return {"name": issued.name, "role": issued.role, "secret": issued.secret, "seq": issued.seq}


@router.post("/api/users/{name}/remove", dependencies=_WRITE)
def remove_user_api(request: Request, person: Admin, name: str) -> dict[str, Any]:
    """Remove a user: their secret no longer logs in and their sessions end."""
    _remove(request, person, _known(name))
    return {"name": name, "removed": True}


def _reset(request: Request, person: Person, name: str) -> users.Issued:
    try:
        with _open(request) as workspace:
            return users.reset(workspace, name, actor=person.actor)
    except UsageError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


def _remove(request: Request, person: Person, name: str) -> None:
    try:
        with _open(request) as workspace:
            users.remove(workspace, name, actor=person.actor)
    except UsageError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    sessions_of(request).close_person(name)
