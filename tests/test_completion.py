"""Shell completion through the installed `stoic`, in real subprocesses: the script for the
shell named, the protocol the script speaks, and installing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_stoic_process


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o default -F _stoic_completion stoic"), ("zsh", "#compdef stoic")],
)
def test_show_completion_prints_the_script_of_the_shell_named(shell: str, marker: str) -> None:
    shown = run_stoic_process("--show-completion", shell)
    assert shown.returncode == 0, shown.stderr
    assert marker in shown.stdout
    assert "_STOIC_COMPLETE" in shown.stdout


def test_a_shell_without_a_script_is_a_usage_error_not_another_shells_script() -> None:
    shown = run_stoic_process("--show-completion", "tcsh")
    assert shown.returncode == 2
    assert shown.stdout == ""
    assert "'tcsh' has no completion script (supported: bash, zsh" in shown.stderr


def test_the_completion_protocol_lists_matching_commands_and_subcommands() -> None:
    commands = run_stoic_process(
        env={"_STOIC_COMPLETE": "complete_bash", "COMP_WORDS": "stoic ap", "COMP_CWORD": "1"}
    )
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout.split() == ["approve"]
    sub = run_stoic_process(
        env={
            "_STOIC_COMPLETE": "complete_bash",
            "COMP_WORDS": "stoic escalations an",
            "COMP_CWORD": "2",
        }
    )
    assert sub.stdout.split() == ["answer"]


def test_install_completion_writes_the_script_where_the_shell_reads_it(tmp_path: Path) -> None:
    installed = run_stoic_process("--install-completion", "bash", env={"HOME": str(tmp_path)})
    assert installed.returncode == 0, installed.stderr
    script = tmp_path / ".bash_completions" / "stoic.sh"
    assert "_stoic_completion" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


def test_a_completion_option_without_a_shell_is_completed_only_before_the_command() -> None:
    from stoic.cli.completion import DETECT, prepare

    assert prepare(["--show-completion"]) == ["--show-completion", DETECT]
    assert prepare(["-w", "ws", "--install-completion", "--debug"]) == [
        "-w",
        "ws",
        "--install-completion",
        DETECT,
        "--debug",
    ]
    assert prepare(["--show-completion", "fish"]) == ["--show-completion", "fish"]
    as_text = ["propose", "--title", "--show-completion"]  # a title, not an option of stoic's
    assert prepare(as_text) == as_text
