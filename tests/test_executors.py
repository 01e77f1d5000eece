"""Executors against real processes and a real HTTP server: every failure is normalised."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stoic.core.failure import FailureKind, Partial
from stoic.plan.models import HttpRequest
from stoic.run.attempt import Attempt, parse_result_file
from stoic.run.http import call_http, parse_retry_after
from stoic.run.python_pool import WorkerPool
from stoic.run.shell import run_command


def make_attempt(tmp_path: Path, *, timeout: float | None = None, cap: int = 10_000_000) -> Attempt:
    (tmp_path / "results").mkdir(exist_ok=True)
    return Attempt(
        run_id="run-test",
        request_id="run-test/t",
        task_id="t",
        attempt=1,
        attempt_id="a1",
        log_path=tmp_path / "tasks" / "t" / "attempt-1.log",
        result_path=tmp_path / "results" / "t.attempt-1.json",
        workspace_root=tmp_path,
        plan_dir=tmp_path,
        timeout=timeout,
        output_cap_bytes=cap,
        kill_grace_seconds=0.5,
    )


def _alive(pid: int) -> bool:
    """Whether `pid` still runs, allowing a killed process a moment to be torn down."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state == "Z":
            return False
        time.sleep(0.05)
    return True


# -- shell -------------------------------------------------------------------------------------


def test_shell_success_captures_output_and_env(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path)
    script = 'echo "$STOIC_RUN_ID $STOIC_TASK_ID $STOIC_ATTEMPT $STOIC_RESULT"; echo err >&2'
    result = run_command(["sh", "-c", script], attempt, shell=False)
    assert result.succeeded and result.exit_code == 0
    assert attempt.log_path.read_text() == f"run-test t 1 {attempt.result_path}\nerr\n"


def test_shell_string_runs_only_through_a_shell(tmp_path: Path) -> None:
    result = run_command("echo a | tr a b", make_attempt(tmp_path), shell=True)
    assert result.succeeded
    assert make_attempt(tmp_path).log_path.read_text() == "b\n"


def test_a_command_starts_with_no_signal_ignored(tmp_path: Path) -> None:
    """stoic ignores SIGPIPE and SIGXFSZ; a task does not inherit that (`yes | head` ends)."""
    attempt = make_attempt(tmp_path)
    result = run_command(["grep", "SigIgn", "/proc/self/status"], attempt, shell=False)
    assert result.succeeded
    ignored = int(attempt.log_path.read_text().split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1))
    assert ignored & ~(1 << 31 | 1 << 32) == 0  # glibc keeps its own two real-time signals


def test_task_reading_stdin_sees_eof_and_cannot_hang(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, timeout=60)
    result = run_command(["sh", "-c", "read line; echo read:$?"], attempt, shell=False)
    assert result.succeeded
    assert attempt.log_path.read_text() == "read:1\n"  # `read` hit end of input


def test_missing_command_is_a_failure_not_a_traceback(tmp_path: Path) -> None:
    result = run_command(["no-such-program-xyz"], make_attempt(tmp_path), shell=False)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.ERROR
    assert result.failure.message == "command not found: no-such-program-xyz"
    assert result.failure.partial is Partial.FALSE


