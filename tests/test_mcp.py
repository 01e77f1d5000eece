"""`stoic mcp` (DESIGN §15): an agent proposes, escalates, reads decisions and asks the gate —
through the SDK's in-process client, and once over real stdio — and never decides."""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pytest
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult, TextContent

import stoic
from stoic.core.gate_wire import NARROWING_VARIABLE
from stoic.core.proposals import ProposalStatus
from stoic.exceptions import UsageError
from stoic.mcp.server import Agent, agent_actor, build_server
from stoic.mcp.tools import MAX_WAIT_SECONDS, TOOLS
from stoic.services import escalations, queue, trust
from tests.conftest import run_cli

AGENT = "agent:tester"


def _no_wait(ws_path: Path) -> None:
    """The gate answers a call sent to a person at once: undecided, it is denied."""
    settings = ws_path / "stoic.toml"
    settings.write_text(settings.read_text().replace("[gate]\n", "[gate]\nwait_seconds = 0\n", 1))


def _session(ws_path: Path, repo: Path, scenario: Callable[[Client], Awaitable[None]]) -> None:
    """Run `scenario` against the server over the SDK's in-memory streams."""

    async def main() -> None:
        server = build_server(Agent(ws_path, AGENT, repo.resolve()))
        async with Client(server, mode="legacy") as client:
            await scenario(client)

    anyio.run(main)


def _text(result: CallToolResult) -> str:
    (content,) = result.content
    assert isinstance(content, TextContent)
    return content.text


def _json(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, _text(result)
    data = orjson.loads(_text(result))
    assert isinstance(data, dict)
    return data


def _refused(result: CallToolResult) -> str:
    assert result.is_error
    text = _text(result)
    assert "\n" not in text  # one line, no traceback
    return text


PROPOSAL = {
    "title": "Rotate the staging key",
    "summary": "The key leaked into a log.",
    "action": ["sh", "-c", "echo rotate"],
    "reasoning": ["the key is in build.log", "rotation is the runbook's answer"],
    "confidence": 0.9,
    "trade_off": "staging is down for a minute",
}


def test_the_tools_and_their_honest_annotations(ws_path: Path, repo: Path) -> None:
    async def scenario(client: Client) -> None:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(listed) == {
            "propose_action",
            "get_proposal",
            "wait_for_decision",
            "escalate",
            "request_permission",
        }
        for name, tool in listed.items():
            hints = tool.annotations
            assert hints is not None and tool.description
            assert hints.destructive_hint is False and hints.open_world_hint is False
            read_only = name in ("get_proposal", "wait_for_decision")
            assert hints.read_only_hint is read_only, name
            assert hints.idempotent_hint is read_only, name
            assert tool.input_schema["additionalProperties"] is False
        schema = listed["wait_for_decision"].input_schema["properties"]["seconds"]
        assert schema["maximum"] == MAX_WAIT_SECONDS == 300

    _session(ws_path, repo, scenario)


def test_no_tool_decides_and_an_agent_cannot_decide_a_proposal(ws_path: Path, repo: Path) -> None:
    # Exactly these: a tool added later is a decision to make here, by name.
    assert {tool.name for tool in TOOLS} == {
        "propose_action",
        "get_proposal",
        "wait_for_decision",
        "escalate",
        "request_permission",
    }

    async def scenario(client: Client) -> None:
        made = _json(await client.call_tool("propose_action", PROPOSAL))
        said = _refused(await client.call_tool("approve", {"proposal_id": made["proposal_id"]}))
        assert "stoic has no tool 'approve'" in said
        with stoic.Workspace.open(ws_path) as workspace:  # nor through the queue, as the agent
            with pytest.raises(UsageError, match="only a person decides a proposal"):
                queue.decide(workspace, made["proposal_id"], "approved", by=AGENT)
            assert queue.get(workspace, made["proposal_id"]).status is ProposalStatus.PENDING

    _session(ws_path, repo, scenario)


def test_propose_then_a_person_approves_and_the_wait_returns_it(ws_path: Path, repo: Path) -> None:
    async def scenario(client: Client) -> None:
        made = _json(await client.call_tool("propose_action", PROPOSAL))
        proposal_id = made["proposal_id"]
        assert (made["status"], made["confidence_band"]) == ("pending", "high")
        shown = _json(await client.call_tool("get_proposal", {"proposal_id": proposal_id}))
        assert shown["action"] == PROPOSAL["action"] and shown["origin"] == "mcp"
        assert shown["reasoning_trace"] == PROPOSAL["reasoning"]
        waited = _json(
            await client.call_tool("wait_for_decision", {"proposal_id": proposal_id, "seconds": 0})
        )
        assert (waited["status"], waited["decided"], waited["reason"]) == ("pending", False, None)

        def approve() -> None:
            with stoic.Workspace.open(ws_path) as workspace:
                queue.decide(workspace, proposal_id, "approved", by="human:alice", reason="go")

        async with anyio.create_task_group() as group:
            arguments = {"proposal_id": proposal_id, "seconds": 60}
            pending = group.start_soon  # the wait is under way when the person decides
            results: list[CallToolResult] = []

            async def wait() -> None:
                results.append(await client.call_tool("wait_for_decision", arguments))

            pending(wait)
            await anyio.sleep(0.3)
            await anyio.to_thread.run_sync(approve)
        waited = _json(results[0])
        assert (waited["status"], waited["decided"], waited["reason"]) == ("approved", True, "go")
        assert waited["decision"]["by"] == "human:alice"

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:
        created = next(iter(workspace.records(decision_type="proposal")))
        assert created.actor == AGENT  # on record as the agent, never as a person
        assert workspace.audit().ok


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"reasoning": []}, "reasoning must hold 1 to 50 items"),
        ({"reasoning": None}, "reasoning is required"),
        ({"sources": ["run-19990101-000000-nope"]}, "run-19990101-000000-nope"),
        ({"confidence": 1.5}, "confidence must be between 0 and 1"),
        ({"confidence": True}, "confidence must be a number, not a boolean"),
        ({"title": "x" * 201}, "title is over 200 characters"),
        ({"action": ["sh", 3]}, "action must be a list of strings"),
        ({"action": ["a\0b"]}, "action[0] holds a NUL character"),
        ({"actor": "human:alice"}, "unknown argument 'actor'"),
    ],
)
def test_a_refused_proposal_is_one_line_and_writes_nothing(
    ws_path: Path, repo: Path, change: dict[str, Any], said: str
) -> None:
    arguments = {k: v for k, v in (PROPOSAL | change).items() if v is not None}

    async def scenario(client: Client) -> None:
        assert said in _refused(await client.call_tool("propose_action", arguments))

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:
        assert queue.list_proposals(workspace) == []


