"""The MCP server behind `stoic mcp`: each tool call parsed, handed to one service, rendered.

The server speaks for one agent, `agent:<name>`, and every proposal, escalation and gate answer
it makes is on record as that agent — never as a person, so no decision a person must make can
come through it (the queue refuses an agent's approval whatever the interface, and no tool here
asks for one). Each call opens the workspace in a worker thread and closes it when done: a wait
for a person blocks no other call, and the settings in force are read at each call.

A refusal — a paused workspace, a source that does not exist, an argument out of bounds, two
questions in one escalation — comes back as a tool error holding one line, for the agent to
read and correct. `request_permission` is Claude Code's permission prompt tool
(<https://code.claude.com/docs/en/cli-reference>, `--permission-prompt-tool`): its answer is
always the JSON text Claude Code reads, and any failure there is a denial, never an allow.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    CallToolRequestParams,
    CallToolResult,
    ErrorData,
    JSONRPCError,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
)
from pydantic import ValidationError

from stoic import __version__
from stoic.core.gate import GateRule
from stoic.core.gate_wire import (
    AGENT_VARIABLE,
    DEFAULT_AGENT,
    NARROWING_VARIABLE,
    agent_name_problem,
    narrowing_rules,
)
from stoic.core.policy import mask_json
from stoic.core.text import shortened
from stoic.exceptions import StoicError, UsageError
from stoic.mcp.tools import (
    AGENT_MODES,
    DEFAULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    TOOLS,
    Arguments,
    tool_named,
)
from stoic.services import escalations, gate, queue
from stoic.services.queue_book import queue_book
from stoic.services.workspace import Workspace

__all__ = ["Agent", "agent_actor", "build_server", "serve_stdio"]


SESSION_ID = "stoic-mcp"
"""The session a permission prompt's call is recorded in: the prompt does not name Claude
Code's own session."""


_INSTRUCTIONS = (
    "stoic's review queue, escalations and gate. Propose an action instead of taking it"
    " (propose_action), then read the person's decision (wait_for_decision, get_proposal);"
    " hand a decision you cannot make to a person with exactly one question (escalate)."
    " No tool here decides anything: a person does."
)


@dataclass(frozen=True, slots=True)
class Agent:
    """Who the server speaks for, in which workspace and repository."""

    workspace: Path
    actor: str
    """`agent:<name>`, on every record the server makes."""
    repository: Path
    """What "inside" means to the gate's rules for `request_permission`."""
    run_id: str | None = None
    task_id: str | None = None
    """The stoic task the agent runs in, when it runs in one: the gate's records name it."""
    narrowing: tuple[GateRule, ...] = ()
    """The plan's `meta.gate` rules, from the environment stoic started the agent with."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """The secret values of the agent's environment: masked in whatever it sends."""


def agent_actor(given: str | None) -> str:
    """`agent:<name>`: `--agent`, else $STOIC_AGENT_ROLE, else claude-code; a name that is not
    a plain word (letters, digits, `.`, `_`, `-`) is refused, so none reads as another actor."""
    name = given or os.environ.get(AGENT_VARIABLE) or DEFAULT_AGENT
    problem = agent_name_problem(name)
    if problem is not None:
        raise UsageError(problem)
    return f"agent:{name}"


# -- the tools, each a thin call of one service -------------------------------------------------


def _propose(agent: Agent, args: Arguments) -> dict[str, Any]:
    title, summary = args.text("title"), args.text("summary")
    reasoning, sources = args.texts("reasoning") or [], args.texts("sources") or []
    action, trade_off = args.texts("action"), args.optional_text("trade_off")
    confidence = args.number("confidence", low=0, high=1)
    with Workspace.open(agent.workspace) as workspace:
        proposal = queue_book(workspace).propose(
            title=title,
            reasoning_trace=reasoning,
            by=agent.actor,
            sources=sources,
            action=action,
            summary=summary,
            type="action",
            origin="mcp",
            confidence=confidence,
            trade_off=trade_off,
        )
    return {
        "proposal_id": proposal.id,
        "status": proposal.status.value,
        "confidence_band": proposal.confidence_band,
        "next": "a person decides it: read the decision with wait_for_decision",
    }


def _get(agent: Agent, args: Arguments) -> dict[str, Any]:
    proposal_id = args.proposal_id()
    with Workspace.open(agent.workspace) as workspace:
        return queue_book(workspace).get(proposal_id).to_json()


