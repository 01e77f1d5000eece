"""Review-queue benchmarks; prints one JSON document.

- 20,000 proposals created through the Python API, each durably: median per-create latency, next
  to a bare `os.write` + `os.fsync` of a record-sized line measured in the same run;
- with 20,000 pending: `stoic queue --status pending --json` (a separate process, as a user runs
  it), one approve (median of several) at 1,000 and at 20,000 pending and their ratio, and
  `stoic audit`.

Usage: python benchmarks/bench_queue.py [--proposals N]
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
from typing import Any

import stoic
from bench_run import fsync_latency  # the same probe, so the baselines agree

STOIC = str(Path(sys.executable).with_name("stoic"))


def _create(ws: stoic.Workspace, count: int) -> list[float]:
    samples = []
    for n in range(count):
        start = time.perf_counter()
        ws.propose(
            title=f"Clean cache {n}",
            reasoning_trace=["disk above 90%", f"cache {n} is 30 days old"],
            action=["true"],
            confidence=(n % 100) / 100,
        )
        samples.append(time.perf_counter() - start)
    return samples


def _approve_latency(ws: stoic.Workspace, ids: list[str], count: int = 20) -> float:
    samples = []
    for proposal_id in ids[:count]:
        start = time.perf_counter()
        ws.approve(proposal_id, by="human:bench")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([STOIC, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=20_000)
    args = parser.parse_args()
    total = args.proposals
    with tempfile.TemporaryDirectory(prefix="stoic-bench-") as tmp:
        root = Path(tmp)
        fsync_s = fsync_latency(root)
        with stoic.Workspace.init(root / "small") as small:
            (root / "small" / "stoic.toml").write_text("[queue]\nbatch_size = 10\n")
            small_ids = [
                p.id
                for p in (small.propose(title=f"p{n}", reasoning_trace=["r"]) for n in range(1_000))
            ]
            approve_small = _approve_latency(small, small_ids)
        with stoic.Workspace.init(root / "big") as big:
            creates = _create(big, total)
            ids = sorted(path.stem for path in (root / "big" / "queue" / "pending").glob("*.json"))
            approve_big = _approve_latency(big, ids)
        ws_arg = ["--workspace", str(root / "big")]
        listing = _timed(*ws_arg, "queue", "--status", "pending", "--json")
        startup = _timed("--version")
        audit = _timed(*ws_arg, "audit")
    figures: dict[str, Any] = {
        "create": {
            "proposals": total,
            "median_ms": round(statistics.median(creates) * 1000, 3),
            "first_1000_median_ms": round(statistics.median(creates[:1000]) * 1000, 3),
            "last_1000_median_ms": round(statistics.median(creates[-1000:]) * 1000, 3),
            "last_to_first_ratio": round(
                statistics.median(creates[-1000:]) / statistics.median(creates[:1000]), 3
            ),
            "baseline_write_fsync_ms": round(fsync_s * 1000, 3),
        },
        "queue_list_pending_json_s": round(listing, 3),
        "queue_list_target_s_max": 0.5,
        "cli_startup_s": round(startup, 3),
        "approve": {
            "ms_at_1000_pending": round(approve_small * 1000, 3),
            "ms_at_20000_pending": round(approve_big * 1000, 3),
            "ratio": round(approve_big / approve_small, 3),
            "target_ms_max": 30,
            "target_ratio_max": 1.5,
        },
        "audit_s": round(audit, 3),
        "audit_target_s_max": 2.0,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
