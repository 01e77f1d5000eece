"""Which module defines each command, and the root group that imports it only when asked.

A command's module (and the services, runtime and settings it brings) is imported when that
command runs, its help is shown or its name is completed; `stoic status` loads the status
command alone. `stoic --help` and shell completion list every name from `COMMANDS`, and
`tests/test_cold_start.py` checks that `COMMANDS` names exactly what the modules register.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING

import typer
import typer.core
import typer.main

if TYPE_CHECKING:
    from typer._click.core import Command, Context  # what typer builds; not named in public

__all__ = ["COMMANDS", "LazyGroup", "load_commands"]

COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("log_commands",),
    "log": ("log_commands",),
    "audit": ("log_commands",),
    "status": ("log_commands",),
    "export": ("db_commands",),
    "import": ("db_commands",),
    "run": ("run_commands",),
    "continue": ("run_commands",),
    "retry": ("run_commands",),
    "timeline": ("run_commands",),
    "runs": ("runs_command",),
    "propose": ("queue_commands",),
    "approve": ("queue_commands",),
    "reject": ("queue_commands",),
    "defer": ("queue_commands",),
    "undefer": ("queue_commands",),
    "execute": ("queue_commands",),
    "rollback": ("queue_commands",),
    "calibrate": ("trust_commands",),
    "flag": ("trust_commands",),
    "stop": ("trust_commands",),
    "resume": ("trust_commands",),
    "review": ("review_command",),
    "escalate": ("escalation_commands",),
    "serve": ("serve_command",),
    "mcp": ("mcp_command",),
    "worker": ("worker_command",),
    # The groups, listed after the commands.
    "plan": ("plan_commands",),
    "queue": ("queue_commands",),
    # `incident report` is defined beside the escalations it raises.
    "incident": ("trust_commands", "escalation_commands"),
    "escalations": ("escalation_commands",),
    "schedule": ("schedule_commands",),
    "users": ("users_commands",),
    "gate": ("gate_commands",),
}
"""Each top-level command, in the order `stoic --help` lists them, and the modules of
`stoic.cli` whose `register(app)` defines it (more than one when one adds to another's group)."""

_loaded: dict[tuple[str, ...], dict[str, Command]] = {}


def load_commands(
    modules: tuple[str, ...],
) -> dict[str, Command]:
    """The click commands that `modules` register, by name; each set is built once."""
    commands = _loaded.get(modules)
    if commands is None:
        registered = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False)
        for name in modules:
            importlib.import_module(f"stoic.cli.{name}").register(registered)
        commands = _loaded[modules] = dict(typer.main.get_group(registered).commands)
    return commands


class _Commands(MutableMapping[str, "Command"]):
    """The root group's commands: every name is known up front, a command is built on first
    use. Typer's own lookups, listings and "did you mean" suggestions all read this mapping."""

    def __init__(self) -> None:
        self._added: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name in self._added:
            return self._added[name]
        modules = COMMANDS.get(name)
        if modules is None:
            raise KeyError(name)
        return load_commands(modules)[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._added[name] = command

    def __delitem__(self, name: str) -> None:
        del self._added[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._added if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._added.keys())


class LazyGroup(typer.core.TyperGroup):
    """The `stoic` group (`typer.Typer(cls=LazyGroup)`): its commands are `COMMANDS`, each
    imported when it is looked up."""

    def __init__(self, **attrs: object) -> None:
        super().__init__(**attrs)  # type: ignore[arg-type]
        self.commands = _Commands()

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)  # the names alone: nothing is imported to list them
