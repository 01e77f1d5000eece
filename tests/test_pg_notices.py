"""Notices of a database's records (DESIGN §11, §13), against a real PostgreSQL and a real
`stoic serve`: what workers record that calls for a person reaches the notifiers of the
workspace that names the database, once, across a restart of the server."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from stoic.core.database_notices import database_notice
from stoic.core.notifications import Event, console_link
from tests.conftest import run_cli
from tests.test_serve_control import serving

TASK = """\
import os
import stoic

def ask():
    if os.environ.get("STOIC_GUIDANCE") is None:
        stoic.escalate("Which region gets the deploy?")
    return {"region": os.environ["STOIC_GUIDANCE"]}
"""


@pytest.fixture
def workspace(db: str, tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    assert run_cli("init", str(root)).exit_code == 0
    settings = root / "stoic.toml"
    text = settings.read_text().replace("[store]\n", f'[store]\nurl = "{db}"\n')
    text += '\n[[notifiers]]\nkind = "file"\npath = "notifications.ndjson"\n'
    settings.write_text(text)
    return root


def _notices(workspace: Path) -> list[dict[str, object]]:
    path = workspace / "notifications.ndjson"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _until_events(workspace: Path, *wanted: str) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        notices = _notices(workspace)
        if [n["event"] for n in notices] == list(wanted):
            return notices
        assert time.monotonic() < deadline, f"notices so far: {notices}"
        time.sleep(0.1)


def _work(workspace: Path, tmp_path: Path) -> None:
    ran = run_cli(
        "-w", str(workspace), "worker", "--exit-when-idle", "--poll-seconds", "0.1",
        "--scratch", str(tmp_path / "scratch"),
    )  # fmt: skip
    assert ran.exit_code == 0, ran.stderr


def test_what_workers_record_reaches_the_notifiers_once_across_a_restart(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    (tmp_path / "region.py").write_text(TASK)
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: deploy}\ntasks:\n  - {id: ask, call: 'region:ask'}\n")
    with serving(workspace):
        time.sleep(1.5)  # the server follows the database from its head at its start
        started = run_cli("-w", str(workspace), "run", str(plan), "--json")
        assert started.exit_code == 0, started.stderr
        run_id = orjson.loads(started.stdout)["run_id"]
        _work(workspace, tmp_path)
        raised, waiting = _until_events(workspace, "escalation_raised", "run_awaiting_human")
    assert raised["run_id"] == waiting["run_id"] == run_id
    assert raised["data"]["escalation_id"] == "ESC-001"  # type: ignore[index]
    assert "Which region" in str(raised["text"])

    answered = run_cli(
        "-w", str(workspace), "escalations", "answer", "ESC-001", "--decision", "routed",
        "--note", "eu-west", "--as", "ana",
    )  # fmt: skip
    assert answered.exit_code == 0, answered.stderr
    _work(workspace, tmp_path)  # the run completes while no server follows the database
    with serving(workspace), serving(workspace):  # started again, twice: one of them tells
        notices = _until_events(
            workspace, "escalation_raised", "run_awaiting_human", "run_completed"
        )
        time.sleep(2.5)
        assert len(_notices(workspace)) == 3  # nothing announced twice
    assert notices[-1]["run_id"] == run_id
    sent = [
        record
        for record in _workspace_records(workspace)
        if record["decision_type"] == "notification"
    ]
    assert [r["decision_outcome"] for r in sent] == ["sent"] * 3
    assert all(isinstance(r["decision_inputs"]["database_seq"], int) for r in sent)
    audited = run_cli("-w", str(workspace), "--local", "audit", "--json")
    assert audited.exit_code == 0, audited.stdout  # the follower's lock is no stray file


def _a_run_failed(db: str) -> int:
    """A run's end recorded in the database, as a worker records it; returns its seq."""
    from stoic.core.records import Decision
    from stoic.store.pg_store import PostgresStore

    ended = {"type": "run_lifecycle", "outcome": "failed", "reason": "Run run-x failed."}
    with PostgresStore.open(db) as store:
        store.append([Decision.from_mapping({**ended, "run_id": "run-x"})])
        return store.head().seq


def _notify_by_command(workspace: Path, script: str) -> None:
    """A command notifier after the file one: `sh -c script`, given its time."""
    settings = workspace / "stoic.toml"
    notifier = f'kind = "command"\ncommand = ["sh", "-c", "{script}"]\ntimeout = 60\n'
    settings.write_text(settings.read_text() + f"\n[[notifiers]]\n{notifier}")


def _workspace_records(workspace: Path) -> list[dict[str, object]]:
    log = workspace / "logs" / "decision_log.ndjson"
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def test_which_database_records_call_for_a_notice() -> None:
    """A person's own stop is told by the command that made it; a system's pause is not."""
    base = {"seq": 7, "run_id": "run-1", "decision_reason": "Why."}
    assert database_notice({**base, "decision_type": "execution", "decision_outcome": "ok"}) is None
    human = {"decision_type": "pause", "decision_outcome": "paused", "actor": "human:ana"}
    assert database_notice({**base, **human}) is None
    system = {**human, "actor": "system:stoic", "decision_inputs": {"criterion": "red_flags"}}
    notice = database_notice({**base, **system})
    assert notice is not None and notice.event is Event.PAUSED
    assert notice.data["database_seq"] == 7
    assert notice.lines == (
        "`stoic resume --procedure … --reason … --db URL` once it is dealt with",
    )
    passed_on = {
        "decision_type": "escalation",
        "decision_outcome": "raised",
        "escalation_id": "ESC-002",
        "actor": "human:ana",
        "decision_inputs": {"decision": "escalated", "mode": "ambiguity"},
    }
    assert database_notice({**base, **passed_on}) is None  # a person's pass-on: not new
    ended = database_notice(
        {**base, "decision_type": "run_lifecycle", "decision_outcome": "failed"}
    )
    assert ended is not None and ended.event is Event.RUN_FAILED and ended.run_id == "run-1"
    raised = database_notice(
        {
            **base,
            "decision_type": "escalation",
            "decision_outcome": "raised",
            "escalation_id": "ESC-002",
        }
    )
    assert raised is not None and raised.text == "ESC-002: Why."
    link = console_link("https://stoic.example.org", raised.event, raised.run_id, raised.data)
    assert link == "https://stoic.example.org/escalations/ESC-002"  # its page, answer form


