"""Plan commands: `stoic plan check` and `stoic plan schema`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from stoic.cli.render import echo, echo_json
from stoic.core.text import counted
from stoic.plan.check import CheckStatus, PlanCheck
from stoic.plan.models import PlanDocument

__all__ = ["register"]

plan_app = typer.Typer(
    name="plan",
    help="Check plan files and print the plan schema.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def check(
    ctx: typer.Context,
    plan: Annotated[Path, typer.Argument(help="The plan file (YAML).", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Say what `run --fresh` would do: ignore the statuses."),
    ] = False,
) -> None:
    """The run's pre-flight: refuse what `stoic run` would refuse (in the same words), say
    what the plan's task statuses mean, and what a run would do — the tasks done already, then
    the waves it would run — with warnings (a verifier not found). Exit 0 completed or
    runnable, 1 failed, 3 awaiting a human, 2 invalid."""
    from stoic.cli.context import CliState
    from stoic.services import runs

    state = ctx.obj
    settings_file = state.workspace / "stoic.toml" if isinstance(state, CliState) else None
    if settings_file is not None and not settings_file.is_file():
        settings_file = None  # no workspace here: the built-in roles and profiles
    verdict = runs.check(plan, settings_file=settings_file, fresh=fresh)
    if verdict.status is CheckStatus.INVALID and not as_json:
        for error in verdict.errors:
            echo(error.format(plan), err=True)
        echo(f"{plan}: invalid ({counted(len(verdict.errors), 'error')})", err=True)
        raise typer.Exit(2)
    if as_json:
        echo_json(orjson.dumps(verdict.to_json()).decode())
    else:
        _print_verdict(verdict)
    raise typer.Exit(verdict.status.exit_code)


def _print_verdict(verdict: PlanCheck) -> None:
    echo(f"{verdict.plan}: {verdict.status.value}")
    if verdict.runnable:
        echo(f"  runnable: {', '.join(verdict.runnable)}")
    if verdict.waiting:
        echo(f"  waiting: {', '.join(verdict.waiting)}")
    if verdict.awaiting_human:
        echo(f"  awaiting a human: {', '.join(verdict.awaiting_human)}")
    if verdict.failed:
        echo(f"  failed: {', '.join(verdict.failed)}")
    for task, roots in verdict.blocked:
        echo(f"  blocked: {task} (by {', '.join(roots)})")
    if verdict.status is CheckStatus.FAILED:
        echo("  No task can run again: every remaining task is blocked by a failed task.")
    for warning in verdict.warnings:
        echo(f"WARNING: {warning.format(verdict.plan)}", err=True)
    statuses = "ignoring the file's statuses" if verdict.fresh else "as the file's statuses say"
    echo(f"A run would ({statuses}):")
    if verdict.done:
        done = ", ".join(f"{task} ({word})" for task, word in verdict.done)
        echo(f"  record done, not run: {done}")
    for number, wave in enumerate(verdict.waves, start=1):
        echo(f"  wave {number}: {', '.join(wave)}")
    if not verdict.waves:
        echo("  run nothing: every task is done")


def schema(
    as_json: Annotated[
        bool, typer.Option("--json", help="The schema is JSON either way; accepted like elsewhere.")
    ] = False,
) -> None:
    """Print the JSON Schema of the plan format, for editors and linters."""
    del as_json
    document = PlanDocument.model_json_schema(by_alias=True)
    echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def register(app: typer.Typer) -> None:
    plan_app.command()(check)
    plan_app.command()(schema)
    app.add_typer(plan_app)
