"""The review console of a workspace whose `stoic.toml` names a database (DESIGN §13, §14),
against a real PostgreSQL and a real server: the database's runs on the runs pages, its queue
on the queue pages, a decision from the page taking a run up for its workers, and the live
stamp moving with either log."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stoic.server.sessions import Role
from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli
from tests.console_server import Clock, RunningConsole, running_console

HOSTILE = "<script>window.pwned = 1</script>"


@pytest.fixture
def workspace(db: str, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    assert run_cli("init", str(root)).exit_code == 0
    settings = root / "stoic.toml"
    text = settings.read_text().replace("[store]\n", f'[store]\nurl = "{db}"\n')
    text = text.replace("# timeout_retry_delay_seconds = 5.0", "timeout_retry_delay_seconds = 0")
    settings.write_text(text)
    return root


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def served(workspace: Path, clock: Clock) -> Iterator[RunningConsole]:
    with running_console(workspace, clock) as running:
        yield running


def _records(url: str, run_id: str) -> list[dict[str, object]]:
    with PostgresStore.open(url) as store:
        return [record._asdict() for record in store.read() if record.run_id == run_id]


def _form(html: str, form_id: str = "decision") -> dict[str, str]:
    block = html.split(f'id="{form_id}"', 1)[1].split("</form>", 1)[0]
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', block))


def _work(workspace: Path, tmp_path: Path) -> None:
    ran = run_cli(
        "-w",
        str(workspace),
        "worker",
        "--exit-when-idle",
        "--poll-seconds",
        "0.1",
        "--scratch",
        str(tmp_path / "scratch"),
    )
    assert ran.exit_code == 0, ran.stderr


def _waiting_run(workspace: Path, tmp_path: Path) -> str:
    """A database run whose task timed out twice: it waits for a person's decision."""
    tries = tmp_path / "tries"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: flaky}\ntasks:\n"
        f"  - id: slow\n    name: '{HOSTILE}'\n    idempotent: true\n    timeout: 0.5\n"
        f'    run: [sh, -c, \'echo "<em>tick</em>"; echo x >> {tries};'
        f" [ $(wc -l < {tries}) -ge 3 ] || sleep 5']\n"
    )
    started = run_cli("-w", str(workspace), "run", str(plan), "--json")
    assert started.exit_code == 0, started.stderr
    run_id = str(orjson.loads(started.stdout)["run_id"])
    _work(workspace, tmp_path)
    return run_id


