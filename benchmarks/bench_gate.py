"""The agent gate's cost per tool call, cold; prints one JSON document.

`stoic gate claude-code` answering an allow (the default rules' `git status`) as Claude Code
runs it — a fresh process, the hook's JSON on stdin — next to `python -c pass` (the interpreter
starting) and `true` (a process starting) in the same run, in alternating rounds so a busy
machine slows them alike; the minimum and the median wall time of each, the ratios, and the
60 ms target. Bytecode is cached, as an installed package's is. `modules` counts what the
gate's process imported.

Usage: python benchmarks/bench_gate.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import stoic

STOIC = Path(sys.executable).with_name("stoic")


def allow_payload(root: Path) -> bytes:
    """A `PreToolUse` payload the default rules allow (`git status`), its cwd `root`."""
    return json.dumps(
        {
            "session_id": "bench",
            "transcript_path": str(root / "t.jsonl"),
            "cwd": str(root),
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": "Bash",
            "tool_input": {"command": "git status"},
            "tool_use_id": "toolu_bench",
        }
    ).encode()


def _timed(command: list[str], stdin: bytes, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def _figures(samples: list[float]) -> dict[str, float]:
    return {
        "min_ms": round(min(samples) * 1000, 2),
        "median_ms": round(statistics.median(samples) * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stoic-bench-gate-") as folder:
        root = Path(folder)
        stoic.Workspace.init(root / "ws").close()
        payload = allow_payload(root)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        gate = [str(STOIC), "-w", str(root / "ws"), "gate", "claude-code"]
        answer = subprocess.run(gate, input=payload, capture_output=True, env=env, check=True)
        decision = json.loads(answer.stdout)["hookSpecificOutput"]["permissionDecision"]
        assert decision == "allow", answer.stdout
        counted = subprocess.run(
            [sys.executable, "-X", "importtime", str(STOIC), *gate[1:]],
            input=payload,
            capture_output=True,
            env=env,
            check=True,
        )
        modules = counted.stderr.count(b"import time:") - 1
        samples: dict[str, list[float]] = {"gate": [], "python": [], "true": []}
        for _ in range(args.rounds):
            samples["gate"].append(_timed(gate, payload, env))
            samples["python"].append(_timed([sys.executable, "-c", "pass"], b"", env))
            samples["true"].append(_timed(["true"], b"", env))
    gate_ms = _figures(samples["gate"])
    python_ms = _figures(samples["python"])
    print(
        json.dumps(
            {
                "rounds": args.rounds,
                "gate_allow": gate_ms | {"modules": modules, "target_ms": 60},
                "python_c_pass": python_ms,
                "true": _figures(samples["true"]),
                "ratio_median_to_python": round(gate_ms["median_ms"] / python_ms["median_ms"], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
