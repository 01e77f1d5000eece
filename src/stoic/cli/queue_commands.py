"""Review-queue commands: propose, queue, approve, reject, defer, undefer, execute,
rollback."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from stoic.cli.context import (
    cli_state,
    database_url,
    db_option,
    open_workspace,
    workspace_settings,
)
from stoic.cli.identity import human_actor, proposer_actor
from stoic.cli.render import console_for_output, echo, echo_json
from stoic.cli.run_commands import confine_to_workspace_policy
from stoic.core.proposals import Proposal, shown_confidence
from stoic.core.text import one_line, shortened
from stoic.exceptions import UsageError
from stoic.services import queue as queue_service

__all__ = ["register"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Database = Annotated[str | None, db_option("The review queue of a PostgreSQL database.")]
Again = Annotated[
    bool,
    typer.Option(
        "--again",
        help="Run it although an earlier run of it has no result on record (its process died).",
    ),
]


def _print(proposal: Proposal, as_json: bool) -> None:
    if as_json:
        echo_json(orjson.dumps(proposal.to_json()).decode())
        return
    echo(f"{proposal.id} {proposal.status.value}: {one_line(proposal.title)}")


def propose(
    ctx: typer.Context,
    title: Annotated[str, typer.Option("--title", help="What is proposed, in a few words.")],
    reasoning: Annotated[
        list[str], typer.Option("--reasoning", help="One step of the reasoning (repeatable).")
    ],
    command: Annotated[
        list[str] | None, typer.Argument(help="The action: the command after `--`.")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="A run, task or decision id, or a workspace file."),
    ] = None,
    kind: Annotated[str, typer.Option("--type", help="What kind of proposal.")] = "action",
    summary: Annotated[str, typer.Option("--summary", help="A longer description.")] = "",
    confidence: Annotated[
        float | None, typer.Option("--confidence", min=0, max=1, help="0 to 1.")
    ] = None,
    trade_off: Annotated[str | None, typer.Option("--trade-off", help="What it costs.")] = None,
    rollback_cmd: Annotated[
        str | None, typer.Option("--rollback-cmd", help="A command that undoes the action.")
    ] = None,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Put a proposal in the review queue and print its id: stoic propose --title T
    --reasoning R [--source S …] -- CMD ARGS…  (no command: an informational proposal)."""
    import shlex

    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_queue

        proposal = db_queue.propose(
            url,
            title=title,
            reasoning_trace=reasoning,
            sources=source or [],
            action=command or None,
            rollback=shlex.split(rollback_cmd) if rollback_cmd else None,
            type=kind,
            summary=summary,
            confidence=confidence,
            trade_off=trade_off,
            by=proposer_actor(as_name),
        )
    else:
        proposal = _propose_in_workspace(
            ctx,
            title,
            reasoning,
            command,
            source,
            kind,
            summary,
            confidence,
            trade_off,
            rollback_cmd,
            proposer_actor(as_name),
        )
    if as_json:
        _print(proposal, True)
        return
    echo(proposal.id)
    if proposal.action is not None and proposal.rollback is None:
        echo(f"note: {proposal.id} has no rollback action: it cannot be rolled back", err=True)


def _propose_in_workspace(
    ctx: typer.Context,
    title: str,
    reasoning: list[str],
    command: list[str] | None,
    source: list[str] | None,
    kind: str,
    summary: str,
    confidence: float | None,
    trade_off: str | None,
    rollback_cmd: str | None,
    actor: str,
) -> Proposal:
    import shlex

    with open_workspace(ctx) as workspace:
        return queue_service.propose(
            workspace,
            title=title,
            reasoning_trace=reasoning,
            sources=source or [],
            action=command or None,
            rollback=shlex.split(rollback_cmd) if rollback_cmd else None,
            type=kind,
            summary=summary,
            confidence=confidence,
            trade_off=trade_off,
            by=actor,
        )


queue_app = typer.Typer(
    name="queue",
    help="The review queue: list proposals, or show one.",
    invoke_without_command=True,
    rich_markup_mode=None,
)


@queue_app.callback()
def queue(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option("--status", help="Only proposals with this status.")
    ] = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """List proposals, oldest first (all, or those with --status)."""
    if ctx.invoked_subcommand is not None:
        return
    wanted = queue_service.status_named(status)
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_queue

        listed = db_queue.database_proposals(url, wanted)
        if as_json:
            sys.stdout.buffer.write(orjson.dumps([p.to_json() for p in listed]) + b"\n")
            return
        _list(listed)
        return
    with open_workspace(ctx) as workspace:
        if as_json:
            sys.stdout.buffer.write(queue_service.list_json(workspace, wanted) + b"\n")
            return
        rows = queue_service.list_proposals(workspace, wanted)
    _list(rows)


