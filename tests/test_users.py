"""`stoic users`: people on record, their secrets kept only as scrypt hashes in the workspace,
and the audit naming any secret file the log does not back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from stoic.services import users
from stoic.services.workspace import Workspace
from stoic.store import user_files
from tests.conftest import run_cli


def _cli(workspace: Path, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
    result = run_cli("-w", str(workspace), *args, env=env)
    assert result.exit_code == code, result.stderr
    return result.stdout if code == 0 else result.stderr


def _log(workspace: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in _cli(workspace, "log", "--json").splitlines()]


def _audit(workspace: Path) -> dict[str, object]:
    result = run_cli("-w", str(workspace), "audit", "--json")
    document: dict[str, object] = orjson.loads(result.stdout)
    return document


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "ws"
    _cli(path, "init")
    return path


def test_add_prints_a_secret_whose_hash_alone_is_kept(workspace: Path) -> None:
    added = orjson.loads(
        _cli(workspace, "users", "add", "alice", "--role", "admin", "--as", "root", "--json")
    )
    secret = added["secret"]
    assert added["name"] == "alice" and added["role"] == "admin"
    path = workspace / "users" / "alice.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((workspace / "users").stat().st_mode) == 0o700
    held = orjson.loads(path.read_bytes())
    assert held["kdf"] == "scrypt" and (held["n"], held["r"], held["p"]) == (2**14, 8, 1)
    assert len(bytes.fromhex(held["salt"])) == 16
    assert held["seq"] == added["seq"]
    assert secret not in path.read_text()
    (record,) = _log(workspace)
    assert record["decision_type"] == "user" and record["decision_outcome"] == "added"
    assert record["actor"] == "human:root"
    assert record["decision_inputs"] == {"name": "alice", "role": "admin"}
    raw = (workspace / "logs" / "decision_log.ndjson").read_text()
    assert secret not in raw and held["hash"] not in raw and held["salt"] not in raw
    with Workspace.open(workspace) as ws:
        assert users.authenticate(ws, "alice", secret) is not None
        assert users.authenticate(ws, "alice", secret + "x") is None
        assert users.authenticate(ws, "nobody", secret) is None
    assert _audit(workspace)["ok"] is True


def test_list_reset_role_and_remove_are_on_record(workspace: Path) -> None:
    first = orjson.loads(_cli(workspace, "users", "add", "bob", "--role", "reviewer", "--json"))
    again = orjson.loads(_cli(workspace, "users", "reset", "bob", "--json"))
    assert again["secret"] != first["secret"]
    changed = orjson.loads(_cli(workspace, "users", "role", "bob", "--role", "operator", "--json"))
    assert changed == {"name": "bob", "role": "operator", "changed": True}
    listed = orjson.loads(_cli(workspace, "users", "list", "--json"))
    assert [(e["name"], e["role"], e["can_log_in"]) for e in listed] == [("bob", "operator", True)]
    with Workspace.open(workspace) as ws:
        assert users.authenticate(ws, "bob", first["secret"]) is None  # replaced
        user = users.authenticate(ws, "bob", again["secret"])
        assert user is not None and user.role == "operator"  # the log's role
    assert orjson.loads(_cli(workspace, "users", "remove", "bob", "--json"))["removed"] is True
    assert not (workspace / "users" / "bob.json").exists()
    outcomes = [r["decision_outcome"] for r in _log(workspace)]
    assert outcomes == ["added", "secret_reset", "role_changed", "removed"]
    assert orjson.loads(_cli(workspace, "users", "list", "--json")) == []
    assert _audit(workspace)["ok"] is True


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "..", ".hidden", "Alice", "tab\there", "nl\nx", "esc\x1bx", "", "a" * 65],
)
def test_a_name_that_could_be_a_path_or_hide_text_is_refused(workspace: Path, name: str) -> None:
    message = _cli(workspace, "users", "add", name, "--role", "reviewer", code=2)
    assert "is not a user name" in message
    assert _log(workspace) == []
    assert not (workspace / "users").exists()


def test_unknown_roles_are_refused_and_an_agent_gets_a_token(workspace: Path) -> None:
    assert "unknown role" in _cli(workspace, "users", "add", "x", "--role", "root", code=2)
    assert _log(workspace) == []
    printed = _cli(workspace, "users", "add", "gate", "--role", "agent")
    assert "token for the gate's HTTP hook" in printed and "gate:" in printed


def test_a_second_add_of_one_name_is_refused(workspace: Path) -> None:
    _cli(workspace, "users", "add", "carol", "--role", "reviewer")
    assert "exists" in _cli(workspace, "users", "add", "carol", "--role", "admin", code=2)
    assert len(_log(workspace)) == 1


def test_users_cannot_be_managed_from_inside_a_task(workspace: Path) -> None:
    message = _cli(
        workspace, "users", "add", "dave", "--role", "admin", code=2, env={"STOIC_RUN_ID": "r"}
    )
    assert "refused" in message
    assert _log(workspace) == []
    with Workspace.open(workspace) as ws:  # nor through the services, whatever the actor says
        os.environ["STOIC_TASK_ID"] = "t"
        try:
            with pytest.raises(Exception, match="refused"):
                users.add(ws, "dave", role="admin", actor="system:stoic")
        finally:
            del os.environ["STOIC_TASK_ID"]
    assert _log(workspace) == []


def test_the_audit_names_a_secret_file_the_log_does_not_back(workspace: Path) -> None:
    added = orjson.loads(_cli(workspace, "users", "add", "erin", "--role", "admin", "--json"))
    held = (workspace / "users" / "erin.json").read_bytes()
    # A file planted for a name nobody added, and a removed user's file put back.
    planted = user_files.hash_secret("let me in")
    user_files.write_secret_file(workspace, "mallory", 1, planted)
    _cli(workspace, "users", "remove", "erin")
    (workspace / "users" / "erin.json").write_bytes(held)
    with Workspace.open(workspace) as ws:
        assert users.authenticate(ws, "mallory", "let me in") is None
        assert users.authenticate(ws, "erin", added["secret"]) is None
    report = _audit(workspace)
    assert report["ok"] is False
    named = {v["path"] for v in report["violations"] if v["code"] == "user_file_unbacked"}  # type: ignore[attr-defined]
    assert named == {"users/erin.json", "users/mallory.json"}
    repaired = orjson.loads(_cli(workspace, "audit", "--repair", "--json", code=0))
    assert repaired["ok"] is True
    assert not (workspace / "users" / "mallory.json").exists()
    assert not (workspace / "users" / "erin.json").exists()


def test_a_stale_secret_file_never_logs_in_and_is_named(workspace: Path) -> None:
    first = orjson.loads(_cli(workspace, "users", "add", "frank", "--role", "admin", "--json"))
    old = (workspace / "users" / "frank.json").read_bytes()
    _cli(workspace, "users", "reset", "frank")
    (workspace / "users" / "frank.json").write_bytes(old)  # restored from before the reset
    with Workspace.open(workspace) as ws:
        assert users.authenticate(ws, "frank", first["secret"]) is None
    report = _audit(workspace)
    codes = [v["code"] for v in report["violations"]]  # type: ignore[attr-defined]
    assert codes == ["user_file_unbacked"]


def test_a_link_planted_for_the_secret_file_is_never_written_through(
    workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (workspace / "users").mkdir(mode=0o700)
    (workspace / "users" / "gina.json").symlink_to(outside)
    _cli(workspace, "users", "add", "gina", "--role", "reviewer")
    assert outside.read_text() == "keep"
    assert not (workspace / "users" / "gina.json").is_symlink()


def test_a_secret_file_that_cannot_be_written_leaves_a_user_who_cannot_log_in(
    workspace: Path,
) -> None:
    (workspace / "users").write_text("not a folder")  # where the secret files go
    message = _cli(workspace, "users", "add", "hank", "--role", "admin", code=1)
    assert "hank is on record" in message and "stoic users reset hank" in message
    (record,) = _log(workspace)  # the record came first, and stays
    assert record["decision_outcome"] == "added"
    listed = orjson.loads(_cli(workspace, "users", "list", "--json"))
    assert [(e["name"], e["can_log_in"]) for e in listed] == [("hank", False)]
    report = _audit(workspace)
    assert [v["path"] for v in report["violations"]] == ["users"]  # type: ignore[attr-defined]
    (workspace / "users").unlink()
    secret = orjson.loads(_cli(workspace, "users", "reset", "hank", "--json"))["secret"]
    with Workspace.open(workspace) as ws:
        assert users.authenticate(ws, "hank", secret) is not None
    assert _audit(workspace)["ok"] is True


def test_the_servers_roster_answers_what_the_log_says_at_each_look(
    workspace: Path, tmp_path: Path
) -> None:
    roster = users.Roster()
    with Workspace.open(workspace) as ws:
        assert roster.backed(ws, "ivy") is None
        users.add(ws, "ivy", role="reviewer", actor="human:root")
        first = roster.backed(ws, "ivy")
        assert first is not None and first.role == "reviewer"
        users.set_role(ws, "ivy", role="admin", actor="human:root")
        users.reset(ws, "ivy", actor="human:root")
        caught_up = roster.backed(ws, "ivy")
        assert caught_up == users.backed(ws, "ivy")
        assert caught_up is not None and caught_up.role == "admin"
        users.remove(ws, "ivy", actor="human:root")
        assert roster.backed(ws, "ivy") is None
    other = tmp_path / "other"
    _cli(other, "init")
    _cli(other, "users", "add", "ivy", "--role", "operator")
    with Workspace.open(other) as ws:  # another log: folded from its start
        found = roster.backed(ws, "ivy")
        assert found is not None and found.role == "operator"