def test_a_database_run_is_watched_and_taken_up_from_the_console(
    served: RunningConsole, workspace: Path, db: str, tmp_path: Path, clock: Clock
) -> None:
    run_id = _waiting_run(workspace, tmp_path)
    client, _ = served.login("ana")
    listed = client.get("/runs")
    assert listed.status_code == 200
    assert run_id in listed.text and "awaiting_human" in listed.text
    page = client.get(f"/runs/{run_id}")
    assert page.status_code == 200, page.text
    assert 'id="on-workers"' in page.text and "awaiting_human" in page.text
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    assert 'action="/runs/' not in page.text  # retry and continue are a workspace runner's
    assert 'id="output-slow"' in page.text and "slow, attempt 2" in page.text
    assert "&lt;em&gt;tick&lt;/em&gt;" in page.text and "<em>tick" not in page.text
    rendered_at = int(re.findall(r'data-live="(\d+)"', page.text)[0])

    queue = client.get("/queue")
    proposal_id = re.findall(r"PROP-\d{8}-\d{3}", queue.text)[0]
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    clock.now += 12.0
    answer = client.post(
        f"/proposals/{proposal_id}/decide",
        data={**fields, "decision": "approve"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    approval = next(
        r
        for r in _records(db, run_id)
        if r["decision_type"] == "proposal" and r["decision_outcome"] == "approved"
    )
    assert approval["actor"] == "human:ana"
    assert approval["decision_inputs"]["read_seconds"] == 12.0  # type: ignore[index]
    assert served.console.live_seq() > rendered_at  # an open page reloads

    again = client.post(f"/proposals/{proposal_id}/decide", data={**fields, "decision": "approve"})
    assert again.status_code == 409 and "approved by human:ana" in again.text

    _work(workspace, tmp_path)
    done = client.get(f"/runs/{run_id}")
    assert "completed" in done.text
    assert _records(db, run_id)[-1]["decision_outcome"] == "completed"


def test_a_changed_action_is_refused_and_a_flag_and_a_hasty_approval_are_on_record(
    served: RunningConsole, workspace: Path, db: str, clock: Clock
) -> None:
    made = run_cli(
        "-w", str(workspace), "propose", "--title", "t", "--reasoning", "r", "--json", "--", "ls"
    )
    assert made.exit_code == 0, made.stderr
    proposal_id = str(orjson.loads(made.stdout)["id"])
    client, _ = served.login("ana")
    fields = _form(client.get(f"/proposals/{proposal_id}").text)
    forged = client.post(
        f"/proposals/{proposal_id}/decide",
        data={**fields, "sha256": "0" * 64, "decision": "approve"},
    )
    assert forged.status_code in (403, 409)
    flagged = client.post(
        f"/proposals/{proposal_id}/flag",
        data={"csrf": fields["csrf"], "signal": "dont-understand", "note": HOSTILE},
        follow_redirects=False,
    )
    assert flagged.status_code == 303, flagged.text
    unknown = client.post(
        f"/proposals/{proposal_id}/flag", data={"csrf": fields["csrf"], "signal": "nope"}
    )
    assert unknown.status_code == 400
    clock.now += 1.0  # sooner than review.min_read_seconds (3)
    hasty = client.post(
        f"/proposals/{proposal_id}/decide",
        data={**fields, "decision": "approve"},
        follow_redirects=False,
    )
    assert hasty.status_code == 303, hasty.text
    with PostgresStore.open(db) as store:
        flags = [r for r in store.read() if r.decision_type == "red_flag"]
    assert [(f.actor, f.decision_inputs["signal"]) for f in flags] == [
        ("human:ana", "dont-understand"),
        ("system:review", "rubber-stamping"),
    ]
    assert b"red_flag" not in (workspace / "logs" / "decision_log.ndjson").read_bytes()


def test_the_api_lists_the_databases_runs_and_queue(
    served: RunningConsole, workspace: Path, tmp_path: Path
) -> None:
    run_id = _waiting_run(workspace, tmp_path)
    client, _ = served.login("ana")
    listed = client.get("/api/runs").json()
    assert [row["run_id"] for row in listed] == [run_id]
    told = client.get(f"/api/runs/{run_id}").json()
    assert told["status"] == "awaiting_human"
    batches = client.get("/api/queue").json()["batches"]
    proposals = [p for batch in batches for p in batch["proposals"]]
    assert [p["task_id"] for p in proposals] == ["slow"]
    missing = client.get("/api/runs/run-nope")
    assert missing.status_code == 404


def test_an_operator_stops_and_resumes_the_databases_work_from_the_console(
    served: RunningConsole, workspace: Path, db: str
) -> None:
    from stoic.server.sessions import Role

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
    refused = run_cli("-w", str(workspace), "propose", "--title", "t", "--reasoning", "r")
    assert refused.exit_code != 0 and "the database is paused" in refused.stderr
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
    assert client.get("/api/pause").json() == {"paused": None, "batch_size": 5}
    with PostgresStore.open(db) as store:
        pauses = [r for r in store.read() if r.decision_type == "pause"]
    assert [(p.decision_outcome, p.actor) for p in pauses] == [
        ("paused", "human:olga"),
        ("resumed", "human:olga"),
    ]
    own = run_cli("-w", str(workspace), "status", "--json")
    assert orjson.loads(own.stdout)["paused"] is None  # the workspace's own log: untouched


def test_a_database_that_cannot_be_reached_is_one_line_503(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    assert run_cli("init", str(root)).exit_code == 0
    settings = root / "stoic.toml"
    nowhere = "postgresql://stoic@127.0.0.1:1/stoic?connect_timeout=2"
    settings.write_text(settings.read_text().replace("[store]\n", f'[store]\nurl = "{nowhere}"\n'))
    with running_console(root) as served:
        client, _ = served.login("ana")
        for path in ("/queue", "/runs", "/pause"):
            page = client.get(path)
            assert page.status_code == 503, (path, page.text)
            assert "Traceback" not in page.text and "cannot" in page.text
        api = client.get("/api/queue")
        assert api.status_code == 503 and "detail" in api.json()
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "database unreachable"


def test_the_queue_page_names_what_waits_in_the_workspace_own_queue(
    served: RunningConsole, workspace: Path
) -> None:
    client, _ = served.login("ana")
    assert 'id="left-behind"' not in client.get("/queue").text
    made = run_cli(
        "-w", str(workspace), "--local", "propose", "--title", "old", "--reasoning", "r", "--json"
    )
    assert made.exit_code == 0, made.stderr
    own = orjson.loads(made.stdout)["id"]
    html = client.get("/queue").text
    notice = html.split('id="left-behind"', 1)[1].split("</p>", 1)[0]
    assert own in notice and "stoic --local queue" in notice
    assert f'data-id="{own}"' not in html  # named, not offered for a decision here


ESCALATING = """\
import os
import stoic

def ask():
    if os.environ.get("STOIC_GUIDANCE") is None:
        stoic.escalate(
            "Which region gets the deploy?",
            context="two are up <b>now</b>\\n## Decision\\nrouted by human:lead: done",
        )
    return {"region": os.environ["STOIC_GUIDANCE"]}
"""


def test_a_database_runs_escalation_is_shown_and_answered_from_the_console(
    served: RunningConsole, workspace: Path, db: str, tmp_path: Path
) -> None:
    (tmp_path / "region.py").write_text(ESCALATING)
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: deploy}\ntasks:\n  - {id: ask, call: 'region:ask'}\n")
    started = run_cli("-w", str(workspace), "run", str(plan), "--json")
    assert started.exit_code == 0, started.stderr
    run_id = str(orjson.loads(started.stdout)["run_id"])
    _work(workspace, tmp_path)
    asked = run_cli("-w", str(workspace), "escalate", "--mode", "ambiguity", "--question",
                    "Is the freeze on?", "--as", "ben")  # fmt: skip
    assert asked.exit_code == 0 and asked.stdout.strip() == "ESC-002", asked.stderr

    operator, olga = served.login("olga", Role.OPERATOR)
    listed = operator.get("/escalations")
    assert listed.status_code == 200
    assert "ESC-001" in listed.text and "ESC-002" in listed.text
    api = operator.get("/api/escalations").json()
    assert [(e["id"], e["raised_by"]) for e in api] == [
        ("ESC-001", "system:runner"),
        ("ESC-002", "human:ben"),
    ]
    assert run_id in operator.get("/api/escalations/ESC-001").json()["briefing_markdown"]
    shown = operator.get("/escalations/ESC-001")
    assert shown.status_code == 200, shown.text
    assert "Which region gets the deploy?" in shown.text and run_id in shown.text
    assert "<b>now</b>" not in shown.text and "&lt;b&gt;now&lt;/b&gt;" in shown.text
    assert 'value="amended"' not in shown.text and 'name="plan"' not in shown.text
    assert "<h2>Decision</h2>" not in shown.text  # a task's context makes no heading
    with_plan = operator.post(
        "/escalations/ESC-001/answer",
        data={"csrf": olga.csrf, "decision": "routed", "note": "x"},
        files={"plan": ("fix.yaml", b"tasks: []\n", "application/yaml")},
    )
    assert with_plan.status_code == 400 and "keeps the plan its start recorded" in with_plan.text
    amended = operator.post(
        "/escalations/ESC-001/answer", data={"csrf": olga.csrf, "decision": "amended"}
    )
    assert amended.status_code == 400 and "start a new run" in amended.text
    answered = operator.post(
        "/escalations/ESC-001/answer",
        data={"csrf": olga.csrf, "decision": "routed", "note": "eu-west"},
        follow_redirects=False,
    )
    assert answered.status_code == 303, answered.text
    assert "routed by human:olga" in operator.get("/escalations/ESC-001").text
    _work(workspace, tmp_path)
    assert _records(db, run_id)[-1]["decision_outcome"] == "completed"
    assert operator.get("/escalations/ESC-404").status_code == 404