def test_commands_that_cannot_start_say_why(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    result = run_command([str(script)], make_attempt(tmp_path), shell=False)
    assert result.failure is not None and result.failure.partial is Partial.FALSE
    assert result.failure.message == f"command not executable: {script}"
    gone = dataclasses.replace(make_attempt(tmp_path), plan_dir=tmp_path / "no-such-folder")
    result = run_command(["true"], gone, shell=False)
    assert result.failure is not None
    assert result.failure.message.startswith(f"cannot enter {tmp_path / 'no-such-folder'}")


def test_a_shell_that_cannot_run_a_file_says_not_executable_and_bash_c_is_a_shell_too(
    tmp_path: Path,
) -> None:
    (tmp_path / "deploy.sh").write_text("echo hi\n")  # not executable
    result = run_command("./deploy.sh", make_attempt(tmp_path), shell=True)
    assert result.failure is not None and result.failure.exit_code == 126
    assert result.failure.message.startswith("exit status 126 (command not executable: ")
    assert "Permission denied" in result.failure.message
    (tmp_path / "tasks" / "t" / "attempt-1.log").unlink()
    result = run_command(["bash", "-c", "no-such-tool-q"], make_attempt(tmp_path), shell=False)
    assert result.failure is not None
    assert result.failure.message.startswith("exit status 127 (command not found: ")
    assert "no-such-tool-q" in result.failure.message
    (tmp_path / "tasks" / "t" / "attempt-1.log").unlink()
    result = run_command(["sh", "-c", "exit 127"], make_attempt(tmp_path), shell=False)
    assert result.failure is not None
    assert result.failure.message == "exit status 127 (command not found)"  # nothing to quote
    result = run_command(
        ["python3", "-c", "raise SystemExit(127)"], make_attempt(tmp_path), shell=False
    )
    assert result.failure is not None and result.failure.message == "exit status 127"


def test_a_shell_string_naming_no_command_and_a_killed_command_are_told_apart(
    tmp_path: Path,
) -> None:
    result = run_command("no-such-program-xyz --now", make_attempt(tmp_path), shell=True)
    assert result.failure is not None
    assert result.failure.message == (
        "exit status 127 (command not found: /bin/sh: 1: no-such-program-xyz: not found)"
    )
    result = run_command(["sh", "-c", "kill -KILL $$"], make_attempt(tmp_path), shell=False)
    assert result.failure is not None and result.failure.message == "killed by signal 9"


def test_exit_status_is_an_error_with_unknown_partial(tmp_path: Path) -> None:
    result = run_command(["sh", "-c", "exit 4"], make_attempt(tmp_path), shell=False)
    assert result.failure is not None
    assert (result.failure.kind, result.failure.exit_code) == (FailureKind.ERROR, 4)
    assert result.failure.partial is Partial.UNKNOWN


def test_timeout_kills_the_whole_group_even_when_term_is_ignored(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, timeout=0.5)
    script = 'trap "" TERM; sleep 60 & echo $! ; wait'
    result = run_command(["sh", "-c", script], attempt, shell=False)
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT
    assert "timed out after 0.5s" in result.failure.message
    child = int(attempt.log_path.read_text().split()[0])
    assert not _alive(child)


def test_background_child_is_killed_when_the_attempt_ends(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path)
    result = run_command(["sh", "-c", "sleep 60 & echo $!"], attempt, shell=False)
    assert result.succeeded
    child = int(attempt.log_path.read_text().split()[0])
    assert not _alive(child)


def test_output_is_capped_with_a_note(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, cap=100_000)
    result = run_command(["head", "-c", "5000000", "/dev/zero"], attempt, shell=False)
    assert result.succeeded and result.output_truncated
    assert result.output_bytes == 100_000
    data = attempt.log_path.read_bytes()
    assert data.startswith(b"\0" * 100_000)
    assert data[100_000:].decode().strip() == (
        "[stoic: output cut at 100000 bytes; 4900000 more bytes were discarded]"
    )


def test_stop_request_interrupts_the_attempt(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    result = run_command(["sleep", "60"], make_attempt(tmp_path), shell=False, stop=stop)
    assert result.failure is not None and result.failure.kind is FailureKind.INTERRUPTED


# -- result file -------------------------------------------------------------------------------


def test_result_file_failure_decides_the_kind(tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path)
    script = (
        'echo \'{"failure": {"kind": "rate_limited", "retry_after_s": 7}, "steps_completed": 2}\''
        ' > "$STOIC_RESULT"; exit 1'
    )
    result = run_command(["sh", "-c", script], attempt, shell=False)
    assert result.failure is not None
    assert result.failure.kind is FailureKind.RATE_LIMITED
    assert result.failure.retry_after_s == 7
    assert result.failure.partial is Partial.TRUE
    assert result.details()["result"]["steps_completed"] == 2


@pytest.mark.parametrize("code", [0, 3])
def test_malformed_result_file_is_recorded_and_exit_status_decides(
    tmp_path: Path, code: int
) -> None:
    attempt = make_attempt(tmp_path)
    script = f'echo "{{not json" > "$STOIC_RESULT"; exit {code}'
    result = run_command(["sh", "-c", script], attempt, shell=False)
    assert result.succeeded is (code == 0)
    assert "not valid JSON" in result.details()["result_file_error"]


def test_an_oversized_result_file_is_refused_unread_and_kept_out_of_the_log(
    tmp_path: Path,
) -> None:
    attempt = make_attempt(tmp_path)
    script = (
        'printf \'{"note": "%s"}\' "$(head -c 100000 /dev/zero | tr "\\0" x)" > "$STOIC_RESULT"'
    )
    result = run_command(["sh", "-c", script], attempt, shell=False)
    assert attempt.result_path.stat().st_size > 100_000
    assert result.succeeded  # the exit status decides
    details = result.details()
    assert "over the 64 KiB a result file may hold" in details["result_file_error"]
    assert "result" not in details


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"[1, 2]", "a JSON object was expected, not list"),
        (b'{"failure": "boom"}', "`failure` must be an object"),
        (b'{"failure": {"kind": "explosion"}}', "unknown failure kind 'explosion'"),
        (b'{"steps_completed": -1}', "`steps_completed` must be a whole number"),
    ],
)
def test_result_file_shapes_are_checked(raw: bytes, error: str) -> None:
    parsed = parse_result_file(raw)
    assert parsed.error is not None and error in parsed.error
    assert parsed.failure is None or parsed.error is not None


