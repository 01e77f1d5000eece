"""HTTP tasks against a real local server that answers slowly or hugely.

The task's limit is a deadline on the whole call, SIGTERM stops a call at once, and a huge body
is streamed to the capped log, never held in memory. Each test is bounded by a subprocess
timeout far shorter than the server's slow answer: a deadline not honoured is a hang, caught.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from stoic.core.failure import FailureKind
from stoic.plan.models import HttpRequest
from stoic.run.attempt import Attempt
from stoic.run.http import call_http
from tests.conftest import STOIC_BIN, log_path, run_cli

TRICKLE_BYTES = 300
"""The slow answer sends one byte a second: five minutes, far past every bound below."""
HUGE_BYTES = 600 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.seen.set()  # type: ignore[attr-defined]
        if self.path == "/ok":
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            return
        size = TRICKLE_BYTES if self.path == "/trickle" else HUGE_BYTES
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            if self.path == "/trickle":
                for _ in range(TRICKLE_BYTES):
                    self.wfile.write(b".")
                    self.wfile.flush()
                    time.sleep(1)
            else:
                block = b"z" * (1024 * 1024)
                for _ in range(HUGE_BYTES // len(block)):
                    self.wfile.write(block)
        except OSError:
            return  # the client went away: what a deadline or a cap does

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up is expected here."""


@pytest.fixture
def server() -> Iterator[tuple[str, threading.Event]]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.seen = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.seen  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def _records(ws_path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log_path(ws_path).read_bytes().splitlines()]


def _first_end(ws_path: Path) -> dict[str, object]:
    return next(
        r
        for r in _records(ws_path)
        if r["decision_type"] == "execution" and r["decision_outcome"] != "started"
    )


def _audit_clean(ws_path: Path) -> None:
    result = run_cli("-w", str(ws_path), "audit")
    assert result.exit_code == 0, result.stdout + result.stderr


@pytest.mark.parametrize("where", ["task", "http"])
def test_a_trickling_answer_is_cut_at_the_deadline(
    tmp_path: Path, ws_path: Path, server: tuple[str, threading.Event], where: str
) -> None:
    url = f"{server[0]}/trickle"
    task = (
        f'{{id: slow, timeout: 2, http: {{url: "{url}"}}}}'
        if where == "task"
        else f'{{id: slow, http: {{url: "{url}", timeout: 2}}}}'
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"meta: {{budget: {{max_seconds: 3}}}}\ntasks:\n  - {task}\n")
    done = subprocess.run(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        capture_output=True,
        text=True,
        timeout=60,  # the server would trickle for five minutes
        check=False,
    )
    assert done.returncode in (1, 3), done.stdout + done.stderr
    end = _first_end(ws_path)
    assert end["decision_outcome"] == "failed"
    inputs = end["decision_inputs"]
    assert isinstance(inputs, dict)
    assert inputs["failure_kind"] in ("timeout", "budget_exhausted")
    _audit_clean(ws_path)


def test_sigterm_stops_an_http_call_at_once(
    tmp_path: Path, ws_path: Path, server: tuple[str, threading.Event]
) -> None:
    url, seen = server
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'tasks:\n  - {{id: slow, http: {{url: "{url}/trickle", timeout: 600}}}}\n')
    runner = subprocess.Popen(
        [STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert seen.wait(60), "the request never reached the server"
        runner.send_signal(signal.SIGTERM)
        out, err = runner.communicate(timeout=30)  # the call itself would take five minutes
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 143, out + err
    end = _first_end(ws_path)
    assert end["decision_outcome"] == "interrupted"
    _audit_clean(ws_path)


def test_a_huge_body_is_streamed_to_the_capped_log_with_flat_memory(
    tmp_path: Path, ws_path: Path, server: tuple[str, threading.Event]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'tasks:\n  - {{id: big, http: {{url: "{server[0]}/huge"}}}}\n')
    probe = (
        "import resource, subprocess, sys\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
        "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, STOIC_BIN, "-w", str(ws_path), "run", str(plan)],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout.split()
    code, peak_kib = int(out[0]), int(out[1])
    assert code == 0
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"  # the runner and its worker
    end = _first_end(ws_path)
    details = end["details"]
    assert isinstance(details, dict) and details["output_truncated"] is True
    assert details["value"]["http_status"] == 200
    assert "not the task's outputs" in details["value"]["outputs_note"]
    (run,) = [p.name for p in (ws_path / "runs").iterdir()]
    logged = (ws_path / "runs" / run / "tasks" / "big" / "attempt-1.log").read_bytes()
    cap = 10 * 1024 * 1024
    assert logged.startswith(b"HTTP 200\nzzz")
    assert logged.endswith(f"[stoic: output cut at {cap} bytes]\n".encode())
    assert cap < len(logged) < cap + 200
    _audit_clean(ws_path)


def test_an_http_body_never_goes_through_a_link_at_the_attempt_log(
    tmp_path: Path, server: tuple[str, threading.Event]
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"kept")
    attempt = Attempt(
        run_id="run-test",
        request_id="run-test/t",
        task_id="t",
        attempt=1,
        attempt_id="a1",
        log_path=tmp_path / "ws" / "tasks" / "t" / "attempt-1.log",
        result_path=tmp_path / "ws" / "results" / "t.attempt-1.json",
        workspace_root=tmp_path / "ws",
        plan_dir=tmp_path,
        timeout=30,
        output_cap_bytes=1000,
        kill_grace_seconds=0.5,
    )
    attempt.log_path.parent.mkdir(parents=True)
    attempt.log_path.symlink_to(victim)
    result = call_http(HttpRequest(url=f"{server[0]}/ok"), attempt)
    assert result.failure is not None and result.failure.kind is FailureKind.ERROR
    assert result.log_error is not None and "a link is already there" in result.log_error
    assert victim.read_bytes() == b"kept"
