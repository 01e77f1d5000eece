"""`stoic serve` answers only to the host names it is reached by: a web page that points a name
of its own at this machine (DNS rebinding) reads nothing and counts no login against the
machine's address. A real server process, reached over HTTP with the `Host` a browser sends."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from stoic.server.hosts import REFUSAL, answered_names, host_answered
from stoic.services import users
from stoic.services.workspace import Workspace
from tests.conftest import run_cli
from tests.test_serve_control import serving

NAMES = frozenset({"console.example.org", "stoic.example.net"})


@pytest.mark.parametrize(
    ("header", "answered"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8765", True),
        ("10.1.2.3:80", True),
        ("[::1]:8765", True),
        ("[::1]", True),
        ("localhost:8765", True),
        ("LocalHost.", True),
        ("console.example.org", True),
        ("Console.Example.Org.:443", True),
        ("evil.example:8765", False),
        ("evil.localhost:8765", False),
        ("console.example.org.evil.example", False),
        ("", False),
        (":8765", False),
        ("localhost:", False),
        ("localhost:http", False),
        ("localhost:123456", False),
        ("a:b:c", False),
        ("[::1", False),
        ("[127.0.0.1]:80", False),
        ("[::1]8765", False),
        ("[evil.example]", False),
        ("localhost:٨٧٦٥", False),
    ],
)
def test_which_host_headers_are_answered(header: str, answered: bool) -> None:
    assert host_answered(header, NAMES) is answered


def test_the_names_answered_come_from_host_public_url_and_the_setting() -> None:
    names = answered_names("Console.Example.Org", "https://Stoic.Example.Net:8443/x", ["a.b."])
    assert names == {"console.example.org", "stoic.example.net", "a.b"}
    assert answered_names("0.0.0.0", "", []) == frozenset()  # an address: every IP answers
    assert answered_names("::", "", []) == frozenset()
    # Listening everywhere, the machine's own names answer too; on one address, they do not.
    assert answered_names("0.0.0.0", "", [], own=("Box", "box.lan")) == {"box", "box.lan"}
    assert answered_names("::", "", [], own=("box",)) == {"box"}
    assert answered_names("127.0.0.1", "", [], own=("box",)) == frozenset()


def _settings(workspace: Path, lines: str) -> None:
    path = workspace / "stoic.toml"
    text = path.read_text()
    assert "# allowed_hosts = []" in text
    path.write_text(text.replace("# allowed_hosts = []", lines))


def test_a_request_naming_another_host_is_refused_before_anything(ws_path: Path) -> None:
    _settings(ws_path, 'allowed_hosts = ["console.example.org"]')
    with serving(ws_path) as server:
        base = f"http://127.0.0.1:{server.port}"
        routes = ["/healthz", "/metrics", "/login", "/queue", "/api/openapi.json", "/static/x"]
        for path in routes:
            refused = httpx.get(base + path, headers={"Host": f"evil.example:{server.port}"})
            assert refused.status_code == 400, path
            assert refused.content == REFUSAL
        posted = httpx.post(
            base + "/gate/claude-code",
            headers={"Host": "evil.example", "Authorization": "Bearer x:y"},
            content=b"{}",
        )
        # The hook's caller lets a call through on anything but a 2xx: the gate denies it.
        assert posted.status_code == 200
        answer = posted.json()["hookSpecificOutput"]
        assert answer["permissionDecision"] == "deny"
        assert "does not answer to that host name" in answer["permissionDecisionReason"]
        for host in (f"127.0.0.1:{server.port}", "localhost", "console.example.org."):
            assert httpx.get(base + "/healthz", headers={"Host": host}).status_code == 200
        with Workspace.open(ws_path) as workspace:
            assert workspace.head().seq == 0  # nothing a refused request did is on record


def test_a_rebinding_page_counts_no_login_against_the_owners_address(ws_path: Path) -> None:
    with Workspace.open(ws_path) as workspace:
        secret = users.add(workspace, "alice", role="reviewer", actor="human:setup").secret
    with serving(ws_path) as server:
        base = f"http://127.0.0.1:{server.port}"
        # What a page of evil.example, pointed at 127.0.0.1, can do: it is the page's own site.
        with httpx.Client(
            base_url=base, headers={"Host": f"evil.example:{server.port}"}, timeout=30
        ) as page:
            answered = set()
            for guess in range(25):
                form = page.get("/login")
                token = form.cookies.get("stoic_login", "")
                guessed = page.post(
                    "/login",
                    data={"name": "alice", "secret": f"guess-{guess}", "csrf": token},
                    headers={"Origin": f"http://evil.example:{server.port}"},
                )
                answered |= {form.status_code, guessed.status_code}
        with httpx.Client(base_url=base, timeout=30) as owner:
            token = owner.get("/login").cookies["stoic_login"]
            answer = owner.post(
                "/login",
                data={"name": "alice", "secret": secret, "csrf": token},
                headers={"Cookie": f"stoic_login={token}"},
            )
            assert answer.status_code == 303, answer.text  # not locked out: 429
        assert answered == {400}


def test_a_host_name_the_setting_cannot_hold_is_one_line(ws_path: Path) -> None:
    _settings(ws_path, 'allowed_hosts = ["evil.example/x"]')
    result = run_cli("-w", str(ws_path), "serve", "--port", "1")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "stoic.toml:" in line and "allowed_hosts: 'evil.example/x' is not a host name" in line
