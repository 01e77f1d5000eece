"""Run commands: `stoic run`, `stoic continue`, `stoic retry`, and `stoic status RUN_ID`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from stoic.cli.context import (
    cli_state,
    database_url,
    db_option,
    open_workspace,
    workspace_settings,
)
from stoic.cli.identity import human_actor
from stoic.cli.render import console_for_output, echo, echo_json
from stoic.core import next_steps
from stoic.exceptions import UsageError

if TYPE_CHECKING:
    from stoic.cli.render import SafeConsole
    from stoic.core.policy import Policy
    from stoic.run.reporting import Reporter
    from stoic.run.run_end import RunReport

__all__ = [
    "confine",
    "confine_early",
    "confine_to_workspace_policy",
    "register",
    "reporter_for",
    "show_run_status",
]


Workers = Annotated[
    int | None,
    typer.Option("--workers", "-j", min=1, help="Tasks run at once (default: runner.workers)."),
]


AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the run's final state as one JSON object (the progress lines go to stderr).",
    ),
]
EveryTask = Annotated[
    bool,
    typer.Option("--tasks", help="End with every task's row, not only the tasks that need a look."),
]


def reporter_for(as_json: bool = False, every_task: bool = False) -> Reporter:
    """What a command that runs a run shows: a live view on a terminal, else plain lines; with
    --json, the plain lines on stderr and no summary; with --tasks, every task's row at the end."""
    from stoic.run.reporting import LiveReporter, PlainReporter

    if as_json:
        return _progress_on_stderr(console_for_output(stderr=True))
    console = console_for_output()
    shown = LiveReporter if console.is_terminal else PlainReporter
    return shown(console, every_task=every_task)


def _progress_on_stderr(console: SafeConsole) -> Reporter:
    """The plain progress lines on stderr and no summary: stdout holds only the JSON."""
    from stoic.run.reporting import PlainReporter

    class ProgressOnStderr(PlainReporter):
        def run_ended(self, report: RunReport) -> None:
            del report  # the JSON document is the summary

    return ProgressOnStderr(console)


def _print_run(report: RunReport, as_json: bool) -> None:
    if as_json:
        echo_json(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    raise typer.Exit(report.exit_code)


def confine(ctx: typer.Context, policy: Policy) -> None:
    """A runner re-executes itself with only what its tasks may see in its environment block."""
    if ctx.obj.own_process:
        from stoic.run.environment import confine

        confine(policy)


def confine_to_workspace_policy(ctx: typer.Context) -> None:
    """The same for `stoic execute` and `rollback`, by the workspace's policy. A workspace whose
    settings cannot be read is left to the command itself to report."""
    from stoic.exceptions import ConfigError
    from stoic.store.config import load_settings
    from stoic.store.processes import workspace_policy

    if not ctx.obj.own_process:
        return
    path = ctx.obj.workspace / "stoic.toml"
    if not path.is_file():
        return
    try:
        settings = load_settings(path)
    except ConfigError:
        return
    confine(ctx, workspace_policy(settings))


def confine_early(ctx: typer.Context) -> None:
    """A command that runs a run confines itself before its costly work (see
    `stoic.run.environment.confine_by_settings`)."""
    if ctx.obj.own_process:
        from stoic.run.environment import confine_by_settings

        confine_by_settings(ctx.obj.workspace / "stoic.toml")


def run(
    ctx: typer.Context,
    plan: Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False)],
    workers: Workers = None,
    approve: Annotated[
        list[str] | None,
        typer.Option(
            "--approve",
            help="Approve this gated task (approval: required) before the run starts, so it"
            " runs when reached with no proposal in between (repeatable).",
        ),
    ] = None,
    as_name: Annotated[
        str | None,
        typer.Option("--as", help="Who approves (default: $STOIC_ACTOR, else the OS user)."),
    ] = None,
    as_json: AsJson = False,
    allow_concurrent: Annotated[
        bool,
        typer.Option(
            "--allow-concurrent",
            help="Start it even though as many runs of the plan as its meta.concurrency allows"
            " (one by default) are live; recorded in the run's start.",
        ),
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Run every task, ignoring the statuses the plan file carries (recorded).",
        ),
    ] = False,
    every_task: EveryTask = False,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="The new run's id (run-YYYYMMDD-HHMMSS-xxxxxx), for a caller that must know it"
            " before the run starts; refused when malformed or taken.",
        ),
    ] = None,
    db: Annotated[
        str | None,
        db_option(
            "Record the run in this PostgreSQL database for workers to carry out, print its"
            " id and return (never printed back: it may hold a password); default: [store]"
            " url in stoic.toml, if set."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="With --db: follow the run to its end; exit as a run does."),
    ] = False,
) -> None:
    """Run a plan. Exit 0 completed, 1 failed (the blocked tasks and their root causes are
    listed), 3 waiting for a person, 130 stopped by Ctrl-C, 2 invalid plan, or a live run of
    the plan already (it is named). Tasks the plan file marks completed, verified or skipped are
    recorded done and not run (unless --fresh). With --db the run is recorded for workers."""
    db = database_url(ctx, db)
    if db is not None:
        _run_on_database(
            ctx,
            db,
            plan,
            run_id,
            wait,
            as_json,
            allow_concurrent,
            refused={
                "--workers": workers is not None,
                "--approve": bool(approve),
                "--fresh": fresh,
                "--as": as_name is not None,
            },
        )
        return
    if wait:
        raise UsageError("--wait follows a run on a database: give --db too")
    actor = human_actor(as_name) if approve else "human:unknown"
    confine_early(ctx)
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        report = runs.start(
            workspace,
            plan,
            workers=workers,
            reporter=reporter_for(as_json, every_task),
            before_start=lambda policy: confine(ctx, policy),
            approve=approve or [],
            actor=actor,
            allow_concurrent=allow_concurrent,
            fresh=fresh,
            run_id=run_id,
        )
    _print_run(report, as_json)


