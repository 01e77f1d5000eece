"""The console's review pages and JSON API over HTTP, against a real server on loopback: what
they show, what they record, and every refusal recording nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import stoic
from stoic.server.sessions import Role
from tests.console_server import Clock, RunningConsole, running_console

HOSTILE = "<script>window.pwned = 1</script>"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(ws_path: Path, clock: Clock) -> Iterator[RunningConsole]:
    (ws_path / "stoic.toml").write_text("[review]\nmin_read_seconds = 30\n")
    with running_console(ws_path, clock) as running:
        yield running


def _propose(ws_path: Path, title: str = "Rotate the logs", **fields: object) -> str:
    with stoic.Workspace.open(ws_path) as workspace:
        proposal = workspace.propose(
            title=title,
            reasoning_trace=["the disk is 90% full"],
            action=["logrotate", "-f", "/etc/logrotate.conf"],
            by="agent:ops",
            **fields,
        )
    return proposal.id


def _records(ws_path: Path, kind: str) -> list[stoic.Record]:
    with stoic.Workspace.open(ws_path) as workspace:
        return list(workspace.records(decision_type=kind))


def _form(html: str, form_id: str = "decision") -> dict[str, str]:
    """The hidden fields of a form of the page, as the browser would send them."""
    block = html.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', block))


def _audit_clean(ws_path: Path) -> None:
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.audit()
    assert report.ok, report


def test_a_page_without_a_session_goes_to_login_and_the_api_says_401(
    served: RunningConsole,
) -> None:
    with httpx.Client(base_url=served.url) as anonymous:
        for path in ("/queue", "/proposals/PROP-20260101-001", "/runs", "/pause"):
            answer = anonymous.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == "/login"
        assert anonymous.get("/api/queue").status_code == 401
        assert anonymous.post("/api/pause/stop", json={"reason": "x"}).status_code == 401
        for path in ("/api/docs", "/docs/oauth2-redirect"):  # a page that loads a CDN's script
            assert anonymous.get(path).status_code == 404, path


def test_every_answer_keeps_the_console_to_its_own_script_and_out_of_frames(
    served: RunningConsole,
) -> None:
    from stoic.server.access import SECURITY_HEADERS

    with httpx.Client(base_url=served.url) as anonymous:
        for path in ("/login", "/queue", "/api/queue", "/healthz", "/static/console.js", "/nope"):
            headers = anonymous.get(path, follow_redirects=False).headers
            for name, value in SECURITY_HEADERS.items():
                assert headers.get(name) == value, (path, name)
    assert "script-src" not in SECURITY_HEADERS["Content-Security-Policy"]  # 'self' by default
    assert "frame-ancestors 'none'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_the_queue_shows_each_batch_with_its_proposals_and_filters(
    served: RunningConsole, ws_path: Path
) -> None:
    first = _propose(ws_path, confidence=0.9)
    second = _propose(ws_path, "Tell the team", type="notice")
    client, _ = served.login("ana")
    page = client.get("/queue").text
    assert first in page and second in page
    assert "Batch " in page and "high" in page and "agent:ops" in page
    only_notices = client.get("/queue", params={"type": "notice"}).text
    assert second in only_notices and first not in only_notices
    assert first not in client.get("/queue", params={"status": "approved"}).text
    listed = client.get("/api/queue").json()
    ids = [p["id"] for batch in listed["batches"] for p in batch["proposals"]]
    assert ids == [first, second]
    assert client.get("/queue", params={"status": "bogus"}).status_code == 400
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "/api/queue" in paths and "/api/proposals/{proposal_id}/decision" in paths


def test_a_proposal_shows_everything_and_hostile_text_only_as_text(
    served: RunningConsole, ws_path: Path
) -> None:
    # A source must exist: these name files in the workspace, whatever they look like.
    (ws_path / "https:" / "example.org").mkdir(parents=True)
    (ws_path / "https:" / "example.org" / "runbook?a=1&b=2").write_text("steps")
    (ws_path / "javascript:alert(1)").write_text("")
    proposal_id = _propose(
        ws_path,
        HOSTILE,
        summary=f"summary {HOSTILE}",
        sources=["https://example.org/runbook?a=1&b=2", "javascript:alert(1)"],
        trade_off="an hour of old logs",
        rollback=["true"],
    )
    client, _ = served.login("ana")
    page = client.get(f"/proposals/{proposal_id}").text
    assert "<script>window.pwned" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert '<a href="https://example.org/runbook?a=1&amp;b=2"' in page
    assert 'href="javascript:' not in page and "javascript:alert(1)" in page
    assert "logrotate -f /etc/logrotate.conf" in page and "an hour of old logs" in page
    shown = client.get(f"/api/proposals/{proposal_id}").json()
    assert re.fullmatch(r"[0-9a-f]{64}", shown["action_sha256"])
    assert shown["action_sha256"] in page


def test_control_characters_a_page_shows_are_visible_not_obeyed(
    served: RunningConsole, ws_path: Path
) -> None:
    override, terminal = "\u202e", "\x1b]0;OWNED\x07"
    with stoic.Workspace.open(ws_path) as workspace:
        proposal_id = workspace.propose(
            title=f"Rotate {terminal}the logs",
            reasoning_trace=[f"because {override}"],
            action=["sh", "-c", f"echo {override}fr- mr"],
            by="agent:ops",
            summary=f"summary {override}fdsa",
        ).id
    client, _ = served.login("ana")
    for path in (f"/proposals/{proposal_id}", "/queue"):
        page = client.get(path).text
        assert override not in page and "\x1b" not in page and "\x07" not in page, path
    page = client.get(f"/proposals/{proposal_id}").text
    assert "Rotate \\x1b]0;OWNED\\x07the logs" in page
    assert "echo \\u202efr- mr" in page and "summary \\u202efdsa" in page


def test_an_approval_is_on_record_as_the_person_with_its_read_seconds(
    served: RunningConsole, ws_path: Path, clock: Clock
) -> None:
    proposal_id = _propose(ws_path)
    client, _ = served.login("ana")
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    clock.now += 42.5
    answer = client.post(
        f"/proposals/{proposal_id}/decide",
        data={**fields, "decision": "approve"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    approved = [r for r in _records(ws_path, "proposal") if r.decision_outcome == "approved"]
    assert len(approved) == 1
    assert approved[0].actor == "human:ana"
    assert approved[0].decision_inputs["read_seconds"] == 42.5
    assert not _records(ws_path, "red_flag")  # read longer than review.min_read_seconds
    _audit_clean(ws_path)


def test_an_approval_faster_than_the_minimum_raises_the_rubber_stamping_flag(
    served: RunningConsole, ws_path: Path, clock: Clock
) -> None:
    proposal_id = _propose(ws_path)
    client, session = served.login("ana")
    shown = client.get(f"/api/proposals/{proposal_id}").json()["shown"]
    clock.now += 1
    answer = client.post(
        f"/api/proposals/{proposal_id}/decision",
        json={"decision": "approve", **shown},
        headers={"X-CSRF-Token": session.csrf},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["flag"] == "rubber-stamping"
    flags = _records(ws_path, "red_flag")
    assert [f.decision_inputs.get("signal") for f in flags] == ["rubber-stamping"]
    _audit_clean(ws_path)


def test_a_forged_or_changed_form_is_refused_and_nothing_recorded(
    served: RunningConsole, ws_path: Path, clock: Clock
) -> None:
    proposal_id = _propose(ws_path)
    client, session = served.login("ana")
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    before = len(_records(ws_path, "proposal"))
    clock.now += 60
    forged = {**fields, "shown_at": str(clock.now - 3600), "decision": "approve"}
    answer = client.post(f"/proposals/{proposal_id}/decide", data=forged)
    assert answer.status_code == 403
    # Signed by this server, but over an action that is not the proposal's: it changed.
    other = served.console.signer.sign(session.token, proposal_id, "0" * 64, clock.now - 60)
    changed = {
        **fields,
        "sha256": other.sha256,
        "shown_at": repr(other.shown_at),
        "shown_sig": other.signature,
        "decision": "approve",
    }
    answer = client.post(f"/proposals/{proposal_id}/decide", data=changed)
    assert answer.status_code == 409
    assert "changed since it was shown" in answer.text
    assert len(_records(ws_path, "proposal")) == before


def test_two_reviewers_deciding_one_proposal_the_second_is_told_who_won(
    served: RunningConsole, ws_path: Path
) -> None:
    proposal_id = _propose(ws_path)
    ana, _ = served.login("ana")
    bob, _ = served.login("bob")
    ana_form = _form(ana.get(f"/proposals/{proposal_id}").text)
    bob_form = _form(bob.get(f"/proposals/{proposal_id}").text)
    won = ana.post(
        f"/proposals/{proposal_id}/decide",
        data={**ana_form, "decision": "reject", "reason": "not tonight"},
        follow_redirects=False,
    )
    assert won.status_code == 303
    lost = bob.post(f"/proposals/{proposal_id}/decide", data={**bob_form, "decision": "approve"})
    assert lost.status_code == 409
    assert "rejected by human:ana" in lost.text
    outcomes = [r.decision_outcome for r in _records(ws_path, "proposal")]
    assert outcomes == ["created", "rejected"]


def test_a_rejection_needs_a_reason(served: RunningConsole, ws_path: Path) -> None:
    proposal_id = _propose(ws_path)
    client, _ = served.login("ana")
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    answer = client.post(f"/proposals/{proposal_id}/decide", data={**fields, "decision": "reject"})
    assert answer.status_code == 400
    assert [r.decision_outcome for r in _records(ws_path, "proposal")] == ["created"]


def test_writes_without_csrf_or_the_role_are_refused_and_nothing_recorded(
    served: RunningConsole, ws_path: Path
) -> None:
    proposal_id = _propose(ws_path)
    client, session = served.login("ana")
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    no_csrf = {k: v for k, v in fields.items() if k != "csrf"}
    assert (
        client.post(
            f"/proposals/{proposal_id}/decide", data={**no_csrf, "decision": "approve"}
        ).status_code
        == 403
    )
    wrong = {**fields, "csrf": "x" * 40, "decision": "approve"}
    assert client.post(f"/proposals/{proposal_id}/decide", data=wrong).status_code == 403
    stop = client.post("/pause/stop", data={"csrf": session.csrf, "reason": "why not"})
    assert stop.status_code == 403  # a reviewer may not stop the workspace
    api_stop = client.post(
        "/api/pause/stop", json={"reason": "x"}, headers={"X-CSRF-Token": session.csrf}
    )
    assert api_stop.status_code == 403
    assert [r.decision_outcome for r in _records(ws_path, "proposal")] == ["created"]
    assert not _records(ws_path, "pause")


@pytest.mark.parametrize(
    "path",
    [
        "/proposals/..%2F..%2Fetc%2Fpasswd",
        "/proposals/%2e%2e%2fqueue",
        "/proposals/PROP-1",
        "/api/proposals/%2e%2e%2f%2e%2e",
        "/runs/..%2Fx",
        "/runs/.hidden",
        "/api/runs/%2e%2e",
    ],
)
def test_ids_that_are_paths_are_not_found(served: RunningConsole, path: str) -> None:
    client, _ = served.login("ana")
    assert client.get(path).status_code == 404


def test_an_operator_stops_and_resumes_and_every_page_shows_the_pause(
    served: RunningConsole, ws_path: Path
) -> None:
    client, session = served.login("olga", Role.OPERATOR)
    stopped = client.post(
        "/pause/stop",
        data={"csrf": session.csrf, "reason": f"checking {HOSTILE}"},
        follow_redirects=False,
    )
    assert stopped.status_code == 303
    for path in ("/queue", "/runs", "/pause"):
        page = client.get(path).text
        assert 'id="paused"' in page and "checking &lt;script&gt;" in page, path
    assert 'name="procedure" value="smaller-batch"' in client.get("/pause").text
    resumed = client.post(
        "/pause/resume",
        data={
            "csrf": session.csrf,
            "procedure": "smaller-batch",
            "batch_size": "5",
            "reason": "checked",
        },
        follow_redirects=False,
    )
    assert resumed.status_code == 303, resumed.text
    assert 'id="paused"' not in client.get("/queue").text
    assert client.get("/api/pause").json() == {"paused": None, "batch_size": 5}
    pauses = _records(ws_path, "pause")
    assert [(p.decision_outcome, p.actor) for p in pauses] == [
        ("paused", "human:olga"),
        ("resumed", "human:olga"),
    ]
    _audit_clean(ws_path)


def test_runs_list_and_a_run_timeline(served: RunningConsole, ws_path: Path) -> None:
    plan = ws_path.parent / "passes.yaml"
    plan.write_text("meta: {name: passes}\ntasks:\n  - {id: a, run: ['true']}\n")
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.run(plan)
    client, _ = served.login("ana")
    assert report.run_id in client.get("/runs").text
    page = client.get(f"/runs/{report.run_id}").text
    assert "completed" in page and "Operator timeline" in page and "run_lifecycle/" in page
    told = client.get(f"/api/runs/{report.run_id}").json()
    assert told["status"] == "completed"
    assert told["customer"]["tasks"][0]["task"] == "a"
    assert client.get("/runs/run-nope").status_code == 404
    assert 'class="output"' not in page  # nothing failed: no output shown


def test_a_failed_tasks_output_ends_its_run_page_escaped(
    served: RunningConsole, ws_path: Path
) -> None:
    plan = ws_path.parent / "fails.yaml"
    plan.write_text(
        "meta: {name: fails}\ntasks:\n"
        "  - {id: a, run: [sh, -c, 'echo \"<em>broke</em>\"; exit 3']}\n"
    )
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.run(plan)
    client, _ = served.login("ana")
    page = client.get(f"/runs/{report.run_id}").text
    assert 'id="output-a"' in page and "a, attempt 1: the end of its output" in page
    assert "&lt;em&gt;broke&lt;/em&gt;" in page and "<em>broke" not in page


def test_a_run_whose_plan_copy_was_changed_says_so_and_is_not_a_404(
    served: RunningConsole, ws_path: Path
) -> None:
    plan = ws_path.parent / "passes.yaml"
    plan.write_text("meta: {name: passes}\ntasks:\n  - {id: a, run: ['true']}\n")
    with stoic.Workspace.open(ws_path) as workspace:
        report = workspace.run(plan)
    copy = ws_path / "runs" / report.run_id / "plan.yaml"
    copy.write_text(copy.read_text() + "# edited after the run\n")
    client, _ = served.login("ana")
    for path in (f"/api/runs/{report.run_id}", f"/runs/{report.run_id}"):
        answer = client.get(path)
        assert answer.status_code == 500, path
        detail = answer.json()["detail"]
        assert detail.startswith(f"run {report.run_id} cannot be shown: ")
        assert "no longer matches the plan the run started with" in detail
    unknown = client.get("/api/runs/run-20260101-000000-abcdef")
    assert unknown.status_code == 404 and "no run 'run-20260101-000000-abcdef'" in unknown.text


def test_events_announce_a_new_record_past_the_one_a_page_was_rendered_at(
    served: RunningConsole, ws_path: Path
) -> None:
    client, _ = served.login("ana")
    page = client.get("/queue").text
    after = int(re.search(r'data-live="(\d+)"', page).group(1))  # type: ignore[union-attr]
    with client.stream("GET", "/events", params={"after": after}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        _propose(ws_path)
        lines = stream.iter_lines()
        while next(lines) != "event: record":
            pass
        assert int(next(lines).removeprefix("data: ")) > after
    with httpx.Client(base_url=served.url) as anonymous:
        assert anonymous.get("/events").status_code == 303


def _wait_for_status(ws_path: Path, run_id: str, wanted: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        with stoic.Workspace.open(ws_path) as workspace:
            if workspace.run_status(run_id).status == wanted:
                return
        assert time.monotonic() < deadline, f"{run_id} never became {wanted}"
        time.sleep(0.05)


def test_an_operator_retries_a_failed_task_and_the_run_goes_on(
    served: RunningConsole, ws_path: Path
) -> None:
    flag = ws_path.parent / "fixed"
    plan = ws_path.parent / "flaky.yaml"
    plan.write_text(
        "meta: {name: flaky}\ntasks:\n"
        f"  - {{id: fetch, run: ['test', '-e', '{flag}']}}\n"
        "  - {id: after, run: ['true'], depends_on: [fetch]}\n"
    )
    with stoic.Workspace.open(ws_path) as workspace:
        run_id = workspace.run(plan).run_id
    reviewer, ana = served.login("ana")
    refused = reviewer.post(
        f"/runs/{run_id}/retry", data={"csrf": ana.csrf, "task": "fetch", "reason": "x"}
    )
    assert refused.status_code == 403
    operator, olga = served.login("olga", Role.OPERATOR)
    page = operator.get(f"/runs/{run_id}").text
    assert 'id="retry"' in page and '<option value="fetch">' in page
    not_failed = operator.post(
        f"/runs/{run_id}/retry", data={"csrf": olga.csrf, "task": "after", "reason": "go"}
    )
    assert not_failed.status_code == 409  # `after` never ran: refused by the service, unrecorded
    assert "after" in not_failed.text
    flag.write_text("")
    retried = operator.post(
        f"/runs/{run_id}/retry",
        data={"csrf": olga.csrf, "task": "fetch", "reason": "the mirror is back"},
        follow_redirects=False,
    )
    assert retried.status_code == 303, retried.text
    _wait_for_status(ws_path, run_id, "completed")
    retry_records = [
        r
        for r in _records(ws_path, "proposal")
        if r.run_id == run_id and r.decision_inputs.get("kind") == "retry"
    ]
    assert [(r.task_id, r.actor) for r in retry_records] == [("fetch", "human:olga")]
    _audit_clean(ws_path)


def test_an_approval_then_continue_finishes_the_run(
    served: RunningConsole, ws_path: Path, clock: Clock
) -> None:
    plan = ws_path.parent / "waits.yaml"
    plan.write_text(
        "meta: {name: waits}\ntasks:\n  - {id: deploy, run: ['true'], approval: required}\n"
    )
    with stoic.Workspace.open(ws_path) as workspace:
        run_id = workspace.run(plan).run_id
    approval = next(r.proposal_id for r in _records(ws_path, "proposal"))
    operator, olga = served.login("olga", Role.OPERATOR)
    fields = _form(operator.get(f"/proposals/{approval}").text)
    clock.now += 60
    operator.post(f"/proposals/{approval}/decide", data={**fields, "decision": "approve"})
    continued = operator.post(
        f"/runs/{run_id}/continue", data={"csrf": olga.csrf}, follow_redirects=False
    )
    assert continued.status_code == 303, continued.text
    _wait_for_status(ws_path, run_id, "completed")
    assert "completed" in operator.get(f"/runs/{run_id}").text
    _audit_clean(ws_path)


def test_a_change_to_stoic_toml_holds_from_the_next_request(
    served: RunningConsole, ws_path: Path, clock: Clock
) -> None:
    first, second = _propose(ws_path), _propose(ws_path, "Another")
    client, _ = served.login("ana")
    fields = _form(client.get(f"/proposals/{first}").text)
    clock.now += 1
    client.post(f"/proposals/{first}/decide", data={**fields, "decision": "approve"})
    assert len(_records(ws_path, "red_flag")) == 1  # 1 s < review.min_read_seconds (30)
    (ws_path / "stoic.toml").write_text("[review]\nmin_read_seconds = 0.5\n")
    fields = _form(client.get(f"/proposals/{second}").text)
    clock.now += 1
    client.post(f"/proposals/{second}/decide", data={**fields, "decision": "approve"})
    assert len(_records(ws_path, "red_flag")) == 1  # 1 s is enough now