def _wait(agent: Agent, args: Arguments) -> dict[str, Any]:
    proposal_id = args.proposal_id()
    seconds = args.number("seconds", low=0, high=MAX_WAIT_SECONDS)
    with Workspace.open(agent.workspace) as workspace:
        proposal = queue_book(workspace).wait_for_decision(
            proposal_id, DEFAULT_WAIT_SECONDS if seconds is None else seconds
        )
    decision = dict(proposal.decision) if proposal.decision is not None else None
    return {
        "proposal_id": proposal.id,
        "status": proposal.status.value,
        "decided": proposal.status in queue.SETTLED,
        "reason": (decision or {}).get("reason"),
        "decision": decision,
    }


def _escalate(agent: Agent, args: Arguments) -> dict[str, Any]:
    question, context = args.text("question"), args.text("context")
    mode = args.text("mode", default="ambiguity")
    if mode not in AGENT_MODES:
        raise UsageError(
            f"escalate: mode {shortened(mode, 40)!r} is not one of {', '.join(AGENT_MODES)}"
        )
    request = escalations.request(mode, question, context)  # exactly one question, or refused
    with Workspace.open(agent.workspace) as workspace:
        url = workspace.settings.store.url
        if url:  # the workspace's escalations are its database's, as its commands' are
            from stoic.services import db_escalations

            project = workspace.root.absolute().parent.name
            escalation = db_escalations.raise_(url, request, actor=agent.actor, project=project)
        else:
            escalation = escalations.raise_(workspace, request, actor=agent.actor)
    return {
        "escalation_id": escalation.id,
        "mode": escalation.mode.value,
        "question": escalation.question,
        "open": escalation.open,
        "next": "a person answers it",
    }


def _permission(agent: Agent, given: object) -> dict[str, Any]:
    """Claude Code's answer for one call: allow with the input unchanged, or deny saying why.
    A call it cannot read is denied on record, as the gate's hook denies one."""
    tool = tool_named("request_permission")
    assert tool is not None
    try:
        try:
            args = Arguments.of(tool, given)
            tool_name, tool_input = args.text("tool_name"), args.mapping("input")
            tool_use_id = args.optional_text("tool_use_id")
            if not tool_name.strip():
                raise UsageError("request_permission: tool_name is empty")
        except UsageError as exc:
            _deny_unread(agent, str(exc))
            return _deny(str(exc))
        call = gate.HookCall(
            tool_name=tool_name,
            tool_input=tool_input,
            cwd=str(agent.repository),
            session_id=SESSION_ID,
            tool_use_id=tool_use_id,
            permission_mode=None,
            transcript_path=None,
        )
        with Workspace.open(agent.workspace) as workspace:
            answered = gate.check_call(
                workspace,
                call,
                agent=agent.actor,
                run_id=agent.run_id,
                task_id=agent.task_id,
                defer=False,
                repository=agent.repository,
                narrowing=agent.narrowing,
            )
        if answered.answer is gate.Answer.ALLOW:
            return {"behavior": "allow", "updatedInput": tool_input}
        return _deny(answered.reason)  # a deferral cannot be a prompt's answer: a denial
    except Exception as exc:  # a confused gate denies: never an allow by accident
        return _deny(f"could not decide, so it denies: {_first_line(exc)}")


def _deny(reason: str) -> dict[str, Any]:
    return {"behavior": "deny", "message": f"stoic's gate: {reason}"}


def _deny_unread(agent: Agent, problem: str) -> None:
    with Workspace.open(agent.workspace) as workspace:
        gate.deny_unread(workspace, problem, agent=agent.actor, size=0)


_HANDLERS: Mapping[str, Callable[[Agent, Arguments], dict[str, Any]]] = {
    "propose_action": _propose,
    "get_proposal": _get,
    "wait_for_decision": _wait,
    "escalate": _escalate,
}


# -- the protocol ------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return shortened(text.splitlines()[0] if text else type(exc).__name__, 500)


def _text(data: Mapping[str, Any], *, error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=orjson.dumps(data).decode())], is_error=error)


def _refusal(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(text=message)], is_error=True)


def _answer(agent: Agent, name: str, given: object) -> CallToolResult:
    """One call, in a worker thread: the tool's result, or its refusal in one line."""
    if name == "request_permission":
        return _text(_permission(agent, given))  # never a tool error: Claude Code reads it
    tool, handler = tool_named(name), _HANDLERS.get(name)
    if tool is None or handler is None:
        known = ", ".join(tool.name for tool in TOOLS)
        return _refusal(f"stoic has no tool {shortened(name, 40)!r} (its tools: {known})")
    try:  # what it proposes or asks is recorded: no secret value of its own reaches the log
        return _text(handler(agent, Arguments.of(tool, mask_json(given, agent.secrets))))
    except StoicError as exc:
        return _refusal(_first_line(exc))
    except Exception as exc:
        return _refusal(f"{name} failed: {type(exc).__name__}: {_first_line(exc)}")


