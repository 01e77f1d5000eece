"""A chain's step written from what its worker knows (`stoic.run.fleet_chain`), against a real
PostgreSQL: whatever changed since the worker's last commit — another record appended, its
claim's fence taken, the next task made ready already — fails that transaction whole, and the
same ends are written the long way, fencing checks and all."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from stoic.core.records import Decision
from stoic.run import fleet
from stoic.store import pg_work as work
from stoic.store.pg_store import PostgresStore
from tests.conftest import run_cli

_STEP = """
import time
from pathlib import Path

def step(name):
    if Path(f"wait-{name}").exists():
        Path(f"running-{name}").touch()
        while not Path(f"go-{name}").exists():
            time.sleep(0.01)
    return {"name": name}
"""


@pytest.fixture
def ways(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How often the worker wrote ends from what it knew, and the long way."""
    counted: Counter[str] = Counter()
    for name in ("_record_known", "_record_checked"):
        real = getattr(fleet.FleetWorker, name)

        def counting(self: Any, *args: Any, real: Any = real, name: str = name) -> Any:
            try:
                result = real(self, *args)
            except Exception:
                counted[f"{name} failed"] += 1
                raise
            counted[name] += 1
            return result

        monkeypatch.setattr(fleet.FleetWorker, name, counting)
    yield counted


def _chain(db: str, folder: Path, length: int = 4) -> str:
    (folder / "steps.py").write_text(_STEP)
    lines = ["meta: {name: known}", "tasks:"]
    for n in range(length):
        after = f", depends_on: [t{n - 1}]" if n else ""
        lines.append(f"  - {{id: t{n}, call: 'steps:step', params: {{name: t{n}}}{after}}}")
    (folder / "plan.yaml").write_text("\n".join(lines) + "\n")
    started = run_cli("run", str(folder / "plan.yaml"), "--db", db, "--json")
    assert started.exit_code == 0, started.stderr
    return str(orjson.loads(started.stdout)["run_id"])


def _serve(
    db: str,
    folder: Path,
    said: list[str],
    lease_s: float = 30.0,
    say: Callable[[str], None] | None = None,
) -> threading.Thread:
    options = fleet.WorkerOptions(
        poll_s=0.05, lease_s=lease_s, scratch=folder / "scratch", exit_when_idle=True
    )

    def serve() -> None:
        with PostgresStore.open(db) as store:
            fleet.FleetWorker(store, db, options, say=say or said.append).serve()

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


def _while_running(folder: Path, task: str, meanwhile: Callable[[], None]) -> None:
    deadline = time.monotonic() + 30
    while not (folder / f"running-{task}").exists():
        assert time.monotonic() < deadline, f"{task} never started"
        time.sleep(0.01)
    meanwhile()
    (folder / f"go-{task}").touch()


def _records(db: str, run_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT task_id, decision_type, decision_outcome, line FROM decision_log"
            " WHERE run_id = %s ORDER BY seq",
            (run_id,),
        ).fetchall()


def _completed_once_each(db: str, run_id: str, length: int = 4) -> None:
    records = _records(db, run_id)
    assert records[-1][1:3] == ("run_lifecycle", "completed")
    succeeded = [task for task, kind, outcome, _ in records if outcome == "succeeded"]
    assert succeeded == [f"t{n}" for n in range(length)]
    audit = run_cli("audit", "--db", db, "--json")
    assert audit.exit_code == 0, audit.stdout


def test_a_chain_on_one_worker_steps_from_what_it_knows(
    db: str, tmp_path: Path, ways: Counter[str]
) -> None:
    run_id = _chain(db, tmp_path, length=6)
    _serve(db, tmp_path, []).join(timeout=60)
    _completed_once_each(db, run_id, length=6)
    assert ways == {"_record_known": 5, "_record_checked": 1}  # the last end: the run's end


