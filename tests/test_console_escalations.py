"""The console's escalation pages over HTTP: a briefing from markdown with every task text
escaped, and the operator's answer on record as them (a reviewer's refused, nothing recorded)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import stoic
from stoic.server.markdown import render
from stoic.server.sessions import Role
from stoic.services import escalations
from tests.console_server import RunningConsole, running_console
from tests.test_escalations import ASK_SCRIPT, ASKS
from tests.test_recovery_runs import run_plan

HOSTILE = "<script>window.pwned = 1</script> [click](javascript:alert(1))"


@pytest.fixture
def served(ws_path: Path) -> Iterator[RunningConsole]:
    with running_console(ws_path) as running:
        yield running


def _raise(ws_path: Path) -> str:
    with stoic.Workspace.open(ws_path) as workspace:
        raised = escalations.raise_(
            workspace,
            escalations.request("ambiguity", f"Which region for {HOSTILE}?", f"context {HOSTILE}"),
            actor="agent:ops",
        )
    return raised.id


def _escalation_records(ws_path: Path) -> list[stoic.Record]:
    with stoic.Workspace.open(ws_path) as workspace:
        return list(workspace.records(decision_type="escalation"))


def test_markdown_is_rendered_with_every_text_escaped() -> None:
    html = render(
        "# Brief <b>x</b>\n\nSome **bold** `<i>`\n- one <script>\n1. first\n\n```\n<script>\n```"
    )
    assert "<h1>Brief &lt;b&gt;x&lt;/b&gt;</h1>" in html
    assert "<strong>bold</strong> <code>&lt;i&gt;</code>" in html
    assert "<ul>\n<li>one &lt;script&gt;</li>\n</ul>" in html
    assert "<ol>\n<li>first</li>\n</ol>" in html
    assert "<pre><code>&lt;script&gt;</code></pre>" in html
    assert "<script" not in html and "href" not in render("[a](javascript:alert(1))")
    shown = render("# Ask \x1b[2J\n\n- cur\u202eved\n")
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "Ask \\x1b[2J" in shown and "cur\\u202eved" in shown


def test_a_briefing_shows_task_text_only_as_text(served: RunningConsole, ws_path: Path) -> None:
    escalation_id = _raise(ws_path)
    client, _ = served.login("ana")
    assert escalation_id in client.get("/escalations").text
    page = client.get(f"/escalations/{escalation_id}").text
    briefing = page.split('id="briefing"', 1)[1].split("</article>", 1)[0]
    assert "Which region for &lt;script&gt;window.pwned = 1&lt;/script&gt;" in briefing
    assert "<script" not in briefing and "href" not in briefing
    assert 'id="answer"' not in page  # a reviewer does not answer
    shown = client.get(f"/api/escalations/{escalation_id}").json()
    assert HOSTILE in shown["briefing_markdown"]
    assert client.get("/escalations/ESC-..%2F1").status_code == 404


def test_an_operator_answers_and_a_reviewer_may_not(served: RunningConsole, ws_path: Path) -> None:
    escalation_id = _raise(ws_path)
    reviewer, ana = served.login("ana")
    refused = reviewer.post(
        f"/escalations/{escalation_id}/answer",
        data={"csrf": ana.csrf, "decision": "routed", "note": "eu-west"},
    )
    assert refused.status_code == 403
    operator, olga = served.login("olga", Role.OPERATOR)
    assert 'id="answer"' in operator.get(f"/escalations/{escalation_id}").text
    not_a_run = operator.post(
        f"/escalations/{escalation_id}/answer",
        data={"csrf": olga.csrf, "decision": "amended"},
        files={"plan": ("plan.yaml", b"tasks: []\n", "application/yaml")},
    )
    assert not_a_run.status_code == 400  # it is about no run: nothing to amend
    assert [r.decision_outcome for r in _escalation_records(ws_path)] == ["raised"]
    answered = operator.post(
        f"/escalations/{escalation_id}/answer",
        data={"csrf": olga.csrf, "decision": "routed", "note": "eu-west"},
        files={"plan": ("", b"", "application/octet-stream")},
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    records = _escalation_records(ws_path)
    assert [(r.decision_outcome, r.actor) for r in records][-1] == ("resolved", "human:olga")
    assert "routed by human:olga" in operator.get(f"/escalations/{escalation_id}").text
    with stoic.Workspace.open(ws_path) as workspace:
        assert workspace.audit().ok


def test_an_uploaded_amended_plan_is_checked_like_any_plan_then_the_run_goes_on_with_it(
    served: RunningConsole, ws_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "ask.sh").write_text(ASK_SCRIPT)
    assert run_plan(ws_path, tmp_path, ASKS) == 3  # the run waits on ESC-001
    operator, olga = served.login("olga", Role.OPERATOR)

    def answer(plan: bytes) -> str:
        refused = operator.post(
            "/escalations/ESC-001/answer",
            data={"csrf": olga.csrf, "decision": "amended"},
            files={"plan": ("fix.yaml", plan, "application/yaml")},
        )
        assert refused.status_code == 400
        return refused.text

    said = answer(b"tasks:\n  - id: pick\n    run: ['true']\n    timout: 5\n")
    assert "fix.yaml:4:5: task &#39;pick&#39;: unknown key &#39;timout&#39;" in said
    assert "stoic-amended-" not in said  # the upload's name, not where it was checked
    assert "drops task &#39;pick&#39;" in answer(b"tasks:\n  - id: after\n    run: ['true']\n")
    assert [r.decision_outcome for r in _escalation_records(ws_path)] == ["raised"]
    amended = (
        b"tasks:\n  - {id: pick, run: ['true']}\n"
        b"  - {id: after, run: ['true'], depends_on: [pick]}\n"
    )
    answered = operator.post(
        "/escalations/ESC-001/answer",
        data={"csrf": olga.csrf, "decision": "amended"},
        files={"plan": ("fix.yaml", amended, "application/yaml")},
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    resolved = _escalation_records(ws_path)[-1]
    assert (resolved.decision_outcome, resolved.actor) == ("resolved", "human:olga")
    assert resolved.details["amendment"]["changed"] == ["pick"]  # type: ignore[index]
    with stoic.Workspace.open(ws_path) as workspace:
        assert workspace.audit().ok


@pytest.mark.parametrize(
    ("decision", "outcome"), [("escalated", "raised"), ("aborted", "resolved")]
)
def test_an_escalation_passed_on_or_aborted_from_the_page_is_on_record_as_the_operator(
    served: RunningConsole, ws_path: Path, tmp_path: Path, decision: str, outcome: str
) -> None:
    (tmp_path / "ask.sh").write_text(ASK_SCRIPT)
    assert run_plan(ws_path, tmp_path, ASKS) == 3
    operator, olga = served.login("olga", Role.OPERATOR)
    answered = operator.post(
        "/escalations/ESC-001/answer",
        data={"csrf": olga.csrf, "decision": decision, "note": "not mine", "to": "dba"},
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    last = _escalation_records(ws_path)[-1]
    assert (last.decision_outcome, last.actor) == (outcome, "human:olga")
    assert decision in operator.get("/escalations/ESC-001").text
