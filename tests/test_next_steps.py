"""Every "what to run next" a message names is a command the CLI has, spelled in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
import typer.core
import typer.main

from stoic.cli.app import app, main
from stoic.core import next_steps
from stoic.core.next_steps import NextStep

SRC = Path(next_steps.__file__).parents[1]

# Every next step, with each of its options at least once.
STEPS: list[tuple[str, NextStep]] = [
    ("audit", next_steps.audit()),
    ("audit", next_steps.audit(repair=True)),
    ("resume", next_steps.resume()),
    ("resume", next_steps.resume(procedure="…", reason="…")),
    ("run", next_steps.run()),
    ("run", next_steps.run("hotfix.yaml")),
    ("run_alongside", next_steps.run_alongside("hotfix.yaml")),
    ("run_status", next_steps.run_status("RUN_ID")),
    ("runs", next_steps.runs()),
    ("runs", next_steps.runs(plan="NAME", status="failed")),
    ("continue_run", next_steps.continue_run()),
    ("continue_run", next_steps.continue_run("RUN_ID")),
    ("init", next_steps.init("ws")),
    ("run_status", next_steps.run_status("RUN_ID")),
    ("run_status", next_steps.run_status("RUN_ID", tasks=True)),
    ("propose", next_steps.propose()),
    ("queue", next_steps.queue()),
    ("queue", next_steps.queue(local=True)),
    ("resume", next_steps.resume(procedure="…", reason="…", local=True)),
    ("resume", next_steps.resume(procedure="…", reason="…", database=True)),
    ("show_proposal", next_steps.show_proposal("PROP-20260101-001")),
    ("execute", next_steps.execute()),
    ("execute", next_steps.execute("PROP-20260101-001", again=True)),
    ("execute", next_steps.execute("PROP-20260101-001", confirm="PROP-20260101-001")),
    ("rollback", next_steps.rollback("PROP-20260101-001", again=True)),
    ("plan_schema", next_steps.plan_schema()),
    ("answer_escalation", next_steps.answer_escalation("ESC-001", "routed", note="…")),
    ("answer_escalation", next_steps.answer_escalation("ESC-001", "amended", plan="FILE")),
    ("answer_escalation", next_steps.answer_escalation("ESC-001", "escalated", to="NAME")),
    ("answer_escalation", next_steps.answer_escalation("ESC-001", "aborted", note="…")),
    ("answer_escalation", next_steps.answer_escalation("ESC-001", "routed", database=True)),
    ("retry", next_steps.retry("RUN_ID", "TASK")),
    ("approve", next_steps.approve("PROP-20260101-001")),
    ("approve", next_steps.approve("PROP-20260101-001", continue_run=True)),
    ("users_add", next_steps.users_add()),
    ("users_add", next_steps.users_add("ann", "admin")),
    ("users_list", next_steps.users_list()),
    ("users_reset", next_steps.users_reset("ann")),
    ("users_role", next_steps.users_role("ann", "operator")),
    ("schedule_remove", next_steps.schedule_remove("nightly")),
]


def test_every_next_step_is_listed_here() -> None:
    assert {name for name, _ in STEPS} == set(next_steps.__all__) - {"NextStep"}


@pytest.mark.parametrize(("name", "step"), STEPS, ids=[step.text for _, step in STEPS])
def test_a_next_step_names_a_command_and_options_the_cli_has(name: str, step: NextStep) -> None:
    assert main([*step.global_options, *step.command, "--help"]) == 0, f"{name}: {step}"
    command = typer.main.get_command(app)
    context = typer.Context(command)
    root_options = {option for param in command.params for option in param.opts}
    assert set(step.global_options) <= root_options, f"{name}: not options of stoic itself"
    for word in step.command:
        assert isinstance(command, typer.core.TyperGroup)
        found = command.get_command(context, word)
        assert found is not None, f"{name}: no command {word!r}"
        command = found
    options = {option for param in command.params for option in param.opts}
    named = {argument for argument in step.arguments if argument.startswith("--")}
    assert named <= options, f"{name}: {sorted(named - options)} are not options of it"


def test_a_next_step_reads_as_a_message_shows_it() -> None:
    assert str(next_steps.audit(repair=True)) == "`stoic audit --repair`"
    assert next_steps.continue_run("RUN-1").text == "stoic continue RUN-1"
    assert str(next_steps.resume(procedure="…", reason="…")) == (
        "`stoic resume --procedure … --reason …`"
    )
    assert str(next_steps.execute("P-1", confirm="P-1")) == "`stoic execute P-1 --confirm P-1`"
    assert str(next_steps.rollback("P-1", again=True)) == "`stoic rollback P-1 --again`"
    assert str(next_steps.show_proposal("P-1")) == "`stoic queue show P-1`"
    assert str(next_steps.answer_escalation("ESC-1", "escalated", to="NAME", note="…")) == (
        '`stoic escalations answer ESC-1 --decision escalated --to NAME --note "…"`'
    )


# Strings that name stoic and a command's word but are no command to run.
NOT_COMMANDS = {"stoic plan"}  # the plan schema's title


def _spelled_commands(path: Path) -> list[str]:
    """The strings of `path` (docstrings aside) that spell a stoic command."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    words = "|".join(sorted(root.list_commands(typer.Context(root)), key=len, reverse=True))
    spelled = re.compile(rf"\bstoic ({words})\b")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        f"{path.relative_to(SRC)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and node.value not in NOT_COMMANDS
        and spelled.search(node.value)
    ]


def test_only_next_steps_spells_a_command() -> None:
    spelled = [
        line
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "next_steps.py"
        for line in _spelled_commands(path)
    ]
    assert spelled == []
