"""`stoic review`: walk the current batch of the review queue in the terminal."""

from __future__ import annotations

import os
import shlex
import time
from typing import Annotated

import typer

from stoic.cli.context import open_workspace
from stoic.cli.identity import human_actor
from stoic.cli.render import echo
from stoic.core.pause import FLAG_LIMIT, READER_SIGNALS, DetectedSignal, too_fast_to_read
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.exceptions import StoicError
from stoic.store.queue import Queue
from stoic.store.trust import raise_flag
from stoic.store.workspace import Workspace

__all__ = ["register"]

_KEYS = "[a]pprove  [r]eject  [d]efer  [s]kip  [f]lag  [q]uit"


def _describe(proposal: Proposal, position: int, total: int) -> list[str]:
    lines = [
        "",
        f"── {position}/{total}  {proposal.id}  ({proposal.batch_id}) ──",
        f"{proposal.title}",
    ]
    if proposal.summary:
        lines.append(f"  {proposal.summary}")
    lines.append(f"action:     {shlex.join(proposal.action) if proposal.action else '(none)'}")
    lines.append("reasoning:")
    lines += [f"  {n}. {step}" for n, step in enumerate(proposal.reasoning_trace, 1)]
    lines.append(f"sources:    {', '.join(proposal.sources) or '(none)'}")
    lines.append(f"confidence: {proposal.confidence_band}")
    lines.append(f"trade-off:  {proposal.trade_off or '(none stated)'}")
    return lines


class _Session:
    def __init__(self, workspace: Workspace, actor: str) -> None:
        self.workspace = workspace
        self.queue = Queue(workspace)
        self.actor = actor
        self.id = f"REVIEW-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.urandom(2).hex()}"
        self.min_read = workspace.settings.review.min_read_seconds

    def flag(self, signal: str, note: str | None = None, *, detected: bool = False) -> bool:
        """Record a red flag raised in this session; True when the workspace paused."""
        return raise_flag(
            self.workspace,
            signal=signal,
            actor="system:review" if detected else self.actor,
            note=note,
            session=self.id,
            detected=detected,
        )

    def batch(self) -> list[Proposal]:
        pending = sorted(
            (
                p
                for p in self.queue.state().proposals.values()
                if p.status is ProposalStatus.PENDING
            ),
            key=lambda p: p.created_seq,
        )
        if not pending:
            return []
        batch = [p for p in pending if p.batch_id == pending[0].batch_id]
        return batch[: self.queue.batch_size()]  # a smaller batch size holds for old batches too


def _ask(prompt: str) -> str:
    try:
        return input(prompt).strip()
    except EOFError:
        return "q"


def review(
    ctx: typer.Context,
    as_name: Annotated[
        str | None,
        typer.Option("--as", help="Who reviews (default: $STOIC_ACTOR, else the OS user)."),
    ] = None,
) -> None:
    """Walk the current batch of pending proposals: each with its title, summary, action,
    reasoning, sources, confidence band and trade-off; approve, reject (with a reason), defer,
    skip, flag a trust signal, or quit."""
    with open_workspace(ctx) as workspace:
        session = _Session(workspace, human_actor(as_name))
        batch = session.batch()
        if not batch:
            echo("Nothing to review: the queue has no pending proposals.")
            return
        echo(f"Review session {session.id}: {len(batch)} proposals in {batch[0].batch_id}.")
        decided = 0
        for position, proposal in enumerate(batch, 1):
            for line in _describe(proposal, position, len(batch)):
                echo(line)
            shown_at = time.monotonic()
            while True:
                key = _ask(f"{_KEYS} > ").lower()[:1]
                if key in ("a", "r", "d", "s", "q", "f"):
                    break
                echo(f"press one of: {_KEYS}")
            if key == "q":
                break
            if key == "s":
                continue
            if key == "f":
                signal = _ask(f"signal ({', '.join(READER_SIGNALS)}) > ")
                if signal in READER_SIGNALS and session.flag(
                    signal, _ask("note (optional) > ") or None
                ):
                    echo("The workspace is now paused: the review ends here.")
                    break
                continue
            try:
                if key == "a":
                    seconds = time.monotonic() - shown_at
                    session.queue.decide(proposal.id, "approved", actor=session.actor)
                    decided += 1
                    echo(f"{proposal.id} approved.")
                    if too_fast_to_read(seconds, session.min_read) and session.flag(
                        DetectedSignal.RUBBER_STAMPING,
                        f"{proposal.id} approved {seconds:.1f}s after it was shown"
                        f" (minimum {session.min_read:g}s)",
                        detected=True,
                    ):
                        echo("The workspace is now paused: the review ends here.")
                        break
                elif key == "r":
                    reason = ""
                    while not reason:
                        reason = _ask("reason (required) > ")
                    session.queue.decide(
                        proposal.id, "rejected", actor=session.actor, reason=reason
                    )
                    decided += 1
                    echo(f"{proposal.id} rejected.")
                else:
                    session.queue.decide(proposal.id, "deferred", actor=session.actor)
                    decided += 1
                    echo(f"{proposal.id} deferred.")
            except StoicError as exc:
                echo(f"stoic: {exc}")
            if workspace.status().paused is not None:
                echo("The workspace is now paused: the review ends here.")
                break
        flags = workspace.status().flags_since_resume
        echo(
            f"Session {session.id} ended: {decided} decided; {flags} red flags since the last"
            f" resume (the workspace pauses at {FLAG_LIMIT})."
        )


def register(app: typer.Typer) -> None:
    app.command()(review)
