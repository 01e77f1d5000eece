"""The console's escalation pages: the list, one escalation's briefing rendered from its
markdown (every text escaped), and the answer form for operators — routed with a note,
amended with a plan upload (validated like any plan), escalated to someone, or aborted.

A workspace that names a database shows the database's escalations, as its commands do: the
briefing built from its log, and an answer that takes the run up for its workers (a
database run keeps its recorded plan: no amended answer).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stoic.core.escalations import EscalationDecision
from stoic.exceptions import EscalationNotFound, StoicError
from stoic.server import markdown
from stoic.server.auth import check_csrf, require, session_of
from stoic.server.console import (
    answer_of,
    console_of,
    escalation_id_or_404,
    escalation_of,
    escalations_of,
    looked_up,
    open_workspace,
)
from stoic.server.pages import paused_of
from stoic.server.rendering import page
from stoic.server.sessions import Person, Role, Session

__all__ = ["PLAN_UPLOAD_LIMIT", "router"]

router = APIRouter(include_in_schema=False)

Reading = Annotated[Session, Depends(session_of)]
Operator = Annotated[Person, Depends(require(Role.OPERATOR))]

PLAN_UPLOAD_LIMIT = 1 << 20
"""The largest amended plan an upload may carry, in bytes."""
_PLAN_SUFFIXES = {".yaml", ".yml", ".json"}


@router.get("/escalations", response_class=HTMLResponse)
def escalations_page(request: Request, session: Reading, open: str = "1") -> Response:
    """The escalations, oldest first: the open ones, or all with `?open=0`."""
    seq = console_of(request).live_seq()  # before what is shown: a later record reloads it
    with open_workspace(request) as workspace:
        with looked_up("the escalations"):
            rows = escalations_of(request, workspace, open_only=open != "0")
        paused = paused_of(workspace)
    return page(
        request,
        "escalations.html",
        session,
        paused=paused,
        rows=rows,
        open_only=open != "0",
        live=seq,
    )


@router.get("/escalations/{escalation_id}", response_class=HTMLResponse)
def escalation_page(request: Request, escalation_id: str, session: Reading) -> Response:
    """One escalation's briefing, and the answer form while it is open."""
    escalation_id = escalation_id_or_404(escalation_id)
    decisions = [d.value for d in EscalationDecision]
    with open_workspace(request) as workspace:
        with looked_up(f"escalation {escalation_id}"):
            escalation, briefing, in_database = escalation_of(request, workspace, escalation_id)
        paused = paused_of(workspace)
    if in_database:  # a database run keeps its recorded plan
        decisions.remove(EscalationDecision.AMENDED.value)
    return page(
        request,
        "escalation.html",
        session,
        paused=paused,
        e=escalation,
        briefing=markdown.render(briefing),
        decisions=decisions,
        may_answer=session.person.role.may(Role.OPERATOR),
    )


def _refused(request: Request, session: Session, status_code: int, detail: str) -> Response:
    with open_workspace(request) as workspace:
        paused = paused_of(workspace)
    return page(
        request, "refused.html", session, paused=paused, status_code=status_code, detail=detail
    )


@router.post("/escalations/{escalation_id}/answer", dependencies=[Depends(check_csrf)])
def answer_form(
    request: Request,
    escalation_id: str,
    person: Operator,
    decision: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
    plan: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Answer the escalation; an amended plan is checked like any plan before anything is
    recorded."""
    escalation_id = escalation_id_or_404(escalation_id)
    session = session_of(request)
    with tempfile.TemporaryDirectory(prefix="stoic-amended-") as folder:
        plan_path = None
        if plan is not None and plan.filename:
            content = plan.file.read(PLAN_UPLOAD_LIMIT + 1)
            if len(content) > PLAN_UPLOAD_LIMIT:
                return _refused(request, session, 413, "the plan is over 1 MiB")
            suffix = Path(plan.filename).suffix.lower()
            plan_path = Path(folder) / f"amended{suffix if suffix in _PLAN_SUFFIXES else '.yaml'}"
            plan_path.write_bytes(content)
        try:
            with open_workspace(request) as workspace:
                answer_of(
                    request,
                    workspace,
                    escalation_id,
                    decision=decision,
                    actor=person.actor,
                    note=note.strip(),
                    plan=plan_path,
                    to=to.strip() or None,
                )
        except EscalationNotFound as exc:
            return _refused(request, session, 404, str(exc))
        except StoicError as exc:
            said = str(exc)
            if plan_path is not None and plan is not None and plan.filename:
                # The plan's errors name the upload, not the folder it was checked in.
                said = said.replace(str(plan_path), plan.filename)
            return _refused(request, session, 400, said)
    return RedirectResponse(f"/escalations/{escalation_id}", status_code=303)
