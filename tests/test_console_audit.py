"""The console's audit page: the last audit on record, the head, and running one (operators)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import stoic
from stoic.server.sessions import Role
from tests.console_server import RunningConsole, running_console

HOSTILE = "<script>window.pwned = 1<"


@pytest.fixture
def served(ws_path: Path) -> Iterator[RunningConsole]:
    with running_console(ws_path) as running:
        yield running


def _records(ws_path: Path, kind: str) -> list[stoic.Record]:
    with stoic.Workspace.open(ws_path) as workspace:
        return list(workspace.records(decision_type=kind))


def _csrf(html: str) -> str:
    block = html.split('id="run-audit"', 1)[1].split("</form>", 1)[0]
    found = re.search(r'name="csrf" value="([^"]*)"', block)
    assert found is not None
    return found.group(1)


def test_a_reviewer_sees_the_audit_page_but_cannot_run_one(
    served: RunningConsole, ws_path: Path
) -> None:
    client, session = served.login("rita", Role.REVIEWER)
    page = client.get("/audit").text
    assert '<a href="/audit">Audit</a>' in page
    assert "No audit is on record." in page and 'id="run-audit"' not in page
    with stoic.Workspace.open(ws_path) as workspace:
        head = workspace.head()
    assert f"seq {head.seq}, hash <code>{head.hash}</code>" in page
    before = head.seq
    refused = client.post("/audit", data={"csrf": session.csrf}, follow_redirects=False)
    assert refused.status_code == 403
    forged = client.post("/audit", data={"csrf": "nope"}, follow_redirects=False)
    assert forged.status_code == 403
    with stoic.Workspace.open(ws_path) as workspace:
        assert workspace.head().seq == before
    assert _records(ws_path, "audit") == []
    assert client.get("/api/audit").json() == {
        "head": {"seq": head.seq, "hash": head.hash},
        "last": None,
    }


def test_an_operator_runs_the_audit_and_it_is_on_record_as_theirs(
    served: RunningConsole, ws_path: Path
) -> None:
    client, _ = served.login("olga", Role.OPERATOR)
    page = client.get("/audit").text
    ran = client.post("/audit", data={"csrf": _csrf(page)}, follow_redirects=False)
    assert ran.status_code == 303 and ran.headers["location"] == "/audit"
    [record] = _records(ws_path, "audit")
    assert (record.decision_outcome, record.actor) == ("passed", "human:olga")
    shown = client.get("/audit").text
    assert "The last audit: passed" in shown and "by human:olga: 0 violations" in shown
    last = client.get("/api/audit").json()["last"]
    assert last["ok"] is True and last["seq"] == record.seq and last["actor"] == "human:olga"
    assert _records(ws_path, "pause") == []
    with stoic.Workspace.open(ws_path) as workspace:
        assert workspace.audit().ok


def test_a_failed_audit_pauses_and_is_shown_failed_with_its_violations_escaped(
    served: RunningConsole, ws_path: Path
) -> None:
    (ws_path / "queue" / "pending").mkdir(parents=True, exist_ok=True)
    (ws_path / "queue" / "pending" / f"{HOSTILE}.json").write_text("{}")
    client, _ = served.login("olga", Role.OPERATOR)
    ran = client.post(
        "/audit", data={"csrf": _csrf(client.get("/audit").text)}, follow_redirects=True
    )
    assert ran.status_code == 200
    page = ran.text
    assert "The last audit: failed" in page and "1 violation." in page
    assert HOSTILE not in page
    assert "&lt;script&gt;window.pwned = 1&lt;.json is not a proposal the log knows" in page
    assert 'id="paused"' in page
    [record] = _records(ws_path, "audit")
    assert (record.decision_outcome, record.actor) == ("failed", "human:olga")
    [paused] = _records(ws_path, "pause")
    assert paused.actor == "human:olga"
    last = client.get("/api/audit").json()["last"]
    assert last["ok"] is False and last["violations"] == 1
    assert last["shown"][0]["code"] == "queue_mismatch"
