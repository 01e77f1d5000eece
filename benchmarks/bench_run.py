"""Runner and plan benchmarks; prints one JSON document.

Each figure is measured next to its baseline in the same run, on the same machine:
- a chain of 500 shell `true` tasks vs a bare loop of `subprocess.run(["true"])`;
- a chain of 2,000 Python no-op tasks: ms per task vs the bare worker round-trip (the same
  worker protocol with no runner around it) and the disk's fsync latency;
- 10,000 independent Python no-op tasks on 2 workers: tasks/s and the runner's peak RSS;
- a generated plan of 100,000 tasks and 300,000 edges: load + validate, then status analysis.

Usage: python benchmarks/bench_run.py [--dir PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import stoic
from stoic.core.graph import analyse_states
from stoic.plan.loader import read_plan
from stoic.run.lifecycle import start_run
from stoic.run.runner import RunReport

_NOOP_MODULE = "def noop():\n    return None\n"

# Run in a child process so its peak RSS (VmHWM) is the runner's alone.
_RUN_PROCESS = """
import re, sys, time
from pathlib import Path
import stoic
from stoic.plan.loader import read_plan
from benchmarks.bench_run import Silent
from stoic.run.lifecycle import start_run
plan = read_plan(sys.argv[2])
with stoic.Workspace.open(sys.argv[1]) as ws:
    start = time.perf_counter()
    report = start_run(ws, plan, workers=int(sys.argv[3]), reporter=Silent())
    elapsed = time.perf_counter() - start