def test_a_paused_workspace_refuses_a_proposal(ws_path: Path, repo: Path) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        trust.pause(workspace, reason="audit", actor="human:alice")

    async def scenario(client: Client) -> None:
        assert "paused" in _refused(await client.call_tool("propose_action", PROPOSAL))

    _session(ws_path, repo, scenario)


def test_bad_ids_and_waits_are_refused(ws_path: Path, repo: Path) -> None:
    async def scenario(client: Client) -> None:
        said = _refused(await client.call_tool("get_proposal", {"proposal_id": "../../etc"}))
        assert "proposal_id must be an id like PROP-20260101-001" in said
        said = _refused(await client.call_tool("get_proposal", {"proposal_id": 7}))
        assert "proposal_id must be" in said
        missing = {"proposal_id": "PROP-20260101-999"}
        assert "no proposal PROP-20260101-999" in _refused(
            await client.call_tool("get_proposal", missing)
        )
        too_long = missing | {"seconds": 301}
        said = _refused(await client.call_tool("wait_for_decision", too_long))
        assert "seconds must be between 0 and 300" in said

    _session(ws_path, repo, scenario)


@pytest.mark.parametrize(
    ("question", "said"),
    [
        ("Which region? And which account?", "asks 2"),
        ("Pick the region for the deploy.", "asks none"),
        ("", "asks none"),
    ],
)
def test_escalate_refuses_anything_but_one_question(
    ws_path: Path, repo: Path, question: str, said: str
) -> None:
    async def scenario(client: Client) -> None:
        refused = _refused(await client.call_tool("escalate", {"question": question}))
        assert "exactly one question" in refused and said in refused

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:
        assert escalations.escalations(workspace) == []


def test_escalate_raises_one_question_as_the_agent(ws_path: Path, repo: Path) -> None:
    # One question: one sentence ending with '?'; a '?' inside a word or URL is not one.
    question = "Should https://example.com/a?b=1 be the endpoint for eu-west?"

    async def scenario(client: Client) -> None:
        raised = _json(
            await client.call_tool(
                "escalate", {"question": question, "context": "Two configs disagree."}
            )
        )
        assert (raised["mode"], raised["question"], raised["open"]) == ("ambiguity", question, True)
        said = _refused(
            await client.call_tool("escalate", {"question": "Why?", "mode": "process-issue"})
        )
        assert "mode 'process-issue' is not one of" in said

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:
        (escalation,) = escalations.escalations(workspace)
        assert escalation.raised_by == AGENT and escalation.question == question


def _permission(client: Client, tool: str, **tool_input: Any) -> Awaitable[CallToolResult]:
    arguments = {"tool_name": tool, "input": tool_input, "tool_use_id": "toolu_01"}
    return client.call_tool("request_permission", arguments)


