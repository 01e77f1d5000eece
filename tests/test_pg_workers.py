"""Runs on a database carried out by `stoic worker` processes, against a real PostgreSQL: claims,
fencing tokens, leases that run out, kill -9 at random moments (DESIGN §13)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from stoic.store.pg_store import PostgresStore
from tests.conftest import STOIC_BIN, CliResult, run_cli
from tests.postgres import EmbeddedPostgres


class Workers:
    """`stoic worker` processes started for a test, each logging to its own file."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *,
        lease: float = 2.0,
        poll: float = 0.2,
        concurrency: int = 2,
        url: str | None = None,
        prefix: Sequence[str] = (),
    ) -> int:
        """Start a worker (`url`: its database URL if not the group's; `prefix`: what it is
        run under, as `ip netns exec NS`)."""
        index = len(self.procs)
        log = (self.folder / f"worker-{index}.log").open("wb")
        given = url if url is not None else self.url
        options = ["--lease-seconds", str(lease), "--poll-seconds", str(poll)]
        proc = subprocess.Popen(
            [
                *prefix,
                STOIC_BIN,
                "--debug",
                "worker",
                *(("--db", given) if given else ()),
                *options,
                "--concurrency",
                str(concurrency),
                "--scratch",
                str(self.folder / f"scratch-{index}"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
        )
        log.close()
        self.procs.append(proc)
        return index

    def said(self, index: int) -> str:
        return (self.folder / f"worker-{index}.log").read_text(encoding="utf-8")

    def stop_all(self, wait_s: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                with_signal(proc, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def with_signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signum)


@pytest.fixture
def workers(db: str, tmp_path: Path) -> Iterator[Workers]:
    group = Workers(db, tmp_path)
    try:
        yield group
    finally:
        group.stop_all()


def _records(url: str, run_id: str | None = None) -> list[dict[str, object]]:
    with PostgresStore.open(url) as store:
        return [
            record._asdict() for record in store.read() if run_id is None or record.run_id == run_id
        ]


def _start(url: str, plan: Path) -> str:
    result = run_cli("run", str(plan), "--db", url, "--json")
    assert result.exit_code == 0, result.stderr
    return str(orjson.loads(result.stdout)["run_id"])


def _ended(url: str, run_id: str, timeout: float = 90.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in reversed(_records(url, run_id)):
            if (
                record["decision_type"] == "run_lifecycle"
                and record["decision_outcome"] != "started"
            ):
                return record
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end in {timeout}s")


def _wait_for(url: str, what: str, run_id: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in _records(url, run_id):
            if f"{record['decision_type']}/{record['decision_outcome']}" == what:
                return record
        time.sleep(0.05)
    raise AssertionError(f"no {what} in {timeout}s")


def _idle_worker(
    tmp_path: Path, *, db: str | None, workspace: Path | None = None, as_json: bool = False
) -> CliResult:
    """`stoic worker --exit-when-idle` in this process: it works until nothing is left."""
    where = ("-w", str(workspace)) if workspace is not None else ()
    given = ("--db", db) if db is not None else ()
    options = ("--exit-when-idle", "--poll-seconds", "0.1", "--scratch", str(tmp_path / "scratch"))
    return run_cli(*where, "worker", *given, *options, *(("--json",) if as_json else ()))


def _audit_clean(url: str) -> None:
    result = run_cli("audit", "--db", url, "--json")
    assert result.exit_code == 0, result.stdout
    assert orjson.loads(result.stdout)["ok"] is True


def _each_attempt_once(records: list[dict[str, object]]) -> None:
    """Every start has exactly one end, and no attempt starts twice."""
    starts = Counter(
        (r["task_id"], r["attempt"])
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] == "started"
    )
    ends = Counter(
        (r["task_id"], r["attempt"])
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] not in ("started", "skipped")
    )
    assert all(count == 1 for count in starts.values()), starts.most_common(3)
    assert ends == starts, set(starts) ^ set(ends)


def test_workers_carry_out_a_run_in_dependency_order(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    (tmp_path / "steps.py").write_text("def build(inputs=None):\n    return {'ok': True}\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: fleet}\n"
        "tasks:\n"
        "  - {id: fetch, run: [sh, -c, 'echo fetched; echo fetch >> order']}\n"
        "  - {id: build, call: 'steps:build', depends_on: [fetch]}\n"
        "  - {id: lint, run: [sh, -c, 'echo lint >> order'], depends_on: [fetch]}\n"
        "  - {id: ship, run: [sh, -c, 'echo ship >> order'], depends_on: [build, lint]}\n"
        "  - {id: done-before, status: completed, run: [sh, -c, 'echo never >> order']}\n"
    )
    workers.start()
    workers.start()
    result = run_cli("run", str(plan), "--db", db, "--wait", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    state = orjson.loads(result.stdout)
    assert state["status"] == "completed"
    assert set(state["tasks"].values()) <= {"succeeded", "skipped"}
    lines = (tmp_path / "order").read_text().split()
    assert lines[0] == "fetch" and lines[-1] == "ship" and "never" not in lines
    records = _records(db, state["run_id"])
    _each_attempt_once(records)
    starts = [r for r in records if r["decision_outcome"] == "started" and r["task_id"]]
    fences = [r["decision_inputs"]["fence"] for r in starts]  # type: ignore[index]
    assert len(set(fences)) == len(fences), "every claim has its own fencing token"
    assert all(r["decision_inputs"]["worker"] for r in starts)  # type: ignore[index]
    with PostgresStore.open(db) as store:
        output = b"".join(store.outputs.read(str(state["run_id"]), "fetch", 1))
    assert output == b"fetched\n", "the attempt's output is kept in the database"
    _audit_clean(db)
    exported = run_cli("export", str(tmp_path / "exported"), "--db", db)
    assert exported.exit_code == 0, exported.stdout
    assert "Audit clean" in exported.stdout
    log = (
        tmp_path / "exported" / "runs" / str(state["run_id"]) / "tasks" / "fetch" / "attempt-1.log"
    )
    assert log.read_bytes() == b"fetched\n", "the worker's output is the exported attempt log"
    shown = run_cli("-w", str(tmp_path / "exported"), "status", str(state["run_id"]), "--json")
    assert shown.exit_code == 0, shown.stderr
    assert orjson.loads(shown.stdout)["status"] == "completed"


def test_a_plan_a_database_run_cannot_carry_is_refused_before_anything_is_recorded(
    db: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        'meta: {name: gated}\ntasks:\n  - {id: deploy, run: ["true"], approval: required}\n'
    )
    result = run_cli("run", str(plan), "--db", db)
    assert result.exit_code == 2
    assert "needs a person's approval" in result.stderr and "deploy" in result.stderr
    assert _records(db) == []
    unknown = run_cli("run", str(plan), "--wait")
    assert unknown.exit_code == 2 and "--db" in unknown.stderr


def test_a_worker_stopped_past_its_lease_is_taken_over_and_its_late_end_refused(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    side = tmp_path / "executions"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: slow}\ntasks:\n"
        "  - id: slow\n"
        "    idempotent: true\n"
        f"    run: [sh, -c, 'echo $STOIC_ATTEMPT >> {side}; sleep 3']\n"
    )
    run_id = _start(db, plan)
    first = workers.start(lease=1.5, poll=0.2)
    started = _wait_for(db, "execution/started", run_id)
    os.kill(workers.procs[first].pid, signal.SIGSTOP)  # its task goes on; its heartbeats stop
    second = workers.start(lease=1.5, poll=0.2)
    end = _ended(db, run_id)
    assert end["decision_outcome"] == "completed"
    os.kill(workers.procs[first].pid, signal.SIGCONT)  # wakes with a task it no longer holds
    deadline = time.monotonic() + 20
    while "refused: the end of" not in workers.said(first) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"refused: the end of {run_id} slow attempt 1" in workers.said(first)
    records = _records(db, run_id)
    _each_attempt_once(records)
    interrupted = [r for r in records if r["decision_outcome"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["attempt"] == 1
    fence = started["decision_inputs"]["fence"]  # type: ignore[index]
    assert interrupted[0]["decision_inputs"]["fence"] == fence  # type: ignore[index]
    assert "ran out" in str(interrupted[0]["decision_reason"])
    evaluation = next(r for r in records if r["decision_type"] == "recovery_evaluation")
    assert evaluation["decision_outcome"] == "recovery_applied"  # idempotent: one retry
    assert "took over" in workers.said(second)
    assert [r["attempt"] for r in records if r["decision_outcome"] == "succeeded"] == [2]
    _audit_clean(db)


def test_a_killed_workers_non_idempotent_task_is_not_run_again(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    side = tmp_path / "charges"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: charge}\ntasks:\n"
        f"  - {{id: charge, run: [sh, -c, 'echo charged >> {side}; sleep 2']}}\n"
        '  - {id: receipt, run: ["true"], depends_on: [charge]}\n'
    )
    run_id = _start(db, plan)
    first = workers.start(lease=1.0, poll=0.2)
    _wait_for(db, "execution/started", run_id)
    workers.procs[first].kill()
    workers.start(lease=1.0, poll=0.2)
    end = _ended(db, run_id)
    assert end["decision_outcome"] == "failed"  # R3: a person decides with stoic retry
    time.sleep(2.5)  # the killed worker's task ends by itself: nothing runs it again
    assert side.read_text().count("charged") == 1
    records = _records(db, run_id)
    evaluation = next(r for r in records if r["decision_type"] == "recovery_evaluation")
    assert evaluation["decision_outcome"] == "recovery_skipped"
    assert "side effects unknown" in str(evaluation["decision_reason"])
    assert not any(r["task_id"] == "receipt" for r in records)
    shown = run_cli("run", str(plan), "--db", db, "--json")  # a new run is a new run
    assert shown.exit_code == 0
    _audit_clean(db)


def test_workers_killed_at_random_lose_and_duplicate_nothing(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """200 tasks, 3 workers, a worker killed -9 every 0.05–0.25 s (60 times) and started again."""
    side = tmp_path / "executions"
    lines = ["meta: {name: chaos}", "tasks:"]
    for number in range(200):
        idempotent = "true" if number % 3 else "false"
        depends = f", depends_on: [t{number - 10:03d}]" if number >= 10 and number % 4 == 0 else ""
        lines.append(
            f"  - {{id: t{number:03d}, idempotent: {idempotent}{depends},"
            f" run: [sh, -c, 'echo $STOIC_TASK_ID $STOIC_ATTEMPT >> {side}; sleep 0.5']}}"
        )
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    run_id = _start(db, plan)
    live = [workers.start(lease=1.0, poll=0.1, concurrency=4) for _ in range(3)]
    rng = random.Random(17)
    kills = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if any(
            r["decision_type"] == "run_lifecycle" and r["decision_outcome"] != "started"
            for r in _records(db, run_id)[-3:]
        ):
            break
        time.sleep(rng.uniform(0.05, 0.25))
        if kills < 60:
            victim = rng.randrange(len(live))
            workers.procs[live[victim]].kill()
            workers.procs[live[victim]].wait()
            kills += 1
            live[victim] = workers.start(lease=1.0, poll=0.1, concurrency=4)
            if kills == 20:
                _audit_clean(db)  # mid-run: the claims and ready items are what the log says
    end = _ended(db, run_id, timeout=120)
    assert kills >= 50
    assert end["decision_outcome"] in ("completed", "awaiting_approval", "failed")
    records = _records(db, run_id)
    _each_attempt_once(records)
    time.sleep(1.0)  # orphaned task processes of killed workers finish
    ran = Counter(tuple(line.split()) for line in side.read_text().splitlines())
    for number in range(0, 200, 3):  # the non-idempotent ones
        runs = [attempt for (task, attempt), n in ran.items() if task == f"t{number:03d}"]
        assert len(runs) <= 1 and all(ran[(f"t{number:03d}", a)] == 1 for a in runs)
    evaluations = Counter(
        (r["task_id"], r["attempt"]) for r in records if r["decision_type"] == "recovery_evaluation"
    )
    failures = Counter(
        (r["task_id"], r["attempt"])
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] in ("failed", "interrupted")
    )
    assert evaluations == failures, "every failure has exactly one recovery evaluation"
    failed = set(end["decision_inputs"]["failed"])  # type: ignore[index]
    assert all(int(task[1:]) % 3 == 0 for task in failed), "only non-idempotent ones fail"
    _audit_clean(db)


def test_workers_ride_out_a_restart_of_the_database(
    postgres: EmbeddedPostgres, db: str, workers: Workers, tmp_path: Path
) -> None:
    """The server restarted twice under two workers: they reconnect; nothing is lost."""
    lines = ["meta: {name: restarted}", "tasks:"]
    lines += [
        f"  - {{id: t{n:02d}, idempotent: true, run: [sh, -c, 'sleep 0.1']}}" for n in range(60)
    ]
    plan = tmp_path / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    run_id = _start(db, plan)
    for _ in range(2):
        workers.start(lease=5.0, poll=0.2)
    for _ in range(2):
        _wait_for(db, "execution/succeeded", run_id)
        time.sleep(0.5)
        postgres.restart()
    end = _ended(db, run_id)
    assert end["decision_outcome"] == "completed"
    records = _records(db, run_id)
    _each_attempt_once(records)
    assert {r["task_id"] for r in records if r["decision_outcome"] == "succeeded"} == {
        f"t{n:02d}" for n in range(60)
    }
    said = workers.said(0) + workers.said(1)
    assert "the database failed this turn" in said or "could not renew" in said
    _audit_clean(db)


def test_the_audit_holds_work_items_to_the_log(db: str, workers: Workers, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: audited}\ntasks:\n"
        "  - {id: long, run: [sh, -c, 'sleep 3']}\n"
        "  - {id: queued, run: [sh, -c, 'sleep 3']}\n"
    )
    run_id = _start(db, plan)
    workers.start(lease=10.0, poll=0.2, concurrency=1)
    _wait_for(db, "execution/started", run_id)
    _audit_clean(db)  # one item claimed (the open attempt), one ready: both as the log says
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE work_items SET attempt = 5 WHERE worker IS NULL")
        conn.execute("DELETE FROM work_items WHERE worker IS NOT NULL")
    result = run_cli("audit", "--db", db, "--json")
    assert result.exit_code == 1
    found = [
        v["message"]
        for v in orjson.loads(result.stdout)["violations"]
        if v["code"] == "work_item_mismatch"
    ]
    assert any("ready for attempt 5" in message for message in found), found
    assert any("no work item holds it" in message for message in found), found


def test_status_shows_a_database_runs_tasks_and_what_failed_said(db: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: shown}\ntasks:\n"
        "  - {id: ok, run: [sh, -c, 'echo fine']}\n"
        "  - {id: bad, run: [sh, -c, 'printf \"boom\\033[2J\\n\"; exit 1'], depends_on: [ok]}\n"
        "  - {id: after, run: [sh, -c, 'true'], depends_on: [bad]}\n"
    )
    run_id = _start(db, plan)
    worker = _idle_worker(tmp_path, db=db, workspace=None, as_json=True)
    assert worker.exit_code == 0, worker.stderr
    assert orjson.loads(worker.stdout)["ended"] == 2
    shown = run_cli("status", run_id, "--db", db)
    assert shown.exit_code == 0, shown.stderr
    assert f"Run {run_id} (shown, database): failed" in shown.stdout
    assert "failed: bad" in shown.stdout and "blocked: after (by bad)" in shown.stdout
    assert "boom" in shown.stdout and "\x1b" not in shown.stdout  # a task's bytes, escaped
    document = orjson.loads(run_cli("status", run_id, "--db", db, "--tasks", "--json").stdout)
    assert document["status"] == "failed"
    assert document["outputs"]["ok"] == "fine\n"
    assert document["tasks"] == {"ok": "succeeded", "bad": "failed", "after": "pending"}
    second = _start(db, plan)  # not carried out: no worker is up
    listed = orjson.loads(run_cli("runs", "--db", db, "--json").stdout)
    assert [(row["run_id"], row["status"]) for row in listed] == [
        (second, "running"),
        (run_id, "failed"),
    ]
    assert listed[1]["tasks"] == {"succeeded": 1, "failed": 1, "blocked": 1}
    assert listed[1]["duration_s"] is not None and listed[0]["runner"] is None
    failed_only = run_cli("runs", "--db", db, "--status", "failed")
    assert run_id in failed_only.stdout and second not in failed_only.stdout


def test_store_url_in_stoic_toml_sends_runs_and_workers_to_the_database(
    db: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    nowhere = run_cli("-w", str(workspace), "worker", "--exit-when-idle", env={"STOIC_DB": ""})
    assert nowhere.exit_code == 2 and "[store] url" in nowhere.stderr
    settings = workspace / "stoic.toml"
    settings.write_text(settings.read_text().replace("[store]\n", f'[store]\nurl = "{db}"\n'))
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: configured}\ntasks:\n  - {id: only, run: [sh, -c, 'true']}\n")
    started = run_cli("-w", str(workspace), "run", str(plan), "--json")
    assert started.exit_code == 0, started.stderr
    run_id = orjson.loads(started.stdout)["run_id"]
    assert not (workspace / "runs" / run_id).exists(), "recorded in the database, not here"
    ran = _idle_worker(tmp_path, db=None, workspace=workspace, as_json=True)
    assert ran.exit_code == 0 and orjson.loads(ran.stdout)["ended"] == 1
    shown = run_cli("-w", str(workspace), "status", run_id, "--json")
    assert orjson.loads(shown.stdout)["status"] == "completed"
    settings.write_text(settings.read_text().replace(db, "mysql://elsewhere"))
    refused = run_cli("-w", str(workspace), "run", str(plan))
    assert (
        refused.exit_code == 2 and "stoic.toml:" in refused.stderr and "store.url" in refused.stderr
    )
    assert "elsewhere" not in refused.stderr  # a URL may hold a password: never echoed


@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0])
def test_a_worker_lets_go_of_runs_it_has_nothing_running_of(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, idle_seconds: float
) -> None:
    """A long-lived worker holds only the runs it works on: their Python processes go."""
    from stoic.run.fleet import FleetWorker, WorkerOptions

    (tmp_path / "quiet.py").write_text("def noop():\n    return None\n")
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: idle}\ntasks:\n  - {id: one, call: 'quiet:noop'}\n")
    run_id = _start(db, plan)
    monkeypatch.setattr("stoic.run.fleet_runs.IDLE_RUN_SECONDS", idle_seconds)
    options = WorkerOptions(poll_s=0.05, scratch=tmp_path / "scratch", exit_when_idle=True)
    with PostgresStore.open(db) as store:
        worker = FleetWorker(store, db, options)
        worker.serve()
    assert _ended(db, run_id)["decision_outcome"] == "completed"
    assert (run_id in worker.runs.plans) is (idle_seconds > 0)