def _list(rows: list[Proposal]) -> None:
    console = console_for_output()
    if not rows:
        console.print("No proposals.", markup=False)
    for proposal in rows:
        console.print(
            f"{proposal.id}  {proposal.status.value:<9}"
            f" {proposal.confidence_band if proposal.confidence is not None else '-':<7}"
            f" {proposal.batch_id}  {one_line(proposal.title)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@queue_app.command("show")
def show(
    ctx: typer.Context,
    proposal_id: Annotated[str, typer.Argument(help="PROP-YYYYMMDD-NNN", show_default=False)],
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Show one proposal: title, summary, action, reasoning, sources, confidence, trade-off."""
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_queue

        proposal = db_queue.database_proposal(url, proposal_id)
    else:
        with open_workspace(ctx) as workspace:
            proposal = queue_service.get(workspace, proposal_id)
    if as_json:
        _print(proposal, True)
        return
    import shlex

    lines = [
        f"{proposal.id} — {one_line(proposal.title)}",
        f"status: {proposal.status.value}   type: {proposal.type}   batch: {proposal.batch_id}",
        f"confidence: {shown_confidence(proposal.confidence)}",
    ]
    if proposal.summary:
        lines.append(f"summary: {proposal.summary}")
    lines.append(f"action: {shlex.join(proposal.action) if proposal.action else '(none)'}")
    undo = shlex.join(proposal.rollback) if proposal.rollback else "(none: cannot be rolled back)"
    lines.append(f"rollback: {undo}")
    lines.append("reasoning:")
    lines += [f"  {number}. {step}" for number, step in enumerate(proposal.reasoning_trace, 1)]
    lines.append(f"sources: {', '.join(proposal.sources) or '(none)'}")
    if proposal.trade_off:
        lines.append(f"trade-off: {proposal.trade_off}")
    if proposal.decision:
        decision = proposal.decision
        lines.append(f"decided: {decision['outcome']} by {decision['by']} at {decision['at']}")
    if proposal.execution:
        execution = proposal.execution
        code = (execution.get("details") or {}).get("exit_code")
        result = str(execution.get("result"))
        lines.append(
            f"last run: {_RESULTS.get(result, result)} at {execution.get('at')}"
            + (f", exit {code}" if code is not None else "")
        )
    if proposal.running:
        what = "rollback" if proposal.running.get("rollback") else "action"
        lines.append(
            f"running: its {what} started at {proposal.running['at']} by"
            f" {proposal.running['by']}, no result on record yet"
        )
    for line in lines:  # a field's own lines indented: none can pass for another field
        echo(line.replace("\n", "\n    "))


_RESULTS = {"success": "executed", "failure": "failed", "rolled_back": "rolled back"}


def _recorded(proposal: Proposal, **extra: object) -> None:
    """What a decision recorded, for a machine: the proposal's id, its status now, the seq of
    the record that made it so, and the proposal in full."""
    document = {
        "proposal_id": proposal.id,
        "status": proposal.status.value,
        "seq": proposal.history[-1]["seq"],
        **extra,
        "proposal": proposal.to_json(),
    }
    echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _decide(
    ctx: typer.Context,
    proposal_id: str,
    outcome: str,
    actor: str,
    reason: str | None,
    db: str | None,
    as_json: bool = False,
) -> None:
    url = database_url(ctx, db)
    if url is not None:
        from stoic.services import db_queue

        decided = db_queue.decide(url, proposal_id, outcome, by=actor, reason=reason)
        if as_json:
            _recorded(decided.proposal, run=decided.run_taken_up)
            return
        echo(f"{decided.proposal.id} is {decided.proposal.status.value}.")
        if decided.run_taken_up is not None:
            echo(decided.run_taken_up)
        return
    with open_workspace(ctx) as workspace:
        proposal = queue_service.decide(workspace, proposal_id, outcome, by=actor, reason=reason)
    if as_json:
        _recorded(proposal)
        return
    echo(f"{proposal.id} is {proposal.status.value}.")


ProposalId = Annotated[str, typer.Argument(help="PROP-YYYYMMDD-NNN", show_default=False)]


def approve(
    ctx: typer.Context,
    proposal_id: ProposalId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why.")] = None,
    as_name: As = None,
    and_continue: Annotated[
        bool,
        typer.Option("--continue", help="Then continue the run the proposal belongs to."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, help="With --continue: tasks run at once."),
    ] = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Approve a pending proposal; with --continue, then continue the run whose task made it
    (exit codes as `stoic run`). A proposal no run made is refused with --continue, before
    anything is recorded."""
    if and_continue:
        if database_url(ctx, db) is not None:
            raise UsageError(
                "--continue is for a workspace's run: in a database, approving a run's task"
                " makes it ready for the run's workers by itself"
            )
        _approve_and_continue(ctx, proposal_id, reason, human_actor(as_name), workers, as_json)
        return
    _decide(ctx, proposal_id, "approved", human_actor(as_name), reason, db, as_json)


def _approve_and_continue(
    ctx: typer.Context,
    proposal_id: str,
    reason: str | None,
    actor: str,
    workers: int | None,
    as_json: bool,
) -> None:
    from stoic.cli.run_commands import confine, confine_early, reporter_for

    confine_early(ctx)
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        done = runs.approve_and_continue(
            workspace,
            proposal_id,
            by=actor,
            reason=reason,
            workers=workers,
            reporter=reporter_for(as_json),
            before_start=lambda policy: confine(ctx, policy),
        )
    if as_json:
        document = {
            "proposal_id": done.proposal.id,
            "proposal_status": done.proposal.status.value,
            **done.report.to_json(),
        }
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        echo(f"{done.proposal.id} is {done.proposal.status.value}.")
    raise typer.Exit(done.report.exit_code)


def reject(
    ctx: typer.Context,
    proposal_id: ProposalId,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required).")] = None,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Reject a pending proposal; the reason is required."""
    _decide(ctx, proposal_id, "rejected", human_actor(as_name), reason, db, as_json)


def defer(
    ctx: typer.Context,
    proposal_id: ProposalId,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Set a pending proposal aside; `stoic undefer` brings it back."""
    _decide(ctx, proposal_id, "deferred", human_actor(as_name), None, db, as_json)


def undefer(
    ctx: typer.Context,
    proposal_id: ProposalId,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Bring a deferred proposal back to pending."""
    _decide(ctx, proposal_id, "undeferred", human_actor(as_name), None, db, as_json)


def execute(
    ctx: typer.Context,
    proposal_id: ProposalId,
    confirm: Annotated[
        str | None,
        typer.Option("--confirm", help="The proposal id again, when confirmation is required."),
    ] = None,
    again: Again = False,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Run an approved proposal's command; the result lands in the proposal, the log and
    execution_log.md. Exit 1 when the command fails (and the workspace pauses). With --db
    (or [store] url): a database's proposal, run on this host, its result in the database."""
    if confirm is not None and confirm != proposal_id:
        raise UsageError(
            f"--confirm takes the proposal's id again: {shortened(confirm, 40)!r} is not"
            f" {proposal_id}"
        )
    actor = human_actor(as_name)
    confine_to_workspace_policy(ctx)
    url = database_url(ctx, db)
    if url is not None:
        done = _execute_in_database(ctx, url, proposal_id, actor, again, False, confirm)
        _print_execution(done, "executed", as_json)
        return
    with open_workspace(ctx) as workspace:
        result = queue_service.execute(
            workspace, proposal_id, by=actor, confirmed=confirm == proposal_id, again=again
        )
    _print_execution(result, "executed", as_json)


def rollback(
    ctx: typer.Context,
    proposal_id: ProposalId,
    again: Again = False,
    as_name: As = None,
    db: Database = None,
    as_json: AsJson = False,
) -> None:
    """Run an executed proposal's rollback command (--db: a database's proposal)."""
    actor = human_actor(as_name)
    confine_to_workspace_policy(ctx)
    url = database_url(ctx, db)
    if url is not None:
        done = _execute_in_database(ctx, url, proposal_id, actor, again, True, None)
        _print_execution(done, "rolled back", as_json)
        return
    with open_workspace(ctx) as workspace:
        result = queue_service.rollback(workspace, proposal_id, by=actor, again=again)
    _print_execution(result, "rolled back", as_json)


def _execute_in_database(
    ctx: typer.Context,
    url: str,
    proposal_id: str,
    actor: str,
    again: bool,
    rollback: bool,
    confirm: str | None,
) -> queue_service.ExecutionResult:
    """A database's proposal, run here: by the workspace's policy and in its folder when there
    is one, else by the defaults and in the current folder."""
    from pathlib import Path

    from stoic.services import db_queue

    settings = workspace_settings(ctx)
    workspace = cli_state(ctx).workspace
    return db_queue.execute(
        url,
        proposal_id,
        by=actor,
        cwd=workspace if settings is not None else Path.cwd(),
        settings=settings,
        again=again,
        rollback=rollback,
        confirmed=confirm == proposal_id,
    )


def _print_execution(result: queue_service.ExecutionResult, done: str, as_json: bool) -> None:
    """The command's output and exit code; exit 1 when it failed."""
    if as_json:
        _recorded(result.proposal, exit_code=result.exit_code, output=result.output)
    else:
        echo(result.output, nl=False)
        echo(f"{result.proposal.id} {done}: exit {result.exit_code}.")
    if result.exit_code != 0:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"allow_interspersed_args": False})(propose)
    app.add_typer(queue_app)
    for command in (approve, reject, defer, undefer, execute, rollback):
        app.command()(command)
