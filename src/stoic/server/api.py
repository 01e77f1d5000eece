"""The console's JSON API under `/api/`: the pages' data, from the same services, and the same
decisions (a write carries the session's CSRF token in the `X-CSRF-Token` header).

Its OpenAPI document is served at `/api/openapi.json`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from stoic.core.proposals import Proposal
from stoic.exceptions import EscalationNotFound, StoicError, UsageError
from stoic.server import deciding
from stoic.server.auth import check_csrf, require, session_of
from stoic.server.console import (
    answer_of,
    escalation_id_or_404,
    escalation_of,
    escalations_of,
    looked_up,
    open_workspace,
    proposal_id_or_404,
    proposal_of,
    proposals_of,
    run_id_or_404,
    runs_of,
    timeline_of,
)
from stoic.server.pages import DECISIONS, paused_of
from stoic.server.sessions import Person, Role, Session
from stoic.server.shown import Shown
from stoic.services import queue, trust

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["console"])

Reading = Annotated[Session, Depends(session_of)]
Reviewer = Annotated[Person, Depends(require(Role.REVIEWER))]
Operator = Annotated[Person, Depends(require(Role.OPERATOR))]


def _shown(shown: Shown) -> dict[str, Any]:
    return {"sha256": shown.sha256, "shown_at": shown.shown_at, "shown_sig": shown.signature}


def _proposal(request: Request, session: Session, proposal: Proposal) -> dict[str, Any]:
    shown = deciding.show(request, session, proposal)
    return {**proposal.to_json(), "action_sha256": shown.sha256, "shown": _shown(shown)}


@router.get("/queue")
def queue_json(
    request: Request, session: Reading, status: str = "pending", type: str = ""
) -> dict[str, Any]:
    """The queue by batch, as the queue page shows it."""
    try:
        wanted = queue.status_named(status or None)
    except UsageError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    with open_workspace(request) as workspace:
        rows = proposals_of(request, workspace, wanted)
        paused = paused_of(workspace)
    batches: dict[str, list[dict[str, Any]]] = {}
    for proposal in rows:
        if not type or proposal.type == type:
            row = _proposal(request, session, proposal)
            batches.setdefault(proposal.batch_id, []).append(row)
    return {
        "paused": paused,
        "batches": [{"batch_id": b, "proposals": ps} for b, ps in batches.items()],
    }


@router.get("/proposals/{proposal_id}")
def proposal_json(request: Request, proposal_id: str, session: Reading) -> dict[str, Any]:
    """One proposal, with the sha256 of its action and what was shown, signed."""
    proposal_id = proposal_id_or_404(proposal_id)
    with open_workspace(request) as workspace, looked_up(f"proposal {proposal_id}"):
        proposal = proposal_of(request, workspace, proposal_id)
    return _proposal(request, session, proposal)


class DecisionBody(BaseModel):
    """A decision on a proposal as it was shown (the `shown` of its GET)."""

    decision: str = Field(description="approve, reject or defer")
    reason: str | None = Field(default=None, description="Why; required to reject.")
    sha256: str
    shown_at: float
    shown_sig: str


@router.post("/proposals/{proposal_id}/decision", dependencies=[Depends(check_csrf)])
def decide_json(
    request: Request, proposal_id: str, person: Reviewer, body: DecisionBody
) -> dict[str, Any]:
    """Record the decision; 409 when the proposal changed or was decided since it was shown."""
    del person
    proposal_id = proposal_id_or_404(proposal_id)
    outcome = DECISIONS.get(body.decision)
    if outcome is None:
        raise HTTPException(status_code=400, detail=f"unknown decision {body.decision!r}")
    shown = Shown(proposal_id, body.sha256, body.shown_at, body.shown_sig)
    reason = body.reason.strip() if body.reason and body.reason.strip() else None
    step = deciding.decide(request, session_of(request), shown, outcome, reason)
    return {
        "proposal_id": step.proposal.id,
        "status": step.proposal.status.value,
        "seq": step.proposal.history[-1]["seq"],
        "flag": step.flag.value if step.flag is not None else None,
        "paused": step.paused,
    }


class FlagBody(BaseModel):
    signal: str = Field(description="One of the reader's red-flag signals.")
    note: str = ""


@router.post("/proposals/{proposal_id}/flag", dependencies=[Depends(check_csrf)])
def flag_json(
    request: Request, proposal_id: str, person: Reviewer, body: FlagBody
) -> dict[str, Any]:
    """Raise a red flag about a proposal; says whether it paused the workspace."""
    del person
    proposal_id = proposal_id_or_404(proposal_id)
    paused = deciding.flag(request, session_of(request), proposal_id, body.signal, body.note)
    return {"proposal_id": proposal_id, "paused": paused}


@router.get("/runs")
def runs_json(request: Request, session: Reading, status: str = "") -> list[dict[str, Any]]:
    """Every run, newest first, as `stoic runs --json` lists them."""
    del session
    with open_workspace(request) as workspace:
        try:
            return [row.document() for row in runs_of(request, workspace, status or None)]
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None


@router.get("/runs/{run_id}")
def run_json(request: Request, run_id: str, session: Reading) -> dict[str, Any]:
    """A run's status, customer view and operator timeline."""
    del session
    run_id = run_id_or_404(run_id)
    with open_workspace(request) as workspace, looked_up(f"run {run_id}"):
        told, _on_workers = timeline_of(request, workspace, run_id)
    return {
        "run_id": run_id,
        "status": told.shown.status,
        "customer": told.customer(),
        "operator": told.operator(),
    }