def test_a_record_appended_meanwhile_sends_the_step_the_long_way(
    db: str, tmp_path: Path, ways: Counter[str]
) -> None:
    run_id = _chain(db, tmp_path)
    (tmp_path / "wait-t1").touch()
    worker = _serve(db, tmp_path, [])

    def append() -> None:
        with PostgresStore.open(db) as store:
            note = {"type": "policy_check", "outcome": "passed", "reason": "Meanwhile."}
            store.append([Decision.from_mapping(note)])

    _while_running(tmp_path, "t1", append)
    worker.join(timeout=60)
    _completed_once_each(db, run_id)
    # t1's end: tried from what the worker knew, then the long way; the last: the run's end
    assert ways == {"_record_known": 2, "_record_known failed": 1, "_record_checked": 2}


def test_a_next_task_made_ready_already_sends_the_step_the_long_way(
    db: str, tmp_path: Path, ways: Counter[str]
) -> None:
    run_id = _chain(db, tmp_path)
    (tmp_path / "wait-t0").touch()
    worker = _serve(db, tmp_path, [])

    def ready() -> None:  # not a record: the head stays where the worker left it
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO work_items (run_id, task_id, attempt, attempt_kind)"
                " VALUES (%s, 't1', 1, 'first')",
                (run_id,),
            )

    _while_running(tmp_path, "t0", ready)
    worker.join(timeout=60)
    _completed_once_each(db, run_id)
    # t0's end: tried from what the worker knew, then the long way; the last: the run's end
    assert ways == {"_record_known": 2, "_record_known failed": 1, "_record_checked": 2}


def test_a_fence_taken_meanwhile_leaves_the_end_unrecorded(
    db: str, tmp_path: Path, ways: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head stays where the worker left it, but its claim's row has another fence: the
    end is never written, and the claim is taken back (it ran nothing, as the log says)."""
    monkeypatch.setattr("stoic.run.fleet_plans.Settings.model_validate", _quick_retries)
    run_id = _chain(db, tmp_path)
    (tmp_path / "wait-t1").touch()
    said: list[str] = []

    # A renewal between the theft and t1's end would find the claim lost first and send the
    # end the long way at once: from the theft until the refusal, renewals wait (a delay, as
    # a slow link makes), and the theft waits for the one under way, if any.
    renew, held = work.renew, _Held()
    monkeypatch.setattr(work, "renew", held.wrap(renew))

    def take_fence() -> None:
        held.hold()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(
                "UPDATE work_items SET fence = nextval('work_fences') WHERE task_id = 't1'"
            )

    def say(line: str) -> None:
        said.append(line)
        if "refused: the end of" in line:
            held.release()

    worker = _serve(db, tmp_path, said, lease_s=1.0, say=say)
    _while_running(tmp_path, "t1", take_fence)
    worker.join(timeout=60)
    assert any("refused: the end of" in line and " t1 attempt 1" in line for line in said)
    records = _records(db, run_id)
    first = [(kind, outcome) for task, kind, outcome, _ in records if task == "t1"][:2]
    assert first == [("execution", "started"), ("execution", "failed")]  # taken back
    _completed_once_each(db, run_id)
    assert ways["_record_known failed"] == 1


class _Held:
    """Holds a call back while held, once the calls under way have returned."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held = False
        self._under_way = 0

    def wrap(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def held_back(*args: Any) -> Any:
            with self._changed:
                self._changed.wait_for(lambda: not self._held, timeout=30)
                self._under_way += 1
            try:
                return call(*args)
            finally:
                with self._changed:
                    self._under_way -= 1
                    self._changed.notify_all()

        return held_back

    def hold(self) -> None:
        with self._changed:
            self._held = True
            self._changed.wait_for(lambda: self._under_way == 0, timeout=30)

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()


def _quick_retries(data: Any) -> Any:
    from stoic.store.config import Settings

    settings = dict(data)
    settings["recovery"] = {**settings.get("recovery", {}), "unavailable_retry_delay_seconds": 0}
    return Settings(**settings)
