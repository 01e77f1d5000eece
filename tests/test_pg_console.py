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

from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli
from tests.console_server import Clock, RunningConsole, running_console
from tests.postgres import EmbeddedPostgres

HOSTILE = "<script>window.pwned = 1</script>"


@pytest.fixture
def db(postgres: EmbeddedPostgres) -> str:
    url = postgres.new_database()
    PostgresStore.migrate(url)
    return url


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
        f"    run: [sh, -c, 'echo x >> {tries}; [ $(wc -l < {tries}) -ge 3 ] || sleep 5']\n"
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


def test_a_changed_action_and_a_flag_on_a_database_proposal_are_refused(
    served: RunningConsole, workspace: Path, db: str
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
        data={"csrf": _form(client.get(f"/proposals/{proposal_id}").text)["csrf"], "signal": "x"},
    )
    assert flagged.status_code == 400
    shown = run_cli("-w", str(workspace), "queue", "--json")
    assert [p["status"] for p in orjson.loads(shown.stdout)] == ["pending"]


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
