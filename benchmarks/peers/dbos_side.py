"""DBOS's side of `benchmarks/bench_peers.py` and `benchmarks/bench_postgres.py`; runs in
`.venv-peers`, prints one JSON line.

Usage: python dbos_side.py chain|fanout TASKS WORKERS FOLDER
       [--system-database-url URL] [--chain-lengths N,M,...]

The system database is a SQLite file in FOLDER unless `--system-database-url` names a
PostgreSQL database (`postgresql://…`, DBOSConfig's `system_database_url`): DBOS makes its
tables there (schema `dbos`). With `--chain-lengths`, the chain mode also times one workflow of
each of those lengths, in that order (a length may come again), in this process, after the main
one: `chain_seconds` gives each length's times.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

POLLING_INTERVAL_S = 0.01
"""How often the fan-out queue is polled. The default (1 s) would start at most WORKERS tasks a
second; at 10 ms the queue is not what limits the figure."""


@DBOS.step()
def noop(index: int, previous: int | None = None) -> int:
    return index


@DBOS.workflow()
def chain(count: int) -> int | None:
    previous = None
    for index in range(count):
        previous = noop(index, previous)  # each step's output is its successor's input
    return previous


def _sqlite_kept(database: Path) -> dict[str, Any]:
    with sqlite3.connect(database) as db:
        steps = db.execute(
            "SELECT COUNT(*) FROM operation_outputs WHERE function_name LIKE '%noop%'"
        ).fetchone()[0]
        workflows = db.execute("SELECT COUNT(*) FROM workflow_status").fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
    return {
        "step_rows": steps,
        "workflow_rows": workflows,
        "sqlite_journal_mode": journal,
        "sqlite_synchronous": synchronous,
    }


def _postgres_kept(url: str, since_ms: int, until_ms: int) -> dict[str, Any]:
    """What the PostgreSQL system database holds, and the span, in the database's own
    timestamps, of the timed workflows (created from `since_ms` to `until_ms`): the first
    one's creation to the last one's final update."""
    import psycopg  # DBOS's own PostgreSQL driver

    with psycopg.connect(url) as db:
        steps = db.execute(
            "SELECT COUNT(*) FROM dbos.operation_outputs WHERE function_name LIKE '%%noop%%'"
        ).fetchone()
        workflows, first, last = db.execute(
            "SELECT COUNT(*), MIN(created_at), MAX(updated_at) FROM dbos.workflow_status"
            " WHERE created_at BETWEEN %s AND %s",
            (since_ms, until_ms),
        ).fetchone()
        settings = dict(
            db.execute(
                "SELECT name, setting FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'server_version')"
            ).fetchall()
        )
    return {
        "step_rows": steps[0] if steps else None,
        "workflow_rows_timed": workflows,
        "span_in_database_s": (last - first) / 1000 if workflows else None,
        "postgres": settings,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("chain", "fanout"))
    parser.add_argument("count", type=int)
    parser.add_argument("workers", type=int)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--system-database-url", default=None)
    parser.add_argument("--chain-lengths", default="")
    args = parser.parse_args()
    database = args.folder / "dbos.sqlite"
    url = args.system_database_url or f"sqlite:///{database}"
    config: DBOSConfig = {
        "name": "stoic-peer-bench",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    queue = DBOS.register_queue(
        "fanout", worker_concurrency=args.workers, polling_interval_sec=POLLING_INTERVAL_S
    )
    chain(1)  # the first workflow pays for what DBOS sets up lazily
    since_ms = int(time.time() * 1000)
    start = time.perf_counter()
    if args.mode == "chain":
        assert chain(args.count) == args.count - 1
    else:
        handles = [queue.enqueue(noop, index) for index in range(args.count)]
        assert [handle.get_result() for handle in handles] == list(range(args.count))
    elapsed = time.perf_counter() - start
    until_ms = int(time.time() * 1000)
    lengths: dict[str, list[float]] = {}
    if args.mode == "chain":
        for length in (int(n) for n in args.chain_lengths.split(",") if n):
            began = time.perf_counter()
            assert chain(length) == length - 1
            lengths.setdefault(str(length), []).append(round(time.perf_counter() - began, 4))
    DBOS.destroy()
    if args.system_database_url:
        kept = _postgres_kept(args.system_database_url, since_ms, until_ms)
    else:
        kept = _sqlite_kept(database)
    document: dict[str, Any] = {
        "seconds": elapsed,
        **kept,
        "queue_polling_interval_s": POLLING_INTERVAL_S if args.mode == "fanout" else None,
    }
    if lengths:
        document["chain_seconds"] = lengths
    print(json.dumps(document))


if __name__ == "__main__":
    main()
