"""DBOS's side of `benchmarks/bench_peers.py`; runs in `.venv-peers`, prints one JSON line.

Usage: python dbos_side.py chain|fanout TASKS WORKERS FOLDER
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

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


def main() -> None:
    mode, count, workers, folder = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    database = Path(folder) / "dbos.sqlite"
    config: DBOSConfig = {
        "name": "stoic-peer-bench",
        "system_database_url": f"sqlite:///{database}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    queue = DBOS.register_queue(
        "fanout", worker_concurrency=workers, polling_interval_sec=POLLING_INTERVAL_S
    )
    chain(1)  # the first workflow pays for what DBOS sets up lazily
    start = time.perf_counter()
    if mode == "chain":
        assert chain(count) == count - 1
    else:
        handles = [queue.enqueue(noop, index) for index in range(count)]
        assert [handle.get_result() for handle in handles] == list(range(count))
    elapsed = time.perf_counter() - start
    DBOS.destroy()
    with sqlite3.connect(database) as db:
        steps = db.execute(
            "SELECT COUNT(*) FROM operation_outputs WHERE function_name LIKE '%noop%'"
        ).fetchone()[0]
        workflows = db.execute("SELECT COUNT(*) FROM workflow_status").fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "step_rows": steps,
                "workflow_rows": workflows,
                "sqlite_journal_mode": journal,
                "sqlite_synchronous": synchronous,
                "queue_polling_interval_s": POLLING_INTERVAL_S if mode == "fanout" else None,
            }
        )
    )


if __name__ == "__main__":
    main()
