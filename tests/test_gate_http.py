"""The gate's HTTP hook on a real `stoic serve` (uvicorn on 127.0.0.1, reached with httpx):
the decision of `stoic gate claude-code` for an agent with a token, always HTTP 200 with the
hook's JSON, every problem a denial — and a wait for a person that holds up no one else."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

import stoic
from stoic.core.proposals import ProposalStatus
from stoic.server import gate_hook as http_gate
from stoic.services import queue, trust, users
from tests.conftest import run_cli
from tests.console_server import RunningConsole, running_console
from tests.test_gate_hook import DOCUMENTED


def _payload(repo: Path, tool: str = "Bash", **tool_input: Any) -> bytes:
    return orjson.dumps(
        DOCUMENTED | {"cwd": str(repo), "tool_name": tool, "tool_input": tool_input}
    )


@pytest.fixture
def served(ws_path: Path) -> Iterator[RunningConsole]:
    with running_console(ws_path) as running:
        yield running


@pytest.fixture
def token(ws_path: Path) -> str:
    with stoic.Workspace.open(ws_path) as workspace:
        issued = users.add(workspace, "bot", role="agent", actor="human:admin")
    assert issued.token is not None
    return issued.token


def _ask(
    served: RunningConsole,
    body: bytes,
    token: str | None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    answer = httpx.post(
        f"{served.url}/gate/claude-code",
        content=body,
        headers=headers,
        params=params,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text  # never a non-2xx: that lets the call through
    assert answer.headers["content-type"] == "application/json"
    said = answer.json()["hookSpecificOutput"]
    assert said["hookEventName"] == "PreToolUse"
    return dict(said)


def _gate_records(ws_path: Path) -> list[stoic.Record]:
    with stoic.Workspace.open(ws_path) as workspace:
        return list(workspace.records(decision_type="gate"))


def test_an_agent_token_is_issued_once_and_never_logs_in_to_the_console(
    ws_path: Path, served: RunningConsole
) -> None:
    printed = run_cli("-w", str(ws_path), "users", "add", "bot", "--role", "agent", "--json")
    assert printed.exit_code == 0, printed.stderr
    issued = orjson.loads(printed.stdout)
    assert issued["role"] == "agent" and issued["token"] == f"bot:{issued['secret']}"
    with httpx.Client(base_url=served.url, timeout=30) as client:
        form = client.get("/login")
        held = form.cookies["stoic_login"]
        login = client.post(
            "/login",
            data={"name": "bot", "secret": issued["secret"], "csrf": held},
            headers={"Cookie": f"stoic_login={held}"},
        )
    assert login.status_code == 403 and "is an agent" in login.text
    assert "stoic_session" not in login.cookies


def test_an_agent_never_becomes_a_person_nor_a_person_an_agent(ws_path: Path, token: str) -> None:
    refused = run_cli("-w", str(ws_path), "users", "role", "bot", "--role", "admin")
    assert refused.exit_code == 2 and "cannot become a person" in refused.stderr
    run_cli("-w", str(ws_path), "users", "add", "ann", "--role", "admin")
    refused = run_cli("-w", str(ws_path), "users", "role", "ann", "--role", "agent")
    assert refused.exit_code == 2 and "cannot become an agent" in refused.stderr


def test_an_allowed_call_is_answered_on_record_as_the_tokens_agent(
    ws_path: Path, repo: Path, served: RunningConsole, token: str
) -> None:
    said = _ask(served, _payload(repo, command="git status"), token)
    assert said["permissionDecision"] == "allow"
    assert said["permissionDecisionReason"].startswith("stoic's gate: ")
    (record,) = _gate_records(ws_path)
    assert record.decision_outcome == "allowed" and record.actor == "system:gate"
    assert record.decision_inputs["agent"] == "agent:bot"


@pytest.mark.parametrize(
    "header",
    [None, "Bearer :", "Bearer bot", "Bearer bot:wrong", "Basic Ym90Ondyb25n", "Bearer ../x:y"],
)
def test_without_a_right_token_every_call_is_denied_and_nothing_recorded(
    ws_path: Path, repo: Path, served: RunningConsole, token: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    answer = httpx.post(
        f"{served.url}/gate/claude-code",
        content=_payload(repo, command="git status"),
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 200
    said = answer.json()["hookSpecificOutput"]
    assert said["permissionDecision"] == "deny" and "token" in said["permissionDecisionReason"]
    assert _gate_records(ws_path) == []


def test_a_persons_secret_is_not_an_agent_token(
    ws_path: Path, repo: Path, served: RunningConsole
) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        issued = users.add(workspace, "ann", role="admin", actor="human:setup")
    said = _ask(served, _payload(repo, command="git status"), f"ann:{issued.secret}")
    assert said["permissionDecision"] == "deny" and "token" in said["permissionDecisionReason"]
    assert _gate_records(ws_path) == []


def test_a_token_costs_one_scrypt_per_issued_secret_and_the_log_is_asked_at_each_call(
    ws_path: Path,
    repo: Path,
    served: RunningConsole,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checks: list[str] = []
    real = users.secret_is_current

    def counted(root: Path, user: Any, secret: str) -> bool:
        checks.append(secret)
        return real(root, user, secret)

    monkeypatch.setattr(http_gate.users, "secret_is_current", counted)
    for _ in range(5):
        assert _ask(served, _payload(repo, command="ls"), token)["permissionDecision"] == "allow"
    assert len(checks) == 1
    with stoic.Workspace.open(ws_path) as workspace:
        renewed = users.reset(workspace, "bot", actor="human:admin")
    assert renewed.token is not None
    stale = _ask(served, _payload(repo, command="ls"), token)
    assert stale["permissionDecision"] == "deny"  # the old secret, checked once before
    assert _ask(served, _payload(repo, command="ls"), renewed.token)["permissionDecision"] == (
        "allow"
    )
    with stoic.Workspace.open(ws_path) as workspace:
        users.remove(workspace, "bot", actor="human:admin")
    gone = _ask(served, _payload(repo, command="ls"), renewed.token)
    assert gone["permissionDecision"] == "deny" and "token" in gone["permissionDecisionReason"]


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"not json", "is not JSON"),
        (orjson.dumps({"hook_event_name": "PreToolUse"}), "lacks session_id"),
        (orjson.dumps(DOCUMENTED | {"tool_input": {"command": "x" * 10_000_000}}), "over 1024"),
    ],
)
def test_a_payload_it_cannot_read_is_denied_on_record(
    ws_path: Path, served: RunningConsole, token: str, body: bytes, said: str
) -> None:
    answer = _ask(served, body, token)
    assert answer["permissionDecision"] == "deny" and said in answer["permissionDecisionReason"]
    (record,) = _gate_records(ws_path)
    assert record.decision_outcome == "denied" and record.decision_inputs["agent"] == "agent:bot"


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"wait": "soon"}, "wait= takes seconds"),
        ({"wait": "9999"}, "wait= takes 0 to 540"),
        ({"defer": "maybe"}, "defer= takes 1 or 0"),
        ({"repo": "relative/dir"}, "repo= is not an absolute path"),
        ({"repo": "/tmp/a\0b"}, "repo= holds a NUL character"),
    ],
)
def test_options_it_cannot_use_are_a_denial_on_record_not_an_http_error(
    ws_path: Path, repo: Path, served: RunningConsole, token: str, params: dict[str, str], said: str
) -> None:
    answer = _ask(served, _payload(repo, command="git status"), token, params)
    assert answer["permissionDecision"] == "deny" and said in answer["permissionDecisionReason"]
    (record,) = _gate_records(ws_path)
    assert record.decision_outcome == "denied" and said in record.decision_reason
    assert record.decision_inputs["agent"] == "agent:bot"


def test_a_wait_for_a_person_holds_up_no_other_call_and_an_approval_allows_it(
    ws_path: Path, repo: Path, served: RunningConsole, token: str
) -> None:
    answers: list[dict[str, Any]] = []
    push = _payload(repo, command="git push origin main")
    waiting = threading.Thread(
        target=lambda: answers.append(_ask(served, push, token, {"wait": "60"}))
    )
    waiting.start()
    deadline = time.monotonic() + 30
    pending: list[Any] = []
    while not pending and time.monotonic() < deadline:
        time.sleep(0.05)
        with stoic.Workspace.open(ws_path) as workspace:
            pending = queue.list_proposals(workspace, ProposalStatus.PENDING)
    (proposal,) = pending
    with stoic.Workspace.open(ws_path) as workspace:
        (made,) = workspace.records(decision_type="proposal")
    assert made.actor == "agent:bot"
    # While that call waits, others are answered, and the console reads the log.
    for _ in range(10):
        assert _ask(served, _payload(repo, command="ls"), token)["permissionDecision"] == "allow"
    assert httpx.get(f"{served.url}/healthz", timeout=5).status_code == 200
    assert waiting.is_alive()
    with stoic.Workspace.open(ws_path) as workspace:
        workspace.approve(proposal.id, by="human:ann")
    waiting.join(timeout=30)
    (said,) = answers
    assert said["permissionDecision"] == "allow" and proposal.id in said["permissionDecisionReason"]


def test_undecided_in_time_is_deferred_or_denied_and_a_rejection_denies_at_once(
    ws_path: Path, repo: Path, served: RunningConsole, token: str
) -> None:
    push = _payload(repo, command="git push --force")
    deferred = _ask(served, push, token, {"wait": "0", "defer": "1"})
    assert deferred["permissionDecision"] == "defer"
    denied = _ask(served, push, token, {"wait": "0"})
    assert denied["permissionDecision"] == "deny"
    assert "waits for a person: try again" in denied["permissionDecisionReason"]
    with stoic.Workspace.open(ws_path) as workspace:
        (proposal,) = queue.list_proposals(workspace, ProposalStatus.PENDING)
        workspace.reject(proposal.id, by="human:ann", reason="never force-push")
    again = _ask(served, push, token, {"wait": "0"})
    assert again["permissionDecision"] == "deny"
    assert f"{proposal.id} was rejected: never force-push" in again["permissionDecisionReason"]
    with stoic.Workspace.open(ws_path) as workspace:
        assert len(queue.list_proposals(workspace)) == 1
        assert workspace.audit().ok


def test_while_paused_a_call_that_would_wait_is_denied(
    ws_path: Path, repo: Path, served: RunningConsole, token: str
) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        trust.pause(workspace, reason="freeze", actor="human:ann")
    said = _ask(served, _payload(repo, command="git push"), token, {"wait": "0"})
    assert (
        said["permissionDecision"] == "deny"
        and "paused: freeze" in said["permissionDecisionReason"]
    )
    with stoic.Workspace.open(ws_path) as workspace:
        assert queue.list_proposals(workspace) == []


def test_a_pinned_repository_decides_what_inside_means(
    repo: Path, tmp_path: Path, served: RunningConsole, token: str
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    write = _payload(repo, "Write", file_path=str(repo / "a.py"), content="x")
    assert _ask(served, write, token)["permissionDecision"] == "allow"
    pinned = _ask(served, write, token, {"repo": str(other), "wait": "0"})
    assert pinned["permissionDecision"] == "deny"  # outside the pinned one: a proposal waits
    assert "waits for a person" in pinned["permissionDecisionReason"]


def test_the_endpoint_is_in_the_servers_openapi_document(served: RunningConsole) -> None:
    document = httpx.get(f"{served.url}/api/openapi.json", timeout=10).json()
    assert "/gate/claude-code" in document["paths"]


def test_a_trailing_slash_is_answered_too_never_redirected(
    repo: Path, served: RunningConsole, token: str
) -> None:
    answer = httpx.post(
        f"{served.url}/gate/claude-code/",
        content=_payload(repo, command="git status"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200  # a 3xx is not 2xx: Claude Code would let the call through
    assert answer.json()["hookSpecificOutput"]["permissionDecision"] == "allow"


def test_wrong_tokens_are_throttled_apart_from_logins(
    ws_path: Path, repo: Path, served: RunningConsole, token: str
) -> None:
    call = _payload(repo, command="git status")
    assert _ask(served, call, token)["permissionDecision"] == "allow"
    for _ in range(6):  # past the five a name may fail from one address
        said = _ask(served, call, "bot:wrong")
    assert said["permissionDecision"] == "deny"
    assert "too many wrong tokens" in said["permissionDecisionReason"]
    assert _ask(served, call, token)["permissionDecision"] == "allow"  # checked before: no guess
    for n in range(21):  # past the twenty any names may fail from one address
        _ask(served, call, f"guess{n}:wrong")
    with stoic.Workspace.open(ws_path) as workspace:
        person = users.add(workspace, "ann", role="reviewer", actor="human:admin")
    with httpx.Client(base_url=served.url, timeout=30) as client:
        held = client.get("/login").cookies["stoic_login"]
        login = client.post(
            "/login",
            data={"name": "ann", "secret": person.secret, "csrf": held},
            headers={"Cookie": f"stoic_login={held}"},
        )
    assert login.status_code == 303  # a person from the same address still logs in
