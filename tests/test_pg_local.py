"""A workspace that names a database after it used its own files: what its own queue and
pause hold is named on every command sent to the database, and `stoic --local` reaches it."""

from __future__ import annotations

from pathlib import Path

import orjson

from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli


def _name_database(workspace: Path, url: str) -> None:
    settings = workspace / "stoic.toml"
    text = settings.read_text()
    assert "[store]\n" in text
    settings.write_text(text.replace("[store]\n", f'[store]\nurl = "{url}"\n'))


def _propose(workspace: Path, title: str) -> str:
    result = run_cli(
        "-w", str(workspace), "propose", "--title", title, "--reasoning", "why", "--json"
    )
    assert result.exit_code == 0, result.stderr
    return str(orjson.loads(result.stdout)["id"])


def test_the_workspace_own_queue_is_named_and_reached_with_local(db: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    own = _propose(workspace, "rotate the key")
    _name_database(workspace, db)

    listed = run_cli("-w", str(workspace), "queue", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert orjson.loads(listed.stdout) == []  # the database's queue
    assert f"1 proposal(s) wait in the workspace's own queue ({own})" in listed.stderr
    assert "`stoic --local queue`" in listed.stderr

    in_database = run_cli("-w", str(workspace), "approve", own, "--as", "ana")
    assert in_database.exit_code != 0  # not in the database, and not looked for elsewhere
    assert own in in_database.stderr and "--local" in in_database.stderr

    local = run_cli("-w", str(workspace), "--local", "queue", "--json")
    assert local.exit_code == 0, local.stderr
    assert [p["id"] for p in orjson.loads(local.stdout)] == [own]
    assert "wait in the workspace's own queue" not in local.stderr

    approved = run_cli("-w", str(workspace), "--local", "approve", own, "--as", "ana", "--json")
    assert approved.exit_code == 0, approved.stderr
    assert orjson.loads(approved.stdout)["proposal"]["status"] == "approved"
    after = run_cli("-w", str(workspace), "queue")
    assert after.exit_code == 0
    assert "own queue" not in after.stderr  # nothing is left behind any more
    with PostgresStore.open(db) as store:
        assert not [r for r in store.read() if r.decision_type == "proposal"]


def test_a_new_proposal_goes_to_the_database_and_local_keeps_to_the_files(
    db: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    _name_database(workspace, db)
    in_database = _propose(workspace, "in the database")
    local = run_cli(
        "-w", str(workspace), "--local", "propose", "--title", "t", "--reasoning", "r", "--json"
    )
    assert local.exit_code == 0, local.stderr
    local_id = orjson.loads(local.stdout)["id"]
    with PostgresStore.open(db) as store:
        ids = {r.proposal_id for r in store.read() if r.decision_type == "proposal"}
    assert ids == {in_database}
    listed = run_cli("-w", str(workspace), "--local", "queue", "--json")
    assert [p["id"] for p in orjson.loads(listed.stdout)] == [local_id]


def test_local_and_db_together_are_refused(db: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    result = run_cli("-w", str(workspace), "--local", "queue", "--db", db)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "stoic: error: --local and --db name two different stores: give one of them"
    ]
    assert db not in result.stderr


def test_local_wins_over_stoic_db_in_the_environment(db: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    own = _propose(workspace, "own")
    result = run_cli("-w", str(workspace), "--local", "queue", "--json", env={"STOIC_DB": db})
    assert result.exit_code == 0, result.stderr
    assert [p["id"] for p in orjson.loads(result.stdout)] == [own]


def test_the_workspace_own_pause_is_named_and_resumed_with_local(db: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    stopped = run_cli("-w", str(workspace), "stop", "--reason", "looking into it", "--as", "ana")
    assert stopped.exit_code == 0, stopped.stderr
    _name_database(workspace, db)

    shown = run_cli("-w", str(workspace), "queue")
    assert shown.exit_code == 0, shown.stderr
    assert "the workspace's own log is paused" in shown.stderr
    assert "`stoic --local resume --procedure … --reason …`" in shown.stderr
    status = run_cli("-w", str(workspace), "status")  # opens the workspace: its own pause
    assert "stoic --local resume" in status.stderr

    resumed = run_cli(
        "-w",
        str(workspace),
        "--local",
        "resume",
        "--procedure",
        "smaller-batch",
        "--batch-size",
        "5",
        "--reason",
        "dealt with",
        "--as",
        "ana",
    )
    assert resumed.exit_code == 0, resumed.stderr
    after = run_cli("-w", str(workspace), "queue")
    assert "paused" not in after.stderr
    with PostgresStore.open(db) as store:
        assert not [r for r in store.read() if r.decision_type in ("pause", "resume")]


def test_unreadable_own_files_are_said_not_skipped(db: str, tmp_path: Path) -> None:
    """The database's command still runs; the warning says the workspace's files could not be
    read instead of saying nothing waits there."""
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    _name_database(workspace, db)
    (workspace / "logs" / "decision_log.ndjson").unlink()
    result = run_cli("-w", str(workspace), "queue", "--json")
    assert result.exit_code == 0, result.stderr
    assert "the workspace's own files cannot be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_workspace_own_open_escalations_are_named_and_answered_with_local(
    db: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    asked = run_cli("-w", str(workspace), "escalate", "--mode", "ambiguity", "--question",
                    "Is the freeze on?", "--as", "ben")  # fmt: skip
    assert asked.exit_code == 0 and asked.stdout.strip() == "ESC-001", asked.stderr
    _name_database(workspace, db)

    listed = run_cli("-w", str(workspace), "escalations", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert orjson.loads(listed.stdout) == []  # the database's escalations
    assert "1 escalation(s) are open in the workspace's own files (ESC-001)" in listed.stderr
    assert "`stoic --local escalations --open`" in listed.stderr

    answered = run_cli("-w", str(workspace), "--local", "escalations", "answer", "ESC-001",
                       "--decision", "routed", "--note", "no freeze", "--as", "ana")  # fmt: skip
    assert answered.exit_code == 0, answered.stderr
    after = run_cli("-w", str(workspace), "escalations")
    assert after.exit_code == 0 and "own files" not in after.stderr
