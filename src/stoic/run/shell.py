"""The shell executor: a command in its own process group, output streamed to a capped log."""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import subprocess
import time
from collections.abc import Sequence

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.run.attempt import Attempt, AttemptResult, combine, read_result_file
from stoic.run.process import stop_group, write_pid_file

__all__ = ["run_command"]

_CHUNK = 64 * 1024
_LINGER_SECONDS = 0.05
"""After the command exits, how long output from children it left behind is still read."""


def run_command(command: Sequence[str] | str, attempt: Attempt, *, shell: bool) -> AttemptResult:
    """Run one attempt of a shell task; never raises for anything the command does."""
    argv: list[str] = ["/bin/sh", "-c", str(command)] if shell else [str(a) for a in command]
    shown = command if isinstance(command, str) else shlex.join(command)
    attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(attempt.log_path, "wb", buffering=0) as log:  # noqa: PTH123
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **attempt.stoic_env()},
                cwd=attempt.plan_dir,
            )
        except FileNotFoundError:
            return _not_started(f"command not found: {argv[0]}", started, shown)
        except PermissionError:
            return _not_started(f"command not executable: {argv[0]}", started, shown)
        except OSError as exc:
            return _not_started(f"cannot start {argv[0]}: {exc.strerror}", started, shown)
        write_pid_file(attempt.log_path.with_suffix(".pid"), process.pid)
        try:
            outcome = _supervise(process, log, attempt, started)
        finally:
            # Children the command left behind die with the attempt.
            stop_group(process.pid, 0)
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
            with contextlib.suppress(FileNotFoundError):
                attempt.log_path.with_suffix(".pid").unlink()
    stopped_by, written, truncated = outcome
    duration = time.monotonic() - started
    code = process.returncode
    failure: Failure | None = None
    if stopped_by == "timeout":
        failure = Failure(
            FailureKind.TIMEOUT, f"timed out after {attempt.timeout:g}s", exit_code=code
        )
    elif stopped_by == "stop":
        failure = Failure(FailureKind.INTERRUPTED, "stopped by the runner", exit_code=code)
    elif code != 0:
        failure = Failure(FailureKind.ERROR, _exit_message(code, argv[0], shell), exit_code=code)
    result = read_result_file(attempt.result_path)
    return AttemptResult(
        failure=combine(failure, result),
        duration_s=duration,
        exit_code=code,
        output_bytes=written,
        output_truncated=truncated,
        result=result,
        command=shown,
    )


def _not_started(message: str, started: float, shown: str) -> AttemptResult:
    failure = Failure(FailureKind.ERROR, message, partial=Partial.FALSE)
    return AttemptResult(failure=failure, duration_s=time.monotonic() - started, command=shown)


def _exit_message(code: int, program: str, shell: bool) -> str:
    if code < 0:
        return f"killed by signal {-code}"
    if shell and code == 127:
        return "exit status 127 (command not found)"
    return f"exit status {code}"


def _supervise(
    process: subprocess.Popen[bytes], log: object, attempt: Attempt, started: float
) -> tuple[str | None, int, bool]:
    """Copy output to the log (up to the cap) until the command and its output end."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.set_blocking(fd, False)
    write = log.write  # type: ignore[attr-defined]
    cap, written, seen = attempt.output_cap_bytes, 0, 0
    deadline = started + attempt.timeout if attempt.timeout is not None else None
    stopped_by: str | None = None
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            wait = 0.1
            now = time.monotonic()
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            if exited_at is not None:
                wait = min(wait, max(0.0, exited_at + _LINGER_SECONDS - now))
            if selector.select(wait):
                try:
                    chunk: bytes | None = os.read(fd, _CHUNK)
                except BlockingIOError:
                    chunk = None  # a spurious wake-up
                if chunk == b"":
                    break  # every writer closed the pipe
                if chunk:
                    seen += len(chunk)
                    if written < cap:
                        kept = chunk[: cap - written]
                        write(kept)
                        written += len(kept)
            now = time.monotonic()
            if exited_at is None and _exited(process.pid):
                exited_at = now
            if exited_at is not None and now >= exited_at + _LINGER_SECONDS:
                break  # only children left behind hold the pipe: they are stopped next
            if stopped_by is None and deadline is not None and now >= deadline:
                stopped_by = "timeout"
            if stopped_by is None and attempt.stop.is_set():
                stopped_by = "stop"
            if stopped_by is not None:
                stop_group(process.pid, attempt.kill_grace_seconds)
                exited_at = exited_at or time.monotonic()
    truncated = seen > written
    if truncated:
        write(
            f"\n[stoic: output cut at {cap} bytes; {seen - written} more bytes"
            " were discarded]\n".encode()
        )
    return stopped_by, written, truncated


def _exited(pid: int) -> bool:
    """Whether the command has exited, without reaping it (its group stays addressable)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None
