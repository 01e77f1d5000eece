"""Decision-log benchmarks; prints one JSON document.

Each figure is measured next to its baseline in the same run, on the same disk:
- a durable single append (`Workspace.record`) vs a bare `os.write` + `os.fsync` of the same bytes;
- group commit throughput in batches of 100 vs bare write + fsync of the same batch bytes;
- `stoic audit` (a separate process, as a user runs it, with the behavioural invariants) on a
  1,000,000-record log of runs as the runner writes them vs a bare loop that reads the file and
  sha256-hashes each line; the audit's peak RSS is reported too.

Usage: python benchmarks/bench_log.py [--records N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import stoic

# VmHWM is this process's own peak RSS; getrusage's ru_maxrss would include the parent's
# peak inherited across fork and exec.
_AUDIT_PROCESS = """
import re, sys, time
from pathlib import Path
from stoic.cli.app import main
start = time.perf_counter()
code = main(["--workspace", sys.argv[1], "audit", "--json"])
elapsed = time.perf_counter() - start
status = Path("/proc/self/status").read_text()
peak_kb = re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)
print(f"BENCH {elapsed} {peak_kb} {code}", file=sys.stderr)
"""


def _decision(i: int) -> dict[str, Any]:
    return {
        "type": "execution",
        "outcome": "succeeded",
        "reason": f"Task t{i} finished after {i % 97} ms.",
        "run_id": f"run-{i // 1000}",
        "task_id": f"t{i}",
        "attempt": 1,
        "actor": "system:runner",
        "causal_role": "in_run",
        "inputs": {"exit_code": 0},
    }


def run_story(i: int) -> list[dict[str, Any]]:
    """The records of one task in a run, as the runner writes them; every 5th fails once."""
    run, task = f"run-{i // 200}", f"t{i}"
    common = {"run_id": run, "task_id": task, "actor": "system:runner", "causal_role": "in_run"}
    story: list[dict[str, Any]] = []
    if i % 200 == 0:
        story.append(
            {"type": "run_lifecycle", "outcome": "started", "reason": "Run started.", "run_id": run}
        )
    story.append(
        {
            "type": "execution",
            "outcome": "started",
            "reason": f"Task {task} started.",
            "attempt": 1,
            "inputs": {"executor": "shell", "attempt_kind": "first"},
            **common,
        }
    )
    if i % 5:
        story.append(
            {
                "type": "execution",
                "outcome": "succeeded",
                "reason": f"Task {task} succeeded.",
                "attempt": 1,
                "details": {"duration_s": 0.01},
                **common,
            }
        )
    else:
        story.append(
            {
                "type": "execution",
                "outcome": "failed",
                "reason": f"Task {task} failed: error.",
                "attempt": 1,
                "inputs": {"failure_kind": "error", "partial": "unknown"},
                **common,
            }
        )
        story.append(
            {
                "type": "recovery_evaluation",
                "outcome": "recovery_skipped",
                "reason": "none: no applicable recovery for error",
                "attempt": 1,
                "trigger": "reactive",
                **common,
                "causal_role": "post_run",
                "inputs": {"failure_kind": "error", "recovery_class": "none"},
            }
        )
    if i % 200 == 199:
        story.append(
            {"type": "run_lifecycle", "outcome": "failed", "reason": "Run failed.", "run_id": run}
        )
    return story


def run_stories(count: int) -> Iterator[dict[str, Any]]:
    """About `count` records of runs as the runner writes them."""
    written, i = 0, 0
    while written < count:
        for decision in run_story(i):
            if written == count:
                return
            yield decision
            written += 1
        i += 1


def bench_single_append(root: Path, count: int = 400) -> dict[str, Any]:
    ws = stoic.Workspace.init(root / "single")
    baseline_path = root / "single-baseline.ndjson"
    fd = os.open(baseline_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    ours, bare = [], []
    try:
        for i in range(count):
            start = time.perf_counter()
            record = ws.record(
                "execution", "started", f"Task t{i} started.", run_id="run-1", task_id=f"t{i}"
            )
            ours.append(time.perf_counter() - start)
            line = json.dumps(record.to_dict(), sort_keys=True, separators=(",", ":")).encode()
            start = time.perf_counter()
            os.write(fd, line + b"\n")
            os.fsync(fd)
            bare.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        ws.close()
    ours_us, bare_us = statistics.median(ours) * 1e6, statistics.median(bare) * 1e6
    return {
        "appends": count,
        "stoic_median_us": round(ours_us, 1),
        "baseline_write_fsync_median_us": round(bare_us, 1),
        "ratio": round(ours_us / bare_us, 3),
        "target_ratio_max": 1.5,
    }


def bench_group_commit(root: Path, batches: int = 300, size: int = 100) -> dict[str, Any]:
    ws = stoic.Workspace.init(root / "group")
    written: list[list[stoic.Record]] = []
    start = time.perf_counter()
    for b in range(batches):
        written.append(ws.record_many(_decision(b * size + i) for i in range(size)))
    ours = batches * size / (time.perf_counter() - start)
    ws.close()
    payloads = [
        b"".join(
            json.dumps(r.to_dict(), sort_keys=True, separators=(",", ":")).encode() + b"\n"
            for r in records
        )
        for records in written
    ]
    fd = os.open(root / "group-baseline.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = time.perf_counter()
    for payload in payloads:
        os.write(fd, payload)
        os.fsync(fd)
    bare = batches * size / (time.perf_counter() - start)
    os.close(fd)
    return {
        "batch_size": size,
        "records": batches * size,
        "stoic_records_per_s": round(ours),
        "baseline_write_fsync_records_per_s": round(bare),
        "ratio": round(ours / bare, 3),
        "target_min_records_per_s": 50_000,
    }


def build_log(path: Path, count: int, batch: int = 10_000) -> stoic.Workspace:
    """A log of runs as the runner writes them, so the behavioural invariants have work."""
    ws = stoic.Workspace.init(path)
    stories = run_stories(count)
    while chunk := list(itertools.islice(stories, batch)):
        ws.record_many(chunk)
    ws.close()
    return ws


def bench_audit(root: Path, count: int) -> dict[str, Any]:
    ws = build_log(root / "big", count)
    log = ws.root / "logs" / "decision_log.ndjson"
    start = time.perf_counter()
    with log.open("rb") as handle:
        for line in handle:
            hashlib.sha256(line).hexdigest()
    bare = count / (time.perf_counter() - start)
    result = subprocess.run(
        [sys.executable, "-c", _AUDIT_PROCESS, str(ws.root)],
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(x for x in result.stderr.splitlines() if x.startswith("BENCH "))
    _, elapsed, peak_kb, code = line.split()
    report = json.loads(result.stdout)
    ours = count / float(elapsed)
    return {
        "records": count,
        "log_bytes": log.stat().st_size,
        "audit_ok": report["ok"] and code == "0",
        "stoic_audit_records_per_s": round(ours),
        "baseline_read_sha256_records_per_s": round(bare),
        "ratio": round(ours / bare, 3),
        "peak_rss_mb": round(int(peak_kb) / 1024, 1),
        "target_min_records_per_s": 200_000,
        "target_min_records_per_s_with_invariants": 100_000,
        "target_max_rss_mb": 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="log size for the audit")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the workspaces")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="stoic-bench-") as tmp:
        root = Path(tmp)
        results = {
            "single_append": bench_single_append(root),
            "group_commit": bench_group_commit(root),
            "audit": bench_audit(root, args.records),
            "bench_process_peak_rss_mb": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
