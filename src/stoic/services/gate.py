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

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from stoic.core.gate import GateRule, call_sha256
from stoic.core.policy import environment_secrets, mask_json, mask_secrets
from stoic.core.proposals import Proposal, ProposalStatus
from stoic.core.records import Decision
from stoic.exceptions import UsageError
from stoic.services.gate_call import (
    MAX_HOOK_BYTES,
    OUTCOME,
    Answer,
    GateAnswer,
    HookCall,
    gate_decision,
    judge,
    read_hook_call,
    rules_answer,
)
from stoic.services.queue_book import QueueBook, queue_book
from stoic.store.atomic import atomic_write
from stoic.store.processes import workspace_policy
from stoic.store.workspace import Workspace

__all__ = [
    "MAX_HOOK_BYTES",
    "Answer",
    "GateAnswer",
    "HookCall",
    "Waiting",
    "agent_secrets",
    "begin_call",
    "check_call",
    "deny_unread",
    "give_up",
    "look",
    "masked_call",
    "note_deferral",
    "read_hook_call",
]


def _action(call: HookCall) -> list[str]:
    """The call a person approves: its tool, its input as canonical JSON, and the folder (links
    resolved) it runs in — the same input in another folder is another call, even inside one
    pinned repository (`rm -rf build` there is another `build`)."""
    return [
        "claude-code",
        call.tool_name,
        orjson.dumps(call.tool_input, option=orjson.OPT_SORT_KEYS).decode(),
        str(Path(call.cwd).resolve()),
    ]


def agent_secrets(workspace: Workspace) -> dict[str, str]:
    """The secret values of this process's environment — an agent's, when its hook or `stoic
    mcp` runs inside a task: the task's declared secrets and what `policy.secret_names` match."""
    return environment_secrets(workspace_policy(workspace.settings), os.environ)


def masked_call(call: HookCall, secrets: Mapping[str, str]) -> HookCall:
    """The call as the gate shows and records it: every secret value masked, so the proposal
    a person approves (and its sha256) never holds one. The rules weigh the call itself."""
    if not secrets:
        return call
    return replace(
        call,
        tool_name=mask_secrets(call.tool_name, secrets),
        tool_input=mask_json(dict(call.tool_input), secrets),
    )


@dataclass(frozen=True, slots=True)
class Waiting:
    """A call sent to a person: its proposal, the inputs of the record its answer will be, and
    when the wait for a decision ends (`time.monotonic()`)."""

    proposal_id: str
    inputs: Mapping[str, Any]
    ends_at: float


def _answer(
    book: QueueBook,
    inputs: Mapping[str, Any],
    said: Answer,
    reason: str,
    proposal: str | None = None,
    outcome: str | None = None,
) -> GateAnswer:
    decision = gate_decision(outcome or OUTCOME[said], reason, inputs, proposal)
    record = book.append(decision)
    return GateAnswer(said, reason, proposal, record.seq)


def begin_call(
    workspace: Workspace,
    call: HookCall,
    *,
    agent: str,
    run_id: str | None = None,
    task_id: str | None = None,
    wait_seconds: float | None = None,
    repository: Path | None = None,
    narrowing: Sequence[GateRule] = (),
) -> GateAnswer | Waiting:
    """The rules' answer to `call`, on record — or, for a call they send to a person, its
    proposal (made now, or found: the same call again) to wait on with `look` and `give_up`,
    so that a server can wait without holding the workspace."""
    if not agent.startswith("agent:"):
        raise UsageError(f"the gate answers agents (agent:<name>), not {agent!r}")
    judged = judge(  # the call as it is: the rules weigh where it really reads and writes
        workspace.root,
        workspace.settings.gate.table(),
        call,
        repository=repository,
        narrowing=narrowing,
        run_id=run_id,
        task_id=task_id,
    )
    secrets = agent_secrets(workspace)
    shown = masked_call(call, secrets)  # and as it is shown, recorded and approved
    hides_a_secret = shown != call
    call = shown
    inputs = judged.inputs | {
        "agent": agent,
        "tool_name": call.tool_name,
        "sha256": call_sha256(call.tool_name, call.tool_input),
    }
    book = queue_book(workspace)
    by_rules = rules_answer(judged)
    if by_rules is not None:
        said, why = by_rules
        return _answer(book, inputs, said, mask_secrets(why, secrets))
    assert judged.verdict is not None  # sent to a person
    verdict = replace(judged.verdict, reason=mask_secrets(judged.verdict.reason, secrets))
    paused = book.paused()
    if paused is not None:
        return _answer(book, inputs, Answer.DENY, f"paused: {paused.get('reason')}")
    action = _action(call)
    proposal = book.earlier(action, by=agent)  # decided already: the wait's first look answers
    if proposal is not None and hides_a_secret and not _same_task(proposal, run_id, task_id):
        # The same masked call elsewhere may carry another value: only this task's stands.
        proposal = None
    if proposal is None:
        proposal = book.propose(
            title=f"{agent} asks to run {call.tool_name}"[:200],
            reasoning_trace=[verdict.reason],
            by=agent,
            sources=[s for s in (run_id, task_id) if s],
            action=action,
            summary=_summary(call, inputs["sha256"]),
        )
        reason = f"{proposal.id} waits for a person: {verdict.reason}"
        _answer(book, inputs, Answer.DEFER, reason, proposal.id, outcome="proposed")
    budget = workspace.settings.gate.wait_seconds if wait_seconds is None else wait_seconds
    return Waiting(proposal.id, inputs, time.monotonic() + budget)


