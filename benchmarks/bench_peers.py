"""stoic beside Prefect 3 and DBOS on the same work, in one run; prints one JSON document.

- Durable chain: TASKS Python no-op tasks, each taking its predecessor's result, every result
  persisted: stoic's `call:` tasks (each start and end a record of the decision log), Prefect
  tasks with `persist_result=True`, DBOS steps of one workflow with a SQLite system database.
- Fan-out: TASKS independent no-ops on WORKERS workers: `stoic run --workers`, Prefect's
  `ThreadPoolTaskRunner(max_workers=WORKERS)`, a DBOS queue with `worker_concurrency=WORKERS`.

Each figure is given inside the run (from the run's start to its end: no interpreter start,
no imports, no server start-up) and as the whole process; `stoic_advantage` is the peer's
figure over stoic's, oriented so that above 1 means stoic is faster. `kept` says what each
tool had written when its run ended, and `guarantees` what that means. The write + fsync
latency of the same disk is measured in the same run.

Usage: python benchmarks/bench_peers.py [--tasks N] [--workers N] [--peers-python PATH]
(`make bench-peers` creates `.venv-peers` with Prefect and DBOS and runs this).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_run import fsync_latency  # the same probe, so the baselines agree

PROJECT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
STOIC = Path(sys.executable).with_name("stoic")

_NOOP_MODULE = "def noop():\n    return None\n"

GUARANTEES = {
    "stoic": (
        "Every attempt's start and end are records of the hash-chained decision log, written and"
        " fsynced (several may share one fsync) before what they announce happens: a task is"
        " recorded as started before it starts, and its dependents start after its end is"
        " durable."
    ),
    "prefect": (
        "Results are written to local files (PREFECT_LOCAL_STORAGE_PATH) without fsync: they"
        " survive the process, not the machine. Task runs reach the database as events the"
        " temporary server records after the fact: `kept` counts the task-run rows when the"
        " flow returned and 5 s later, of TASKS + 1 task runs."
    ),
    "dbos": (
        "Each step's output is a row of the SQLite system database (operation_outputs),"
        " committed before the workflow goes on; SQLite's rollback journal with"
        " synchronous=FULL fsyncs each commit. A queued task is a workflow of its own (a"
        " workflow_status row)."
    ),
}


def _plan(count: int, chained: bool) -> str:
    lines = ["tasks:"]
    for i in range(count):
        deps = f", depends_on: [t{i - 1}]" if chained and i else ""
        lines.append(f'  - {{id: t{i}, call: "bench_tasks:noop"{deps}}}')
    return "\n".join(lines) + "\n"


def _stamp(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["decided_at"]).replace("Z", "+00:00")).timestamp()


def run_stoic(root: Path, mode: str, count: int, workers: int) -> dict[str, Any]:
    folder = root / f"stoic-{mode}"
    folder.mkdir()
    (folder / "bench_tasks.py").write_text(_NOOP_MODULE)
    (folder / "plan.yaml").write_text(_plan(count, chained=mode == "chain"))
    subprocess.run([str(STOIC), "init", str(folder / "ws")], check=True, capture_output=True)
    argv = [str(STOIC), "-w", str(folder / "ws"), "run", str(folder / "plan.yaml")]
    argv += ["--workers", str(1 if mode == "chain" else workers)]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=folder)
    whole = time.perf_counter() - start
    log = folder / "ws" / "logs" / "decision_log.ndjson"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    run = [r for r in records if r.get("run_id")]
    ended = [
        r for r in run if r["decision_type"] == "execution" and r["decision_outcome"] != "started"
    ]
    return {
        "seconds": _stamp(run[-1]) - _stamp(run[0]),
        "whole_process_s": whole,
        "kept": {"run_records": len(run), "task_end_records": len(ended)},
    }


def run_peer(
    python: Path, peer: str, root: Path, mode: str, count: int, workers: int
) -> dict[str, Any]:
    folder = root / f"{peer}-{mode}"
    folder.mkdir()
    argv = [str(python), str(PEERS / f"{peer}_side.py"), mode, str(count), str(workers)]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, str(folder)], capture_output=True, text=True, cwd=folder, timeout=3600
    )
    whole = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    reported: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = reported.pop("seconds")
    return {"seconds": seconds, "whole_process_s": whole, "kept": reported}


def _versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in ('prefect', 'dbos')}))"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(done.stdout)
    return versions


def _figures(results: dict[str, dict[str, Any]], mode: str, count: int) -> dict[str, Any]:
    """Per tool: ms per task (chain) or tasks per second (fan-out), inside and whole."""
    shown: dict[str, Any] = {}
    for tool, result in results.items():
        if "error" in result:
            shown[tool] = result
            continue
        if mode == "chain":
            figure = {
                "ms_per_task": round(result["seconds"] * 1000 / count, 3),
                "whole_process_ms_per_task": round(result["whole_process_s"] * 1000 / count, 3),
            }
        else:
            figure = {
                "tasks_per_s": round(count / result["seconds"], 1),
                "whole_process_tasks_per_s": round(count / result["whole_process_s"], 1),
            }
        shown[tool] = {**figure, "whole_process_s": round(result["whole_process_s"], 2)}
        shown[tool]["kept"] = result["kept"]
    advantage: dict[str, Any] = {}
    stoic = shown["stoic"]
    for tool in ("prefect", "dbos"):
        if "error" in shown[tool]:
            continue
        if mode == "chain":
            inside = shown[tool]["ms_per_task"] / stoic["ms_per_task"]
            whole = shown[tool]["whole_process_ms_per_task"] / stoic["whole_process_ms_per_task"]
        else:
            inside = stoic["tasks_per_s"] / shown[tool]["tasks_per_s"]
            whole = stoic["whole_process_tasks_per_s"] / shown[tool]["whole_process_tasks_per_s"]
        advantage[tool] = {"inside_the_run": round(inside, 2), "whole_process": round(whole, 2)}
    shown["stoic_advantage"] = advantage
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--peers-python", type=Path, default=PROJECT / ".venv-peers" / "bin" / "python"
    )
    parser.add_argument("--dir", type=Path, default=None, help="Where to put the runs.")
    args = parser.parse_args()
    python = args.peers_python.absolute()  # the peers run in folders of their own
    document: dict[str, Any] = {
        "tasks": args.tasks,
        "workers": args.workers,
        "versions": _versions(python),
    }
    with tempfile.TemporaryDirectory(prefix="stoic-peers-", dir=args.dir) as tmp:
        root = Path(tmp)
        document["fsync_ms"] = round(fsync_latency(root) * 1000, 3)
        for mode in ("chain", "fanout"):
            results = {"stoic": run_stoic(root, mode, args.tasks, args.workers)}
            for peer in ("prefect", "dbos"):
                results[peer] = run_peer(python, peer, root, mode, args.tasks, args.workers)
            document[mode] = _figures(results, mode, args.tasks)
    document["guarantees"] = GUARANTEES
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
