"""`stoic worker` processes and DBOS on the embedded PostgreSQL of `bench_postgres.py`.

- `fleet_run`: a plan of Python no-ops recorded by `stoic run --db`, carried out by worker
  processes started (and listening) before it; timed from the run's `run_lifecycle/started`
  record to its `run_lifecycle` end record, by the records' own `decided_at` stamps.
- `dbos_run`: `peers/dbos_side.py` in the peers venv, its system database on the same server.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

STOIC = Path(sys.executable).with_name("stoic")
PEERS = Path(__file__).resolve().parent / "peers"

NOOP_MODULE = "def noop():\n    return None\n"

_END = (
    "SELECT decided_at, decision_outcome FROM decision_log WHERE run_id = %s"
    " AND decision_type = 'run_lifecycle' ORDER BY seq"
)


_WAITING = (
    "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'),"
    " count(*) FILTER (WHERE state <> 'idle')"
    " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)
"""Backends waiting for an advisory lock (the log's writer lock), and those not idle."""


def write_plan(folder: Path, name: str, count: int, chained: bool) -> Path:
    """`count` python no-op tasks (`call: noop_mod:noop`, the module beside the plan), each
    depending on the one before when `chained`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "noop_mod.py").write_text(NOOP_MODULE)
    lines = [f"meta: {{name: {name}}}", "tasks:"]
    for i in range(count):
        deps = f", depends_on: [t{i - 1:05d}]" if chained and i else ""
        lines.append(f'  - {{id: t{i:05d}, call: "noop_mod:noop"{deps}}}')
    plan = folder / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n")
    return plan


def _stamp(decided_at: str) -> float:
    return datetime.fromisoformat(decided_at.replace("Z", "+00:00")).timestamp()


def _listening(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query LIKE 'LISTEN %%'"
    ).fetchone()
    return int(row[0]) if row else 0


def _next_xid(conn: psycopg.Connection[Any]) -> int:
    """The next transaction id the server will assign (none is assigned by asking): the
    difference over a run counts the transactions that wrote anything, server-wide."""
    row = conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()
    return int(row[0]) if row else 0


def _start_worker(
    url: str, folder: Path, index: int, concurrency: int, prefix: list[str]
) -> subprocess.Popen[bytes]:
    """`stoic worker` number `index`, quiet (`--json`: its counts on exit), in `folder`."""
    argv = [str(STOIC), "worker", "--db", url, "--concurrency", str(concurrency)]
    argv += ["--poll-seconds", "1", "--lease-seconds", "30", "--json"]
    argv += ["--scratch", str(folder / f"scratch-{index}")]
    with (
        (folder / f"worker-{index}.out").open("wb") as out,
        (folder / f"worker-{index}.err").open("wb") as err,
    ):
        return subprocess.Popen([*prefix, *argv], stdout=out, stderr=err, cwd=folder)


def _stop_workers(procs: list[subprocess.Popen[bytes]], folder: Path) -> list[dict[str, Any]]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    stats = []
    for index, proc in enumerate(procs):
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        text = (folder / f"worker-{index}.out").read_text().strip()
        stats.append(json.loads(text) if text else {"exit": proc.returncode})
    return stats


def fleet_run(
    url: str,
    folder: Path,
    plan: Path,
    workers: int,
    concurrency: int,
    timeout_s: float = 240.0,
    profile_first: Path | None = None,
) -> dict[str, Any]:
    """One run of `plan` by `workers` fresh worker processes; returns its figures.

    `profile_first`: run the first worker under `python -m cProfile -o PATH`."""
    with psycopg.connect(url, autocommit=True) as conn:
        folder.mkdir(parents=True, exist_ok=True)
        profiled = [sys.executable, "-m", "cProfile", "-o", str(profile_first)]
        procs = [
            _start_worker(url, folder, i, concurrency, profiled if i == 0 and profile_first else [])
            for i in range(workers)
        ]
        try:
            deadline = time.monotonic() + 120
            while _listening(conn) < workers:  # every worker up and listening
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"the workers did not start (see {folder})")
                time.sleep(0.05)
            xid = _next_xid(conn)
            began = time.perf_counter()
            done = subprocess.run(
                [str(STOIC), "run", str(plan), "--db", url, "--json"],
                capture_output=True,
                text=True,
                cwd=plan.parent,
                check=True,
            )
            recorded = time.perf_counter() - began
            run_id = json.loads(done.stdout)["run_id"]
            deadline, waiting = time.monotonic() + timeout_s, []
            while len(rows := conn.execute(_END, (run_id,)).fetchall()) < 2:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"run {run_id} did not end in {timeout_s}s")
                waiting.append(conn.execute(_WAITING).fetchone())
                time.sleep(0.05)
            wall = time.perf_counter() - began
        finally:
            stats = _stop_workers(procs, folder)
        ends = conn.execute(
            "SELECT decision_outcome, count(*) FROM decision_log WHERE run_id = %s"
            " AND decision_type = 'execution' AND decision_outcome <> 'started' GROUP BY 1",
            (run_id,),
        ).fetchall()
        writes = _next_xid(conn) - xid
    return {
        "seconds": _stamp(rows[-1][0]) - _stamp(rows[0][0]),
        "outcome": rows[-1][1],
        "wall_s": wall,
        "stoic_run_process_s": recorded,
        "task_ends": dict(ends),
        "write_transactions": writes,
        "writer_lock_waiters_avg": _mean([w[0] for w in waiting if w]),
        "busy_backends_avg": _mean([w[1] for w in waiting if w]),
        "workers": stats,
    }


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def dbos_run(
    python: Path | None, url: str, folder: Path, mode: str, count: int, workers: int, lengths: str
) -> dict[str, Any]:
    """DBOS's side on a PostgreSQL system database, or why not (never raises)."""
    if python is None or not python.exists():
        return {"error": f"no peers venv python at {python} (make .venv-peers/.installed-stamp)"}
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(python), str(PEERS / "dbos_side.py"), mode, str(count), str(workers)]
    argv += [str(folder), "--system-database-url", url, "--chain-lengths", lengths]
    began = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, cwd=folder, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    whole = time.perf_counter() - began
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"error": tail[0]}
    try:
        reported: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        return {"error": f"unreadable output: {exc}"}
    reported["whole_process_s"] = whole
    return reported


def dbos_version(python: Path | None) -> str | None:
    if python is None or not python.exists():
        return None
    code = "import importlib.metadata as m; print(m.version('dbos'))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() or None
