"""What the console's pages and its JSON API share: the workspace of a request, ids checked
against their formats before any service sees them, what was shown and when, and the review
session each login decides in.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import HTTPException, Request

from stoic.core.escalations import is_escalation_id
from stoic.core.proposals import is_proposal_id
from stoic.server.shown import ShownSigner
from stoic.services.workspace import Workspace

__all__ = [
    "Console",
    "console_of",
    "escalation_id_or_404",
    "open_workspace",
    "proposal_id_or_404",
    "run_id_or_404",
]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class Console:
    """The console's state in one server: its signing key, its clock, and the review session
    id of each login (kept in memory, like the sessions themselves)."""

    def __init__(self, workspace: Path, clock: Callable[[], float] = time.time) -> None:
        self.workspace = workspace
        self.clock = clock
        self.signer = ShownSigner()
        self._reviews: dict[str, str] = {}
        self._lock = threading.Lock()

    def review_session(self, token: str) -> str | None:
        with self._lock:
            return self._reviews.get(token)

    def keep_review_session(self, token: str, review_id: str) -> None:
        with self._lock:
            self._reviews[token] = review_id


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


@contextmanager
def open_workspace(request: Request) -> Iterator[Workspace]:
    """The request's workspace, opened for this request alone: what it reads is the log now."""
    with Workspace.open(console_of(request).workspace) as workspace:
        yield workspace


def _not_found(what: str, given: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"{given!r} is not {what}")


def proposal_id_or_404(given: str) -> str:
    if not is_proposal_id(given) or not given.isprintable():
        raise _not_found("a proposal id (PROP-YYYYMMDD-NNN)", given)
    return given


def run_id_or_404(given: str) -> str:
    if not _RUN_ID.fullmatch(given):
        raise _not_found("a run id", given)
    return given


def escalation_id_or_404(given: str) -> str:
    if not is_escalation_id(given) or not given.isprintable():
        raise _not_found("an escalation id (ESC-NNN)", given)
    return given
