"""`stoic users`: the people who may use the review console, and their roles."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer

from stoic.cli.context import open_workspace
from stoic.cli.identity import human_actor
from stoic.cli.render import echo, echo_json
from stoic.core import next_steps
from stoic.core.users import AGENT_ROLE, ROLES
from stoic.services import users

__all__ = ["register", "users_app"]

As = Annotated[
    str | None,
    typer.Option("--as", help="Who decides (default: $STOIC_ACTOR, else the OS user)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Name = Annotated[
    str, typer.Argument(help="The user's name: a-z, 0-9, '.', '_', '-'.", show_default=False)
]
RoleOption = Annotated[
    str,
    typer.Option(
        "--role",
        help="One of: "
        + ", ".join(ROLES)
        + f"; or {AGENT_ROLE}: a token for the gate's HTTP hook, never a console login.",
    ),
]

users_app = typer.Typer(
    name="users",
    help="The people who may use the review console, and their roles.",
    rich_markup_mode=None,
)


def _print_json(document: dict[str, Any] | list[dict[str, Any]]) -> None:
    echo_json(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())


def _issued(issued: users.Issued, as_json: bool, what: str) -> None:
    if as_json:
        document: dict[str, Any] = {
            "name": issued.name,
            "role": issued.role,
            "secret": issued.secret,
            "seq": issued.seq,
        }
        _print_json(document | ({"token": issued.token} if issued.token else {}))
        return
    if issued.token is not None:
        echo(f"{what} {issued.name} (agent). Its one-time token for the gate's HTTP hook, shown")
        echo("only now (the hook sends it as `Authorization: Bearer TOKEN`):")
        echo(issued.token)
        return
    echo(f"{what} {issued.name} ({issued.role}). Their one-time secret, shown only now:")
    echo(issued.secret)


@users_app.command("add")
def add(
    ctx: typer.Context,
    name: Name,
    role: RoleOption,
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Add a user with a role and print their one-time secret (only its hash is kept)."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        issued = users.add(workspace, name, role=role, actor=actor)
    _issued(issued, as_json, "Added")


@users_app.command("list")
def list_(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the users on record, their roles, and whether each can log in."""
    with open_workspace(ctx) as workspace:
        entries = users.list_users(workspace)
    if as_json:
        _print_json(
            [
                {
                    "name": entry.name,
                    "role": entry.role,
                    "added_at": entry.added_at,
                    "can_log_in": entry.can_log_in,
                }
                for entry in entries
            ]
        )
        return
    if not entries:
        echo(f"no users (add one with {next_steps.users_add()})")
    for entry in entries:
        hint = next_steps.users_reset(entry.name)
        note = "" if entry.can_log_in else f"  (no secret: {hint} issues one)"
        echo(f"{entry.name}  {entry.role}  since {entry.added_at}{note}")


@users_app.command("remove")
def remove(ctx: typer.Context, name: Name, as_name: As = None, as_json: AsJson = False) -> None:
    """Remove a user: their secret no longer logs in and their sessions end."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        users.remove(workspace, name, actor=actor)
    if as_json:
        _print_json({"name": name, "removed": True})
        return
    echo(f"Removed {name}.")


@users_app.command("reset")
def reset(ctx: typer.Context, name: Name, as_name: As = None, as_json: AsJson = False) -> None:
    """Issue a new one-time secret to a user; the old one no longer logs in."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        issued = users.reset(workspace, name, actor=actor)
    _issued(issued, as_json, "A new secret for")


@users_app.command("role")
def role_(
    ctx: typer.Context,
    name: Name,
    role: RoleOption,
    as_name: As = None,
    as_json: AsJson = False,
) -> None:
    """Give a user another role; it holds from their next request."""
    actor = human_actor(as_name)
    with open_workspace(ctx) as workspace:
        changed = users.set_role(workspace, name, role=role, actor=actor)
    if as_json:
        _print_json({"name": name, "role": role, "changed": changed})
        return
    echo(f"{name} is {role}." if changed else f"{name} is {role} already.")


def register(app: typer.Typer) -> None:
    app.add_typer(users_app)