def _answer(result: CallToolResult) -> dict[str, Any]:
    """Claude Code's permission prompt answer: a text content holding JSON, never an error."""
    assert not result.is_error
    answer = orjson.loads(_text(result))
    assert answer["behavior"] in ("allow", "deny")
    expected = {"behavior", "updatedInput"} if answer["behavior"] == "allow" else None
    assert set(answer) == (expected or {"behavior", "message"})
    return dict(answer)


def test_request_permission_allows_denies_and_proposes_by_the_gate_rules(
    ws_path: Path, repo: Path
) -> None:
    _no_wait(ws_path)

    async def scenario(client: Client) -> None:
        allowed = _answer(await _permission(client, "Bash", command="git status"))
        assert allowed == {"behavior": "allow", "updatedInput": {"command": "git status"}}
        denied = _answer(await _permission(client, "Read", file_path=str(repo / ".env")))
        assert denied["behavior"] == "deny" and denied["message"].startswith("stoic's gate: ")
        push = {"command": "git push origin main"}
        waiting = _answer(await _permission(client, "Bash", **push))
        assert waiting["behavior"] == "deny" and "waits for a person" in waiting["message"]
        with stoic.Workspace.open(ws_path) as workspace:
            (proposal,) = queue.list_proposals(workspace, ProposalStatus.PENDING)
            assert proposal.type == "tool_call" and proposal.id in waiting["message"]
            queue.decide(workspace, proposal.id, "approved", by="human:alice")
        again = _answer(await _permission(client, "Bash", **push))
        assert again == {"behavior": "allow", "updatedInput": push}  # exactly that input
        forced = _answer(await _permission(client, "Bash", command="git push --force"))
        assert forced["behavior"] == "deny"

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:
        gated = list(workspace.records(decision_type="gate"))
        assert {r.decision_inputs["agent"] for r in gated} == {AGENT}
        assert [r.decision_outcome for r in gated][:3] == ["allowed", "denied", "proposed"]
        assert workspace.audit().ok


@pytest.mark.parametrize(
    "arguments",
    [
        {"tool_name": "Bash", "input": "git status"},
        {"tool_name": "Bash"},
        {"tool_name": "", "input": {}},
        {"tool_name": "Bash", "input": {"command": "x" * (1024 * 1024)}},
        {"tool_name": "Bash", "input": {}, "behavior": "allow"},
        None,
    ],
)
def test_request_permission_denies_what_it_cannot_read(
    ws_path: Path, repo: Path, arguments: dict[str, Any] | None
) -> None:
    async def scenario(client: Client) -> None:
        answer = _answer(await client.call_tool("request_permission", arguments))
        assert answer["behavior"] == "deny" and "\n" not in answer["message"]

    _session(ws_path, repo, scenario)
    with stoic.Workspace.open(ws_path) as workspace:  # denied unread, and on record as such
        (record,) = workspace.records(decision_type="gate")
        assert record.decision_outcome == "denied"
        assert record.decision_reason.startswith("denied unread: request_permission: ")
        assert record.decision_inputs["agent"] == AGENT


def test_request_permission_denies_when_the_workspace_is_gone(tmp_path: Path, repo: Path) -> None:
    async def scenario(client: Client) -> None:
        answer = _answer(await _permission(client, "Bash", command="git status"))
        assert answer["behavior"] == "deny" and "could not decide" in answer["message"]

    _session(tmp_path / "gone", repo, scenario)


def test_the_agent_is_named_plainly_and_never_a_person(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STOIC_AGENT_ROLE", raising=False)
    assert agent_actor(None) == "agent:claude-code"
    monkeypatch.setenv("STOIC_AGENT_ROLE", "coder")
    assert agent_actor(None) == "agent:coder"
    assert agent_actor("reviewer-2") == "agent:reviewer-2"
    for name in ("human:alice", "a b", "x" * 65, "-x"):
        with pytest.raises(UsageError, match="not a plain name"):
            agent_actor(name)


def test_stoic_mcp_refuses_a_missing_workspace_before_serving(tmp_path: Path) -> None:
    result = run_cli("-w", str(tmp_path / "nowhere"), "mcp")
    assert result.exit_code == 2 and result.stdout == ""
    assert "no stoic workspace" in result.stderr


def test_stoic_mcp_refuses_plan_rules_it_cannot_read(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "mcp", env={NARROWING_VARIABLE: "[{"})
    assert result.exit_code == 2 and "gate rules cannot be read" in result.stderr


def test_stoic_mcp_over_real_stdio(ws_path: Path, repo: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "stoic", "-w", str(ws_path), "mcp", "--agent", "stdio-agent"],
        cwd=str(repo),
        # As stoic starts an agent in a gated task: the plan's rules in the environment.
        env={
            **os.environ,
            NARROWING_VARIABLE: '[{"verdict": "deny", "tool": "Bash", "command": "ls"}]',
        },
    )

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(server, mode="legacy") as client:  # Claude Code's handshake
                names = {tool.name for tool in (await client.list_tools()).tools}
                assert "propose_action" in names and "approve" not in names
                made = _json(await client.call_tool("propose_action", PROPOSAL))
                assert made["status"] == "pending"
                narrowed = _answer(await _permission(client, "Bash", command="ls"))
                assert narrowed["behavior"] == "deny" and "meta.gate[0]" in narrowed["message"]

    anyio.run(main)
    with stoic.Workspace.open(ws_path) as workspace:
        (proposal,) = queue.list_proposals(workspace)
        created = next(iter(workspace.records(decision_type="proposal")))
        assert created.actor == "agent:stdio-agent" and proposal.origin == "mcp"


