"""The agent gate (DESIGN §15): one tool call of an agent, decided by the workspace's rules,
and by a person where the rules say so — every answer on record.

A call the rules allow goes through and one they deny is denied, each with a `gate` record. A
call they send to a person becomes a proposal whose action is the exact call (its tool and
its input as canonical JSON, hashed); the gate then waits up to `gate.wait_seconds`: approved,
it allows exactly that input; rejected, it denies with the reviewer's reason; undecided, it
defers the call (an agent in print mode stops, to be resumed once it is decided) or denies it,
naming the proposal that waits. The same call again finds its proposal instead of making a new
one: a rejection denies it at once. While the workspace is paused, whatever would wait for a
person is denied: a pause stops the queue's growth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from stoic.core.gate import (
    MAX_COMMAND_CHARS,
    TOOL_CALL_TYPE,
    ToolCall,
    Verdict,
    call_sha256,
    decide,
    file_path_of,
    is_inside,
)
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.exceptions import UsageError
from stoic.services import queue
from stoic.store.workspace import Workspace

__all__ = [
    "MAX_HOOK_BYTES",
    "Answer",
    "GateAnswer",
    "HookCall",
    "check_call",
    "read_hook_call",
]

MAX_HOOK_BYTES = 1024 * 1024
"""The most a hook payload may hold: a tool input past it is denied unread."""

_POLL_SECONDS = 0.2
_FIELDS = ("session_id", "hook_event_name", "tool_name", "tool_input", "cwd")


class Answer(StrEnum):
    """What the agent is told (Claude Code's `permissionDecision` words)."""

    ALLOW = "allow"
    DENY = "deny"
    DEFER = "defer"


_OUTCOME = {Answer.ALLOW: "allowed", Answer.DENY: "denied", Answer.DEFER: "deferred"}


@dataclass(frozen=True, slots=True)
class HookCall:
    """A `PreToolUse` hook's payload, checked."""

    tool_name: str
    tool_input: Mapping[str, Any]
    cwd: str
    session_id: str
    tool_use_id: str | None
    permission_mode: str | None
    transcript_path: str | None


@dataclass(frozen=True, slots=True)
class GateAnswer:
    answer: Answer
    reason: str
    proposal_id: str | None = None
    seq: int | None = None
    """The seq of the `gate` record that says so."""


def read_hook_call(raw: bytes) -> HookCall | str:
    """The payload's call, or what is wrong with it (one line, for the denial)."""
    if len(raw) > MAX_HOOK_BYTES:
        return (
            f"the hook payload is over {MAX_HOOK_BYTES // 1024} KiB: a call that large is not read"
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"the hook payload is not JSON ({exc})"
    if not isinstance(data, dict):
        return "the hook payload is not a JSON object"
    missing = [name for name in _FIELDS if name not in data]
    if missing:
        return f"the hook payload lacks {', '.join(missing)}"
    if data["hook_event_name"] != "PreToolUse":
        return f"the gate answers PreToolUse hooks, not {str(data['hook_event_name'])[:40]!r}"
    strings = ("tool_name", "cwd", "session_id")
    wrong = [name for name in strings if not isinstance(data[name], str) or not data[name]]
    if wrong or not isinstance(data["tool_input"], dict):
        return f"the hook payload's {(wrong or ['tool_input'])[0]} is not what Claude Code sends"
    if not Path(data["cwd"]).is_absolute():
        return "the hook payload's cwd is not an absolute path"

    def optional(name: str) -> str | None:
        value = data.get(name)
        return value if isinstance(value, str) else None

    return HookCall(
        tool_name=data["tool_name"],
        tool_input=data["tool_input"],
        cwd=data["cwd"],
        session_id=data["session_id"],
        tool_use_id=optional("tool_use_id"),
        permission_mode=optional("permission_mode"),
        transcript_path=optional("transcript_path"),
    )


def _tool_call(call: HookCall, repository: Path | None) -> ToolCall:
    """The call as the rules see it: the repository — the one the hook was given, else the
    session's `cwd` — and the file path (relative to the `cwd`, as the agent means it) with
    links resolved, so a link inside the repository to a file outside it is outside."""
    cwd = Path(call.cwd)
    given = file_path_of(call.tool_input)
    resolved = str((cwd / given).resolve()) if given else None
    root = (repository or cwd).resolve()
    return ToolCall(call.tool_name, call.tool_input, str(root), resolved)


def _action(call: HookCall, cwd: str) -> list[str]:
    """The call a person approves: its tool, its input as canonical JSON, and the repository
    (links resolved) it runs in — the same input elsewhere is another call."""
    return [
        "claude-code",
        call.tool_name,
        orjson.dumps(call.tool_input, option=orjson.OPT_SORT_KEYS).decode(),
        cwd,
    ]


def _refusal(workspace: Workspace, call: ToolCall) -> str | None:
    """What no rule can allow: a command too long to read, and a file tool's path inside the
    workspace — its settings, log and queue are stoic's record, not an agent's to edit."""
    command = call.tool_input.get("command")
    if isinstance(command, str) and len(command) > MAX_COMMAND_CHARS:
        return f"a command over {MAX_COMMAND_CHARS // 1024} KiB is not read"
    if call.resolved_path is not None and is_inside(
        call.resolved_path, str(workspace.root.resolve())
    ):
        return f"{call.tool_name} on {call.resolved_path}: the workspace is stoic's record"
    return None


def _earlier(workspace: Workspace, action: list[str]) -> Proposal | None:
    """The latest proposal of this exact call, if one was made."""
    found = None
    for proposal in queue.list_proposals(workspace):
        if proposal.type == TOOL_CALL_TYPE and proposal.action == tuple(action):
            found = proposal
    return found


def check_call(
    workspace: Workspace,
    call: HookCall,
    *,
    agent: str,
    run_id: str | None = None,
    task_id: str | None = None,
    defer: bool = False,
    wait_seconds: float | None = None,
    repository: Path | None = None,
) -> GateAnswer:
    """Decide `call` for the agent `agent` (`agent:<name>`), on record. `repository` pins
    what "inside" means; without it, the session's `cwd` — which the agent can move — does."""
    if not agent.startswith("agent:"):
        raise UsageError(f"the gate answers agents (agent:<name>), not {agent!r}")
    settings = workspace.settings.gate
    tool_call = _tool_call(call, repository)
    refusal = _refusal(workspace, tool_call)  # before any rule's regex reads the call
    verdict = (
        None if refusal else decide(settings.gate_rules(), tool_call, Verdict(settings.default))
    )
    sha256 = call_sha256(call.tool_name, call.tool_input)
    inputs: dict[str, Any] = {
        "tool_name": call.tool_name,
        "sha256": sha256,
        "tool_use_id": call.tool_use_id,
        "session_id": call.session_id,
        "cwd": call.cwd,
        "rules": list(verdict.rules) if verdict is not None else [],
        "run_id": run_id,
        "task_id": task_id,
    }

    def answer(
        said: Answer, reason: str, proposal: str | None = None, outcome: str | None = None
    ) -> GateAnswer:
        record = workspace.record(
            "gate",
            outcome or _OUTCOME[said],
            reason,
            actor="system:gate",
            trigger="reactive",
            inputs=inputs | {"agent": agent},
            proposal_id=proposal,
        )
        return GateAnswer(said, reason, proposal, record.seq)

    if verdict is None:
        return answer(Answer.DENY, str(refusal))
    if verdict.verdict is Verdict.ALLOW:
        return answer(Answer.ALLOW, verdict.reason)
    if verdict.verdict is Verdict.DENY:
        return answer(Answer.DENY, verdict.reason)
    paused = workspace.status_folded().paused
    if paused is not None:
        return answer(Answer.DENY, f"paused: {paused.get('reason')}")
    action = _action(call, tool_call.cwd)
    earlier = _earlier(workspace, action)  # decided already: the wait's first look answers
    if earlier is None:
        proposal = queue.propose(
            workspace,
            title=f"{agent} asks to run {call.tool_name}"[:200],
            reasoning_trace=[verdict.reason],
            by=agent,
            sources=[s for s in (run_id, task_id) if s],
            action=action,
            type=TOOL_CALL_TYPE,
            summary=_summary(call, sha256),
            origin="gate",
        )
        reason = f"{proposal.id} waits for a person: {verdict.reason}"
        answer(Answer.DEFER, reason, proposal.id, outcome="proposed")
    else:
        proposal = earlier
    return _wait(workspace, proposal.id, answer, defer, wait_seconds)


def _summary(call: HookCall, sha256: str) -> str:
    shown = orjson.dumps(call.tool_input, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return (
        f"Tool {call.tool_name}, call {call.tool_use_id or '(no id)'} in session"
        f" {call.session_id} (cwd {call.cwd}); input sha256 {sha256}:\n\n```json\n"
        f"{shown.decode()[:8000]}\n```"
    )


def _wait(
    workspace: Workspace,
    proposal_id: str,
    answer: Callable[[Answer, str, str | None], GateAnswer],
    defer: bool,
    wait_seconds: float | None,
) -> GateAnswer:
    budget = workspace.settings.gate.wait_seconds if wait_seconds is None else wait_seconds
    ends = time.monotonic() + budget
    while True:
        proposal = queue.get(workspace, proposal_id)
        if proposal.status in (ProposalStatus.APPROVED, ProposalStatus.EXECUTED):
            said = f"{proposal_id} was approved for exactly this input"
            return answer(Answer.ALLOW, said, proposal_id)
        if proposal.status is ProposalStatus.REJECTED:
            said = (proposal.decision or {}).get("reason") or "no reason given"
            return answer(Answer.DENY, f"{proposal_id} was rejected: {said}", proposal_id)
        left = ends - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(_POLL_SECONDS, left))
    waiting = f"{proposal_id} waits for a person"
    if defer:
        return answer(
            Answer.DEFER, f"{waiting}: the call is deferred until it is decided", proposal_id
        )
    return answer(Answer.DENY, f"{waiting}: try again once it is decided", proposal_id)
