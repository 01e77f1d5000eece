"""The agent gate of a workspace whose `stoic.toml` names a database (DESIGN §13, §15), against
a real PostgreSQL: `stoic gate claude-code` as Claude Code runs it records its answers in the
database, sends a risky call to the database's queue, and allows exactly what a person
approved there; the database's pause denies what would wait."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from stoic.store.pg_store import PostgresStore
from tests.conftest import STOIC_BIN, run_cli

HOOK = {
    "session_id": "abc123",
    "transcript_path": "/home/user/.claude/projects/x/00893aaf.jsonl",
    "permission_mode": "default",
    "hook_event_name": "PreToolUse",
    "tool_name": "Bash",
    "tool_use_id": "toolu_01ABC123",
}


@pytest.fixture
def workspace(db: str, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    assert run_cli("init", str(root)).exit_code == 0
    settings = root / "stoic.toml"
    settings.write_text(settings.read_text().replace("[store]\n", f'[store]\nurl = "{db}"\n'))
    return root


def _hook(workspace: Path, repo: Path, command: str, *options: str) -> dict[str, Any]:
    payload = orjson.dumps(HOOK | {"cwd": str(repo), "tool_input": {"command": command}})
    done = subprocess.run(
        [STOIC_BIN, "-w", str(workspace), "gate", "claude-code", "--agent", "bot", *options],
        input=payload,
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "STOIC_DB"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(orjson.loads(done.stdout)["hookSpecificOutput"])


def _gate_records(db: str) -> list[str]:
    with PostgresStore.open(db) as store:
        return [r.decision_outcome for r in store.read() if r.decision_type == "gate"]


def test_the_gate_of_a_database_workspace_records_and_waits_in_the_database(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    allowed = _hook(workspace, repo, "ls")
    assert allowed["permissionDecision"] == "allow"
    first = _hook(workspace, repo, "git push origin main", "--wait", "0")
    assert first["permissionDecision"] == "deny"
    assert "waits for a person" in first["permissionDecisionReason"]
    pending = orjson.loads(run_cli("queue", "--db", db, "--json").stdout)
    assert [(p["type"], p["origin"], p["status"]) for p in pending] == [
        ("tool_call", "gate", "pending")
    ]
    proposal_id = pending[0]["id"]
    approved = run_cli("approve", proposal_id, "--db", db, "--as", "ann")
    assert approved.exit_code == 0, approved.stderr
    again = _hook(workspace, repo, "git push origin main", "--wait", "0")
    assert (
        again["permissionDecision"] == "allow" and proposal_id in again["permissionDecisionReason"]
    )
    other = _hook(workspace, repo, "git push origin main --force", "--wait", "0")
    assert other["permissionDecision"] == "deny"  # an approval is for exactly its input
    assert _gate_records(db) == ["allowed", "proposed", "denied", "allowed", "proposed", "denied"]
    own = (workspace / "logs" / "decision_log.ndjson").read_bytes()
    assert b'"decision_type":"gate"' not in own  # none in the workspace's own log

    stopped = run_cli("-w", str(workspace), "stop", "--reason", "deploy freeze", "--as", "ann")
    assert stopped.exit_code == 0, stopped.stderr
    frozen = _hook(workspace, repo, "git push origin other", "--wait", "0")
    assert frozen["permissionDecision"] == "deny"
    assert "paused: deploy freeze" in frozen["permissionDecisionReason"]
    audited = run_cli("audit", "--db", db, "--json")
    assert audited.exit_code == 0 and orjson.loads(audited.stdout)["ok"] is True


def test_an_mcp_agent_of_a_database_workspace_proposes_waits_and_escalates_in_the_database(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    import anyio
    from mcp import Client
    from mcp_types import TextContent

    from stoic.mcp.server import Agent, build_server

    repo = tmp_path / "repo"
    repo.mkdir()

    def said(result: Any) -> dict[str, Any]:
        assert not result.is_error
        (content,) = result.content
        assert isinstance(content, TextContent)
        return dict(orjson.loads(content.text))

    async def main() -> None:
        server = build_server(Agent(workspace, "agent:tester", repo.resolve()))
        async with Client(server, mode="legacy") as client:
            made = said(
                await client.call_tool(
                    "propose_action",
                    {"title": "Rotate the key", "reasoning": ["it leaked"], "action": ["true"]},
                )
            )
            proposal_id = made["proposal_id"]
            in_db = orjson.loads(run_cli("queue", "show", proposal_id, "--db", db, "--json").stdout)
            assert (in_db["origin"], in_db["status"]) == ("mcp", "pending")
            assert run_cli("approve", proposal_id, "--db", db, "--as", "ann").exit_code == 0
            waited = said(
                await client.call_tool(
                    "wait_for_decision", {"proposal_id": proposal_id, "seconds": 0}
                )
            )
            assert (waited["status"], waited["decided"]) == ("approved", True)
            asked = said(await client.call_tool("escalate", {"question": "Which key ring is it?"}))
            assert asked["escalation_id"] == "ESC-001"
            listed = run_cli("escalations", "--db", db, "--json")
            [row] = orjson.loads(listed.stdout)  # in the database, raised by the agent
            assert (row["id"], row["raised_by"]) == ("ESC-001", "agent:tester")

    anyio.run(main)
