"""A person's decision on a proposal, from the page or the API alike: what was shown is
checked, then one service call records it, and every refusal becomes the answer that says
why (nothing was recorded in any of them).

- a signature that is not this server's for this session: 403 (a forged or stale form);
- an action that hashes otherwise than the one shown: 409;
- a proposal decided meanwhile (another reviewer, another browser): 409, naming who decided;
- a decision the proposal does not admit, or a rejection without a reason: 400.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from stoic.core.proposals import Proposal
from stoic.exceptions import ProposalNotFound, TransitionRefused, UsageError
from stoic.server.console import console_of, open_workspace
from stoic.server.sessions import Session
from stoic.server.shown import Shown
from stoic.services import db_queue, queue
from stoic.services.review import ReviewStep
from stoic.services.shown_review import (
    ProposalChanged,
    ShownDecision,
    action_sha256,
    decide_shown,
    flag_shown,
    new_session_id,
)
from stoic.store.config import Settings

__all__ = ["decide", "flag", "show"]


def show(request: Request, session: Session, proposal: Proposal) -> Shown:
    """What the page shows of `proposal` now, signed for this session."""
    console = console_of(request)
    return console.signer.sign(session.token, proposal.id, action_sha256(proposal), console.clock())


def _review_id(request: Request, session: Session, workspace: Any) -> str:
    console = console_of(request)
    review_id = console.review_session(session.token)
    if review_id is None:
        review_id = new_session_id(workspace, session.person.actor)
        console.keep_review_session(session.token, review_id)
    return review_id


def decide(
    request: Request, session: Session, shown: Shown, decision: str, reason: str | None
) -> ReviewStep:
    """Record `decision` on the proposal shown, as the session's person."""
    console = console_of(request)
    if not console.signer.checks(session.token, shown):
        raise HTTPException(
            status_code=403,
            detail="this form was not shown by this server in this session: open the proposal"
            " again",
        )
    read_seconds = max(0.0, console.clock() - shown.shown_at)
    url = console.database()
    if url is not None:
        with console.look() as workspace:
            settings = workspace.settings
        return _decide_in_database(url, session, shown, decision, reason, read_seconds, settings)
    wanted = ShownDecision(shown.proposal_id, decision, shown.sha256, read_seconds, reason)
    with open_workspace(request) as workspace:
        try:
            return decide_shown(
                workspace,
                wanted,
                by=session.person.actor,
                session_id=_review_id(request, session, workspace),
            )
        except ProposalNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except ProposalChanged as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        except TransitionRefused as exc:
            raise HTTPException(
                status_code=409, detail=_who_decided(workspace, shown.proposal_id, exc)
            ) from None
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None


def _decide_in_database(
    url: str,
    session: Session,
    shown: Shown,
    decision: str,
    reason: str | None,
    read_seconds: float,
    settings: Settings,
) -> ReviewStep:
    """The decision on a proposal of the database the workspace names (its queue is the
    database's): the same refusals, as the same answers."""
    try:
        decided = db_queue.decide(
            url,
            shown.proposal_id,
            decision,
            by=session.person.actor,
            reason=reason,
            shown_sha256=shown.sha256,
            read_seconds=read_seconds,
            settings=settings,
        )
    except ProposalNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except ProposalChanged as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except TransitionRefused as exc:
        decided_before = db_queue.database_proposal(url, shown.proposal_id).decision
        raise HTTPException(
            status_code=409, detail=_who(shown.proposal_id, decided_before, exc)
        ) from None
    except UsageError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    return ReviewStep(decided.proposal, decided.flag, decided.paused)


def flag(request: Request, session: Session, proposal_id: str, signal: str, note: str) -> bool:
    """A red flag the person raised reading `proposal_id`; True when it paused."""
    url = console_of(request).database()
    if url is not None:
        try:
            return db_queue.raise_flag(
                url, proposal_id, signal, by=session.person.actor, note=note or None
            )
        except ProposalNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
    with open_workspace(request) as workspace:
        try:
            return flag_shown(
                workspace,
                proposal_id,
                signal,
                by=session.person.actor,
                session_id=_review_id(request, session, workspace),
                note=note or None,
            )
        except ProposalNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None


def _who_decided(workspace: Any, proposal_id: str, refused: TransitionRefused) -> str:
    return _who(proposal_id, queue.get(workspace, proposal_id).decision, refused)


def _who(proposal_id: str, decided: Any, refused: TransitionRefused) -> str:
    if not decided:
        return str(refused)
    return (
        f"{proposal_id} was {decided.get('outcome')} by {decided.get('by')} at"
        f" {decided.get('at')}: your decision was not recorded"
    )