# -- python ------------------------------------------------------------------------------------

TASKS = """
import ctypes, os, time
import stoic.errors as e

def hello(name, punctuation="!"):
    print("hello", name, os.environ["STOIC_TASK_ID"])
    return {"greeting": f"hello {name}{punctuation}"}

def raise_kind(kind, retry_after=None):
    if kind == "rate_limited":
        raise e.RateLimited("slow down", retry_after=retry_after)
    raise getattr(e, kind)("it failed", partial=False)

def boom():
    raise ValueError("bad value")

def exit_hard():
    os._exit(3)

def segfault():
    ctypes.string_at(0)

def slow():
    time.sleep(60)

def returns_object():
    return object()

def writes_result(how):
    path = os.environ["STOIC_RESULT"]
    if how == "file":
        with open(path, "w") as out:
            out.write('{"note": "from the task"}')
    elif how == "link":
        os.symlink("/etc/hostname", path)
"""


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    (tmp_path / "plan_tasks.py").write_text(TASKS)
    workers = WorkerPool(2)
    yield workers
    workers.close()


def test_python_call_with_params_and_plan_folder_import(tmp_path: Path, pool: WorkerPool) -> None:
    attempt = make_attempt(tmp_path)
    result = pool.run("plan_tasks:hello", {"name": "ada", "punctuation": "?"}, attempt)
    assert result.succeeded
    assert result.outputs == {"greeting": "hello ada?"}
    assert attempt.log_path.read_text() == "hello ada t\n"


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        ("Timeout", FailureKind.TIMEOUT),
        ("Unavailable", FailureKind.UNAVAILABLE),
        ("ContextOverflow", FailureKind.CONTEXT_OVERFLOW),
        ("PolicyViolation", FailureKind.POLICY_VIOLATION),
        ("BudgetExhausted", FailureKind.BUDGET_EXHAUSTED),
        ("SafetyTrigger", FailureKind.SAFETY_TRIGGER),
        ("ToolError", FailureKind.TOOL_ERROR),
        ("QualityError", FailureKind.QUALITY),
    ],
)
def test_each_stoic_error_maps_to_its_kind(
    tmp_path: Path, pool: WorkerPool, exception: str, kind: FailureKind
) -> None:
    result = pool.run("plan_tasks:raise_kind", {"kind": exception}, make_attempt(tmp_path))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.partial) == (kind, Partial.FALSE)


def test_python_result_file_is_read_when_written_and_a_link_refused(
    tmp_path: Path, pool: WorkerPool
) -> None:
    silent = pool.run("plan_tasks:writes_result", {"how": "none"}, make_attempt(tmp_path))
    assert silent.succeeded and silent.result is None
    written = pool.run("plan_tasks:writes_result", {"how": "file"}, make_attempt(tmp_path))
    assert written.result is not None and written.result.data == {"note": "from the task"}
    (tmp_path / "results" / "t.attempt-1.json").unlink()
    linked = pool.run("plan_tasks:writes_result", {"how": "link"}, make_attempt(tmp_path))
    assert linked.result is not None and linked.result.error is not None
    assert "not read" in linked.result.error