def test_a_slow_notifier_holds_up_no_turn_of_the_control_plane(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    """The notices are told from a thread of their own: while a notifier takes its time, the
    plane's loop (surveys, schedules) turns on."""
    from stoic.server.control import ControlPlane
    from stoic.services.workspace import Workspace

    started, go = tmp_path / "started", tmp_path / "go"
    waits = f"touch {started}; while [ ! -e {go} ]; do sleep 0.05; done"
    _notify_by_command(workspace, waits)
    plane = ControlPlane(workspace)
    plane.duties.append(plane.database_notices())
    with Workspace.open(workspace) as handle:
        plane.turn(handle)  # the notices' thread starts, and follows the database from its head
        time.sleep(1.5)
        _a_run_failed(db)
        deadline = time.monotonic() + 30
        while not started.exists():  # its delivery is under way, and waits
            assert time.monotonic() < deadline, "the notifier was never called"
            time.sleep(0.05)
        plane.turn(handle)  # would wait out the notifier, were the notices told on this thread
        told = [
            r
            for r in _workspace_records(workspace)
            if r["decision_type"] == "notification"
            and r["decision_inputs"]["notifier"] == "command"  # type: ignore[index]
        ]
        assert told == []  # the turn came back while the command's delivery still waits
        go.touch()
        _until_events(workspace, "run_failed")
    plane.stop()


def test_a_history_imported_into_a_followed_database_is_no_news(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    """`stoic import` fills an empty database with a workspace's past (a run that ended, a
    suggestion): a server following that database tells nobody of it; what is recorded
    after the import is told."""
    from stoic.services.db_notices import DatabaseAnnouncer
    from stoic.services.workspace import Workspace
    from stoic.store.pg_store import PostgresStore

    source = tmp_path / "old"
    assert run_cli("init", str(source)).exit_code == 0
    plan = tmp_path / "plan.yaml"
    plan.write_text("tasks:\n  - {id: a, run: ['true']}\n")
    assert run_cli("-w", str(source), "run", str(plan)).exit_code == 0
    proposed = run_cli(
        "-w", str(source), "propose", "--title", "t", "--reasoning", "r", "--", "true"
    )
    assert proposed.exit_code == 0, proposed.stderr
    announcer = DatabaseAnnouncer(db)
    try:
        with Workspace.open(workspace) as handle:
            assert announcer.turn(handle) == 0  # an empty database, followed from its head: 0
            imported = run_cli("import", str(source), "--db", db)
            assert imported.exit_code == 0, imported.stderr
            assert announcer.turn(handle) == 0
            assert _notices(workspace) == []
            with PostgresStore.open(db) as store:
                past = store.head().seq
                assert store.imported_upto() == past > 0
            _a_run_failed(db)
            assert announcer.turn(handle) == 1
    finally:
        announcer.close()
    (told,) = _notices(workspace)
    assert told["event"] == "run_failed" and told["run_id"] == "run-x"
    assert told["data"]["database_seq"] == past + 1  # type: ignore[index]


def test_a_persons_stop_of_a_database_tells_how_to_resume_it(workspace: Path) -> None:
    """The command that paused the database tells the workspace's notifiers, with the one
    command (in backticks whole) that resumes it from anywhere."""
    stopped = run_cli("-w", str(workspace), "stop", "--reason", "a look first", "--as", "ana")
    assert stopped.exit_code == 0, stopped.stderr
    (told,) = _notices(workspace)
    assert told["event"] == "paused" and "a look first" in str(told["text"])
    assert told["lines"] == [
        "`stoic resume --procedure … --reason … --db URL` once it is dealt with"
    ]


def test_a_stop_during_a_delivery_records_it_and_a_restart_does_not_tell_it_again(
    workspace: Path, db: str, tmp_path: Path
) -> None:
    """SIGTERM while a slow notifier delivers: the server waits for that delivery, records it
    (beside the file notifier's), and the next server goes on after it."""

    started, heard = tmp_path / "started", tmp_path / "heard"
    slow = f"touch {started}; sleep 2; cat >> {heard}; echo >> {heard}"
    _notify_by_command(workspace, slow)
    with serving(workspace):
        time.sleep(1.5)  # the server follows the database from its head at its start
        seq = _a_run_failed(db)
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline, "the slow notifier was never called"
            time.sleep(0.05)
    sent = [
        r
        for r in _workspace_records(workspace)
        if r["decision_type"] == "notification" and r["decision_inputs"]["database_seq"] == seq  # type: ignore[index]
    ]
    assert [r["decision_outcome"] for r in sent] == ["sent", "sent"]  # the file's, the command's
    started.unlink()
    with serving(workspace):
        time.sleep(2.5)  # a turn or two: it would tell the record again here
    assert not started.exists()
    assert [n["event"] for n in _notices(workspace)] == ["run_failed"]
    assert heard.read_text().count("run_failed") == 1