def test_an_automatic_retry_waits_its_delay_and_an_idle_worker_waits_for_it(
    db: str, tmp_path: Path
) -> None:
    """A timeout is retried once (R1) after the settings' delay; the second one waits for a
    person (R2). A worker told to exit when idle waits for the delayed retry first."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: slowpoke}\ntasks:\n"
        "  - {id: slow, idempotent: true, timeout: 0.3, run: [sh, -c, 'sleep 5']}\n"
    )
    run_id = _start(db, plan)
    ran = _idle_worker(tmp_path, db=db, workspace=None, as_json=True)
    assert ran.exit_code == 0, ran.stderr
    assert orjson.loads(ran.stdout)["ended"] == 2
    records = _records(db, run_id)
    evaluations = [r for r in records if r["decision_type"] == "recovery_evaluation"]
    assert [r["decision_outcome"] for r in evaluations] == [
        "recovery_applied",
        "recovery_suggested",
    ]
    starts = [r for r in records if r["decision_outcome"] == "started" and r["task_id"]]
    assert [r["decision_inputs"]["attempt_kind"] for r in starts] == ["first", "automatic_retry"]
    waited = _seconds(str(starts[1]["decided_at"])) - _seconds(str(evaluations[0]["decided_at"]))
    assert waited >= 4.5, "the retry started after its delay (5 s by default)"
    assert records[-1]["decision_outcome"] == "awaiting_approval"
    _audit_clean(db)


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_run_whose_plan_copy_changed_is_refused_and_the_others_go_on(
    db: str, tmp_path: Path
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: tampered}\ntasks:\n  - {id: one, run: [sh, -c, 'true']}\n")
    other = tmp_path / "other.yaml"
    other.write_text(plan.read_text().replace("tampered", "fine"))
    tampered, fine = _start(db, plan), _start(db, other)
    forged = plan.read_bytes().replace(b"'true'", b"'echo owned'")
    with psycopg.connect(db, autocommit=True) as conn:  # a superuser, triggers switched off
        conn.execute("ALTER TABLE run_files DISABLE TRIGGER USER")
        conn.execute(
            "UPDATE run_files SET bytes = %s, sha256 = encode(sha256(%s), 'hex'), size = %s"
            " WHERE run_id = %s",
            (forged, forged, len(forged), tampered),
        )
        conn.execute("ALTER TABLE run_files ENABLE TRIGGER USER")
    ran = _idle_worker(tmp_path, db=db, workspace=None, as_json=False)
    assert ran.exit_code == 0, ran.stderr
    assert f"run {tampered} cannot be carried out here" in ran.stderr
    assert "sha256" in ran.stderr
    assert _ended(db, fine)["decision_outcome"] == "completed"
    assert not any(r["decision_type"] == "execution" for r in _records(db, tampered))
    shown = run_cli("status", tampered, "--db", db)  # nor shown from a copy the log disowns
    assert shown.exit_code != 0 and "does not match its start record's sha256" in shown.stderr
    listed = orjson.loads(run_cli("runs", "--db", db, "--json").stdout)
    assert {row["run_id"]: row["status"] for row in listed}[tampered] == "unknown"


def test_a_task_cannot_read_the_database_url_from_its_workers_environment(
    db: str, workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker re-executes itself with an environment block of only what its tasks may
    see: /proc/<worker>/environ never holds STOIC_DB (a task could write the log with it)."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: peek}\ntasks:\n"
        "  - {id: peek, run: [sh, -c, 'cat /proc/$PPID/environ > seen; env > env']}\n"
    )
    run_id = _start(db, plan)
    monkeypatch.setenv("STOIC_DB", db)
    workers.url = ""  # given by the environment only
    workers.start()
    assert _ended(db, run_id)["decision_outcome"] == "completed"
    assert b"STOIC_DB" not in (tmp_path / "seen").read_bytes()
    assert "STOIC_DB" not in (tmp_path / "env").read_text()


def test_the_workspaces_policy_applies_to_a_database_run(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """The policy and runner settings of the workspace a run starts from are recorded in its
    start, and every worker runs it by them, whatever its own host has."""
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    settings = workspace / "stoic.toml"
    settings.write_text(
        settings.read_text().replace("# forbidden_commands = []", 'forbidden_commands = ["rm "]')
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: policed}\ntasks:\n"
        "  - {id: wipe, run: [sh, -c, 'touch x; rm x; echo wiped > wiped']}\n"
    )
    result = run_cli("-w", str(workspace), "run", str(plan), "--db", db, "--json")
    assert result.exit_code == 0, result.stderr
    run_id = str(orjson.loads(result.stdout)["run_id"])
    start = _records(db, run_id)[0]
    assert start["details"]["settings"]["policy"]["forbidden_commands"] == ["rm "]  # type: ignore[index]
    workers.start()  # no workspace of its own: the run's recorded settings decide
    end = _ended(db, run_id)
    assert end["decision_outcome"] == "failed"
    assert not (tmp_path / "wiped").exists(), "a command the workspace forbids ran"
    blocked = [r for r in _records(db, run_id) if r["decision_type"] == "policy_check"]
    assert blocked and blocked[0]["decision_outcome"] == "blocked"
    _audit_clean(db)


def test_a_password_on_the_command_line_is_warned_of_and_never_printed(tmp_path: Path) -> None:
    url = f"postgresql://stoic:hunter2@/stoic?host={tmp_path}/nowhere"
    result = subprocess.run(
        [STOIC_BIN, "worker", "--db", url, "--exit-when-idle"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "holds a password" in result.stderr and "STOIC_DB" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 2, result.stderr  # the warning, the error


def test_a_killed_workers_task_does_not_run_on_after_it_is_recorded_interrupted(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """A task starts in its own session and outlives a kill -9 of its worker: a worker of the
    same host that takes it over kills what is left of it before it records it interrupted,
    so a failure that stands (R3) is not done after all, unrecorded."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: orphan}\ntasks:\n"
        "  - {id: charge, run: [sh, -c, 'sleep 5; echo charged > charged']}\n"
    )
    run_id = _start(db, plan)
    first = workers.start(lease=1.5)
    _wait_for(db, "execution/started", run_id)
    time.sleep(0.3)  # the task's processes are up
    workers.procs[first].kill()
    workers.start(lease=1.5)
    assert _ended(db, run_id)["decision_outcome"] == "failed"
    time.sleep(5.5)
    assert not (tmp_path / "charged").exists(), "the task went on after it was recorded"
    interrupted = next(r for r in _records(db, run_id) if r["decision_outcome"] == "interrupted")
    assert "its leftover processes were killed" in str(interrupted["decision_reason"])


