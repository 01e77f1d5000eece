"""The console's audit page: the last audit on record, the log's head, and the form that runs
one (operators) through the same service `stoic audit` uses — so a failed audit pauses and
notifies as it does from the shell, and the audit is on record as the person's who asked.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stoic.server.auth import check_csrf, require, session_of
from stoic.server.console import open_workspace
from stoic.server.pages import paused_of
from stoic.server.rendering import page
from stoic.server.sessions import Person, Role, Session
from stoic.services import audit as audits

__all__ = ["api_router", "router"]

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api", tags=["console"])

Reading = Annotated[Session, Depends(session_of)]
Operator = Annotated[Person, Depends(require(Role.OPERATOR))]


def _state(request: Request) -> dict[str, Any]:
    with open_workspace(request) as workspace:
        head = workspace.head()
        last = audits.last_audit(workspace)
        paused = paused_of(workspace)
    return {"head": {"seq": head.seq, "hash": head.hash}, "last": last, "paused": paused}


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, session: Reading) -> Response:
    """The last audit's result, the head seq and hash, and the run-one form for operators."""
    state = _state(request)
    return page(
        request,
        "audit.html",
        session,
        paused=state["paused"],
        head=state["head"],
        last=state["last"],
        may_operate=session.person.role.may(Role.OPERATOR),
    )


@router.post("/audit", dependencies=[Depends(check_csrf)])
def run_audit(request: Request, person: Operator) -> Response:
    """Run the audit as the person logged in; its result is on record and the page shows it."""
    with open_workspace(request) as workspace:
        audits.audit(workspace, actor=person.actor, record=True)
    return RedirectResponse("/audit", status_code=303)


@api_router.get("/audit")
def audit_json(request: Request, session: Reading) -> dict[str, Any]:
    """The last audit on record and the log's head, as the audit page shows them."""
    state = _state(request)
    last = state["last"]
    return {
        "head": state["head"],
        "last": None if last is None else {**asdict(last), "shown": list(last.shown)},
    }
