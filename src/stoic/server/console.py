"""What the console's pages and its JSON API share: the workspace of a request, ids checked
against their formats before any service sees them, what was shown and when, and the review
session each login decides in.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from stoic.core.escalations import Escalation, is_escalation_id
from stoic.core.proposals import Proposal, ProposalStatus, is_proposal_id
from stoic.exceptions import (
    EscalationNotFound,
    ProposalNotFound,
    StoicError,
    UsageError,
    WorkspaceError,
)
from stoic.server.shown import ShownSigner
from stoic.services import db_escalations, db_queue, db_runs, escalations, queue, run_list, runs
from stoic.services.run_list import RunRow
from stoic.services.runs import RunTimeline
from stoic.services.workspace import Workspace

if TYPE_CHECKING:
    from stoic.store.pg_store import PostgresStore

__all__ = [
    "Console",
    "SharedHandle",
    "console_of",
    "escalation_id_or_404",
    "looked_up",
    "open_workspace",
    "outputs_of",
    "proposal_id_or_404",
    "proposal_of",
    "proposals_of",
    "run_id_or_404",
    "runs_of",
    "timeline_of",
]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class SharedHandle:
    """One open workspace for the requests of one server, one request at a time.

    What it reads is still the log now: the store catches each read up with the log's end
    (records other processes appended included) and decides every write under the
    workspace's writer lock. Kept open, its folds are caught up from where they stopped, as in
    any long-lived process, instead of refolded from the start — and its projection files
    caught up and fsynced — at each request. It is opened anew when `stoic.toml` changes, and
    after a failure other than a refusal. Not reentrant: a request takes it once at a time.
    """

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self._handle: Workspace | None = None
        self._settings: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[Workspace]:
        with self._lock:
            settings = _stamp(self.workspace / "stoic.toml")
            if self._handle is None or settings != self._settings:
                self._close()
                self._handle = Workspace.open(self.workspace)
                self._settings = settings
            try:
                yield self._handle
            except (HTTPException, StoicError) as exc:
                if isinstance(exc, WorkspaceError):
                    self._close()
                raise
            except BaseException:
                self._close()
                raise

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.close()


class Console:
    """The console's state in one server: its signing key, its clock, its workspace handles,
    and the review session id of each login (kept in memory, like the sessions themselves)."""

    def __init__(self, workspace: Path, clock: Callable[[], float] = time.time) -> None:
        self.workspace = workspace
        self.clock = clock
        self.signer = ShownSigner()
        self._reviews: dict[str, str] = {}
        self._lock = threading.Lock()
        self._requests = SharedHandle(workspace)
        self._looks = SharedHandle(workspace)
        self._database: tuple[str, PostgresStore] | None = None

    def handle(self) -> AbstractContextManager[Workspace]:
        """The handle a request reads and decides through."""
        return self._requests.use()

    def look(self) -> AbstractContextManager[Workspace]:
        """A second handle, for the short look-ups every request and open page makes (who is
        logged in, the log's head): they do not wait behind a decision being recorded, and
        a request that holds `handle()` may still take this one."""
        return self._looks.use()

    def database(self) -> str | None:
        """The database the workspace's `stoic.toml` names (`[store] url`), whose runs and
        proposals the console shows beside the workspace's own."""
        with self.look() as workspace:
            return workspace.settings.store.url or None

    def live_seq(self) -> int:
        """Where the logs a page shows stand: the workspace log's head; with a database beside
        it, the sum of both heads (each only grows, so a record in either moves it past what
        a page was rendered at, and its live update reloads it)."""
        with self.look() as workspace:
            seq = workspace.head().seq
        url = self.database()
        return seq if url is None else seq + self.database_seq(url)

    def database_seq(self, url: str) -> int:
        """The seq of the database log's head, through a handle kept for these looks."""
        with self._lock:
            if self._database is None or self._database[0] != url:
                from stoic.store.pg_store import PostgresStore  # psycopg only when it is used

                self._close_database()
                self._database = (url, PostgresStore.open(url))
            store = self._database[1]
        try:
            return store.head().seq
        except StoicError:
            with self._lock:
                self._close_database()
            raise

    def _close_database(self) -> None:
        if self._database is not None:
            _url, store = self._database
            self._database = None
            store.close()

    def close(self) -> None:
        self._requests.close()
        self._looks.close()
        with self._lock:
            self._close_database()

    def review_session(self, token: str) -> str | None:
        with self._lock:
            return self._reviews.get(token)

    def keep_review_session(self, token: str, review_id: str) -> None:
        with self._lock:
            self._reviews[token] = review_id


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def console_of(request: Request) -> Console:
    console = request.app.state.console
    assert isinstance(console, Console)
    return console


@contextmanager
def open_workspace(request: Request) -> Iterator[Workspace]:
    """The server's workspace handle, for this request alone while it lasts."""
    with console_of(request).handle() as workspace:
        yield workspace


def proposals_of(
    request: Request, workspace: Workspace, status: ProposalStatus | None
) -> list[Proposal]:
    """The console's queue: the database's when the workspace names one (its commands send
    proposals there too), else the workspace's."""
    url = console_of(request).database()
    if url is None:
        return queue.list_proposals(workspace, status)
    return db_queue.database_proposals(url, status)


def proposal_of(request: Request, workspace: Workspace, proposal_id: str) -> Proposal:
    url = console_of(request).database()
    if url is None:
        return queue.get(workspace, proposal_id)
    return db_queue.database_proposal(url, proposal_id)


def escalations_of(request: Request, workspace: Workspace, *, open_only: bool) -> list[Escalation]:
    """The console's escalations: the database's when the workspace names one (its commands
    raise and answer them there), else the workspace's."""
    url = console_of(request).database()
    if url is None:
        return escalations.escalations(workspace, open_only=open_only)
    return db_escalations.escalations(url, open_only=open_only)


def escalation_of(
    request: Request, workspace: Workspace, escalation_id: str
) -> tuple[Escalation, str, bool]:
    """One escalation, its briefing's markdown, and whether it is a database's."""
    url = console_of(request).database()
    if url is None:
        shown = escalations.show(workspace, escalation_id)
        return shown.escalation, shown.briefing, False
    escalation, briefing = db_escalations.briefing(url, escalation_id)
    return escalation, briefing, True


def answer_of(
    request: Request,
    workspace: Workspace,
    escalation_id: str,
    *,
    decision: str,
    actor: str,
    note: str,
    to: str | None,
    plan: Path | None = None,
) -> tuple[Escalation, str | None]:
    """Answer an escalation where the console keeps them; the escalation as answered, and the
    run a person continues next (a workspace's), if any."""
    url = console_of(request).database()
    if url is None:
        answered = escalations.answer(
            workspace, escalation_id, decision=decision, actor=actor, note=note, plan=plan, to=to
        )
        return answered.escalation, answered.continue_run
    if plan is not None:
        raise UsageError(
            "a database run keeps the plan its start recorded: answer routed or aborted and"
            " start a new run of the amended plan"
        )
    in_database = db_escalations.answer(
        url, escalation_id, decision=decision, actor=actor, note=note, to=to
    )
    return in_database.escalation, None


def runs_of(request: Request, workspace: Workspace, status: str | None) -> list[RunRow]:
    """The workspace's runs, and the database's beside them, newest first among them all."""
    rows = run_list.list_runs(workspace, status=status)
    url = console_of(request).database()
    if url is not None:
        rows += db_runs.list_database_runs(url, status=status)
        rows.sort(key=lambda row: row.started_at or "", reverse=True)
    return rows


def timeline_of(request: Request, workspace: Workspace, run_id: str) -> tuple[RunTimeline, bool]:
    """A run's timeline, and whether it is the database's (carried out by its workers)."""
    url = console_of(request).database()
    if url is not None and not runs.has_run(workspace, run_id):
        return db_runs.database_run_timeline(url, run_id), True
    return runs.timeline(workspace, run_id), False


def outputs_of(
    request: Request, workspace: Workspace, told: RunTimeline, on_workers: bool
) -> dict[str, str]:
    """The end of the output of what failed or waits in the run, from the store that keeps it."""
    url = console_of(request).database()
    if on_workers and url is not None:
        return db_runs.database_timeline_outputs(url, told)
    report = told.shown.report
    return runs.output_tails(workspace.outputs, report.run_id, report.view, runs.looked_at(told))


@contextmanager
def looked_up(what: str) -> Iterator[None]:
    """A look-up's refusal as the answer that says why: an id this workspace does not know is
    404; records or files of it that cannot be read are 500 with what is wrong and how to
    repair it — never a 404 that hides the damage, nor a bare "Internal Server Error"."""
    try:
        yield
    except (UsageError, ProposalNotFound, EscalationNotFound) as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except StoicError as exc:
        raise HTTPException(status_code=500, detail=f"{what} cannot be shown: {exc}") from None


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