def test_a_secret_of_the_agents_environment_is_masked_in_what_it_sends(
    ws_path: Path, repo: Path
) -> None:
    value, token = "dc-77e1a9b3f0", "ghp_0123456789abcdef"
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "stoic", "-w", str(ws_path), "mcp", "--agent", "stdio-agent"],
        cwd=str(repo),
        # As stoic starts an agent in a task that declared DEPLOY_CODE; GITHUB_TOKEN is one
        # `policy.secret_names` matches.
        env={
            **os.environ,
            "STOIC_MASKED": "DEPLOY_CODE",
            "DEPLOY_CODE": value,
            "GITHUB_TOKEN": token,
        },
    )
    leaky = PROPOSAL | {"summary": f"use {value}", "action": ["sh", "-c", f"echo {token}"]}

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(server, mode="legacy") as client:
                made = _json(await client.call_tool("propose_action", leaky))
                shown = _json(
                    await client.call_tool("get_proposal", {"proposal_id": made["proposal_id"]})
                )
                assert shown["summary"] == "use [DEPLOY_CODE masked]"
                assert shown["action"] == ["sh", "-c", "echo [GITHUB_TOKEN masked]"]
                asked = {"question": f"May I use {value}?", "context": token}
                _json(await client.call_tool("escalate", asked))

    anyio.run(main)
    for path in ws_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert value.encode() not in data and token.encode() not in data, path


def test_a_message_it_cannot_read_is_answered_never_left_waiting(ws_path: Path, repo: Path) -> None:
    import select
    import subprocess

    from mcp_types import LATEST_PROTOCOL_VERSION

    server = subprocess.Popen(
        [sys.executable, "-m", "stoic", "-w", str(ws_path), "mcp", "--agent", "raw"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=repo,
    )
    assert server.stdin is not None and server.stdout is not None

    def send(line: bytes) -> None:
        assert server.stdin is not None
        server.stdin.write(line + b"\n")
        server.stdin.flush()

    def answer() -> dict[str, Any]:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        assert ready, "no answer in 60 s: the caller would wait forever"
        message: dict[str, Any] = orjson.loads(server.stdout.readline())
        return message

    try:
        hello = {"protocolVersion": LATEST_PROTOCOL_VERSION, "capabilities": {},
                 "clientInfo": {"name": "raw", "version": "1"}}  # fmt: skip
        send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello}))
        assert answer()["id"] == 1
        send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}')
        call = b'{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"request_permission","arguments":{"tool_name":"Read","input":{"file_path":%s}}}}'  # noqa: E501
        send(b"{not json}")
        unread = answer()
        assert (unread["id"], unread["error"]["code"]) == (None, -32700)
        send(call % (901, b'"\\ud800"'))
        surrogate = answer()
        assert surrogate["id"] == 901 and "error" in surrogate
        send(call % (902, b"9" * 5000))
        huge = answer()
        assert huge["id"] == 902 and "error" in huge
        send(call % (903, b'"a.txt", "n": 1e999'))
        infinite = answer()
        assert infinite["id"] == 903
        text = infinite["result"]["content"][0]["text"]
        assert '"deny"' in text and "not finite" in text  # never allowed as {"n": null}
        # The top-level id, not one inside the params; a readable id of a bad message too.
        send(
            b'{"params":{"x":{"id":42}},"jsonrpc":"2.0","id":8,"method":"tools/call","n":"\\ud800"}'
        )
        assert answer()["id"] == 8
        send(b'{"jsonrpc":"1.0","id":"abc","method":"tools/list"}')
        assert answer()["id"] == "abc"
        send(b'{"jsonrpc":"2.0","id":9,"method":{"id":79}}')  # an id inside another field
        assert answer()["id"] == 9
        send(orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
        assert answer()["id"] == 7  # and it goes on serving
    finally:
        server.communicate(timeout=60)  # closes stdin: the server ends
