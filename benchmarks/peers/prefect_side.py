"""Prefect's side of `benchmarks/bench_peers.py`; runs in `.venv-peers`, prints one JSON line.

Usage: python prefect_side.py chain|fanout TASKS WORKERS FOLDER

PREFECT_HOME (its SQLite database) and the result storage are in FOLDER, set before Prefect is
imported; with no API URL set, Prefect starts its own temporary server, as a first user's does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

FOLDER = Path(sys.argv[4])
os.environ["PREFECT_HOME"] = str(FOLDER / "home")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(FOLDER / "results")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"  # a busy machine

from prefect import flow, task  # noqa: E402 - after its settings
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

WORKERS = int(sys.argv[3])


@task(persist_result=True)
def noop(index: int, previous: int | None = None) -> int:
    return index


@flow(persist_result=True)
def chain(count: int) -> int | None:
    previous = None
    for index in range(count):
        previous = noop(index, previous)  # each result is its successor's input
    return previous


@flow(persist_result=True, task_runner=ThreadPoolTaskRunner(max_workers=WORKERS))
def fanout(count: int) -> int:
    return len(noop.map(range(count)).result())


def _task_run_rows(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT state_type, COUNT(*) FROM task_run GROUP BY state_type"))


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    chain(1)  # starts the temporary server and the result storage
    start = time.perf_counter()
    if mode == "chain":
        assert chain(count) == count - 1
    else:
        assert fanout(count) == count
    elapsed = time.perf_counter() - start
    database = FOLDER / "home" / "prefect.db"
    at_end = _task_run_rows(database)
    time.sleep(5)  # task runs reach the database as events, recorded after the fact
    later = _task_run_rows(database)
    results = sum(1 for path in (FOLDER / "results").iterdir() if path.is_file())
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "task_run_rows_at_flow_end": at_end,
                "task_run_rows_5s_later": later,
                "result_files": results,
            }
        )
    )


if __name__ == "__main__":
    main()
