"""What one turn of `stoic serve`'s control plane costs on a workspace of many runs; prints one
JSON document.

The runs are real: a plan of five shell tasks run N times (default 300) by the runner, then
one record appended (a decision arriving). Measured in the same run, on the same log:
- `control.survey`, which folds the whole log, vs a `Surveyor` that has surveyed before and
  folds only the record appended (what the loop does on each move of the head);
- a bare loop that reads the log and parses each line with orjson (the floor of one pass).

Usage: python benchmarks/bench_control.py [--runs N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

import stoic
from stoic.services import control


def _best(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def _bare_pass(log: Path) -> int:
    with log.open("rb") as handle:
        return sum(1 for line in handle if orjson.loads(line))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        root = Path(scratch)
        body = "".join(f'  - id: t{i}\n    run: ["true"]\n' for i in range(5))
        plan = root / "plan.yaml"
        plan.write_text(f"meta: {{name: bench, concurrency: {{limit: 1}}}}\ntasks:\n{body}")
        with stoic.Workspace.init(root / "ws") as workspace:
            for _ in range(args.runs):
                workspace.run(plan)
            surveyor = control.Surveyor()
            surveyor.survey(workspace)
            full = _best(lambda: control.survey(workspace), 5)

            def one_more() -> object:
                workspace.record("execution", "succeeded", reason="noise", run_id="elsewhere")
                return surveyor.survey(workspace)

            turn = _best(one_more, 20)
            records = workspace.head().seq
            log = root / "ws" / "logs" / "decision_log.ndjson"
            bare = _best(lambda: _bare_pass(log), 5)
    print(
        json.dumps(
            {
                "runs": args.runs,
                "records": records,
                "survey_full_ms": round(full * 1000, 2),
                "survey_incremental_ms": round(turn * 1000, 2),
                "bare_pass_ms": round(bare * 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
