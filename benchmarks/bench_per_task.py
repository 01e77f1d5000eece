"""What one task costs stoic, as a whole `stoic run` process; prints one JSON document.

Every figure stands beside its baseline, measured in the same run on the same disk:
- durable python chain: the marginal cost of a task, (t(N2) - t(N1)) / (N2 - N1), of `stoic run`
  as a subprocess, next to the floor a durable runner cannot go below: one write of the bytes a
  task appends to the log, plus one fsync, in the same folder;
- shell chain of `true`: the same marginal next to a bare loop of `subprocess.run(["true"])`,
  also a process of its own timed the same way, and the same write+fsync floor: a durable
  chain appends and fsyncs once per task (the end of one and the start of the next) before the
  next spawn, so (bare + floor) / bare is the lowest ratio a durable runner can reach there;
- fan-out: 2,000 independent python no-ops on 2 workers, tasks/s of the whole process;
- the end-of-run summary: its short form and every task's row (`--tasks`), per task.
Each chain is also timed inside the run (the runner alone), as bench_run.py does.

Usage: python benchmarks/bench_per_task.py [--dir PATH] [--quick] [--rounds N]
       [--only python_chain,shell_chain,fan_out,summary]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_run import _chain  # the same plans as bench_run.py

_NOOP_MODULE = "def noop():\n    return None\n"
_STOIC = str(Path(sys.executable).with_name("stoic"))
_BARE_LOOP = """
import subprocess, sys
for _ in range(int(sys.argv[1])):
    subprocess.run(["true"], check=True)
"""
_IN_RUN = """
import sys, time
import stoic
from stoic.plan.loader import read_plan
from stoic.run.lifecycle import start_run
from benchmarks.bench_run import Silent
plan = read_plan(sys.argv[2])
with stoic.Workspace.open(sys.argv[1]) as ws:
    start = time.perf_counter()
    report = start_run(ws, plan, workers=int(sys.argv[3]), reporter=Silent())
    print(time.perf_counter() - start, report.exit_code)
"""
_PROJECT = Path(__file__).resolve().parent.parent


def _wide(count: int) -> str:
    return "tasks:\n" + "".join(
        f'  - {{id: t{i}, call: "bench_tasks:noop"}}\n' for i in range(count)
    )


class _Folders:
    """A fresh plan folder and workspace for every timed run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made = 0

    def new(self, plan_text: str) -> tuple[Path, Path]:
        self.made += 1
        folder = self.root / f"run-{self.made}"
        folder.mkdir()
        (folder / "bench_tasks.py").write_text(_NOOP_MODULE)
        (folder / "plan.yaml").write_text(plan_text)
        subprocess.run([_STOIC, "init", str(folder / "ws")], check=True, capture_output=True)
        return folder / "ws", folder / "plan.yaml"


def _whole_process(folders: _Folders, plan_text: str, workers: int) -> float:
    """Seconds of `stoic run` as a subprocess, start to exit (output to /dev/null)."""
    ws, plan = folders.new(plan_text)
    start = time.perf_counter()
    done = subprocess.run(
        [_STOIC, "-w", str(ws), "run", str(plan), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr.decode()
    return elapsed


def _in_run(folders: _Folders, plan_text: str, workers: int) -> tuple[float, Path]:
    """Seconds of the runner alone (start_run in a process of its own), and the workspace."""
    ws, plan = folders.new(plan_text)
    out = subprocess.run(
        [sys.executable, "-c", _IN_RUN, str(ws), str(plan), str(workers)],
        capture_output=True,
        text=True,
        check=True,
        cwd=_PROJECT,
        env={**os.environ, "PYTHONPATH": str(_PROJECT)},
    ).stdout.split()
    assert out[1] == "0", out
    return float(out[0]), ws


def _marginal(measure: Callable[[int], float], small: int, big: int, rounds: int) -> float:
    """(t(big) - t(small)) / (big - small), each t the median of `rounds` runs, alternated."""
    smalls, bigs = [], []
    for _ in range(rounds):
        smalls.append(measure(small))
        bigs.append(measure(big))
    return (statistics.median(bigs) - statistics.median(smalls)) / (big - small)


def _bytes_per_task(ws: Path, tasks: int) -> int:
    """What a task appends to the log, on average (its end and the next task's start)."""
    return (ws / "logs" / "decision_log.ndjson").stat().st_size // tasks


def floor_per_task(folder: Path, size: int, count: int) -> float:
    """Median seconds of one write of `size` bytes and one fsync, in `folder`."""
    path = folder / "floor.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = b"x" * (size - 1) + b"\n"
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, line)
            os.fsync(fd)
            samples.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(samples)


def bench_python_chain(folders: _Folders, small: int, big: int, rounds: int) -> dict[str, Any]:
    task = 'call: "bench_tasks:noop"'
    in_run, ws = _in_run(folders, _chain(big, task), 1)
    size = _bytes_per_task(ws, big)
    floor_before = floor_per_task(folders.root, size, big)
    marginal = _marginal(lambda n: _whole_process(folders, _chain(n, task), 1), small, big, rounds)
    floor = statistics.median([floor_before, floor_per_task(folders.root, size, big)])
    return {
        "tasks": [small, big],
        "whole_process_marginal_ms_per_task": round(marginal * 1000, 3),
        "in_run_ms_per_task": round(in_run / big * 1000, 3),
        "baseline_floor_write_fsync_ms": round(floor * 1000, 3),
        "floor_bytes_per_write": size,
        "ratio_whole_process": round(marginal / floor, 3),
        "ratio_in_run": round(in_run / big / floor, 3),
        "target_ratio_max": 1.5,
    }


def _bare_loop(count: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _BARE_LOOP, str(count)], check=True)
    return time.perf_counter() - start


