"""Database runs started as a workspace starts its own, against a real PostgreSQL: one live run
of a plan at a time unless it allows more, and a schedule of a workspace that names a database
firing its run there (DESIGN §6, §13)."""

from __future__ import annotations

from pathlib import Path

import orjson

from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli
from tests.test_schedules import _past_next_slot


def _records(url: str) -> list[dict[str, object]]:
    with PostgresStore.open(url) as store:
        return [record._asdict() for record in store.read()]


def _database_workspace(tmp_path: Path, db: str, extra: str = "") -> Path:
    """A workspace whose stoic.toml names the database (`[store] url`), and `extra` after."""
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    settings = workspace / "stoic.toml"
    text = settings.read_text().replace("[store]\n", f'[store]\nurl = "{db}"\n')
    settings.write_text(text + extra)
    return workspace


def _work(db: str, tmp_path: Path) -> None:
    ran = run_cli(
        "worker",
        "--db",
        db,
        "--exit-when-idle",
        "--poll-seconds",
        "0.1",
        "--scratch",
        str(tmp_path / "scratch"),
    )
    assert ran.exit_code == 0, ran.stderr


def test_a_second_live_run_of_a_plan_is_refused_unless_it_allows_more(
    db: str, tmp_path: Path
) -> None:
    plan = tmp_path / "charge.yaml"
    plan.write_text("meta: {name: charge}\ntasks:\n  - {id: card, run: ['true']}\n")
    first = run_cli("run", str(plan), "--db", db, "--json")
    assert first.exit_code == 0, first.stderr
    first_id = orjson.loads(first.stdout)["run_id"]
    second = run_cli("run", str(plan), "--db", db)
    assert second.exit_code != 0
    assert "allows one live run at a time" in second.stderr and first_id in second.stderr
    anyway = run_cli("run", str(plan), "--db", db, "--allow-concurrent", "--json")
    assert anyway.exit_code == 0, anyway.stderr
    anyway_id = orjson.loads(anyway.stdout)["run_id"]
    starts = {
        r["run_id"]: r["decision_inputs"]["concurrency"]  # type: ignore[index]
        for r in _records(db)
        if r["decision_type"] == "run_lifecycle" and r["decision_outcome"] == "started"
    }
    assert starts[anyway_id]["allow_concurrent"] is True
    assert starts[anyway_id]["live_runs"] == [first_id]
    _work(db, tmp_path)  # both end: the plan has no live run
    third = run_cli("run", str(plan), "--db", db)
    assert third.exit_code == 0, third.stderr
    two = tmp_path / "two.yaml"
    two.write_text(
        "meta: {name: two, concurrency: {limit: 2}}\ntasks:\n  - {id: a, run: ['true']}\n"
    )
    assert run_cli("run", str(two), "--db", db).exit_code == 0
    assert run_cli("run", str(two), "--db", db).exit_code == 0
    assert run_cli("run", str(two), "--db", db).exit_code != 0


def test_a_schedule_of_a_database_workspace_fires_its_run_in_the_database(
    db: str, tmp_path: Path
) -> None:
    from stoic.server.control import ControlPlane

    workspace = _database_workspace(tmp_path, db)
    plan = tmp_path / "nightly.yaml"
    plan.write_text("meta: {name: nightly}\ntasks:\n  - {id: a, run: ['true']}\n")
    added = run_cli(
        "-w",
        str(workspace),
        "schedule",
        "add",
        "nightly",
        str(plan),
        "--cron",
        "0 2 * * *",
        "--as",
        "ana",
    )
    assert added.exit_code == 0, added.stderr
    plane = ControlPlane(workspace)
    plane.scheduled_runs(now=_past_next_slot)()
    assert not plane.runners  # no runner of the plane's own: the database's workers run it
    (started,) = [
        r
        for r in _records(db)
        if r["decision_type"] == "run_lifecycle" and r["decision_outcome"] == "started"
    ]
    own = (workspace / "logs" / "decision_log.ndjson").read_bytes().decode()
    assert f'"run_id":"{started["run_id"]}"' in own  # the slot's record names it
    _work(db, tmp_path)
    status = run_cli("status", str(started["run_id"]), "--db", db, "--json")
    assert orjson.loads(status.stdout)["status"] == "completed"


