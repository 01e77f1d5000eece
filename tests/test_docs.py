"""Every command and subcommand of the real app has help, a README entry, and — where it
prints — valid `--json` output in a prepared workspace.

The commands are found by walking the app through click's own `list_commands` and
`get_command`, so a command added later (or loaded lazily) is checked without being named here,
and one missing from `JSON_CASES` fails until its line is added.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
import typer.main

from stoic.cli.app import app
from tests.conftest import PROJECT_ROOT, run_cli


@dataclass(frozen=True)
class J:
    """One invocation to check: `args` (placeholders `{plan}`, `{run}`, `{proposal}`,
    `{escalation}`, `{new}`, `{ws}` the prepared workspace, `{db}` a fresh database), run
    after the `setup` commands, must exit `code` and print one JSON document (`ndjson`: one
    per line)."""

    args: str
    setup: tuple[str, ...] = ()
    code: int = 0
    ndjson: bool = False


@dataclass(frozen=True)
class NoJson:
    """A command that takes no --json, and why."""

    why: str


# One line per command: how to check its --json, or why it has none.
JSON_CASES: dict[str, list[J] | NoJson] = {
    "init": [J("init {new} --json")],
    "log": [J("log --json", ndjson=True), J("log --tail 2 --json", ndjson=True)],
    "audit": [J("audit --json"), J("audit --db {db} --json", setup=("import {ws} --db {db}",))],
    # The runs' evidence travels with the log: the export of the prepared workspace (runs, a
    # proposal citing one) audits clean.
    "export": [J("export {new} --db {db} --json", setup=("import {ws} --db {db}",))],
    "import": [J("import {ws} --db {db} --json")],
    "status": [J("status --json"), J("status {run} --json", code=0)],
    "run": [J("run {plan} --json", code=3)],
    "worker": [J("worker --db {db} --exit-when-idle --json", setup=("init --db {db}",))],
    "continue": [J("continue {run} --json", code=3)],
    "retry": [J("retry {failed_run} flaky --reason 'try once more' --json", code=1)],
    "runs": [
        J("runs --json"),
        J("runs --status awaiting_human --plan docs --json"),
        J("runs --db {db} --json", setup=("init --db {db}",)),
    ],
    "timeline": [J("timeline {run} --json"), J("timeline {run} --customer --json")],
    "propose": [J("propose --title t --reasoning r --json -- true")],
    "queue": [J("queue --json"), J("queue --status pending --json")],
    "queue show": [J("queue show {proposal} --json")],
    "approve": [J("approve {proposal} --json")],
    "reject": [J("reject {proposal} --reason no --json")],
    "defer": [J("defer {proposal} --json")],
    "undefer": [J("undefer {proposal} --json", setup=("defer {proposal}",))],
    "execute": [J("execute {proposal} --json", setup=("approve {proposal}",))],
    "rollback": [
        J("rollback {proposal} --json", setup=("approve {proposal}", "execute {proposal}"))
    ],
    "review": NoJson("a conversation with a person at a terminal (see its help)"),
    "calibrate": [J("calibrate 'batches of 10 are fine' --json")],
    "incident": NoJson("a group: its commands are checked"),
    "incident new": [J("incident new --severity minor --title t --json")],
    "incident report": [J("incident report 'the site is down' --json")],
    "flag": [J("flag rushed --json")],
    "stop": [J("stop --reason x --json"), J("stop --reason y --json", setup=("stop --reason x",))],
    "resume": [
        J("resume --procedure manual-verification --reason ok --json", setup=("stop --reason x",))
    ],
    "escalate": [J("escalate --mode ambiguity --question 'Which one?' --json")],
    "escalations": [J("escalations --json"), J("escalations --open --json")],
    "escalations show": [J("escalations show {escalation} --json")],
    "escalations answer": [
        J("escalations answer {escalation} --decision aborted --note no --json")
    ],
    "serve": NoJson("a server that runs until stopped; its JSON is its API under /api"),
    "mcp": NoJson("a stdio MCP server: stdout is the protocol's, every answer JSON already"),
    "plan": NoJson("a group: its commands are checked"),
    "users": NoJson("a group: its commands are checked"),
    "users add": [J("users add ann --role reviewer --json")],
    "users list": [
        J("users list --json"),
        J("users list --json", setup=("users add bo --role admin",)),
    ],
    "users reset": [J("users reset cy --json", setup=("users add cy --role operator",))],
    "users role": [J("users role di --role admin --json", setup=("users add di --role reviewer",))],
    "users remove": [J("users remove ed --json", setup=("users add ed --role reviewer",))],
    "plan check": [J("plan check {plan} --json")],
    "plan schema": [J("plan schema --json")],
    "schedule": NoJson("a group: its commands are checked"),
    "gate": NoJson("a group: its commands are checked"),
    "gate claude-code": NoJson("a hook: its answer is always the hook's JSON, on stdin's call"),
    "schedule add": [J("schedule add nightly --cron '0 2 * * *' {plan} --json")],
    "schedule list": [
        J("schedule list --json", setup=("schedule add nightly --cron '0 2 * * *' {plan}",))
    ],
    "schedule remove": [
        J(
            "schedule remove nightly --json",
            setup=("schedule add nightly --cron '0 2 * * *' {plan}",),
        )
    ],
}


def _walk() -> Iterator[tuple[str, Any]]:
    """(path, command) for every command and subcommand, as click lists and loads them."""
    root = typer.main.get_command(app)

    def walk(command: Any, path: tuple[str, ...], ctx: Any) -> Iterator[tuple[str, Any]]:
        if path:
            yield " ".join(path), command
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"`stoic {' '.join((*path, name))}` is listed, not found"
                yield from walk(sub, (*path, name), typer.Context(sub, parent=ctx, info_name=name))

    yield from walk(root, (), typer.Context(root, info_name="stoic"))


COMMANDS = dict(_walk())


def _options(command: Any) -> set[str]:
    return {opt for param in command.params for opt in param.opts}


@pytest.fixture(scope="module")
def readme_entries() -> list[str]:
    """The commands the README's Commands table names, as written in its first column."""
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ", 1)[0] for line in section.splitlines() if line.startswith("| `")]
    return [span for row in rows for span in re.findall(r"`(stoic [^`]*)`", row)]


def test_the_walk_finds_commands_and_subcommands() -> None:
    assert {"run", "queue", "queue show", "plan check", "escalations answer"} <= set(COMMANDS)


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_and_option_has_help(path: str) -> None:
    command = COMMANDS[path]
    assert (command.help or "").strip(), f"`stoic {path}` has no help text"
    for param in command.params:
        if "--help" in param.opts:
            continue
        assert (getattr(param, "help", None) or "").strip(), (
            f"`stoic {path}`: {'/'.join(param.opts) or param.name} has no help text"
        )


def test_the_global_options_have_help() -> None:
    root = typer.main.get_command(app)
    for param in root.params:
        assert (getattr(param, "help", None) or "").strip(), f"{param.opts} has no help text"


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_has_a_readme_entry(path: str, readme_entries: list[str]) -> None:
    name = f"stoic {path}"
    assert any(entry == name or entry.startswith(name + " ") for entry in readme_entries), (
        f"`{name}` has no entry in the README's Commands table"
    )


@dataclass
class Prepared:
    """A workspace with a run waiting on an approval, a pending proposal and an open
    escalation, and what the placeholders stand for."""

    workspace: Path
    values: dict[str, str] = field(default_factory=dict)


def _ok(workspace: Path, *args: str, code: int = 0) -> str:
    result = run_cli("-w", str(workspace), *args)
    assert result.exit_code == code, f"stoic {shlex.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture
def prepared(tmp_path: Path) -> Prepared:
    workspace = tmp_path / "ws"
    _ok(workspace, "init")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: docs}\n"
        "tasks:\n"
        '  - {id: build, run: ["true"]}\n'
        '  - {id: deploy, run: ["true"], depends_on: [build], approval: required}\n',
        encoding="utf-8",
    )
    run = orjson.loads(_ok(workspace, "run", str(plan), "--json", code=3))
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        'meta: {name: failing}\ntasks:\n  - {id: flaky, run: ["false"]}\n', encoding="utf-8"
    )
    failed = orjson.loads(_ok(workspace, "run", str(failing), "--json", code=1))
    proposal = _ok(workspace, "propose", "--title", "t", "--reasoning", "r", "--rollback-cmd",
                   "true", "--", "true").strip()  # fmt: skip
    escalation = _ok(workspace, "escalate", "--mode", "ambiguity", "--question", "Which?").strip()
    values = {
        "plan": str(plan),
        "run": run["run_id"],
        "failed_run": failed["run_id"],
        "proposal": proposal,
        "escalation": escalation,
        "new": str(tmp_path / "new"),
        "ws": str(workspace),
    }
    return Prepared(workspace, values)


