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
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from stoic.store.pg_store import PostgresStore
from tests.conftest import STOIC_BIN, run_cli
from tests.postgres import EmbeddedPostgres


@pytest.fixture
def db(postgres: EmbeddedPostgres) -> str:
    url = postgres.new_database()
    PostgresStore.migrate(url)
    return url


class Workers:
    """`stoic worker` processes started for a test, each logging to its own file."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *, lease: float = 2.0, poll: float = 0.2, concurrency: int = 2) -> int:
        index = len(self.procs)
        log = (self.folder / f"worker-{index}.log").open("wb")
        proc = subprocess.Popen(
            [
                STOIC_BIN,
                "worker",
                "--db",
                self.url,
                "--lease-seconds",
                str(lease),
                "--poll-seconds",
                str(poll),
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

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with_signal(proc, signal.SIGCONT)
                with_signal(proc, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
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
    end = _ended(db, run_id, timeout=120)
    assert kills >= 50
    assert end["decision_outcome"] in ("completed", "awaiting_human", "failed")
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
