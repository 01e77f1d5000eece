"""A command starts without loading the rest: what a fresh `stoic` process imports.

Timings are for `benchmarks/bench_cold_start.py`; these tests pin the structure that makes
them: `--version` before typer, one command's module per command, plans and notifiers only
when something needs them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import typer
import typer.core
import typer.main

import stoic
from stoic.cli.app import app
from stoic.cli.commands import COMMANDS, load_commands
from tests.conftest import run_cli

# The console script's own code (`stoic.cli.entry:main`), reporting what it imported.
_RUNNER = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = ["stoic", *sys.argv[1:]]
from stoic.cli.entry import main
sys.exit(main())
"""

COMMAND_MODULES = sorted(
    {f"stoic.cli.{module}" for modules in COMMANDS.values() for module in modules}
)


def _fresh_stoic(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args], capture_output=True, text=True, timeout=120
    )
    head, _, modules = done.stderr.rpartition("MODULES ")
    done.stderr = head
    return done, set(modules.split())


def _loaded(modules: set[str], package: str) -> list[str]:
    return sorted(name for name in modules if name == package or name.startswith(f"{package}."))


def test_stoic_version_imports_neither_typer_nor_pydantic() -> None:
    done, modules = _fresh_stoic("--version")
    assert done.returncode == 0 and done.stdout == f"stoic {stoic.__version__}\n"
    for package in ("typer", "click", "pydantic", "rich", "yaml", "orjson"):
        assert _loaded(modules, package) == [], package
    assert _loaded(modules, "stoic") == ["stoic", "stoic.cli", "stoic.cli.entry"]


def test_the_version_answered_early_is_the_one_typer_gives() -> None:
    assert run_cli("--version").stdout == f"stoic {stoic.__version__}\n"
    done, modules = _fresh_stoic("--debug", "--version")  # not the early answer: the full one
    assert done.returncode == 0 and done.stdout == f"stoic {stoic.__version__}\n"
    assert "typer" in modules


def test_stoic_status_of_a_workspace_imports_neither_typer_rich_nor_pydantic(
    ws_path: Path,
) -> None:
    for args in ((), ("--json",)):
        done, modules = _fresh_stoic("-w", str(ws_path), "status", *args)
        assert done.returncode == 0, done.stderr
        for package in ("typer", "click", "pydantic", "rich", "yaml"):
            assert _loaded(modules, package) == [], package
        assert [name for name in COMMAND_MODULES if name in modules] == []


def test_stoic_status_imports_only_the_status_command(ws_path: Path) -> None:
    # --local is not an option of the quick path: this is the whole command
    done, modules = _fresh_stoic("--local", "-w", str(ws_path), "status", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["records"] >= 0
    assert [name for name in COMMAND_MODULES if name in modules] == ["stoic.cli.log_commands"]


def test_stoic_status_reads_no_plan_and_loads_no_notifier(ws_path: Path) -> None:
    done, modules = _fresh_stoic("--local", "-w", str(ws_path), "status")
    assert done.returncode == 0, done.stderr
    assert _loaded(modules, "stoic.plan") == ["stoic.plan", "stoic.plan.reading"]  # stoic.toml
    assert "stoic.run.notifiers" not in modules and "yaml" not in modules


def test_importing_stoic_loads_no_part_of_the_control_plane() -> None:
    code = "import sys, stoic; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert _loaded(set(done.stdout.split()), "stoic") == ["stoic"]


def test_the_command_table_names_exactly_the_commands_the_modules_register() -> None:
    registered: dict[str, set[str]] = {}
    for module in COMMAND_MODULES:
        for name in load_commands((module.rpartition(".")[2],)):
            registered.setdefault(name, set()).add(module.rpartition(".")[2])
    assert set(COMMANDS) == set(registered)
    for name, modules in COMMANDS.items():
        assert registered[name] <= set(modules), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_and_completion_see_every_command(name: str) -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    context = typer.Context(root)
    assert name in root.list_commands(context)
    command = root.get_command(context, name)
    assert command is not None and command.name == name
    listed = [line.split() for line in run_cli("--help").stdout.splitlines()]
    assert any(words[:1] == [name] and len(words) > 1 for words in listed)  # with its help


def test_a_mistyped_command_is_one_line_with_a_suggestion() -> None:
    result = run_cli("stauts")
    assert result.exit_code == 2
    assert result.stderr == (
        "stoic: error: No such command 'stauts'. Did you mean 'status'? (see `stoic --help`)\n"
    )


def test_incident_has_the_subcommands_of_both_its_modules() -> None:
    run_cli("stop", "--help")  # loads the trust commands first, as `stoic stop` would
    listed = run_cli("incident", "--help").stdout
    assert "new " in listed and "report " in listed
