"""Escalation commands: escalate, escalations (list, show, answer), incident report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.context import database_url, db_option, open_workspace
from stoic.cli.identity import human_actor, proposer_actor
from stoic.cli.render import echo, echo_json
from stoic.cli.trust_commands import incident_app
from stoic.core import next_steps
from stoic.core.escalations import Escalation, EscalationMode
from stoic.core.text import one_line
from stoic.exceptions import UsageError
from stoic.services import escalations as escalations_service
from stoic.services import trust

__all__ = ["register"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Database = Annotated[str | None, db_option("The escalations of a PostgreSQL database.")]
_MODES = ", ".join(mode.value for mode in EscalationMode)


def escalate(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option("--mode", help=f"The failure mode: {_MODES}.")],
    question: Annotated[str, typer.Option("--question", help="Exactly one question.")],
    run: Annotated[str | None, typer.Option("--run", help="The run it is about.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="The task it is about.")] = None,
    context: Annotated[str, typer.Option("--context", help="What the person should know.")] = "",
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Hand one decision to a person: writes escalations/ESC-NNN.md and prints its id.

    Inside a running task ($STOIC_RESULT set, no --run/--task) the request goes into the task's
    result file: the task is suspended when it ends and the run waits for the answer. With
    --db (or [store] url), in a database, about the work (a database run's task escalates
    itself, from the task).
    """
    request = escalations_service.request(mode, question, context)
    if (task is None) != (run is None):
        raise UsageError("--run and --task go together (or leave both out)")
    result_file = os.environ.get("STOIC_RESULT")
    if run is None and result_file:
        escalations_service.request_from_task(Path(result_file), request)
        task_id = os.environ.get("STOIC_TASK_ID")
        if as_json:  # nothing is recorded yet: the run raises it when the task ends
            document = {"requested": True, "task_id": task_id, "mode": request.mode.value}
            echo_json(orjson.dumps(document).decode())
            return
        echo(f"escalation requested for task {task_id or '?'}")
        return
    actor = proposer_actor(as_name)
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_escalations

        if run is not None:
            raise UsageError(
                "--run and --task are for a workspace's run: a database run's task escalates"
                " itself (stoic.escalate in the task); ask about the work without them"
            )
        raised = db_escalations.raise_(url, request, actor=actor, project=Path.cwd().name)
        if as_json:
            _print(raised, True)
        else:
            echo(raised.id)
        return
    with open_workspace(ctx) as workspace:
        escalation = escalations_service.raise_(
            workspace, request, actor=actor, run_id=run, task_id=task
        )
    _print(escalation, as_json, created=True)


def _print(escalation: Escalation, as_json: bool, *, created: bool = False) -> None:
    if as_json:
        echo_json(orjson.dumps(escalation.to_json()).decode())
        return
    if created:
        echo(escalation.id)
        echo(f"briefing: escalations/{escalation.id}.md", err=True)
        return
    state = "open" if escalation.open else f"{escalation.decision} by {escalation.decided_by}"
    where = f" [{escalation.run_id}/{escalation.task_id}]" if escalation.task_id else ""
    echo(
        f"{escalation.id} {escalation.mode.value} ({state}){where}: {one_line(escalation.question)}"
    )


escalations_app = typer.Typer(
    name="escalations",
    help="Escalations: list them, show a briefing, answer one.",
    invoke_without_command=True,
    rich_markup_mode=None,
)