def test_a_database_run_may_not_take_the_id_of_a_workspace_run(db: str, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    plan = tmp_path / "p.yaml"
    plan.write_text("meta: {name: p}\ntasks:\n  - {id: a, run: ['true']}\n")
    local = run_cli("-w", str(workspace), "run", str(plan), "--json")
    run_id = orjson.loads(local.stdout)["run_id"]
    taken = run_cli("-w", str(workspace), "run", str(plan), "--db", db, "--run-id", run_id)
    assert taken.exit_code == 2 and "exists already in this workspace" in taken.stderr
    bad = run_cli("-w", str(workspace), "run", str(plan), "--db", db, "--run-id", "../../etc")
    assert bad.exit_code == 2 and "is not a run id" in bad.stderr
    assert _records(db) == []


def test_a_database_pause_and_resume_are_told_to_the_workspaces_notifiers(
    db: str, tmp_path: Path
) -> None:
    workspace = _database_workspace(
        tmp_path, db, '\n[[notifiers]]\nkind = "file"\npath = "notices.ndjson"\n'
    )
    stopped = run_cli("-w", str(workspace), "stop", "--reason", "deploy freeze", "--as", "ana")
    assert stopped.exit_code == 0, stopped.stderr
    resumed = run_cli(
        "-w", str(workspace), "resume", "--procedure", "verification-batch", "--reason", "ok"
    )
    assert resumed.exit_code == 0, resumed.stderr
    notices = [
        orjson.loads(line)
        for line in (workspace / "notices.ndjson").read_text().splitlines()
        if line
    ]
    assert [(n["event"], n["data"]["database"]) for n in notices] == [
        ("paused", True),
        ("resumed", True),
    ]
    assert "deploy freeze" in notices[0]["text"]


def test_a_run_taken_up_again_by_a_person_keeps_within_its_plans_limit(
    db: str, tmp_path: Path
) -> None:
    """A retry of an ended run's task, while another run of its plan is live, is refused
    naming it (as a workspace's continue is); so is a retry while the database is paused."""
    tries = tmp_path / "tries"
    plan = tmp_path / "lim.yaml"
    plan.write_text(
        "meta: {name: lim}\ntasks:\n"
        f"  - {{id: charge, run: [sh, -c, 'echo x >> {tries}; [ $(wc -l < {tries}) -ge 2 ]']}}\n"
    )
    first = str(orjson.loads(run_cli("run", str(plan), "--db", db, "--json").stdout)["run_id"])
    _work(db, tmp_path)
    assert _records(db)[-1]["decision_outcome"] == "failed"
    second = str(orjson.loads(run_cli("run", str(plan), "--db", db, "--json").stdout)["run_id"])
    refused = run_cli("retry", first, "charge", "--db", db, "--reason", "x", "--as", "ana")
    assert refused.exit_code != 0 and second in refused.stderr, refused.stderr
    assert "allows one live run" in refused.stderr
    _work(db, tmp_path)  # the second run ends: nothing of the plan is live
    assert run_cli("stop", "--db", db, "--reason", "hold", "--as", "ana").exit_code == 0
    paused = run_cli("retry", first, "charge", "--db", db, "--reason", "x", "--as", "ana")
    assert paused.exit_code != 0 and "the database is paused" in paused.stderr
    assert (
        run_cli(
            "resume", "--db", db, "--procedure", "verification-batch", "--reason", "ok"
        ).exit_code
        == 0
    )
    bad = run_cli("retry", "../etc", "charge", "--db", db, "--reason", "x")
    assert bad.exit_code == 2 and "is not a run id" in bad.stderr
    retried = run_cli("retry", first, "charge", "--db", db, "--reason", "x", "--as", "ana")
    assert retried.exit_code == 0, retried.stderr


def test_a_database_schedule_skips_a_slot_whose_plan_is_at_its_limit_there(
    db: str, tmp_path: Path
) -> None:
    from stoic.server.control import ControlPlane

    workspace = _database_workspace(tmp_path, db)
    plan = tmp_path / "nightly.yaml"
    plan.write_text("meta: {name: nightly}\ntasks:\n  - {id: a, run: ['true']}\n")
    live = str(orjson.loads(run_cli("run", str(plan), "--db", db, "--json").stdout)["run_id"])
    added = run_cli(
        "-w", str(workspace), "schedule", "add", "nightly", str(plan), "--cron", "0 2 * * *"
    )
    assert added.exit_code == 0, added.stderr
    ControlPlane(workspace).scheduled_runs(now=_past_next_slot)()
    own = [
        orjson.loads(line)
        for line in (workspace / "logs" / "decision_log.ndjson").read_bytes().splitlines()
    ]
    (skipped,) = [
        r for r in own if r["decision_type"] == "schedule" and r["decision_outcome"] == "skipped"
    ]
    assert skipped["decision_inputs"]["live_runs"] == [live]
