"""`stoic review`: walk the current batch of the review queue in the terminal."""

from __future__ import annotations

import shlex
import time
from typing import Annotated

import typer

from stoic.cli.context import open_workspace
from stoic.cli.identity import human_actor
from stoic.cli.render import echo
from stoic.core.pause import READER_SIGNALS
from stoic.core.proposals import Proposal, shown_confidence
from stoic.core.text import counted, one_line
from stoic.exceptions import StoicError
from stoic.services.review import ReviewDecision, ReviewSession

__all__ = ["register"]

_KEYS = "[a]pprove  [r]eject  [d]efer  [s]kip  [f]lag  [q]uit"


def _describe(proposal: Proposal, position: int, total: int) -> list[str]:
    lines = [
        "",
        f"── {position}/{total}  {proposal.id}  ({proposal.batch_id}) ──",
        one_line(proposal.title),
    ]
    if proposal.summary:
        lines.append(f"  {proposal.summary}")
    lines.append(f"action:     {shlex.join(proposal.action) if proposal.action else '(none)'}")
    lines.append("reasoning:")
    lines += [f"  {n}. {step}" for n, step in enumerate(proposal.reasoning_trace, 1)]
    lines.append(f"sources:    {', '.join(proposal.sources) or '(none)'}")
    lines.append(f"confidence: {shown_confidence(proposal.confidence)}")
    lines.append(f"trade-off:  {proposal.trade_off or '(none stated)'}")
    return lines


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
    skip, flag a trust signal, or quit.

    It has no --json: it is a conversation with a person at a terminal (it times how long each
    proposal was read). A script decides with `stoic approve`, `reject`, `defer` and `flag`,
    each with --json, and lists the batch with `stoic queue --json`."""
    with open_workspace(ctx) as workspace:
        session = ReviewSession.start(workspace, human_actor(as_name))
        batch = session.batch()
        if not batch:
            echo("Nothing to review: the queue has no pending proposals.")
            return
        shown = counted(len(batch), "proposal")
        echo(f"Review session {session.id}: {shown} in {batch[0].batch_id}.")
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
                    step = session.decide(
                        proposal.id, ReviewDecision.APPROVE, seconds_spent=seconds
                    )
                elif key == "r":
                    reason = ""
                    while not reason:
                        reason = _ask("reason (required) > ")
                    step = session.decide(proposal.id, ReviewDecision.REJECT, reason)
                else:
                    step = session.decide(proposal.id, ReviewDecision.DEFER)
                echo(f"{proposal.id} {step.proposal.status.value}.")
                paused = step.paused
            except StoicError as exc:
                echo(f"stoic: {exc}")
                paused = session.paused()
            if paused:
                echo("The workspace is now paused: the review ends here.")
                break
        summary = session.summary()
        echo(
            f"Session {summary.session_id} ended: {summary.decided} decided;"
            f" {counted(summary.flags_since_resume, 'red flag')} since the last resume"
            f" (the workspace pauses at {summary.flag_limit})."
        )


def register(app: typer.Typer) -> None:
    app.command()(review)
