"""`stoic serve` as a real process: uvicorn on 127.0.0.1 and a free port, reached over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import run_cli


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_answers_healthz_on_loopback(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    port = _free_port()
    stoic = Path(sys.executable).with_name("stoic")
    server = subprocess.Popen(
        [str(stoic), "-w", str(workspace), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "the server did not answer in 30 s"
                time.sleep(0.05)
        assert answer.status_code == 200
        body = answer.json()
        assert body["status"] == "ok"
        assert body["records"] == 0  # a new workspace has recorded nothing yet
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)


def test_a_port_no_socket_can_have_is_a_usage_error(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert run_cli("init", str(workspace)).exit_code == 0
    for port in ("99999", "0", "-1"):
        result = run_cli("-w", str(workspace), "serve", "--port", port)
        assert result.exit_code == 2, result.stderr  # not a bind to 99999 - 65536
        (line,) = result.stderr.strip().splitlines()
        assert "--port" in line