peak_kb = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)
print(f"BENCH {elapsed} {peak_kb} {report.exit_code}")
"""


class Silent:
    """A reporter that shows nothing: the benchmark measures the runner, not the terminal."""

    def run_started(self, *args: object) -> None: ...
    def attempt_started(self, *args: object) -> None: ...
    def attempt_ended(self, *args: object) -> None: ...
    def attempt_halted(self, *args: object) -> None: ...
    def stopping(self, *args: object) -> None: ...
    def run_ended(self, *args: object) -> None: ...


def _run(root: Path, name: str, plan_text: str, workers: int) -> tuple[float, RunReport]:
    folder = root / name
    folder.mkdir()
    (folder / "bench_tasks.py").write_text(_NOOP_MODULE)
    (folder / "plan.yaml").write_text(plan_text)
    plan = read_plan(folder / "plan.yaml")
    with stoic.Workspace.init(folder / "ws") as ws:
        start = time.perf_counter()
        report = start_run(ws, plan, workers=workers, reporter=Silent())
        elapsed = time.perf_counter() - start
    assert report.exit_code == 0, report.status
    return elapsed, report


def _chain(count: int, task: str) -> str:
    lines = ["tasks:"]
    for i in range(count):
        deps = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, {task}{deps}}}")
    return "\n".join(lines) + "\n"


def fsync_latency(root: Path, count: int = 200) -> float:
    path = root / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 300)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(samples)


def bench_shell_chain(root: Path, count: int) -> dict[str, Any]:
    start = time.perf_counter()
    for _ in range(count):
        subprocess.run(["true"], check=True)
    bare = time.perf_counter() - start
    elapsed, _ = _run(root, "shell-chain", _chain(count, 'run: ["true"]'), workers=1)
    return {
        "tasks": count,
        "stoic_s": round(elapsed, 3),
        "baseline_bare_subprocess_loop_s": round(bare, 3),
        "ratio": round(elapsed / bare, 3),
        "target_ratio_max": 1.25,
    }


def bare_round_trip(root: Path, count: int) -> float:
    """The worker protocol alone: one worker, one no-op call at a time, median seconds."""
    from stoic.run.worker import read_frame, write_frame

    (root / "rt").mkdir()
    (root / "rt" / "bench_tasks.py").write_text(_NOOP_MODULE)
    request_read, request_write = os.pipe()
    reply_read, reply_write = os.pipe()
    worker = subprocess.Popen(
        [sys.executable, "-m", "stoic.run.worker", str(request_read), str(reply_write)],
        pass_fds=(request_read, reply_write),
    )
    os.close(request_read)
    os.close(reply_write)
    request = {
        "call": "bench_tasks:noop",
        "params": {},
        "plan_dir": str(root / "rt"),
        "env": {},
        "log": str(root / "rt" / "out.log"),
    }
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            write_frame(request_write, request)
            read_frame(reply_read)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(request_write)
        os.close(reply_read)
        worker.wait()
    return statistics.median(samples[10:])


def bench_python_chain(root: Path, count: int, fsync_s: float) -> dict[str, Any]:
    round_trip = bare_round_trip(root, 500)
    elapsed, _ = _run(root, "python-chain", _chain(count, 'call: "bench_tasks:noop"'), workers=1)
    per_task = elapsed / count
    target = round_trip + 2 * fsync_s + 0.0002
    return {
        "tasks": count,
        "ms_per_task": round(per_task * 1000, 3),
        "baseline_bare_round_trip_ms": round(round_trip * 1000, 3),
        "fsync_ms": round(fsync_s * 1000, 3),
        "target_ms_per_task_max": round(target * 1000, 3),
        "ratio_to_target": round(per_task / target, 3),
    }


def bench_python_wide(root: Path, count: int) -> dict[str, Any]:
    folder = root / "python-wide"
    folder.mkdir()
    (folder / "bench_tasks.py").write_text(_NOOP_MODULE)
    lines = ["tasks:"] + [f'  - {{id: t{i}, call: "bench_tasks:noop"}}' for i in range(count)]
    (folder / "plan.yaml").write_text("\n".join(lines) + "\n")
    stoic.Workspace.init(folder / "ws").close()
    project = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", _RUN_PROCESS, str(folder / "ws"), str(folder / "plan.yaml"), "2"],
        capture_output=True,
        text=True,
        check=True,
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
    ).stdout
    elapsed, peak_kb, code = out.split("BENCH", 1)[1].split()[:3]
    assert int(code) == 0
    seconds = float(elapsed)
    return {
        "tasks": count,
        "workers": 2,
        "tasks_per_s": round(count / seconds, 1),
        "target_tasks_per_s_min": 2000,
        "peak_rss_mb": round(int(peak_kb) / 1024, 1),
        "target_peak_rss_mb_max": 300,
    }


def bench_big_plan(root: Path, count: int, edges_per_task: int = 3) -> dict[str, Any]:
    rng = random.Random(7)
    lines = ["meta: {name: generated}", "tasks:"]
    edges = 0
    for i in range(count):
        deps = sorted(rng.sample(range(i), min(i, edges_per_task)))
        edges += len(deps)
        dep_text = ", ".join(f"t{d}" for d in deps)
        lines.append(f'  - id: t{i}\n    run: ["true"]\n    depends_on: [{dep_text}]')
    path = root / "big-plan.yaml"
    path.write_text("\n".join(lines) + "\n")
    loads, analyses = [], []
    for _ in range(3):  # the median of three: one load on a busy machine says little
        start = time.perf_counter()
        plan = read_plan(path)
        loads.append(time.perf_counter() - start)
        states = plan.states()
        start = time.perf_counter()
        analysis = analyse_states(plan.graph, states)
        analyses.append(time.perf_counter() - start)
        del plan
    loaded, analysed = statistics.median(loads), statistics.median(analyses)
    assert analysis.status.value == "running"
    return {
        "tasks": count,
        "edges": edges,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "load_and_validate_s": round(loaded, 3),
        "load_and_validate_runs_s": [round(value, 3) for value in loads],
        "target_load_s_max": 3.0,
        "analysis_s": round(analysed, 3),
        "target_analysis_s_max": 0.5,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="Where to put the workspaces.")
    parser.add_argument("--quick", action="store_true", help="A tenth of every size.")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        fsync_s = fsync_latency(root)
        figures = {
            "fsync_latency_ms": round(fsync_s * 1000, 3),
            "shell_chain": bench_shell_chain(root, 500 // scale),
            "python_chain": bench_python_chain(root, 2000 // scale, fsync_s),
            "python_wide": bench_python_wide(root, 10_000 // scale),
            "big_plan": bench_big_plan(root, 100_000 // scale),
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