def test_rate_limited_carries_retry_after(tmp_path: Path, pool: WorkerPool) -> None:
    params = {"kind": "rate_limited", "retry_after": 12}
    result = pool.run("plan_tasks:raise_kind", params, make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.RATE_LIMITED
    assert result.failure.retry_after_s == 12
    result = pool.run("plan_tasks:raise_kind", {"kind": "rate_limited"}, make_attempt(tmp_path))
    assert result.failure is not None and result.failure.retry_after_s is None


def test_any_other_exception_is_error_with_traceback_in_log(
    tmp_path: Path, pool: WorkerPool
) -> None:
    attempt = make_attempt(tmp_path)
    result = pool.run("plan_tasks:boom", {}, attempt)
    assert result.failure is not None and result.failure.kind is FailureKind.ERROR
    assert result.failure.message == "ValueError: bad value"
    assert "Traceback" in attempt.log_path.read_text()


@pytest.mark.parametrize("function", ["exit_hard", "segfault"])
def test_a_crashing_task_fails_alone_and_the_pool_is_replaced(
    tmp_path: Path, pool: WorkerPool, function: str
) -> None:
    result = pool.run(f"plan_tasks:{function}", {}, make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.CRASH
    assert pool.replaced == 1
    after = pool.run("plan_tasks:hello", {"name": "again"}, make_attempt(tmp_path))
    assert after.succeeded


def test_python_timeout_stops_the_worker(tmp_path: Path, pool: WorkerPool) -> None:
    result = pool.run("plan_tasks:slow", {}, make_attempt(tmp_path, timeout=0.5))
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT
    assert pool.run("plan_tasks:hello", {"name": "x"}, make_attempt(tmp_path)).succeeded


def test_a_stopped_python_attempt_is_interrupted(tmp_path: Path, pool: WorkerPool) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    result = pool.run("plan_tasks:slow", {}, make_attempt(tmp_path), stop)
    assert result.failure is not None and result.failure.kind is FailureKind.INTERRUPTED
    assert pool.run("plan_tasks:hello", {"name": "x"}, make_attempt(tmp_path)).succeeded


def test_unloadable_function_is_a_clear_failure(tmp_path: Path, pool: WorkerPool) -> None:
    result = pool.run("plan_tasks:missing", {}, make_attempt(tmp_path))
    assert result.failure is not None
    assert result.failure.message.startswith("cannot load plan_tasks:missing: AttributeError")
    result = pool.run("no_module_here:f", {}, make_attempt(tmp_path))
    assert result.failure is not None and "ModuleNotFoundError" in result.failure.message


def test_a_value_that_is_not_json_fails_the_task(tmp_path: Path, pool: WorkerPool) -> None:
    """A return value is the task's outputs: a repr in its place would hand dependents a
    string they never asked for."""
    result = pool.run("plan_tasks:returns_object", {}, make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.ERROR
    assert (
        "cannot be the task's outputs: outputs is of type object, not JSON"
        in result.failure.message
    )


# -- http --------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/ok": (200, {}),
            "/limited": (429, {"Retry-After": "30"}),
            "/limited-no-header": (429, {}),
            "/down": (503, {"Retry-After": self.server.http_date}),  # type: ignore[attr-defined]
            "/broken": (500, {}),
            "/missing": (404, {}),
            "/gateway": (504, {}),
            "/big": (200, {}),
        }
        if self.path == "/hang-up":  # the connection ends without a response
            self.close_connection = True
            return
        if self.path == "/slow":
            time.sleep(2)
            routes["/slow"] = (200, {})
        status, headers = routes[self.path]
        body = b"x" * 5000 if self.path == "/big" else f"body of {self.path}".encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the timeout tests) is expected: no traceback on stderr."""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = _QuietServer(("127.0.0.1", 0), _Handler)
    httpd.http_date = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _get(url: str, tmp_path: Path, timeout: float | None = None) -> object:
    return call_http(HttpRequest(url=url, timeout=timeout), make_attempt(tmp_path))


def test_http_2xx_succeeds_and_body_is_logged(server: str, tmp_path: Path) -> None:
    result = call_http(
        HttpRequest(method="POST", url=f"{server}/ok", json={"a": 1}), make_attempt(tmp_path)
    )
    assert result.succeeded
    assert make_attempt(tmp_path).log_path.read_text() == "HTTP 200\nbody of /ok"


def test_http_429_reads_retry_after_seconds(server: str, tmp_path: Path) -> None:
    result = call_http(HttpRequest(url=f"{server}/limited"), make_attempt(tmp_path))
    assert result.failure is not None
    assert result.failure.kind is FailureKind.RATE_LIMITED
    assert (result.failure.retry_after_s, result.failure.http_status) == (30.0, 429)
    bare = call_http(HttpRequest(url=f"{server}/limited-no-header"), make_attempt(tmp_path))
    assert bare.failure is not None and bare.failure.retry_after_s is None


def test_http_503_reads_retry_after_date(server: str, tmp_path: Path) -> None:
    result = call_http(HttpRequest(url=f"{server}/down"), make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.UNAVAILABLE
    assert result.failure.retry_after_s is not None and 60 < result.failure.retry_after_s <= 120


def test_http_connection_refused_is_unavailable_without_side_effects(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = call_http(HttpRequest(url=f"http://127.0.0.1:{port}/"), make_attempt(tmp_path))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.partial) == (FailureKind.UNAVAILABLE, Partial.FALSE)


def test_http_timeout(server: str, tmp_path: Path) -> None:
    result = call_http(HttpRequest(url=f"{server}/slow", timeout=0.3), make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.TIMEOUT


@pytest.mark.parametrize(
    ("path", "partial"), [("/broken", Partial.UNKNOWN), ("/missing", Partial.FALSE)]
)
def test_http_other_statuses_are_errors(
    server: str, tmp_path: Path, path: str, partial: Partial
) -> None:
    result = call_http(HttpRequest(url=f"{server}{path}"), make_attempt(tmp_path))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.partial) == (FailureKind.ERROR, partial)


def test_http_gateway_timeout_may_have_had_effects(server: str, tmp_path: Path) -> None:
    result = call_http(HttpRequest(url=f"{server}/gateway"), make_attempt(tmp_path))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.partial) == (FailureKind.TIMEOUT, Partial.UNKNOWN)
    assert result.failure.message == "HTTP 504 Gateway Timeout"


def test_http_connection_ended_without_a_response_is_an_error(server: str, tmp_path: Path) -> None:
    result = call_http(HttpRequest(url=f"{server}/hang-up"), make_attempt(tmp_path))
    assert result.failure is not None and result.failure.kind is FailureKind.ERROR
    assert result.failure.message.startswith("RemoteProtocolError: ")


def test_http_body_is_capped_in_the_log(server: str, tmp_path: Path) -> None:
    attempt = make_attempt(tmp_path, cap=1000)
    result = call_http(HttpRequest(url=f"{server}/big"), attempt)
    assert result.succeeded and result.output_truncated
    logged = attempt.log_path.read_bytes()
    assert result.output_bytes == len(logged)
    assert logged.startswith(b"HTTP 200\n" + b"x" * 1000)
    assert logged.endswith(b"[stoic: output cut at 1000 bytes]\n")


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now=now) == 60
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 -0000", now=now) == 30  # no zone: UTC


def test_http_idempotence_defaults() -> None:
    from stoic.plan.models import TaskSpec

    assert TaskSpec(id="a", http=HttpRequest(method="GET", url="http://x/")).is_idempotent
    assert TaskSpec(id="a", http=HttpRequest(method="DELETE", url="http://x/")).is_idempotent
    assert not TaskSpec(id="a", http=HttpRequest(method="POST", url="http://x/")).is_idempotent
    assert not TaskSpec(
        id="a", http=HttpRequest(method="PUT", url="http://x/"), idempotent=False
    ).is_idempotent
    assert not TaskSpec(id="a", run=["x"]).is_idempotent
    assert TaskSpec(id="a", run=["x"], idempotent=True).is_idempotent
