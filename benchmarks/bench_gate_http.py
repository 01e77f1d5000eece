"""The gate's HTTP hook under load; prints one JSON document.

A real `stoic serve` (its own process, 127.0.0.1) answers `POST /gate/claude-code` for an agent
with a token — an allow (the default rules' `git status`), each one a `gate` record fsynced
before its answer — at a steady 50 calls/s from one httpx client (a kept-alive connection, as
an HTTP hook's client keeps one). Beside it, in the same run and interleaved at the same pace,
`GET /healthz` (the server reading the log's head: the floor of any request). p50, p99 and max
of each, the ratios, and the targets (5 ms p50, 20 ms p99).

Usage: python benchmarks/bench_gate_http.py [--calls N] [--rate PER_SECOND]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import stoic
from bench_gate import allow_payload
from stoic.services import users

STOIC = Path(sys.executable).with_name("stoic")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stoic-bench-gate-http-") as folder:
        root = Path(folder)
        with stoic.Workspace.init(root / "ws") as workspace:
            token = users.add(workspace, "bench", role="agent", actor="human:bench").token
        assert token is not None
        port = _free_port()
        server = subprocess.Popen(
            [str(STOIC), "-w", str(root / "ws"), "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        )
        url = f"http://127.0.0.1:{port}"
        payload = allow_payload(root)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if client.get("/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"stoic serve did not start: {server.stderr}")
                    time.sleep(0.05)
                first = client.post("/gate/claude-code", content=payload, headers=headers)
                said = first.json()["hookSpecificOutput"]["permissionDecision"]
                assert said == "allow", first.text
                samples: dict[str, list[float]] = {"gate": [], "healthz": []}
                interval = 1.0 / args.rate
                start = time.monotonic()
                for n in range(args.calls * 2):
                    due = start + n * interval / 2  # the two interleaved, each at the rate
                    time.sleep(max(0.0, due - time.monotonic()))
                    began = time.perf_counter()
                    if n % 2 == 0:
                        answer = client.post("/gate/claude-code", content=payload, headers=headers)
                        kind = "gate"
                    else:
                        answer = client.get("/healthz")
                        kind = "healthz"
                    samples[kind].append(time.perf_counter() - began)
                    assert answer.status_code == 200
                seconds = time.monotonic() - start
        finally:
            server.terminate()
            server.wait(timeout=60)
        with stoic.Workspace.open(root / "ws") as workspace:
            allowed = sum(1 for _ in workspace.records(decision_type="gate"))
    gate = _percentiles(samples["gate"])
    floor = _percentiles(samples["healthz"])
    print(
        json.dumps(
            {
                "calls": args.calls,
                "rate_per_second": round(args.calls / seconds, 1),
                "gate_allow_http": gate | {"target_p50_ms": 5, "target_p99_ms": 20},
                "healthz": floor,
                "ratio_p50_to_healthz": round(gate["p50_ms"] / floor["p50_ms"], 2),
                "ratio_p99_to_healthz": round(gate["p99_ms"] / floor["p99_ms"], 2),
                "gate_records": allowed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
