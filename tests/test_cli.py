"""The command line: init, log, audit, status, global options and error handling."""

from __future__ import annotations

import tomllib
from pathlib import Path

import orjson
import pytest
import typer
import typer.core
import typer.main

import stoic
from stoic.cli.app import app
from stoic.store.config import Settings
from stoic.store.settings_text import default_settings_text
from tests.conftest import PROJECT_ROOT, fill, log_path, run_cli, run_stoic_process


def test_init_creates_the_design_layout(tmp_path: Path) -> None:
    target = tmp_path / "ws"
    result = run_cli("init", str(target))
    assert result.exit_code == 0
    for folder in [
        "logs",
        "queue/pending",
        "queue/approved",
        "queue/rejected",
        "queue/deferred",
        "queue/executed",
        "manifests",
        "runs",
        "escalations",
        "incidents",
    ]:
        assert (target / folder).is_dir(), folder
    assert log_path(target).read_bytes() == b""
    assert (target / "logs" / "execution_log.md").is_file()
    assert (target / "calibration_log.md").is_file()
    assert not list(tmp_path.glob(".ws.init-*"))


def test_init_uses_workspace_option_env_and_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_cli("init").exit_code == 0
    assert (tmp_path / ".stoic" / "stoic.toml").is_file()
    assert run_cli("--workspace", "other", "init").exit_code == 0
    assert (tmp_path / "other" / "stoic.toml").is_file()
    assert run_cli("init", env={"STOIC_WORKSPACE": str(tmp_path / "env")}).exit_code == 0
    assert (tmp_path / "env" / "stoic.toml").is_file()
    status = run_cli("status", "--json", env={"STOIC_WORKSPACE": str(tmp_path / "env")})
    assert orjson.loads(status.stdout)["workspace"] == str(tmp_path / "env")


def test_init_over_an_existing_workspace_is_refused_and_changes_nothing(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as ws:
        fill(ws, 2)
    before = {p: p.read_bytes() for p in ws_path.rglob("*") if p.is_file()}
    result = run_cli("init", str(ws_path))
    assert result.exit_code == 2
    assert "already a stoic workspace" in result.stderr
    assert {p: p.read_bytes() for p in ws_path.rglob("*") if p.is_file()} == before


def test_init_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    result = run_cli("init", str(tmp_path))
    assert result.exit_code == 2 and "not an empty folder" in result.stderr


@pytest.mark.parametrize("command", [["log"], ["audit"], ["status"]])
def test_commands_without_a_workspace_say_how_to_create_one(
    tmp_path: Path, command: list[str]
) -> None:
    result = run_cli("--workspace", str(tmp_path / "none"), *command)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "no stoic workspace" in result.stderr and "stoic init" in result.stderr
    assert "or name the one you mean with -w PATH" in result.stderr


def test_every_setting_is_in_the_generated_toml_with_its_default() -> None:
    text, examples = default_settings_text().split("# Notifiers:")
    uncommented = "\n".join(
        line[2:]
        if line.startswith("# ") and (" = " in line or line == "# [[gate.rules]]")
        else line
        for line in text.splitlines()
    )
    assert Settings.model_validate(tomllib.loads(uncommented)) == Settings()
    for section, field in Settings.model_fields.items():
        if section in ("notifiers", "secrets"):  # lists and tables of the user's own names
            continue
        assert field.annotation is not None
        for name in field.annotation.model_fields:  # type: ignore[union-attr]
            spelled = "# [[gate.rules]]" if (section, name) == ("gate", "rules") else f"# {name} = "
            assert spelled in text, f"{section}.{name} is not documented"
    # The notifier examples are valid settings once uncommented.
    lines = examples.splitlines()
    first = lines.index("# [[notifiers]]")
    block = "\n".join(line[2:] for line in lines[first : lines.index("", first)])
    kinds = [n.kind for n in Settings.model_validate(tomllib.loads(block)).notifiers]
    assert kinds == ["console", "file", "webhook", "command"]
    # So is the secrets example.
    start = lines.index("# [secrets]")
    block = "\n".join(line[2:] for line in lines[start:] if line.startswith("# "))
    assert list(Settings.model_validate(tomllib.loads(block)).secrets) == ["DEPLOY_TOKEN"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queue]\nbatch_size = \n", "stoic.toml:2: invalid TOML"),
        (
            "[queue]\nbatch_sise = 4\n",
            "stoic.toml:2: unknown setting 'queue.batch_sise'; did you mean 'batch_size'?",
        ),
        (
            "[queue]\nbatch_size = 0\n",
            "stoic.toml:2: queue.batch_size: Input should be greater than or equal to 1",
        ),
        ("[runers]\n", "stoic.toml:1: unknown setting 'runers'; did you mean 'runner'?"),
        ('[[notifiers]]\nkind = "webhook"\n', "a webhook notifier needs `url`"),
        ('[[notifiers]]\nkind = "file"\n', "a file notifier needs `path`"),
        ('[agents]\nagent_cli = ["run", "{model"]\n', "'{model' is not a valid template part"),
        ("[queue]\nbatch_size = 4\n# caf\xe9\n", "stoic.toml: not UTF-8 text"),
        (
            "[runner]\n# workers = 4\n\n[runner]\nworkers = 3\n",
            "stoic.toml:4: invalid TOML: Cannot declare ('runner',) twice (hint: [runner] is at"
            " line 1 already: put the settings under it, where they are listed commented)",
        ),
    ],
)
def test_invalid_settings_name_file_and_line(ws_path: Path, text: str, message: str) -> None:
    (ws_path / "stoic.toml").write_bytes(text.encode("latin-1"))
    result = run_cli("--workspace", str(ws_path), "status")
    assert result.exit_code == 2
    assert message in result.stderr


