"""`stoic runs` on a workspace of many runs; prints one JSON document.

The runs are real: a plan of five shell tasks run N times by the runner (default 1,000), plus
one run of each of `--distinct` other plans, so the listing reads some plan copies it cannot
share. Each figure is measured next to its baseline in the same run, on the same log:
- `list_runs` in this process vs a bare loop that reads the log and parses each line with
  orjson (the floor of any one pass over the log);
- `stoic runs --json` as a user runs it (a separate process, interpreter start included) vs
  `stoic --version` (the interpreter and the package alone).

Usage: python benchmarks/bench_runs_list.py [--runs N] [--distinct N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

import stoic
from stoic.services import runs

STOIC = str(Path(sys.executable).with_name("stoic"))


def _plan(folder: Path, name: str, tasks: int) -> Path:
    path = folder / f"{name}.yaml"
    body = "".join(f'  - id: t{i}\n    run: ["true"]\n' for i in range(tasks))
    path.write_text(f"meta: {{name: {name}}}\ntasks:\n{body}")
    return path


def _best(action: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def _bare_pass(log: Path) -> int:
    count = 0
    with log.open("rb") as handle:
        for line in handle:
            orjson.loads(line)
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        folder = Path(scratch)
        root = folder / "ws"
        made = time.perf_counter()
        with stoic.Workspace.init(root) as workspace:
            nightly = _plan(folder, "nightly", 5)
            for _ in range(args.runs):
                runs.start(workspace, nightly)
            for index in range(args.distinct):
                runs.start(workspace, _plan(folder, f"other-{index}", 5))
        made = time.perf_counter() - made
        log = root / "logs" / "decision_log.ndjson"
        with stoic.Workspace.open(root) as workspace:
            listed = runs.list_runs(workspace)
            assert len(listed) == args.runs + args.distinct
            in_process = _best(lambda: runs.list_runs(workspace), 5)
        bare = _best(lambda: _bare_pass(log), 5)
        records = _bare_pass(log)

        def cli() -> None:
            subprocess.run([STOIC, "-w", str(root), "runs", "--json"], check=True, stdout=-3)

        def version() -> None:
            subprocess.run([STOIC, "--version"], check=True, stdout=-3)

        whole = [_best(cli, 1) for _ in range(5)]
        floor = [_best(version, 1) for _ in range(5)]
        print(
            json.dumps(
                {
                    "runs": len(listed),
                    "records": records,
                    "log_bytes": log.stat().st_size,
                    "setup_seconds": round(made, 1),
                    "list_runs_ms": round(in_process * 1000, 1),
                    "bare_parse_pass_ms": round(bare * 1000, 1),
                    "list_runs_vs_bare_pass": round(in_process / bare, 2),
                    "stoic_runs_json_process_ms": round(min(whole) * 1000, 1),
                    "stoic_runs_json_process_median_ms": round(statistics.median(whole) * 1000, 1),
                    "stoic_version_process_ms": round(min(floor) * 1000, 1),
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
