"""The gate's HTTP hook on `stoic serve` (DESIGN §15): the decision `stoic gate claude-code`
makes, for a Claude Code `http` hook, with no process started per tool call.

Claude Code posts the `PreToolUse` payload to `POST /gate/claude-code`. The answer is always
HTTP 200 with the hook's JSON, and every problem — no token, a wrong one, a payload that is not
a call, an error inside the gate — is a `deny` saying why: Claude Code lets a call through on a
non-2xx answer or a body it cannot read. The caller is an agent the log backs
(`users add NAME --role agent`), sending `Authorization: Bearer NAME:SECRET`; it is on record
as `agent:NAME`. A call that waits for a person is awaited on the event loop, the workspace
taken only for each look at the proposal, so a wait holds neither a thread nor the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from stoic.core.gate_wire import hook_output, wait_seconds_of
from stoic.core.users import AGENT_ROLE, LONGEST_NAME, name_problem
from stoic.server.access_render import client_address
from stoic.server.console import console_of
from stoic.server.throttle import LoginThrottle, keys_of
from stoic.services import gate, queue, users
from stoic.services.gate_call import MAX_HOOK_BYTES, GateAnswer, read_hook_call

__all__ = ["AgentTokens", "router"]

router = APIRouter(tags=["gate"])

_BEARER = "bearer "
_LONGEST_TOKEN = LONGEST_NAME + 1 + users.LONGEST_SECRET
"""A name, a colon and the longest secret a check reads."""


class AgentTokens:
    """Agent tokens this server has checked, so that a token costs one scrypt per secret the
    log issued rather than one per tool call: each is kept as an HMAC under a key that lives
    only in this process, beside the seq of the record that issued the secret. Whether that
    agent and that secret still stand is asked of the log at every call; this only spares the
    scrypt."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._checked: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()

    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).digest()

    def known(self, name: str, issued_seq: int, secret: str) -> bool:
        with self._lock:
            checked = self._checked.get(name)
        return (
            checked is not None
            and checked[0] == issued_seq
            and hmac.compare_digest(checked[1], self._digest(secret))
        )

    def keep(self, name: str, issued_seq: int, secret: str) -> None:
        with self._lock:
            self._checked[name] = (issued_seq, self._digest(secret))


@dataclass(frozen=True, slots=True)
class _Refused:
    """A caller the gate does not answer for: told why, nothing recorded."""

    reason: str


def _tokens_of(request: Request) -> AgentTokens:
    tokens = request.app.state.agent_tokens
    assert isinstance(tokens, AgentTokens)
    return tokens


def _agent_of(request: Request) -> str | _Refused:
    """The agent the request's token is, as the log has it now; or why it is refused."""
    wrong = _Refused("the agent token is missing or wrong (Authorization: Bearer NAME:SECRET)")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(_BEARER) or len(header) > len(_BEARER) + _LONGEST_TOKEN:
        return wrong
    name, _, secret = header[len(_BEARER) :].strip().partition(":")
    if name_problem(name) is not None or not secret:
        return wrong
    console = console_of(request)
    roster = request.app.state.user_roster
    assert isinstance(roster, users.Roster)
    with console.look() as workspace:
        user = roster.backed(workspace, name)
    if user is not None and user.role != AGENT_ROLE:
        user = None  # a person's secret never answers for an agent
    tokens = _tokens_of(request)
    if user is not None and tokens.known(name, user.issued_seq, secret):
        return name
    throttle = request.app.state.token_throttle
    assert isinstance(throttle, LoginThrottle)
    keys = keys_of(name, client_address(request))
    with throttle.checking() as free:
        if not free:
            return _Refused("too many token checks at once: try again")
        admission = throttle.admit(keys)
        if admission.wait is not None:
            return _Refused(f"too many wrong tokens: try again in {admission.wait} s")
        if not users.secret_is_current(console.workspace, user, secret) or user is None:
            return wrong
    throttle.succeeded(keys, admission)
    tokens.keep(name, user.issued_seq, secret)
    return name


