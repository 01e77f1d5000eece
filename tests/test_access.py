"""People and access in the console, against a real server: uvicorn on 127.0.0.1 and a free
port, reached with httpx; the log and the secret files are the workspace's own."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from fastapi import FastAPI

from stoic.core.users import User
from stoic.server.app import ServerConfig, create_app
from stoic.server.throttle import LIMITS, SCRYPTS, LoginThrottle
from stoic.services import users
from stoic.services.workspace import Workspace
from tests.conftest import run_cli

GUARD = 60.0
"""How long a test waits for an effect before it calls the server hung."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _login(
    client: httpx.Client, *, data: dict[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /login as the login page's form does: with the token of its cookie (sent by hand,
    since a client keeps a Secure cookie for https only)."""
    token = next((c.value for c in client.cookies.jar if c.name == "stoic_login"), None)
    if token is None:
        form = client.get("/login")
        assert form.status_code == 200
        token = form.cookies["stoic_login"]
    sent = (headers or {}) | {"Cookie": f"stoic_login={token}"}
    return client.post("/login", data=data | {"csrf": token}, headers=sent)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Console:
    url: str
    workspace: Path
    app: FastAPI
    clock: Clock = field(default_factory=Clock)
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self) -> httpx.Client:
        """A new client (a browser of its own), closed when the test ends."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        self.clients.append(client)
        return client

    def add(self, name: str, role: str) -> str:
        with Workspace.open(self.workspace) as workspace:
            return users.add(workspace, name, role=role, actor="human:setup").secret

    def records(self) -> list[dict[str, Any]]:
        with Workspace.open(self.workspace) as workspace:
            return [record._asdict() for record in workspace.records()]

    def login(self, name: str, secret: str) -> tuple[httpx.Client, str]:
        """A client logged in as `name`, and its session's CSRF token."""
        client = self.client()
        answer = _login(client, data={"name": name, "secret": secret})
        assert answer.status_code == 303, answer.text
        session = client.get("/api/session")
        assert session.status_code == 200
        csrf: str = session.json()["csrf"]
        return client, csrf