def test_a_tasks_outputs_reach_its_dependents_on_other_workers(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """Outputs travel through the database: small ones in the end record, a big one (over
    64 KiB) as the run's evidence file, fetched into the dependent's worker and checked."""
    (tmp_path / "steps.py").write_text(
        "def make():\n    return {'version': '1.4'}\n"
        "def big():\n    return {'blob': 'x' * 100_000}\n"
        "def use(inputs=None):\n"
        "    assert inputs['make'] == {'version': '1.4'}, inputs\n"
        "    assert len(inputs['big']['blob']) == 100_000\n"
        "    return {'used': True}\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: io}\ntasks:\n"
        "  - {id: make, call: 'steps:make'}\n"
        "  - {id: big, call: 'steps:big'}\n"
        "  - {id: use, call: 'steps:use', depends_on: [make, big]}\n"
        "  - {id: sh_use, run: [sh, -c, 'cat \"$STOIC_INPUTS\" > seen'], depends_on: [make]}\n"
    )
    workers.start(concurrency=1)
    workers.start(concurrency=1)
    run_id = _start(db, plan)
    assert _ended(db, run_id)["decision_outcome"] == "completed"
    assert orjson.loads((tmp_path / "seen").read_bytes()) == {"make": {"version": "1.4"}}
    records = _records(db, run_id)
    ends = {r["task_id"]: r for r in records if r["decision_outcome"] == "succeeded"}
    assert ends["make"]["details"]["outputs"] == {"version": "1.4"}  # type: ignore[index]
    big_file = ends["big"]["details"]["outputs_file"]  # type: ignore[index]
    assert big_file["path"] == f"runs/{run_id}/tasks/big/outputs-1.json"
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT sha256 FROM run_files WHERE run_id = %s AND path = %s",
            (run_id, "tasks/big/outputs-1.json"),
        ).fetchone()
    assert stored is not None and stored[0] == big_file["sha256"]
    _audit_clean(db)
    exported = run_cli("export", str(tmp_path / "copy"), "--db", db)
    assert exported.exit_code == 0 and "Audit clean" in exported.stdout, exported.stdout


