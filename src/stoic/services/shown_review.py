"""A decision on a proposal as a person saw it: the review an interface that shows a proposal
and takes the answer later (the web console) asks for.

Between showing a proposal and the answer, anything may happen: another reviewer decides it,
or what it would run is no longer what was shown. The answer carries the sha256 of the action
it was given to read; a proposal whose action hashes otherwise now is refused before anything
is recorded, and one decided meanwhile is refused by the store, naming who decided it. The
seconds the proposal was shown go into the decision record, and an approval sooner than
`review.min_read_seconds` raises the rubber-stamping flag, through the review session the
terminal's `stoic review` uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from stoic.core.proposals import Proposal
from stoic.exceptions import StoicError
from stoic.services import queue
from stoic.services.review import ReviewSession, ReviewStep
from stoic.store.workspace import Workspace

__all__ = ["ProposalChanged", "ShownDecision", "action_sha256", "decide_shown", "flag_shown"]


class ProposalChanged(StoicError):
    """The proposal is not what the person was shown: nothing was recorded."""


def action_sha256(proposal: Proposal) -> str:
    """The sha256 of what approving the proposal would run: its action, as canonical JSON
    (`null` for an informational proposal), so two shows of one action hash alike."""
    action = list(proposal.action) if proposal.action is not None else None
    return hashlib.sha256(orjson.dumps(action)).hexdigest()


@dataclass(frozen=True, slots=True)
class ShownDecision:
    """What a person decided of a proposal they were shown, and when it was shown."""

    proposal_id: str
    decision: str
    """approved, rejected or deferred."""
    shown_sha256: str
    """The sha256 of the action the person was shown."""
    read_seconds: float
    """Seconds between the show and the decision."""
    reason: str | None = None


def decide_shown(
    workspace: Workspace, shown: ShownDecision, *, by: str, session_id: str | None
) -> ReviewStep:
    """Record the decision in the review session `session_id` (a new one when None); refused
    with `ProposalChanged` when the action is no longer the one shown, and by the store when
    the proposal was decided meanwhile."""
    current = queue.get(workspace, shown.proposal_id)
    if action_sha256(current) != shown.shown_sha256:
        raise ProposalChanged(
            f"{shown.proposal_id} changed since it was shown: its action is not the one read;"
            " open it again"
        )
    session = _session(workspace, by, session_id)
    return session.decide(
        shown.proposal_id, shown.decision, reason=shown.reason, seconds_spent=shown.read_seconds
    )


def flag_shown(
    workspace: Workspace,
    proposal_id: str,
    signal: str,
    *,
    by: str,
    session_id: str | None,
    note: str | None = None,
) -> bool:
    """A reviewer's red flag raised while reading `proposal_id`; True when it paused."""
    queue.get(workspace, proposal_id)
    said = f"{proposal_id}: {note}" if note else proposal_id
    return _session(workspace, by, session_id).flag(signal, said)


def new_session_id(workspace: Workspace, by: str) -> str:
    """The id of a new review session for `by`, for the interface to keep and pass back."""
    return ReviewSession.start(workspace, by).id


def _session(workspace: Workspace, by: str, session_id: str | None) -> ReviewSession:
    """The session to record in; its counts are not read back from the log (`take_up` would
    scan it at every decision), since an interface deciding one proposal at a time needs only
    its id on the records."""
    if session_id is None:
        return ReviewSession.start(workspace, by)
    return ReviewSession(workspace, by, session_id)