def test_log_table_and_filters(ws: stoic.Workspace, ws_path: Path) -> None:
    fill(ws, 4, run_id="run-a")
    ws.record("audit", "passed", "Audit clean.")
    shown = run_cli("--workspace", str(ws_path), "log")
    assert shown.exit_code == 0
    assert "execution/failed" in shown.stdout and "Audit clean." in shown.stdout
    failures = run_cli("--workspace", str(ws_path), "log", "--failures")
    assert "Task t0 finished." in failures.stdout and "Task t1 finished." not in failures.stdout
    typed = run_cli("--workspace", str(ws_path), "log", "--type", "audit")
    assert "Audit clean." in typed.stdout and "Task t0" not in typed.stdout
    by_run = run_cli("--workspace", str(ws_path), "log", "--run", "run-a", "--tail", "1")
    assert "Task t3 finished." in by_run.stdout and "Task t2" not in by_run.stdout
    nothing = run_cli("--workspace", str(ws_path), "log", "--run", "missing")
    assert "No matching records." in nothing.stdout


def test_log_json_prints_the_stored_lines_byte_for_byte(ws: stoic.Workspace, ws_path: Path) -> None:
    fill(ws, 5)
    result = run_cli("--workspace", str(ws_path), "log", "--json")
    assert result.stdout_bytes == log_path(ws_path).read_bytes()
    tail = run_cli("--workspace", str(ws_path), "log", "--json", "--tail", "2")
    assert tail.stdout_bytes.splitlines() == log_path(ws_path).read_bytes().splitlines()[-2:]


def test_unknown_log_type_is_a_usage_error_with_a_hint(ws_path: Path) -> None:
    result = run_cli("--workspace", str(ws_path), "log", "--type", "recovery")
    assert result.exit_code == 2
    assert "did you mean 'recovery_evaluation'" in result.stderr


def test_status_json(ws: stoic.Workspace, ws_path: Path) -> None:
    fill(ws, 3)
    document = orjson.loads(run_cli("--workspace", str(ws_path), "status", "--json").stdout)
    assert document["records"] == 3 and document["last_seq"] == 3
    assert document["by_type"] == {"execution": {"failed": 1, "succeeded": 2}}


def test_version() -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"stoic {stoic.__version__}"