def _run_on_database(
    ctx: typer.Context,
    db: str,
    plan: Path,
    run_id: str | None,
    wait: bool,
    as_json: bool,
    allow_concurrent: bool,
    refused: dict[str, bool],
) -> None:
    from stoic.services.db_runs import start_database_run, wait_for_database_run

    given = [option for option, used in refused.items() if used]
    if given:
        raise UsageError(
            f"{given[0]} is not taken with --db: a database run has no such option yet"
        )
    if run_id is not None:
        from stoic.services.runs import check_run_id

        check_run_id(run_id)  # a plain name before it is looked for
    if run_id is not None and (cli_state(ctx).workspace / "runs" / run_id).exists():
        raise UsageError(
            f"run {run_id} exists already in this workspace: a database run needs an id of its"
            " own (the console shows both)"
        )
    state = start_database_run(
        db,
        plan,
        run_id=run_id,
        settings=workspace_settings(ctx),
        allow_concurrent=allow_concurrent,
    )
    if not as_json:
        echo(f"Run {state.run_id} recorded in the database; workers carry it out.")
    if wait:
        state = wait_for_database_run(db, state.run_id)
    if as_json:
        echo_json(orjson.dumps(state.document(), option=orjson.OPT_INDENT_2).decode())
    elif wait:
        echo(f"Run {state.run_id}: {state.status.value}.")
        for task in state.analysis.failed:
            echo(f"  failed: {task}")
        for task in state.analysis.awaiting_human:
            echo(f"  waiting for a person: {task} ({state.waits_on(task)})")
    raise typer.Exit(state.exit_code if wait else 0)


def continue_(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to continue.", show_default=False)],
    workers: Workers = None,
    approve_suggestion: Annotated[
        list[str] | None,
        typer.Option(
            "--approve-suggestion",
            help="Approve the suggested recovery of this suspended task (repeatable).",
        ),
    ] = None,
    as_name: Annotated[
        str | None,
        typer.Option("--as", help="Who approves (default: $STOIC_ACTOR, else the OS user)."),
    ] = None,
    as_json: AsJson = False,
    every_task: EveryTask = False,
) -> None:
    """Continue a run after a crash, a stop or a person's decision: attempts left open are
    recorded as interrupted and evaluated, approved suggestions run once, then every task that
    can run, runs."""
    actor = human_actor(as_name)
    confine_early(ctx)
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        report = runs.continue_(
            workspace,
            run_id,
            workers=workers,
            reporter=reporter_for(as_json, every_task),
            approve=approve_suggestion or [],
            actor=actor,
            before_start=lambda policy: confine(ctx, policy),
        )
    _print_run(report, as_json)


def retry(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run.", show_default=False)],
    tasks: Annotated[
        list[str], typer.Argument(help="The failed tasks to run again.", show_default=False)
    ],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why running them again is right (required).")
    ] = None,
    as_name: Annotated[
        str | None,
        typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
    ] = None,
    workers: Workers = None,
    db: Annotated[
        str | None, db_option("A run of a PostgreSQL database: its workers run the tasks again.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print what was recorded and how the run ended.")
    ] = False,
) -> None:
    """Run failed tasks again in their run: a person's decision (with its reason) linked to
    each failed attempt; then the run goes on, and what they blocked runs after them. A retried
    attempt is a human-approved recovery: if it fails, the failure stands. Exit codes as
    `stoic run`. With --db (or [store] url), the retries are recorded and the run's workers
    take them up: it returns at once (exit 0)."""
    actor = human_actor(as_name)
    url = database_url(ctx, db)
    if url is not None:
        _retry_in_database(url, run_id, tasks, reason, actor, as_json)
        return
    confine_early(ctx)
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        retried = runs.retry(
            workspace,
            run_id,
            tasks,
            reason=reason,
            actor=actor,
            workers=workers,
            reporter=reporter_for(as_json),
            before_start=lambda policy: confine(ctx, policy),
        )
    report = retried.report
    recorded = [
        {
            "task_id": record.task_id,
            "decision_id": record.decision_id,
            "seq": record.seq,
            "attempt_id": record.attempt_id,
            "attempt": record.attempt,
        }
        for record in retried.records
    ]
    if as_json:
        document = {"retried": recorded, **report.to_json()}
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    else:
        for entry in recorded:
            echo(f"retry of task {entry['task_id']} by {actor} recorded (#{entry['seq']})")
    raise typer.Exit(report.exit_code)