def bench_shell_chain(folders: _Folders, small: int, big: int, rounds: int) -> dict[str, Any]:
    task = 'run: ["true"]'
    in_run, ws = _in_run(folders, _chain(big, task), 1)
    size = _bytes_per_task(ws, big)
    floor_before = floor_per_task(folders.root, size, big)
    bare_in_loop = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(big):
            subprocess.run(["true"], check=True)
        bare_in_loop.append((time.perf_counter() - start) / big)
    marginal = _marginal(lambda n: _whole_process(folders, _chain(n, task), 1), small, big, rounds)
    bare = _marginal(_bare_loop, small, big, rounds)
    floor = statistics.median([floor_before, floor_per_task(folders.root, size, big)])
    return {
        "tasks": [small, big],
        "whole_process_marginal_ms_per_task": round(marginal * 1000, 3),
        "baseline_bare_subprocess_loop_marginal_ms": round(bare * 1000, 3),
        "ratio_whole_process": round(marginal / bare, 3),
        "floor_write_fsync_ms": round(floor * 1000, 3),
        "lowest_ratio_one_fsync_per_task_allows": round((bare + floor) / bare, 3),
        "overhead_beyond_spawn_and_fsync_ms": round((marginal - bare - floor) * 1000, 3),
        "in_run_ms_per_task": round(in_run / big * 1000, 3),
        "baseline_bare_loop_in_process_ms": round(statistics.median(bare_in_loop) * 1000, 3),
        "ratio_in_run": round(in_run / big / statistics.median(bare_in_loop), 3),
        "target_ratio_max": 1.25,
    }


def bench_fan_out(folders: _Folders, count: int, rounds: int) -> dict[str, Any]:
    whole = statistics.median(_whole_process(folders, _wide(count), 2) for _ in range(rounds))
    in_run, _ = _in_run(folders, _wide(count), 2)
    return {
        "tasks": count,
        "workers": 2,
        "whole_process_tasks_per_s": round(count / whole, 1),
        "in_run_tasks_per_s": round(count / in_run, 1),
        "target_whole_process_tasks_per_s_min": 2000,
    }


def bench_summary(folders: _Folders, count: int) -> dict[str, Any]:
    """The end-of-run summary of a run of `count` tasks with one failure deep in it."""
    import stoic
    from stoic.run.reporting import print_summary
    from stoic.run.terminal import SafeConsole
    from stoic.services import runs

    body = _chain(count, 'run: ["true"]').replace(
        f'{{id: t{count // 2}, run: ["true"]', f'{{id: t{count // 2}, run: ["false"]'
    )
    ws, plan = folders.new(body)
    subprocess.run([_STOIC, "-w", str(ws), "run", str(plan)], capture_output=True, check=False)
    with stoic.Workspace.open(ws) as workspace:
        (run_id,) = [path.name for path in (ws / "runs").iterdir()]
        report = runs.status(workspace, run_id).report
    timings = {}
    for every_task in (False, True):
        samples = []
        for _ in range(3):
            console = SafeConsole(file=io.StringIO(), width=200)
            start = time.perf_counter()
            print_summary(console, report, every_task=every_task)
            samples.append(time.perf_counter() - start)
        timings[every_task] = statistics.median(samples)
    return {
        "tasks": count,
        "short_form_ms": round(timings[False] * 1000, 3),
        "every_task_ms": round(timings[True] * 1000, 3),
        "short_form_us_per_task": round(timings[False] / count * 1e6, 2),
        "every_task_us_per_task": round(timings[True] / count * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="Where to put the workspaces.")
    parser.add_argument("--quick", action="store_true", help="A fifth of every size, 1 round.")
    parser.add_argument("--rounds", type=int, default=3, help="Runs per size (median).")
    parser.add_argument("--only", default="", help="Comma-separated figures to measure.")
    args = parser.parse_args()
    scale, rounds = (5, 1) if args.quick else (1, args.rounds)
    wanted = set(filter(None, args.only.split(","))) or {
        "python_chain",
        "shell_chain",
        "fan_out",
        "summary",
    }
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folders = _Folders(Path(tmp))
        if "python_chain" in wanted:
            figures["python_chain"] = bench_python_chain(
                folders, 400 // scale, 2000 // scale, rounds
            )
        if "shell_chain" in wanted:
            figures["shell_chain"] = bench_shell_chain(folders, 100 // scale, 500 // scale, rounds)
        if "fan_out" in wanted:
            figures["fan_out"] = bench_fan_out(folders, 2000 // scale, rounds)
        if "summary" in wanted:
            figures["summary"] = bench_summary(folders, 2000 // scale)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