def test_errors_are_one_line_and_tracebacks_only_with_debug(ws_path: Path) -> None:
    with log_path(ws_path).open("ab") as handle:
        handle.write(b"{torn")
    plain = run_stoic_process("--workspace", str(ws_path), "audit", "--repair")
    assert plain.returncode == 0
    (ws_path / "manifests" / "workspace_status.json").write_text("{")
    broken = run_stoic_process("--workspace", str(ws_path), "status")
    assert broken.returncode == 1
    assert broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr
    assert broken.stderr.startswith("stoic: error: ")
    debug = run_stoic_process("--debug", "--workspace", str(ws_path), "status")
    assert "Traceback" in debug.stderr and "ProjectionMismatch" in debug.stderr


def test_usage_errors_exit_2_with_one_line_naming_the_help(ws_path: Path) -> None:
    cases = [
        (("log", "--tail", "x"), "stoic log: error: Invalid value for '--tail'"),
        (("no-such-command",), "stoic: error: No such command 'no-such-command'."),
        (("queue", "show"), "stoic queue show: error: Missing argument 'proposal_id'."),
        (("approve", "PROP-1", "--bogus"), "stoic approve: error: No such option: --bogus"),
    ]
    for args, message in cases:
        result = run_stoic_process("--workspace", str(ws_path), *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith(message), result.stderr
        assert result.stderr.count("\n") == 1 and "--help`)" in result.stderr
    bare = run_stoic_process()
    assert bare.returncode == 2 and bare.stdout.startswith("Usage: stoic")  # the help


def test_every_command_has_help_and_a_readme_entry() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    context = typer.Context(root)
    names = root.list_commands(context)
    assert "status" in names and "escalations" in names  # the commands are loaded on demand
    for name in names:
        command = root.get_command(context, name)
        assert command is not None and command.help, f"stoic {name} has no help text"
        assert f"stoic {name}" in readme, f"stoic {name} is not in the README"
        assert run_cli(name, "--help").exit_code == 0


def test_init_where_no_folder_can_be_made_and_a_lost_log_are_one_line_errors(
    tmp_path: Path, ws_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    made = run_cli("init", str(blocker / "ws"))
    assert made.exit_code == 1
    assert f"cannot create a workspace at {blocker / 'ws'}: {blocker} is a file" in made.stderr
    assert made.stderr.count("\n") == 1 and blocker.read_text() == "not a folder"
    (ws_path / "logs" / "decision_log.ndjson").unlink()
    lost = run_cli("-w", str(ws_path), "status")
    assert lost.exit_code == 1
    assert "the decision log cannot be recreated; restore it from a backup" in lost.stderr


def test_paths_and_titles_are_printed_as_written_not_as_markup(tmp_path: Path) -> None:
    odd = tmp_path / "odd[/x]" / "ws"
    assert run_cli("init", str(odd)).exit_code == 0
    shown = run_cli("-w", str(odd), "status")
    assert shown.exit_code == 0, shown.stderr
    assert f"Workspace {odd}" in shown.stdout
    title = "[bold]Restart[/bold] " + "the database on every replica " * 10
    run_cli("-w", str(odd), "propose", "--title", title, "--reasoning", "r")
    listed = run_cli("-w", str(odd), "queue").stdout.splitlines()
    assert len(listed) == 1 and title.strip() in listed[0]  # one line, not wrapped


def test_a_failure_message_with_brackets_is_shown_not_parsed(tmp_path: Path, ws_path: Path) -> None:
    (tmp_path / "fail.sh").write_text(
        'echo \'{"failure": {"kind": "error", "message": "cannot open [/x] [bold]now"}}\''
        ' > "$STOIC_RESULT"; exit 1\n'
    )
    (tmp_path / "plan.yaml").write_text("tasks:\n  - {id: bad, run: [sh, fail.sh]}\n")
    ran = run_cli("-w", str(ws_path), "run", str(tmp_path / "plan.yaml"))
    assert ran.exit_code == 1, ran.stderr  # the run failed; stoic did not
    assert "error: cannot open [/x] [bold]now" in ran.stdout  # in the summary table too
    ws = stoic.Workspace.open(ws_path)
    ws.record("audit", "passed", "Checked [/x] by [bold]hand[/bold].", actor="human:[/y]")
    ws.close()
    shown = run_cli("-w", str(ws_path), "log")
    assert shown.exit_code == 0, shown.stderr
    assert "Checked [/x] by [bold]hand[/bold]." in shown.stdout and "human:[/y]" in shown.stdout