async def _payload(request: Request) -> bytes:
    """The body, read no further than one byte past what the gate reads."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_HOOK_BYTES:
            break
    return bytes(raw)


def _begin(
    request: Request,
    raw: bytes,
    agent: str,
    wait_seconds: float | None,
    repository: Path | None,
) -> GateAnswer | gate.Waiting:
    call = read_hook_call(raw)
    with console_of(request).handle() as workspace:
        if isinstance(call, str):
            return gate.deny_unread(workspace, call, agent=agent, size=len(raw))
        return gate.begin_call(
            workspace, call, agent=agent, wait_seconds=wait_seconds, repository=repository
        )


def _look(request: Request, waiting: gate.Waiting, defer: bool) -> GateAnswer | None:
    with console_of(request).handle() as workspace:
        decided = gate.look(workspace, waiting)
        if decided is None and time.monotonic() >= waiting.ends_at:
            return gate.give_up(workspace, waiting, defer=defer)
        return decided


def _answer(decision: str, reason: str) -> Response:
    return Response(
        hook_output(decision, f"stoic's gate: {reason}"),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _options(
    repo: str | None, defer: str | None, wait: str | None
) -> tuple[Path | None, bool, float | None] | str:
    """The query's options, or what is wrong with them (read here, not by FastAPI, whose
    refusal would be a 422 — and a non-2xx answer lets the call through)."""
    if repo is not None and "\0" in repo:
        return "repo= holds a NUL character: no folder has such a name"
    repository = Path(repo) if repo else None
    if repository is not None and not repository.is_absolute():
        return "repo= is not an absolute path"
    if defer not in (None, "", "0", "1", "true", "false"):
        return f"defer= takes 1 or 0, not {defer[:20]!r}"
    seconds = wait_seconds_of(wait, "wait=") if wait else None
    if isinstance(seconds, str):
        return seconds
    return repository, defer in ("1", "true"), seconds


@router.post("/gate/claude-code")
@router.post("/gate/claude-code/", include_in_schema=False)  # a redirect would let it through
async def claude_code_hook(
    request: Request,
    repo: Annotated[str | None, Query(description="The repository 'inside' means.")] = None,
    defer: Annotated[
        str | None, Query(description="1: answer `defer` when no one decided in time.")
    ] = None,
    wait: Annotated[str | None, Query(description="Seconds to wait for a person.")] = None,
) -> Response:
    """A Claude Code `PreToolUse` HTTP hook: the payload in, the hook's answer out — always
    200, every problem a `deny`."""
    try:
        agent = await run_in_threadpool(_agent_of, request)
        if isinstance(agent, _Refused):  # not an agent's call: nothing of it is recorded
            return _answer("deny", agent.reason)
        options = _options(repo, defer, wait)
        if isinstance(options, str):
            answered = await run_in_threadpool(_unread, request, options, f"agent:{agent}")
            return _answer(answered.answer.value, answered.reason)
        repository, deferring, wait_seconds = options
        raw = await _payload(request)
        begun = await run_in_threadpool(
            _begin, request, raw, f"agent:{agent}", wait_seconds, repository
        )
        while isinstance(begun, gate.Waiting):
            left = begun.ends_at - time.monotonic()
            await asyncio.sleep(max(0.0, min(queue.POLL_SECONDS, left)))
            decided = await run_in_threadpool(_look, request, begun, deferring)
            begun = begun if decided is None else decided
        return _answer(begun.answer.value, begun.reason)
    except Exception as exc:  # a confused gate denies: never an allow by accident
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _answer("deny", f"it could not decide, so it denies: {first}")


def _unread(request: Request, problem: str, agent: str) -> GateAnswer:
    with console_of(request).handle() as workspace:
        return gate.deny_unread(workspace, problem, agent=agent, size=0)