@escalations_app.callback()
def escalations(
    ctx: typer.Context,
    open_only: Annotated[bool, typer.Option("--open", help="Only open escalations.")] = False,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """List escalations, oldest first (all, or only the open ones); with --db (or [store]
    url), a database's: those its runs' tasks raised."""
    if ctx.invoked_subcommand is not None:
        return
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_escalations

        rows = db_escalations.escalations(url, open_only=open_only)
    else:
        with open_workspace(ctx) as workspace:
            rows = escalations_service.escalations(workspace, open_only=open_only)
    if as_json:
        echo_json(orjson.dumps([row.to_json() for row in rows]).decode())
        return
    if not rows:
        echo("no open escalations" if open_only else "no escalations")
    for row in rows:
        _print(row, False)


@escalations_app.command("show")
def show(
    ctx: typer.Context,
    escalation_id: Annotated[str, typer.Argument(help="ESC-NNN")],
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Print an escalation's briefing (or its record as JSON); with --db, a database's."""
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_escalations

        if as_json:
            _print(db_escalations.escalation(url, escalation_id), True)
            return
        _show(*db_escalations.briefing(url, escalation_id))
        return
    with open_workspace(ctx) as workspace:
        if as_json:
            _print(escalations_service.get(workspace, escalation_id), True)
            return
        shown = escalations_service.show(workspace, escalation_id)
    _show(shown.escalation, shown.briefing)


def _show(escalation: Escalation, briefing: str) -> None:
    """The briefing, and how the escalation was closed, once it was."""
    echo(briefing, nl=False)
    if not escalation.open:
        echo(f"\n**Decision:** {escalation.decision} by {escalation.decided_by}")
        echo(f"**Outcome:** {escalation.outcome or escalation.note}")


@escalations_app.command("answer")
def answer(
    ctx: typer.Context,
    escalation_id: Annotated[str, typer.Argument(help="ESC-NNN")],
    decision: Annotated[
        str, typer.Option("--decision", help="routed, amended, escalated or aborted.")
    ],
    note: Annotated[str, typer.Option("--note", help="The answer, in words.")] = "",
    plan: Annotated[
        Path | None, typer.Option("--plan", help="The amended plan (with amended).")
    ] = None,
    to: Annotated[str | None, typer.Option("--to", help="Who it goes to (escalated).")] = None,
    track: Annotated[
        str | None, typer.Option("--track", help="An incident's track: next-cycle or hotfix.")
    ] = None,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Answer an escalation. routed: the task runs again with the note in $STOIC_GUIDANCE;
    amended: go on with --plan FILE; escalated: pass it on (stays open); aborted: the task fails.
    With --db, a database's: the answer takes its run up for the run's workers (amended is
    refused: a database run keeps its recorded plan)."""
    url = database_url(ctx, db)
    if url is not None:
        _answer_in_database(url, escalation_id, decision, note, plan, to, track, as_name, as_json)
        return
    with open_workspace(ctx) as workspace:
        answered = escalations_service.answer(
            workspace,
            escalation_id,
            decision=decision,
            actor=human_actor(as_name),
            note=note,
            plan=plan,
            to=to,
            track=track,
        )
    escalation = answered.escalation
    if as_json:
        _print(escalation, True)
        return
    echo(f"{escalation.id} {escalation.decision}: {escalation.outcome or escalation.note}")
    if answered.continue_run is not None:
        echo(f"next: {next_steps.continue_run(answered.continue_run).text}")


def _answer_in_database(
    url: str,
    escalation_id: str,
    decision: str,
    note: str,
    plan: Path | None,
    to: str | None,
    track: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    from stoic.services import db_escalations

    if plan is not None or track is not None:
        given = "--plan" if plan is not None else "--track"
        raise UsageError(f"{given} is for a workspace's escalation: not taken with --db")
    answered = db_escalations.answer(
        url, escalation_id, decision=decision, actor=human_actor(as_name), note=note, to=to
    )
    escalation = answered.escalation
    if as_json:
        document = {**escalation.to_json(), "run_taken_up": answered.run_taken_up}
        echo_json(orjson.dumps(document).decode())
        return
    echo(f"{escalation.id} {escalation.decision}: {escalation.outcome or escalation.note}")
    if answered.run_taken_up is not None:
        echo(answered.run_taken_up)


@incident_app.command("report")
def incident_report(
    ctx: typer.Context,
    description: Annotated[str, typer.Argument(help="What is happening in production.")],
    track: Annotated[
        str | None, typer.Option("--track", help="next-cycle or hotfix (else you are asked).")
    ] = None,
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Report a production incident: without --track an escalation asks which track; hotfix
    writes a plan (reproduce → fix → verify → deploy → sign-off); next-cycle records it."""
    with open_workspace(ctx) as workspace:
        reported = trust.report_incident(
            workspace, description, track=track, actor=human_actor(as_name)
        )
    if as_json:
        document = {
            "escalation_id": reported.escalation.id,
            "track": track,
            "track_done": reported.track_done,
            "escalation": reported.escalation.to_json(),
        }
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    echo(reported.escalation.id)
    echo(reported.track_done or f"briefing: escalations/{reported.escalation.id}.md (which track?)")


def register(app: typer.Typer) -> None:
    app.command()(escalate)
    app.add_typer(escalations_app)