Serve = Callable[..., Console]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """Start a console on a fresh workspace (config fields as keywords); stopped after."""
    started: list[tuple[uvicorn.Server, threading.Thread]] = []
    consoles: list[Console] = []

    def start(**config: Any) -> Console:
        workspace = tmp_path / f"ws{len(started)}"
        assert run_cli("init", str(workspace)).exit_code == 0
        app = create_app(ServerConfig(workspace=workspace, **config))
        console = Console("", workspace, app)
        app.state.login_throttle = LoginThrottle(clock=console.clock)
        port = _free_port()
        server = uvicorn.Server(
            # As `stoic serve` runs it: X-Forwarded-For is the console's to read, or not.
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        started.append((server, thread))
        while not server.started:
            assert thread.is_alive(), "the server stopped before it answered"
            time.sleep(0.01)
        console.url = f"http://127.0.0.1:{port}"
        consoles.append(console)
        return console

    yield start
    for console in consoles:
        for client in console.clients:
            client.close()
    for server, thread in started:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def console(serve: Serve) -> Console:
    return serve()


# -- logging in --------------------------------------------------------------------------------


def test_the_login_page_is_a_form(console: Console) -> None:
    answer = console.client().get("/login")
    assert answer.status_code == 200
    assert '<form method="post" action="/login">' in answer.text
    assert 'name="secret" type="password"' in answer.text


def test_a_login_sets_a_strict_httponly_cookie_and_the_role_on_record(console: Console) -> None:
    secret = console.add("ann", "reviewer")
    client = console.client()
    answer = _login(client, data={"name": "ann", "secret": secret})
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert "stoic_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
    assert client.get("/api/session").json()["role"] == "reviewer"
    assert [r["decision_outcome"] for r in console.records()] == ["added"]  # no login record


@pytest.mark.parametrize("config", [{"tls": True}, {"behind_proxy": True}])
def test_the_cookie_is_secure_over_tls_or_behind_a_proxy(
    serve: Serve, config: dict[str, bool]
) -> None:
    console = serve(**config)
    secret = console.add("ann", "reviewer")
    answer = _login(console.client(), data={"name": "ann", "secret": secret})
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


def test_a_login_from_another_sites_page_or_without_the_forms_token_is_refused(
    console: Console,
) -> None:
    secret = console.add("ann", "reviewer")
    client = console.client()
    data = {"name": "ann", "secret": secret}
    assert client.post("/login", data=data).status_code == 403  # never saw the form
    token = client.get("/login").cookies["stoic_login"]
    assert client.post("/login", data=data | {"csrf": "forged"}).status_code == 403
    own = client.get("/login").text
    assert f'name="csrf" value="{token}"' in own
    for cross in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = client.post("/login", data=data | {"csrf": token}, headers=cross)
        assert answer.status_code == 403
        assert "stoic_session" not in answer.headers.get("set-cookie", "")
    same = {"Origin": console.url, "Sec-Fetch-Site": "same-origin"}
    assert client.post("/login", data=data | {"csrf": token}, headers=same).status_code == 303


def test_a_failed_login_does_not_say_which_was_wrong(console: Console) -> None:
    secret = console.add("ann", "reviewer")
    client = console.client()
    wrong_secret = _login(client, data={"name": "ann", "secret": secret + "x"})
    unknown_name = _login(client, data={"name": "nobody", "secret": secret})
    not_a_name = _login(client, data={"name": "../ann", "secret": secret})
    for answer in (wrong_secret, unknown_name, not_a_name):
        assert answer.status_code == 401
        assert "wrong name or secret" in answer.text
        assert "stoic_session" not in answer.headers.get("set-cookie", "")
    assert wrong_secret.text == unknown_name.text.replace("nobody", "ann")


def test_a_known_and_an_unknown_name_cost_one_scrypt_each(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = console.add("ann", "reviewer")
    costs: list[tuple[int, int, int]] = []
    real = hashlib.scrypt

    def counted(password: bytes, **kwargs: Any) -> bytes:
        costs.append((kwargs["n"], kwargs["r"], kwargs["p"]))
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counted)
    with Workspace.open(console.workspace) as workspace:
        for name, given in [("ann", "nope"), ("nobody", "nope"), ("..", "nope"), ("ann", secret)]:
            users.authenticate(workspace, name, given)
    assert costs == [(2**14, 8, 1)] * 4


def test_failures_for_a_name_are_throttled_until_the_window_passes(console: Console) -> None:
    secret = console.add("ann", "reviewer")
    client = console.client()
    for _ in range(5):
        assert _login(client, data={"name": "ann", "secret": "x"}).status_code == 401
    refused = _login(client, data={"name": "ann", "secret": secret})
    assert refused.status_code == 429  # even with the right secret
    assert int(refused.headers["retry-after"]) == 15 * 60
    console.clock.now += 10 * 60
    refused = _login(client, data={"name": "ann", "secret": secret})
    assert int(refused.headers["retry-after"]) == 5 * 60
    console.clock.now += 5 * 60
    assert _login(client, data={"name": "ann", "secret": secret}).status_code == 303


def test_failures_for_a_name_from_one_address_do_not_lock_it_out_elsewhere(
    serve: Serve,
) -> None:
    console = serve(behind_proxy=True)
    secret = console.add("ann", "admin")
    client = console.client()
    guesser = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(5):
        answer = _login(client, data={"name": "ann", "secret": "x"}, headers=guesser)
        assert answer.status_code == 401
    data = {"name": "ann", "secret": secret}
    assert _login(client, data=data, headers=guesser).status_code == 429
    owner = {"X-Forwarded-For": "198.51.100.7"}
    assert _login(client, data=data, headers=owner).status_code == 303


def test_failures_for_a_name_from_many_addresses_are_bounded(serve: Serve) -> None:
    console = serve(behind_proxy=True)
    secret = console.add("ann", "admin")
    client = console.client()
    for number in range(LIMITS["name"]):
        headers = {"X-Forwarded-For": f"10.0.{number // 4}.{number % 4}"}
        answer = _login(client, data={"name": "ann", "secret": "x"}, headers=headers)
        assert answer.status_code == 401
    fresh = {"X-Forwarded-For": "198.51.100.7"}
    data = {"name": "ann", "secret": secret}
    assert _login(client, data=data, headers=fresh).status_code == 429


def _held_scrypt(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], threading.Event]:
    """Every scrypt waits for the event; the list counts those begun."""
    begun: list[int] = []
    release = threading.Event()
    real = hashlib.scrypt

    def held(password: bytes, **kwargs: Any) -> bytes:
        begun.append(1)
        assert release.wait(GUARD)
        return real(password, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", held)
    return begun, release


def _until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + GUARD
    while not check():
        assert time.monotonic() < deadline, f"still waiting after {GUARD:g} s: {what}"
        time.sleep(0.01)


def test_concurrent_attempts_take_their_slots_before_the_secret_is_checked(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    console.add("ann", "admin")
    # Room to check every attempt at once: only the slots bound them.
    console.app.state.login_throttle = LoginThrottle(clock=console.clock, scrypts=40)
    begun, release = _held_scrypt(monkeypatch)
    client = console.client()
    client.get("/login")  # the form's token, before the burst
    with ThreadPoolExecutor(max_workers=12) as pool:
        data = {"name": "ann", "secret": "x"}
        answers = [pool.submit(_login, client, data=data) for _ in range(12)]
        _until("7 attempts refused", lambda: sum(a.done() for a in answers) == 7)
        assert len(begun) == 5  # a slot each: the burst got the guesses a sequence gets
        release.set()
        codes = sorted(a.result().status_code for a in answers)
    assert codes == [401] * 5 + [429] * 7


def test_at_most_a_few_secrets_are_checked_at_once(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    begun, release = _held_scrypt(monkeypatch)
    client = console.client()
    client.get("/login")  # the form's token, before the burst
    with ThreadPoolExecutor(max_workers=SCRYPTS) as pool:
        held = [
            pool.submit(_login, client, data={"name": f"g{n}", "secret": "x"})
            for n in range(SCRYPTS)
        ]
        _until("the checks begin", lambda: len(begun) == SCRYPTS)
        refused = _login(client, data={"name": "late", "secret": "x"})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        release.set()
        assert [answer.result().status_code for answer in held] == [401] * SCRYPTS
    assert len(begun) == SCRYPTS


def test_failures_from_an_address_are_throttled_whatever_the_name(console: Console) -> None:
    secret = console.add("ann", "reviewer")
    client = console.client()
    for number in range(LIMITS["address"]):
        # A forwarded address counts for nothing without --behind-proxy.
        headers = {"X-Forwarded-For": f"10.0.0.{number}"}
        data = {"name": f"guess{number}", "secret": "x"}
        assert _login(client, data=data, headers=headers).status_code == 401
    assert _login(client, data={"name": "ann", "secret": secret}).status_code == 429


def test_behind_a_proxy_the_forwarded_address_is_the_one_throttled(serve: Serve) -> None:
    console = serve(behind_proxy=True)
    secret = console.add("ann", "reviewer")
    client = console.client()
    for number in range(LIMITS["address"]):
        headers = {"X-Forwarded-For": "203.0.113.9"}
        data = {"name": f"guess{number}", "secret": "x"}
        assert _login(client, data=data, headers=headers).status_code == 401
    blocked = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}  # what the client sent comes first
    data = {"name": "ann", "secret": secret}
    assert _login(client, data=data, headers=blocked).status_code == 429
    other = {"X-Forwarded-For": "203.0.113.10"}
    assert _login(client, data=data, headers=other).status_code == 303


def test_a_writes_session_is_looked_up_off_the_event_loop(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, csrf = console.login("ann", console.add("ann", "reviewer"))
    on_loop: list[bool] = []
    real = users.Roster.backed

    def watched(roster: users.Roster, workspace: Workspace, name: str) -> User | None:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(roster, workspace, name)

    monkeypatch.setattr(users.Roster, "backed", watched)
    assert client.post("/logout", data={"csrf": csrf}).status_code == 303
    assert on_loop == [False]  # it reads the log: a blocked loop would hold up everyone


def test_logout_needs_the_csrf_token_and_ends_the_session(console: Console) -> None:
    client, csrf = console.login("ann", console.add("ann", "reviewer"))
    assert client.post("/logout").status_code == 403
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.get("/api/session").status_code == 200
    answer = client.post("/logout", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert client.get("/api/session").status_code == 401


# -- the access rules -------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    needs: str
    """The least role that may use it."""
    form: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] | None = None

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")

    @property
    def writes(self) -> bool:
        return self.method == "POST"


ROUTES = [
    Route("GET", "/api/session", "reviewer"),
    Route("GET", "/users", "admin"),
    Route("GET", "/api/users", "admin"),
    Route("POST", "/users", "admin", form={"name": "newcomer", "role": "reviewer"}),
    Route("POST", "/users/target/reset", "admin"),
    Route("POST", "/users/target/remove", "admin"),
    Route("POST", "/api/users", "admin", body={"name": "newcomer", "role": "reviewer"}),
    Route("POST", "/api/users/target/remove", "admin"),
]
"""Every route that needs a session, and the least role it admits."""
_ORDER = ["reviewer", "operator", "admin"]


def _call(
    client: httpx.Client, route: Route, csrf: str | None, extra: dict[str, str] | None = None
) -> httpx.Response:
    headers = {"X-CSRF-Token": csrf} if csrf is not None and route.api else {}
    if route.method == "GET":
        return client.get(route.path)
    if route.body is not None:
        return client.post(route.path, json=route.body, headers=headers)
    form = {**route.form, **(extra or {}), **({"csrf": csrf} if csrf and not route.api else {})}
    return client.post(route.path, data=form, headers=headers)


@pytest.fixture
def people(console: Console) -> dict[str, tuple[httpx.Client, str]]:
    logged_in = {role: console.login(role, console.add(role, role)) for role in _ORDER}
    console.add("target", "reviewer")
    return logged_in


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_each_role_may_do_what_its_route_admits_and_no_more(
    console: Console, people: dict[str, tuple[httpx.Client, str]], route: Route
) -> None:
    for role in _ORDER:
        client, csrf = people[role]
        before = len(console.records())
        answer = _call(client, route, csrf)
        if _ORDER.index(role) < _ORDER.index(route.needs):
            assert answer.status_code == 403, (role, answer.text)
            assert len(console.records()) == before  # nothing recorded
        else:
            assert answer.status_code in (200, 303), (role, answer.text)


@pytest.mark.parametrize("route", [r for r in ROUTES if r.writes], ids=lambda r: r.path)
def test_a_write_without_a_session_or_its_csrf_token_records_nothing(
    console: Console, people: dict[str, tuple[httpx.Client, str]], route: Route
) -> None:
    before = console.records()
    anonymous = _call(console.client(), route, None)
    if route.api:
        assert anonymous.status_code == 401
    else:
        assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    admin, _csrf = people["admin"]
    assert _call(admin, route, None).status_code == 403  # no token
    assert _call(admin, route, "not-the-token").status_code == 403
    other_session_token = people["reviewer"][1]
    assert _call(admin, route, other_session_token).status_code == 403
    assert console.records() == before
    assert (console.workspace / "users" / "target.json").exists()


def test_the_actor_on_record_is_the_logged_in_admin_never_a_form_field(
    console: Console, people: dict[str, tuple[httpx.Client, str]]
) -> None:
    client, csrf = people["admin"]
    forged = {"actor": "human:mallory", "by": "human:mallory", "as": "mallory"}
    route = Route("POST", "/users", "admin", form={"name": "newcomer", "role": "reviewer"})
    answer = _call(client, route, csrf, forged)
    assert answer.status_code == 200
    remove = Route("POST", "/users/target/remove", "admin")
    assert _call(client, remove, csrf, forged).status_code == 303
    added, removed = console.records()[-2:]
    assert (added["decision_outcome"], added["actor"]) == ("added", "human:admin")
    assert (removed["decision_outcome"], removed["actor"]) == ("removed", "human:admin")
    assert all("mallory" not in orjson.dumps(r).decode() for r in console.records())
    audit = run_cli("-w", str(console.workspace), "audit", "--json")
    assert audit.exit_code == 0 and orjson.loads(audit.stdout)["ok"] is True


def test_no_answer_to_a_logged_in_request_or_the_login_page_may_be_stored(
    console: Console, people: dict[str, tuple[httpx.Client, str]]
) -> None:
    client, csrf = people["admin"]
    headers = {"X-CSRF-Token": csrf}
    answers = [
        console.client().get("/login"),
        client.get("/users"),
        client.get("/api/session"),
        client.post("/users", data={"name": "pat", "role": "reviewer", "csrf": csrf}),
        client.post("/users/pat/reset", data={"csrf": csrf}),
        client.post("/api/users", json={"name": "quinn", "role": "reviewer"}, headers=headers),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.headers["cache-control"] == "no-store", answer.request.url


def test_an_added_user_sees_their_secret_once_and_can_log_in(
    console: Console, people: dict[str, tuple[httpx.Client, str]]
) -> None:
    client, csrf = people["admin"]
    answer = client.post("/users", data={"name": "newcomer", "role": "operator", "csrf": csrf})
    secret = answer.text.split('<code id="secret">', 1)[1].split("</code>", 1)[0]
    assert client.get("/users").text.count(secret) == 0
    newcomer, _ = console.login("newcomer", secret)
    assert newcomer.get("/api/session").json()["role"] == "operator"


def test_a_removed_users_session_is_refused_and_a_role_change_holds_at_once(
    console: Console, people: dict[str, tuple[httpx.Client, str]]
) -> None:
    reviewer, _ = people["reviewer"]
    assert reviewer.get("/api/users").status_code == 403
    promoted = run_cli("-w", str(console.workspace), "users", "role", "reviewer", "--role", "admin")
    assert promoted.exit_code == 0
    assert reviewer.get("/api/users").status_code == 200  # the log decides, not the session
    operator, csrf = people["operator"]
    assert run_cli("-w", str(console.workspace), "users", "remove", "operator").exit_code == 0
    before = console.records()
    assert operator.get("/api/session").status_code == 401
    assert operator.post("/logout", data={"csrf": csrf}).status_code == 303  # to the login
    assert operator.get("/users").headers["location"] == "/login"
    assert console.records() == before


def test_a_new_secret_ends_the_sessions_opened_with_the_old_one(
    console: Console, people: dict[str, tuple[httpx.Client, str]]
) -> None:
    reviewer, _ = people["reviewer"]
    assert run_cli("-w", str(console.workspace), "users", "reset", "reviewer").exit_code == 0
    assert reviewer.get("/api/session").status_code == 401


def test_a_log_restored_from_a_backup_and_appended_past_the_old_head_ends_a_session(
    console: Console,
) -> None:
    console.add("ann", "reviewer")
    kept = [console.workspace / "logs/decision_log.ndjson"]
    kept.append(console.workspace / "manifests/workspace_status.json")
    backup = [path.read_bytes() for path in kept]  # the workspace before bob was added
    bob, _ = console.login("bob", console.add("bob", "operator"))
    assert bob.get("/api/session").status_code == 200  # the server's roster has folded bob
    for path, data in zip(kept, backup, strict=True):
        restored = path.with_suffix(".restored")
        restored.write_bytes(data)
        restored.replace(path)
    console.add("cat", "reviewer")
    console.add("dan", "reviewer")  # the head is now past the one the roster folded up to
    assert bob.get("/api/session").status_code == 401  # the restored log never had bob


@pytest.mark.parametrize("name", ["..", "%2e%2e", ".hidden", "UPPER", "x%0ay"])
def test_a_user_name_in_a_url_that_is_not_a_name_is_404(
    console: Console, people: dict[str, tuple[httpx.Client, str]], name: str
) -> None:
    client, csrf = people["admin"]
    before = console.records()
    answer = client.post(f"/api/users/{name}/remove", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 404
    assert console.records() == before


def test_stoic_serve_logs_an_admin_in(tmp_path: Path) -> None:
    """The whole path through a real `stoic serve` process."""
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    added = run_cli("-w", str(workspace), "users", "add", "root", "--role", "admin", "--json")
    secret = orjson.loads(added.stdout)["secret"]
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("stoic")),
            "-w",
            str(workspace),
            "serve",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    with contextlib.ExitStack() as stack:
        stack.callback(server.communicate, timeout=30)
        stack.callback(server.send_signal, signal.SIGTERM)  # first: the callbacks run backwards
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.05)
        client = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
        stack.callback(client.close)
        assert _login(client, data={"name": "root", "secret": secret}).status_code == 303
        listed = client.get("/api/users")
        assert listed.status_code == 200
        assert [entry["name"] for entry in listed.json()] == ["root"]
        assert "root" in client.get("/users").text
        # Without --behind-proxy a forwarded address is not believed, even from loopback.
        for number in range(LIMITS["address"]):
            forged = {"X-Forwarded-For": f"10.0.0.{number}"}
            data = {"name": f"guess{number}", "secret": "x"}
            assert _login(client, data=data, headers=forged).status_code == 401
        data = {"name": "root", "secret": secret}
        assert _login(client, data=data, headers={"X-Forwarded-For": "10.9.9.9"}).status_code == 429