def _argv(text: str, values: dict[str, str]) -> list[str]:
    return [word.format(**values) for word in shlex.split(text)]


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_every_command_that_prints_prints_valid_json(
    path: str, prepared: Prepared, request: pytest.FixtureRequest
) -> None:
    assert path in JSON_CASES, (
        f"`stoic {path}` is not in JSON_CASES of tests/test_docs.py: add one line for it — how"
        " to check its --json output, or NoJson(why) if it has none"
    )
    case = JSON_CASES[path]
    command = COMMANDS[path]
    if isinstance(case, NoJson):
        assert "--json" not in _options(command), f"`stoic {path}` has --json: give it cases"
        return
    assert "--json" in _options(command), f"`stoic {path}` prints but takes no --json"
    if any("{db}" in text for check in case for text in (check.args, *check.setup)):
        prepared.values["db"] = request.getfixturevalue("postgres").new_database()
    for check in case:
        for setup in check.setup:
            _ok(prepared.workspace, *_argv(setup, prepared.values))
        args = _argv(check.args, prepared.values)
        result = run_cli("-w", str(prepared.workspace), *args)
        assert result.exit_code == check.code, f"stoic {shlex.join(args)}: {result.stderr}"
        lines = result.stdout.splitlines() if check.ndjson else [result.stdout]
        assert lines, f"stoic {shlex.join(args)} printed nothing"
        for line in lines:
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                pytest.fail(f"stoic {shlex.join(args)}: not one JSON document ({exc}): {line!r}")


def test_every_json_case_names_a_command() -> None:
    assert set(JSON_CASES) <= set(COMMANDS), "JSON_CASES names commands the app does not have"
