"""Escalation commands: escalate, escalations (list, show, answer), incident report."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.context import open_workspace
from stoic.cli.identity import human_actor, proposer_actor
from stoic.cli.render import echo, echo_json
from stoic.cli.trust_commands import incident_app
from stoic.core.escalations import Escalation, EscalationMode, EscalationRequest, parse_mode
from stoic.exceptions import UsageError
from stoic.store.atomic import atomic_write
from stoic.store.escalations import Escalations, follow_track, report_incident

__all__ = ["register"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
_MODES = ", ".join(mode.value for mode in EscalationMode)


def _request(mode: str, question: str, context: str) -> EscalationRequest:
    try:
        return EscalationRequest.from_json(
            {"mode": parse_mode(mode).value, "question": question, "context": context}
        )
    except ValueError as exc:
        raise UsageError(f"escalation refused: {exc}") from None


def escalate(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option("--mode", help=f"The failure mode: {_MODES}.")],
    question: Annotated[str, typer.Option("--question", help="Exactly one question.")],
    run: Annotated[str | None, typer.Option("--run", help="The run it is about.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="The task it is about.")] = None,
    context: Annotated[str, typer.Option("--context", help="What the person should know.")] = "",
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Hand one decision to a person: writes escalations/ESC-NNN.md and prints its id.

    Inside a running task ($STOIC_RESULT set, no --run/--task) the request goes into the task's
    result file: the task is suspended when it ends and the run waits for the answer.
    """
    request = _request(mode, question, context)
    if (task is None) != (run is None):
        raise UsageError("--run and --task go together (or leave both out)")
    result_file = os.environ.get("STOIC_RESULT")
    if run is None and result_file:
        _request_from_inside(Path(result_file), request)
        echo(f"escalation requested for task {os.environ.get('STOIC_TASK_ID', '?')}")
        return
    actor = proposer_actor(as_name)
    with open_workspace(ctx) as workspace, contextlib.ExitStack() as held:
        if run is not None and task is not None:
            from stoic.run.lifecycle import escalation_target

            held.enter_context(escalation_target(workspace, run, task))  # the run stays held
        escalation = Escalations(workspace).raise_(request, actor=actor, run_id=run, task_id=task)
    _print(escalation, as_json, created=True)


def _request_from_inside(path: Path, request: EscalationRequest) -> None:
    """Add the request to the running task's result file, replacing it atomically."""
    data: dict[str, object] = {}
    if path.exists():
        try:
            loaded = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise UsageError(
                f"{path} is not valid JSON ({exc}); cannot add the escalation"
            ) from None
        if isinstance(loaded, dict):
            data = loaded
    data["escalate"] = request.to_json()
    atomic_write(path, orjson.dumps(data), root=path.parent)  # the task's own file


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
    echo(f"{escalation.id} {escalation.mode.value} ({state}){where}: {escalation.question}")


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
    as_json: AsJson = False,
) -> None:
    """List escalations, oldest first (all, or only the open ones)."""
    if ctx.invoked_subcommand is not None:
        return
    with open_workspace(ctx) as workspace:
        state = Escalations(workspace).state()
    rows = [e for e in state.escalations.values() if e.open or not open_only]
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
    as_json: AsJson = False,
) -> None:
    """Print an escalation's briefing (or its record as JSON)."""
    with open_workspace(ctx) as workspace:
        store = Escalations(workspace)
        escalation = store.get(escalation_id)
        path = store.briefing_path(escalation_id)
        if as_json:
            _print(escalation, True)
            return
        if not path.is_file():
            raise UsageError(
                f"{path} is missing: `stoic audit --repair` writes it again from the log"
            )
        echo(path.read_text(encoding="utf-8"), nl=False)
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
    as_json: AsJson = False,
) -> None:
    """Answer an escalation. routed: the task runs again with the note in $STOIC_GUIDANCE;
    amended: go on with --plan FILE; escalated: pass it on (stays open); aborted: the task fails."""
    if plan is not None and decision != "amended":
        raise UsageError("--plan goes with --decision amended")
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        store = Escalations(workspace)
        current = store.get(escalation_id)
        amendment = None
        if plan is not None:
            if current.run_id is None:
                raise UsageError(f"{escalation_id} is not about a run: nothing to amend")
            from stoic.run.lifecycle import amend_run

            amendment = amend_run(workspace, current.run_id, plan)
        if track is not None:
            if current.mode is not EscalationMode.PRODUCTION_INCIDENT:
                raise UsageError(f"--track is for production incidents; {escalation_id} is not")
            if current.open:  # a closed one is refused by the answer below
                done = follow_track(workspace, current, track)
                note = f"track: {track}; {done}" + (f"; {note}" if note else "")
        escalation = store.answer(
            escalation_id, decision=decision, note=note, actor=actor, to=to, amendment=amendment
        )
    if as_json:
        _print(escalation, True)
        return
    echo(f"{escalation.id} {escalation.decision}: {escalation.outcome or escalation.note}")
    if escalation.run_id and not escalation.open:
        echo(f"next: stoic continue {escalation.run_id}")


@incident_app.command("report")
def incident_report(
    ctx: typer.Context,
    description: Annotated[str, typer.Argument(help="What is happening in production.")],
    track: Annotated[
        str | None, typer.Option("--track", help="next-cycle or hotfix (else you are asked).")
    ] = None,
    as_name: As = None,
) -> None:
    """Report a production incident: without --track an escalation asks which track; hotfix
    writes a plan (reproduce → fix → verify → deploy → sign-off); next-cycle records it."""
    with open_workspace(ctx) as workspace:
        escalation, done = report_incident(
            workspace, description, track=track, actor=human_actor(as_name)
        )
    echo(escalation.id)
    echo(done or f"briefing: escalations/{escalation.id}.md (which track?)")


def register(app: typer.Typer) -> None:
    app.command()(escalate)
    app.add_typer(escalations_app)