@router.get("/pause")
def pause_json(request: Request, session: Reading) -> dict[str, Any]:
    """The pause in force (null when none) and the batch size in force."""
    del session
    with open_workspace(request) as workspace:
        standing = trust.work_standing(workspace)
    paused = standing.status.paused
    return {"paused": dict(paused) if paused else None, "batch_size": standing.batch_size}


class StopBody(BaseModel):
    reason: str = Field(min_length=1)


@router.post("/pause/stop", dependencies=[Depends(check_csrf)])
def stop_json(request: Request, person: Operator, body: StopBody) -> dict[str, Any]:
    """Pause the workspace by hand; `stopped` is false when it was paused already."""
    with open_workspace(request) as workspace:
        stopped = trust.stop_work(workspace, reason=body.reason.strip(), actor=person.actor)
    return {"stopped": stopped}


class ResumeBody(BaseModel):
    procedure: str
    reason: str = Field(min_length=1)
    batch_size: int | None = Field(default=None, ge=1)


@router.post("/pause/resume", dependencies=[Depends(check_csrf)])
def resume_json(request: Request, person: Operator, body: ResumeBody) -> dict[str, Any]:
    """Resume, naming the recovery procedure followed."""
    with open_workspace(request) as workspace:
        try:
            record = trust.resume_work(
                workspace,
                procedure=body.procedure,
                reason=body.reason.strip(),
                actor=person.actor,
                batch_size=body.batch_size,
            )
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        except StoicError as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
    return {"resumed": True, "seq": record.seq}


@router.get("/escalations")
def escalations_json(request: Request, session: Reading, open: bool = True) -> list[dict[str, Any]]:
    """The escalations, oldest first: the open ones, or all with `?open=false`."""
    del session
    with open_workspace(request) as workspace, looked_up("the escalations"):
        return [e.to_json() for e in escalations_of(request, workspace, open_only=open)]


@router.get("/escalations/{escalation_id}")
def escalation_json(request: Request, escalation_id: str, session: Reading) -> dict[str, Any]:
    """One escalation, with its briefing's markdown as written (`briefing_markdown`)."""
    del session
    escalation_id = escalation_id_or_404(escalation_id)
    with open_workspace(request) as workspace, looked_up(f"escalation {escalation_id}"):
        escalation, briefing, _ = escalation_of(request, workspace, escalation_id)
    return {**escalation.to_json(), "briefing_markdown": briefing}


class AnswerBody(BaseModel):
    """An answer without a plan upload (an amended plan is the page's multipart form)."""

    decision: str = Field(description="routed, escalated or aborted")
    note: str = ""
    to: str | None = None


@router.post("/escalations/{escalation_id}/answer", dependencies=[Depends(check_csrf)])
def answer_json(
    request: Request, escalation_id: str, person: Operator, body: AnswerBody
) -> dict[str, Any]:
    """Answer an escalation as the logged-in operator."""
    escalation_id = escalation_id_or_404(escalation_id)
    with open_workspace(request) as workspace:
        try:
            answered, continue_run = answer_of(
                request,
                workspace,
                escalation_id,
                decision=body.decision,
                actor=person.actor,
                note=body.note.strip(),
                to=body.to,
            )
        except EscalationNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except StoicError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
    return {**answered.to_json(), "continue_run": continue_run}
