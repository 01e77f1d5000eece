"""The console's run and pause pages: the runs with their status, one run's operator timeline
and customer view, and the workspace's pause with the stop and resume forms (operators).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from stoic.core.pause import RESUME_PROCEDURES
from stoic.exceptions import StoicError, UsageError
from stoic.server.auth import check_csrf, require, session_of
from stoic.server.console import (
    console_of,
    looked_up,
    open_workspace,
    outputs_of,
    run_id_or_404,
    runs_of,
    timeline_of,
)
from stoic.server.pages import paused_of
from stoic.server.rendering import page
from stoic.server.sessions import Person, Role, Session
from stoic.services import runner_process, trust

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Reading = Annotated[Session, Depends(session_of)]
Operator = Annotated[Person, Depends(require(Role.OPERATOR))]


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, session: Reading, status: str = "") -> Response:
    """Every run, newest first, with its status and task counts."""
    seq = console_of(request).live_seq()  # before what is shown: a later record reloads it
    with open_workspace(request) as workspace:
        try:
            rows = runs_of(request, workspace, status or None)
        except UsageError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        paused = paused_of(workspace)
    return page(request, "runs.html", session, paused=paused, rows=rows, live=seq)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, session: Reading) -> Response:
    """A run's customer view (each task's final word) and operator timeline (every record)."""
    run_id = run_id_or_404(run_id)
    seq = console_of(request).live_seq()  # before what is shown: a later record reloads it
    with open_workspace(request) as workspace:
        with looked_up(f"run {run_id}"):
            told, on_workers = timeline_of(request, workspace, run_id)
            outputs = outputs_of(request, workspace, told, on_workers)
        paused = paused_of(workspace)
    return page(
        request,
        "run.html",
        session,
        paused=paused,
        run_id=run_id,
        status=told.shown.status,
        failed=[t["task"] for t in told.customer()["tasks"] if t.get("status") == "failed"],
        may_operate=session.person.role.may(Role.OPERATOR) and not on_workers,
        on_workers=on_workers,
        outputs=outputs,
        attempts={task: told.shown.report.view.task(task).attempts for task in outputs},
        customer=told.customer(),
        operator=told.operator(),
        live=seq,
    )


@router.get("/pause", response_class=HTMLResponse)
def pause_page(request: Request, session: Reading) -> Response:
    """The pause in force, if any, with the stop form or the resume form."""
    with open_workspace(request) as workspace:
        standing = trust.work_standing(workspace)
    paused = dict(standing.status.paused) if standing.status.paused is not None else None
    return page(
        request,
        "pause.html",
        session,
        paused=paused,
        procedures=RESUME_PROCEDURES,
        batch_size=standing.batch_size,
        may_operate=session.person.role.may(Role.OPERATOR),
    )


def _refused(request: Request, session: Session, status_code: int, detail: str) -> Response:
    with open_workspace(request) as workspace:
        paused = paused_of(workspace)
    return page(
        request, "refused.html", session, paused=paused, status_code=status_code, detail=detail
    )


@router.post("/pause/stop", dependencies=[Depends(check_csrf)])
def stop_form(request: Request, person: Operator, reason: Annotated[str, Form()] = "") -> Response:
    """Pause the workspace by hand, saying why."""
    session = session_of(request)
    if not reason.strip():
        return _refused(request, session, 400, "a stop needs a reason")
    with open_workspace(request) as workspace:
        trust.stop_work(workspace, reason=reason.strip(), actor=person.actor)
    return RedirectResponse("/pause", status_code=303)


@router.post("/pause/resume", dependencies=[Depends(check_csrf)])
def resume_form(
    request: Request,
    person: Operator,
    procedure: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    batch_size: Annotated[str, Form()] = "",
) -> Response:
    """Resume, naming the recovery procedure followed (and a smaller batch size for it)."""
    session = session_of(request)
    size: Any = None
    if batch_size.strip():
        if not batch_size.strip().isdigit() or int(batch_size) < 1:
            return _refused(request, session, 400, "the batch size is a whole number from 1")
        size = int(batch_size)
    if not reason.strip():
        return _refused(request, session, 400, "a resume needs a reason")
    try:
        with open_workspace(request) as workspace:
            trust.resume_work(
                workspace,
                procedure=procedure,
                reason=reason.strip(),
                actor=person.actor,
                batch_size=size,
            )
    except StoicError as exc:
        return _refused(request, session, 409, str(exc))
    return RedirectResponse("/pause", status_code=303)


def _started(request: Request, run_id: str, started: runner_process.Started) -> Response:
    if started.refusal is not None:
        return _refused(request, session_of(request), 409, started.refusal)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.post("/runs/{run_id}/retry", dependencies=[Depends(check_csrf)])
def retry_form(
    request: Request,
    run_id: str,
    person: Operator,
    task: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Run a failed task again in its run, a person's decision with its reason; the run goes
    on in a runner process of its own."""
    run_id = run_id_or_404(run_id)
    if not reason.strip():
        return _refused(request, session_of(request), 400, "a retry needs its reason")
    root = console_of(request).workspace
    started = runner_process.retry_in_process(
        root, run_id, task, reason=reason.strip(), person=person.name
    )
    return _started(request, run_id, started)


@router.post("/runs/{run_id}/continue", dependencies=[Depends(check_csrf)])
def continue_form(request: Request, run_id: str, person: Operator) -> Response:
    """Continue the run in a runner process of its own, as `stoic continue` does."""
    run_id = run_id_or_404(run_id)
    root = console_of(request).workspace
    return _started(
        request, run_id, runner_process.continue_in_process(root, run_id, person=person.name)
    )