def _same_task(proposal: Proposal, run_id: str | None, task_id: str | None) -> bool:
    """Whether the proposal was made in this run's task, whose secrets hold one value."""
    return bool(run_id and task_id) and {run_id, task_id} <= set(proposal.sources)


def look(workspace: Workspace, waiting: Waiting) -> GateAnswer | None:
    """The answer, on record, once a person has decided the call's proposal; else None."""
    book = queue_book(workspace)
    return _decided(book, waiting, book.get(waiting.proposal_id))


def _decided(book: QueueBook, waiting: Waiting, proposal: Proposal) -> GateAnswer | None:
    if proposal.status in (ProposalStatus.APPROVED, ProposalStatus.EXECUTED):
        said = f"{proposal.id} was approved for exactly this input"
        return _answer(book, waiting.inputs, Answer.ALLOW, said, proposal.id)
    if proposal.status is ProposalStatus.REJECTED:
        why = (proposal.decision or {}).get("reason") or "no reason given"
        said = f"{proposal.id} was rejected: {why}"
        return _answer(book, waiting.inputs, Answer.DENY, said, proposal.id)
    return None


def give_up(workspace: Workspace, waiting: Waiting, *, defer: bool) -> GateAnswer:
    """The answer, on record, when no one decided in time: deferred, or denied naming the
    proposal that waits."""
    said = f"{waiting.proposal_id} waits for a person"
    if defer:
        said, answer = f"{said}: the call is deferred until it is decided", Answer.DEFER
    else:
        said, answer = f"{said}: try again once it is decided", Answer.DENY
    return _answer(queue_book(workspace), waiting.inputs, answer, said, waiting.proposal_id)


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
    narrowing: Sequence[GateRule] = (),
) -> GateAnswer:
    """Decide `call` for the agent `agent` (`agent:<name>`), on record, waiting here for a
    person where the rules say so. `repository` pins what "inside" means; without it, the
    session's `cwd` — which the agent can move — does."""
    begun = begin_call(
        workspace,
        call,
        agent=agent,
        run_id=run_id,
        task_id=task_id,
        wait_seconds=wait_seconds,
        repository=repository,
        narrowing=narrowing,
    )
    if isinstance(begun, GateAnswer):
        return begun
    book = queue_book(workspace)
    seen = book.wait_for_decision(begun.proposal_id, begun.ends_at - time.monotonic())
    return _decided(book, begun, seen) or give_up(workspace, begun, defer=defer)


def deny_unread(workspace: Workspace, problem: str, *, agent: str, size: int) -> GateAnswer:
    """A payload the gate could not read (or rules it could not use), denied on record."""
    record = queue_book(workspace).append(
        Decision(
            decision_type="gate",
            decision_outcome="denied",
            decision_reason=f"denied unread: {problem}",
            actor="system:gate",
            decision_trigger="reactive",
            decision_inputs={"agent": agent, "problem": problem, "bytes": size},
        )
    )
    return GateAnswer(Answer.DENY, problem, None, record.seq)


def note_deferral(result_file: Path, proposal_id: str, session_id: str) -> None:
    """From inside a gated agent's task, before the call is deferred: tell its runner, in the
    task's result file, which proposal the session stops on, so the task is suspended on it
    (not taken as done) and the session resumed once it is decided."""
    data: dict[str, object] = {}
    if result_file.exists():
        try:
            loaded = orjson.loads(result_file.read_bytes())
        except orjson.JSONDecodeError:
            loaded = None  # the agent's own bytes: the deferral must still be told
        if isinstance(loaded, dict):
            data = loaded
    data["deferred"] = {"proposal_id": proposal_id, "session_id": session_id}
    atomic_write(result_file, orjson.dumps(data), root=result_file.parent)


def _summary(call: HookCall, sha256: str) -> str:
    shown = orjson.dumps(call.tool_input, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return (
        f"Tool {call.tool_name}, call {call.tool_use_id or '(no id)'} in session"
        f" {call.session_id} (cwd {call.cwd}); input sha256 {sha256}:\n\n```json\n"
        f"{shown.decode()[:8000]}\n```"
    )