def build_server(agent: Agent) -> Server[Any]:
    """The low-level server: stoic checks every argument itself, so an agent's mistake is one
    line and the schemas it is shown are the bounds it is held to."""

    async def list_tools(ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        return ListToolsResult(tools=list(TOOLS))

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        read_only = _read_only(params.name)
        answer = functools.partial(_answer, agent, params.name, params.arguments)
        # A wait that only reads may be left behind when the call is cancelled; a call that
        # writes is always seen through, so its record is never half made.
        return await anyio.to_thread.run_sync(answer, abandon_on_cancel=read_only)

    return Server(
        "stoic",
        version=__version__,
        instructions=_INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _read_only(name: str) -> bool:
    tool = tool_named(name)
    hints = tool.annotations if tool is not None else None
    return bool(hints is not None and hints.read_only_hint)


def _no_id(text: str) -> None:
    """A float or a constant is no id a reply can carry."""


def _small_int(text: str) -> int | None:
    """A JSON integer as an id can be one; thousands of digits read as none (and cost none)."""
    return int(text) if len(text) <= 18 else None


def _refusal_of(problem: Exception) -> SessionMessage:
    """The JSON-RPC error for a line the SDK could not read: a request that cannot be read is
    answered, never left for its caller to wait on. Its id is taken from the raw line where
    one can be seen (else null, as JSON-RPC says for a parse error)."""
    given: object = None
    code = INVALID_REQUEST
    if isinstance(problem, ValidationError):
        errors = problem.errors()
        code = PARSE_ERROR if errors[0]["type"] == "json_invalid" else INVALID_REQUEST
        whole = (  # an error about the message itself: not one about a value inside it
            e["input"]
            for e in errors
            if isinstance(e.get("input"), dict)
            and (len(e["loc"]) == 1 or (e["type"] == "missing" and len(e["loc"]) == 2))
        )
        line: object = next(whole, None)
        if line is None and code == PARSE_ERROR and isinstance(errors[0].get("input"), str):
            try:  # not JSON to the SDK: read here, numbers and all
                line = json.loads(
                    errors[0]["input"],
                    parse_int=_small_int,
                    parse_float=_no_id,
                    parse_constant=_no_id,
                )
            except (ValueError, RecursionError):
                line = None
        given = line.get("id") if isinstance(line, dict) else None  # its top-level id only
    request_id: str | int | None = None
    if (isinstance(given, int) and not isinstance(given, bool)) or (
        isinstance(given, str) and given.isprintable() and len(given) <= 200
    ):
        request_id = given
    said = _first_line(problem)
    error = ErrorData(code=code, message=f"stoic could not read this message: {said}")
    return SessionMessage(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


class _Answering:
    """The SDK's read stream, with every line it could not read answered with its error (the
    SDK passes the error on and the server only logs it)."""

    def __init__(self, inner: Any, write: Any) -> None:
        self.inner, self.write = inner, write

    @property
    def last_context(self) -> Any:
        return getattr(self.inner, "last_context", None)

    async def receive(self) -> Any:
        while True:
            item = await self.inner.receive()
            if not isinstance(item, Exception):
                return item
            await self.write.send(_refusal_of(item))

    def __aiter__(self) -> _Answering:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> _Answering:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def serve_stdio(workspace: Path, *, agent: str | None, repository: Path | None) -> None:
    """Serve one agent over stdin and stdout until its client closes them. The workspace must
    open first: a server that cannot reach its record does not start."""
    actor = agent_actor(agent)
    narrowing = narrowing_rules(os.environ.get(NARROWING_VARIABLE))
    if isinstance(narrowing, str):
        raise UsageError(f"the plan's gate rules cannot be read: {narrowing}")
    with Workspace.open(workspace) as opened:
        secrets = gate.agent_secrets(opened)
    served = Agent(
        workspace,
        actor,
        (repository or Path.cwd()).resolve(),
        run_id=os.environ.get("STOIC_RUN_ID") or None,
        task_id=os.environ.get("STOIC_TASK_ID") or None,
        narrowing=narrowing,
        secrets=secrets,
    )
    server = build_server(served)

    async def serve() -> None:
        async with stdio_server() as (read, write):
            answering = _Answering(read, write)
            await server.run(answering, write, server.create_initialization_options())

    try:
        anyio.run(serve)
    except KeyboardInterrupt:  # a person stopping it by hand: nothing left to say
        return
