"""A review session: a person walks the current batch of the queue and decides each proposal
(DESIGN §8, §9).

The interface shows each proposal, reads the person's answer and how long it was on screen,
and hands both to the session one answer at a time. The session records the decision, raises
a red flag when an approval came sooner than anyone could read the proposal, and says when
the workspace paused, which ends the review.

Everything a session counts comes from the log, so any interface (the terminal, a web
console) can take up a session where another left it:
- the decisions made in it and the red flags raised in it: the records carry the session's
  id (`decision_inputs.session`) and are counted when the session is taken up, then as this
  object appends them;
- the red flags since the last resume, which pause at `FLAG_LIMIT` whichever session raised
  them: the workspace's status, folded from the log;
- the batch: the pending proposals of the oldest batch, folded from the log at each call, so
  what was decided elsewhere meanwhile drops out.
What the person skipped is not a decision and is not recorded: skipping belongs to the
interface's walk.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from stoic.core.pause import (
    FLAG_LIMIT,
    DetectedSignal,
    FlagDue,
    too_fast_to_read,
)
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.core.vocabulary import unknown_word
from stoic.exceptions import UsageError
from stoic.services import queue, trust
from stoic.store.queue import Queue
from stoic.store.workspace import Workspace

__all__ = ["ReviewDecision", "ReviewSession", "ReviewStep", "ReviewSummary"]

_SESSION_ID = re.compile(r"REVIEW-\d{8}T\d{6}-[0-9a-f]{4}")


class ReviewDecision(StrEnum):
    """What a reviewer may decide of a proposal in a session."""

    APPROVE = "approved"
    REJECT = "rejected"
    """Needs a reason."""
    DEFER = "deferred"


_OUTCOMES = frozenset(decision.value for decision in ReviewDecision)


@dataclass(frozen=True, slots=True)
class ReviewStep:
    """What one decision in a session brought about."""

    proposal: Proposal
    """The proposal as decided."""
    flag: DetectedSignal | None
    """The red flag the decision raised (an approval too fast to have been read), if any."""
    paused: bool
    """The workspace is paused now (by this decision or meanwhile): the review ends."""


@dataclass(frozen=True, slots=True)
class ReviewSummary:
    """A session's counts, for the words it ends with."""

    session_id: str
    decided: int
    """Proposals decided in this session (by any interface that took it up)."""
    flags_raised: int
    """Red flags raised in this session, by the reviewer or detected."""
    flags_since_resume: int
    """Red flags since the workspace's last resume, from any session or command."""
    flag_limit: int
    """How many of those pause the workspace."""


class ReviewSession:
    """One person's review of the queue; `start` a new one or `take_up` one by its id."""

    def __init__(self, workspace: Workspace, actor: str, session_id: str) -> None:
        self.workspace = workspace
        self.actor = actor
        self.id = session_id
        self.min_read = workspace.settings.review.min_read_seconds
        """Seconds a proposal must be shown before its approval is believable."""
        self._queue = Queue(workspace)
        self._decided, self._flags = 0, 0

    @classmethod
    def start(cls, workspace: Workspace, actor: str) -> Self:
        """A new session, with an id no record carries yet."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        return cls(workspace, actor, f"REVIEW-{stamp}-{os.urandom(2).hex()}")

    @classmethod
    def take_up(cls, workspace: Workspace, actor: str, session_id: str) -> Self:
        """The session `session_id` as its records left it."""
        if not _SESSION_ID.fullmatch(session_id):
            raise UsageError(
                f"{session_id!r} is not a review session id (they look like"
                " REVIEW-20261123T101500-3fa2)"
            )
        session = cls(workspace, actor, session_id)
        session._decided, session._flags = _counted(workspace, session_id)
        return session

    def batch(self) -> list[Proposal]:
        """The pending proposals of the oldest batch still pending, oldest first, at most the
        batch size in effect (a smaller one after a resume holds for old batches too)."""
        pending = sorted(
            (
                p
                for p in self._queue.state().proposals.values()
                if p.status is ProposalStatus.PENDING
            ),
            key=lambda p: p.created_seq,
        )
        if not pending:
            return []
        batch = [p for p in pending if p.batch_id == pending[0].batch_id]
        return batch[: self._queue.batch_size()]

    def decide(
        self,
        proposal_id: str,
        decision: ReviewDecision | str,
        reason: str | None = None,
        seconds_spent: float | None = None,
    ) -> ReviewStep:
        """Record the reviewer's decision; an approval `seconds_spent` after the proposal was
        shown, sooner than `min_read`, raises the rubber-stamping red flag."""
        try:
            outcome = ReviewDecision(decision)
        except ValueError:
            allowed = [d.value for d in ReviewDecision]
            raise UsageError(unknown_word("decision", decision, allowed)) from None
        decided = queue.decide(
            self.workspace,
            proposal_id,
            outcome.value,
            by=self.actor,
            reason=reason,
            session=self.id,
            read_seconds=seconds_spent,
        )
        self._decided += 1
        flag = None
        if (
            outcome is ReviewDecision.APPROVE
            and seconds_spent is not None
            and too_fast_to_read(seconds_spent, self.min_read)
        ):
            flag = DetectedSignal.RUBBER_STAMPING
            note = (
                f"{proposal_id} approved {seconds_spent:.1f}s after it was shown"
                f" (minimum {self.min_read:g}s)"
            )
            trust.flag_detected(
                self.workspace, FlagDue(flag, note), actor="system:review", session=self.id
            )
            self._flags += 1
        return ReviewStep(decided, flag, self.paused())

    def flag(self, signal: str, note: str | None = None) -> bool:
        """The reviewer raises a red flag (one of `READER_SIGNALS`); True when it paused."""
        paused = trust.raise_flag(
            self.workspace, signal=signal, actor=self.actor, note=note, session=self.id
        )
        self._flags += 1
        return paused

    def paused(self) -> bool:
        """The workspace is paused: no review goes on. Read from the log without writing the
        status projection, since it is asked after every decision."""
        return self.workspace.status_folded().paused is not None

    def summary(self) -> ReviewSummary:
        return ReviewSummary(
            self.id,
            self._decided,
            self._flags,
            self.workspace.status().flags_since_resume,
            FLAG_LIMIT,
        )


def _counted(workspace: Workspace, session_id: str) -> tuple[int, int]:
    """The decisions and red flags on record as made in the session."""
    decided = sum(
        1
        for record in workspace.records(decision_type="proposal")
        if record.decision_inputs.get("session") == session_id
        and record.decision_outcome in _OUTCOMES
    )
    flags = sum(
        1
        for record in workspace.records(decision_type="red_flag")
        if record.decision_inputs.get("session") == session_id
    )
    return decided, flags