def test_a_big_output_is_fetched_by_the_worker_of_its_dependent(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """The dependent runs on a worker that never saw its dependency run: the big output's file
    comes from the database, checked against its sha256."""
    (tmp_path / "steps.py").write_text(
        "def big():\n    return {'blob': 'y' * 100_000}\n"
        "def use(inputs=None):\n    assert len(inputs['big']['blob']) == 100_000, inputs\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: fetched}\ntasks:\n"
        "  - {id: big, call: 'steps:big'}\n"
        "  - {id: hold, idempotent: true,"
        " run: [sh, -c, 'while [ ! -e go ]; do sleep 0.05; done']}\n"
        "  - {id: use, call: 'steps:use', depends_on: [big, hold]}\n"
    )
    run_id = _start(db, plan)
    first = workers.start(lease=1.0, concurrency=2)
    _wait_for(db, "execution/succeeded", run_id)  # big, on the first worker
    workers.procs[first].kill()
    (tmp_path / "go").touch()
    second = workers.start(lease=1.0, concurrency=2)
    assert _ended(db, run_id)["decision_outcome"] == "completed"
    use = next(r for r in _records(db, run_id) if r["task_id"] == "use")
    assert workers.said(second).count("started") >= 1
    assert use["decision_inputs"]["worker"] in workers.said(second)  # type: ignore[index]
    assert (tmp_path / f"scratch-{second}" / "runs" / run_id / "tasks/big/outputs-1.json").exists()


def test_a_stop_signal_drains_and_a_second_one_stops(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """SIGTERM: nothing more is claimed and the running task ends by itself (a rolling
    restart fails nothing); a second SIGTERM stops what still runs, recorded interrupted."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: drained}\ntasks:\n"
        "  - {id: short, run: [sh, -c, 'sleep 1; echo done > done']}\n"
        "  - {id: later, run: [sh, -c, 'true'], depends_on: [short]}\n"
    )
    run_id = _start(db, plan)
    first = workers.start()
    _wait_for(db, "execution/started", run_id)
    workers.procs[first].send_signal(signal.SIGTERM)
    assert workers.procs[first].wait(timeout=30) == 0
    assert (tmp_path / "done").exists()
    records = _records(db, run_id)
    assert [r["task_id"] for r in records if r["decision_outcome"] == "succeeded"] == ["short"]
    assert not any(r["task_id"] == "later" and r["decision_outcome"] == "started" for r in records)
    assert "claiming nothing more" in workers.said(first)

    long_plan = tmp_path / "long.yaml"
    long_plan.write_text("meta: {name: long}\ntasks:\n  - {id: long, run: [sh, -c, 'sleep 60']}\n")
    long_run = _start(db, long_plan)
    second = workers.start()
    _wait_for(db, "execution/started", long_run)
    workers.procs[second].send_signal(signal.SIGTERM)
    time.sleep(0.5)
    workers.procs[second].send_signal(signal.SIGTERM)
    assert workers.procs[second].wait(timeout=30) == 0
    ends = [r for r in _records(db, long_run) if r["decision_outcome"] == "interrupted"]
    assert len(ends) == 1


def test_a_claim_whose_commit_went_unheard_is_taken_back_and_retried(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim committed but its worker never heard so (a lost acknowledgement): it never
    launched the task, and takes the claim back as a failure that ran nothing (unavailable,
    partial false), which the matrix retries once — even for a non-idempotent task."""
    from stoic.run import fleet

    plan = tmp_path / "plan.yaml"
    plan.write_text("meta: {name: unheard}\ntasks:\n  - {id: once, run: [sh, -c, 'echo ran']}\n")
    run_id = _start(db, plan)
    real_launch, dropped = fleet.FleetWorker._launch, []

    def launch_after_the_first(self: Any, started: list[Any], claimed: Any) -> None:
        if not dropped and started:
            dropped.append(started)  # as if the commit's answer never came back
            return
        real_launch(self, started, claimed)

    monkeypatch.setattr(fleet.FleetWorker, "_launch", launch_after_the_first)
    monkeypatch.setattr("stoic.run.fleet_plans.Settings.model_validate", _quick_retries)
    options = fleet.WorkerOptions(poll_s=0.05, scratch=tmp_path / "scratch", exit_when_idle=True)
    with PostgresStore.open(db) as store:
        fleet.FleetWorker(store, db, options).serve()
    records = _records(db, run_id)
    first_end = next(r for r in records if r["attempt"] == 1 and r["decision_outcome"] == "failed")
    assert "never launched" in str(first_end["decision_reason"])
    evaluation = next(r for r in records if r["decision_type"] == "recovery_evaluation")
    assert evaluation["decision_outcome"] == "recovery_applied"
    assert records[-1]["decision_outcome"] == "completed"
    _each_attempt_once(records)
    _audit_clean(db)


def _quick_retries(data: Any) -> Any:
    from stoic.store.config import Settings

    settings = dict(data)
    settings["recovery"] = {**settings.get("recovery", {}), "unavailable_retry_delay_seconds": 0}
    return Settings(**settings)


def test_a_worker_whose_renewals_fail_never_retries_its_own_running_task(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No renewal gets through: the worker's own claim runs out in the database while its
    task runs. The worker stops the task by its own clock and records it interrupted; it never
    takes its own running claim for one it never launched (which would run it again)."""
    from stoic.run import fleet, fleet_heartbeat

    side = tmp_path / "charges"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: unrenewed}\ntasks:\n"
        f"  - {{id: charge, run: [sh, -c, 'trap \"\" TERM; echo charged >> {side}; sleep 3']}}\n"
    )
    run_id = _start(db, plan)  # it shrugs off SIGTERM: lost, it ends only at the kill grace
    monkeypatch.setattr(fleet_heartbeat.Heartbeat, "_beat", lambda self: None)
    monkeypatch.setattr(fleet_heartbeat.Heartbeat, "_watch", lambda self: None)  # the loop's
    options = fleet.WorkerOptions(
        lease_s=1.0, poll_s=0.05, scratch=tmp_path / "scratch", exit_when_idle=True
    )
    with PostgresStore.open(db) as store:
        fleet.FleetWorker(store, db, options).serve()
    records = _records(db, run_id)
    ends = [
        r
        for r in records
        if r["decision_type"] == "execution" and r["decision_outcome"] != "started"
    ]
    assert [r["decision_outcome"] for r in ends] == ["interrupted"]
    assert "never launched" not in str(ends[0]["decision_reason"])
    assert records[-1]["decision_outcome"] == "failed"
    assert side.read_text().count("charged") == 1
    _audit_clean(db)


def test_a_worker_whose_database_is_gone_stops_soon_on_sigterm(tmp_path: Path) -> None:
    """A turn waits for a connection as long as one takes to make (10 s), not the pool's
    30 s: with the server gone, a drained worker exits once that turn gives up."""
    from tests.postgres import started, stopped

    server = started()
    try:
        url = server.new_database()
        PostgresStore.migrate(url)
        err = tmp_path / "worker.err"
        with err.open("wb") as sink:
            worker = subprocess.Popen(
                [STOIC_BIN, "worker", "--db", url, "--poll-seconds", "0.5",
                 "--scratch", str(tmp_path / "scratch")],
                stdout=subprocess.DEVNULL, stderr=sink,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while "up to 4 tasks at once" not in err.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
    finally:
        stopped(server)
    time.sleep(1.0)  # its turns fail now
    asked = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        assert worker.wait(timeout=20) == 0  # the pool's own wait was 30 s
    finally:
        if worker.poll() is None:
            worker.kill()
    assert time.monotonic() - asked < 20
    assert "SIGTERM: claiming nothing more" in err.read_text()


def test_an_automatic_retry_gets_its_hint_as_a_workspace_run_gives_it(
    db: str, workers: Workers, tmp_path: Path
) -> None:
    """What the task's records hand its next attempt comes from the run fold on a worker too:
    a context overflow's retry sees `$STOIC_HINT=reduce_input`."""
    (tmp_path / "task.sh").write_text(
        'if [ "$STOIC_HINT" = reduce_input ]; then exit 0; fi\n'
        'echo \'{"failure": {"kind": "context_overflow"}}\' > "$STOIC_RESULT"\n'
        "exit 1\n"
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "meta: {name: hinted}\ntasks:\n"
        f"  - {{id: t, idempotent: true, run: [sh, '{tmp_path / 'task.sh'}']}}\n"
    )
    run_id = _start(db, plan)
    workers.start(poll=0.1)
    assert _ended(db, run_id)["decision_outcome"] == "completed"
    applied = [r for r in _records(db, run_id) if r["decision_outcome"] == "recovery_applied"]
    assert [r["decision_inputs"]["hint"] for r in applied] == ["reduce_input"]  # type: ignore[index]
