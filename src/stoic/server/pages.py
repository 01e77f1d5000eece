"""The console's review pages: the queue by batch and one proposal, with its decision forms.

Every page needs a session and works without JavaScript: each action is a form posted with
the session's CSRF token, answered by a redirect (303) to the page to see next. The small
script only adds keyboard shortcuts and live updates.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stoic.core import next_steps
from stoic.core.pause import READER_SIGNALS
from stoic.core.proposals import Proposal, ProposalStatus, shown_confidence
from stoic.exceptions import UsageError
from stoic.server import deciding
from stoic.server.auth import check_csrf, require, session_of
from stoic.server.console import (
    console_of,
    looked_up,
    open_workspace,
    proposal_id_or_404,
    proposal_of,
    proposals_of,
)
from stoic.server.rendering import page
from stoic.server.sessions import Role, Session
from stoic.server.shown import Shown
from stoic.services import queue, trust

__all__ = ["paused_of", "router"]

router = APIRouter(include_in_schema=False)

Reading = Annotated[Session, Depends(session_of)]
DECISIONS = {"approve": "approved", "reject": "rejected", "defer": "deferred"}


def paused_of(workspace: Any) -> dict[str, Any] | None:
    """The pause over the workspace's work, for every page's banner (its database's when it
    names one)."""
    paused = trust.work_standing(workspace).status.paused
    return dict(paused) if paused is not None else None


@router.get("/")
def home(session: Reading) -> Response:
    del session
    return RedirectResponse("/queue", status_code=303)


def _batches(rows: Sequence[Proposal]) -> list[tuple[str, list[Proposal]]]:
    return [(batch, list(group)) for batch, group in groupby(rows, key=lambda p: p.batch_id)]


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: Reading,
    status: str = "pending",
    type: str = "",
    decided: str = "",
) -> Response:
    """The queue by batch, oldest first: pending proposals unless another status is asked."""
    try:
        wanted = queue.status_named(status or None)
    except UsageError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    console = console_of(request)
    seq = console.live_seq()  # before what is shown: a later record reloads the page
    with open_workspace(request) as workspace:
        rows = proposals_of(request, workspace, wanted)
        paused = paused_of(workspace)
        behind = _left_behind(workspace) if console.database() is not None else None
    types = sorted({p.type for p in rows})
    if type:
        rows = [p for p in rows if p.type == type]
    shown = {p.id: deciding.show(request, session, p) for p in rows}
    return page(
        request,
        "queue.html",
        session,
        paused=paused,
        batches=_batches(rows),
        shown=shown,
        status=status,
        statuses=[s.value for s in ProposalStatus],
        type=type,
        types=types,
        decided=decided if decided.isprintable() else "",
        now=console.clock(),
        live=seq,
        left_behind=behind,
    )


def _left_behind(workspace: Any) -> dict[str, Any] | None:
    """What the workspace's own queue and pause hold, which this console (showing its
    database's) cannot decide: named, with the command that reaches it."""
    waiting, own_pause = queue.left_behind(workspace)
    if not waiting and not own_pause:
        return None
    return {
        "waiting": waiting,
        "paused": own_pause,
        "queue": next_steps.queue(local=True).text,
        "resume": next_steps.resume(procedure="…", reason="…", local=True).text,
    }


@router.get("/proposals/{proposal_id}", response_class=HTMLResponse)
def proposal_page(request: Request, proposal_id: str, session: Reading) -> Response:
    """Everything `stoic queue show` says of a proposal, and its decision forms."""
    proposal_id = proposal_id_or_404(proposal_id)
    with open_workspace(request) as workspace:
        with looked_up(f"proposal {proposal_id}"):
            proposal = proposal_of(request, workspace, proposal_id)
        paused = paused_of(workspace)
    return page(
        request,
        "proposal.html",
        session,
        paused=paused,
        p=proposal,
        shown=deciding.show(request, session, proposal),
        confidence=shown_confidence(proposal.confidence),
        signals=READER_SIGNALS,
        pending=proposal.status is ProposalStatus.PENDING,
    )


def _refused(request: Request, session: Session, exc: HTTPException) -> Response:
    with open_workspace(request) as workspace:
        paused = paused_of(workspace)
    return page(
        request,
        "refused.html",
        session,
        paused=paused,
        status_code=exc.status_code,
        detail=exc.detail,
    )


@router.post("/proposals/{proposal_id}/decide", dependencies=[Depends(check_csrf)])
def decide_form(
    request: Request,
    proposal_id: str,
    person: Annotated[Any, Depends(require(Role.REVIEWER))],
    decision: Annotated[str, Form()],
    sha256: Annotated[str, Form()],
    shown_at: Annotated[float, Form()],
    shown_sig: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Approve, reject (with a reason) or defer the proposal as it was shown."""
    del person
    proposal_id = proposal_id_or_404(proposal_id)
    session = session_of(request)
    outcome = DECISIONS.get(decision)
    if outcome is None:
        raise HTTPException(status_code=400, detail=f"unknown decision {decision!r}")
    shown = Shown(proposal_id, sha256, shown_at, shown_sig)
    try:
        step = deciding.decide(request, session, shown, outcome, reason.strip() or None)
    except HTTPException as exc:
        return _refused(request, session, exc)
    return RedirectResponse(f"/queue?decided={step.proposal.id}", status_code=303)


@router.post("/proposals/{proposal_id}/flag", dependencies=[Depends(check_csrf)])
def flag_form(
    request: Request,
    proposal_id: str,
    person: Annotated[Any, Depends(require(Role.REVIEWER))],
    signal: Annotated[str, Form()],
    note: Annotated[str, Form()] = "",
) -> Response:
    """Raise a red flag about the proposal."""
    del person
    proposal_id = proposal_id_or_404(proposal_id)
    session = session_of(request)
    try:
        deciding.flag(request, session, proposal_id, signal, note.strip())
    except HTTPException as exc:
        return _refused(request, session, exc)
    return RedirectResponse(f"/proposals/{proposal_id}", status_code=303)