def _retry_in_database(
    url: str, run_id: str, tasks: list[str], reason: str | None, actor: str, as_json: bool
) -> None:
    from stoic.services.db_runs import retry_database_run
    from stoic.services.runs import check_run_id

    check_run_id(run_id)

    records = retry_database_run(url, run_id, tasks, reason=reason, actor=actor)
    recorded = [
        {
            "task_id": record.task_id,
            "decision_id": record.decision_id,
            "seq": record.seq,
            "attempt_id": record.attempt_id,
            "attempt": record.attempt,
        }
        for record in records
    ]
    if as_json:
        echo_json(orjson.dumps({"run_id": run_id, "retried": recorded}).decode())
        return
    for entry in recorded:
        echo(f"retry of task {entry['task_id']} by {actor} recorded (#{entry['seq']})")
    echo(f"run {run_id}: its workers run them again")


def show_run_status(
    ctx: typer.Context, run_id: str, as_json: bool, every_task: bool = False
) -> None:
    """`stoic status RUN_ID`: the run as its records tell it."""
    from stoic.run.reporting import print_summary
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        shown = runs.status(workspace, run_id)
    if as_json:
        document = shown.document()
        if shown.status in ("interrupted", "paused"):
            document["continue_with"] = next_steps.continue_run(run_id).text
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    print_summary(console_for_output(), shown.report, every_task=every_task)


def timeline(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run.", show_default=False)],
    customer: Annotated[
        bool,
        typer.Option("--customer", help="Final statuses only, with none of the mechanics."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """The story of a run. The operator view: every record in order, grouped by task and
    attempt, with recovery class and reason, and the outcome reconciliation. --customer: the
    final status of each task and of the run, nothing else."""
    from stoic.services import runs

    with open_workspace(ctx) as workspace:
        history = runs.timeline(workspace, run_id)
    run_id, status = history.shown.run_id, history.shown.status
    plan, view = history.shown.report.plan, history.shown.report.view
    if customer:
        document = history.customer()
        if as_json:
            echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
            return
        echo(f"{plan.name}: {document['status']}")
        for row in document["tasks"]:
            needs = f" ({', '.join(row['needs'])})" if row.get("needs") else ""
            echo(f"  {row['name']}: {row['status']}{needs}")
        return
    story = history.operator()
    reconciled = history.reconciliation()
    if as_json:
        document = {
            "run_id": run_id,
            "status": status,
            "runner": "working" if history.shown.runner_working else "none",
            **story,
            "reconciliation": reconciled,
        }
        echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
        return
    console = console_for_output()

    def say(text: str) -> None:  # as written: no markup, no wrapping
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    gone = ""
    if status in ("interrupted", "paused"):
        how = "its runner is gone" if view.stopped is None else f"stopped ({view.stopped})"
        gone = f" — not running: {how}; {next_steps.continue_run(run_id)} picks it up"
    say(f"run {run_id}: {status}{gone}")
    run_level = [entry for entry in story["records"] if entry["task"] is None]
    for entry in run_level[:1]:
        say(_timeline_line(entry))
    for task_id, attempts in story["tasks"].items():
        say(f"task {task_id}")
        if not attempts:
            say("  (no records: it never started)")
        for group in attempts:
            label = f"attempt {group['attempt']}" if group["attempt"] else "decisions"
            say(f"  {label}")
            for entry in group["records"]:
                say("    " + _timeline_line(entry))
        outcome = reconciled["tasks"].get(task_id)
        if outcome and outcome["original_failure"] is not None:
            shown = (
                f"{key}={value}" for key, value in outcome.items() if key != "original_failure"
            )
            say("  reconciliation: " + ", ".join(shown))
    for entry in run_level[1:]:
        say(_timeline_line(entry))


def _timeline_line(entry: dict[str, object]) -> str:
    recovery = f" [{entry['class']}]" if entry["class"] else ""
    return f"#{entry['seq']} {entry['decision']}{recovery} — {entry['reason']}"


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command("continue")(continue_)
    app.command()(retry)
    app.command()(timeline)
