"""The shell executor: a command in its own process group, output streamed to a capped log."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Sequence

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.run.attempt import Attempt, AttemptResult, combine, read_result_file
from stoic.run.loop import drive

__all__ = ["ShellAttempt", "run_command"]

_CHUNK = 64 * 1024
_LINGER_SECONDS = 0.05
"""After the command exits, how long output from children it left behind is still read."""


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class ShellAttempt:
    """One attempt of a shell task, driven by the event loop."""

    def __init__(self, command: Sequence[str] | str, attempt: Attempt, *, shell: bool) -> None:
        self.attempt = attempt
        self.argv: list[str] = (
            ["/bin/sh", "-c", str(command)] if shell else [str(part) for part in command]
        )
        self.shown = command if isinstance(command, str) else shlex.join(command)
        self.shell = shell
        self.started = time.monotonic()
        self._result: AttemptResult | None = None
        self._written = 0
        self._seen = 0
        self._stopped_by: str | None = None
        self._exited_at: float | None = None
        self._kill_at: float | None = None
        self._pipe: int | None = None
        self._pidfd: int | None = None
        self._log = os.open(attempt.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **attempt.stoic_env()},
                cwd=attempt.plan_dir,
            )
        except OSError as exc:
            os.close(self._log)
            if isinstance(exc, FileNotFoundError) and exc.filename in (self.argv[0], None):
                message = f"command not found: {self.argv[0]}"
            elif isinstance(exc, PermissionError):
                message = f"command not executable: {self.argv[0]}"
            else:
                message = f"cannot start {self.argv[0]}: {exc.strerror or exc}"
            failure = Failure(FailureKind.ERROR, message, partial=Partial.FALSE)
            self._result = AttemptResult(failure=failure, duration_s=0.0, command=self.shown)
            return
        assert self.process.stdout is not None
        self._pipe = self.process.stdout.fileno()
        os.set_blocking(self._pipe, False)
        self._pidfd = os.pidfd_open(self.process.pid)
        self._deadline = self.started + attempt.timeout if attempt.timeout is not None else None

    @property
    def result(self) -> AttemptResult | None:
        return self._result

    def fds(self) -> list[int]:
        return [fd for fd in (self._pipe, self._pidfd) if fd is not None]

    def deadline(self) -> float | None:
        if self._result is not None:
            return None
        moments = [
            moment
            for moment in (
                self._deadline if self._stopped_by is None else None,
                self._exited_at + _LINGER_SECONDS if self._exited_at is not None else None,
                self._kill_at,
            )
            if moment is not None
        ]
        return min(moments) if moments else None

    def on_ready(self, fd: int) -> None:
        if fd == self._pidfd:
            self._note_exit()
        elif fd == self._pipe:
            self._read_output()
        self._maybe_finish()

    def _note_exit(self) -> None:
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._exited_at is None:
            self._exited_at = time.monotonic()

    def _read_output(self) -> None:
        assert self._pipe is not None
        try:
            chunk = os.read(self._pipe, _CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self.process.stdout.close()  # type: ignore[union-attr]
            self._pipe = None
            return
        self._seen += len(chunk)
        cap = self.attempt.output_cap_bytes
        if self._written < cap:
            kept = chunk[: cap - self._written]
            os.write(self._log, kept)
            self._written += len(kept)

    def tick(self, now: float) -> None:
        if self._kill_at is not None and now >= self._kill_at:
            _signal_group(self.process.pid, signal.SIGKILL)
            self._kill_at = None
        if self._stopped_by is None and self._deadline is not None and now >= self._deadline:
            self._begin_stop("timeout")
        self._maybe_finish()

    def stop(self) -> None:
        if self._result is None and self._stopped_by is None:
            self._begin_stop("stop")

    def _begin_stop(self, why: str) -> None:
        self._stopped_by = why
        _signal_group(self.process.pid, signal.SIGTERM)
        self._kill_at = time.monotonic() + self.attempt.kill_grace_seconds

    def _maybe_finish(self) -> None:
        if self._result is not None or self._exited_at is None:
            return
        if self._pipe is not None and time.monotonic() < self._exited_at + _LINGER_SECONDS:
            return  # the command is gone; output may still be draining
        self._finish()

    def _finish(self) -> None:
        # Children the command left behind die with the attempt; the leader is not reaped
        # yet, so the group id cannot have been reused.
        _signal_group(self.process.pid, signal.SIGKILL)
        code = self.process.wait()
        if self._pipe is not None:
            self.process.stdout.close()  # type: ignore[union-attr]
            self._pipe = None
        truncated = self._seen > self._written
        if truncated:
            note = (
                f"\n[stoic: output cut at {self.attempt.output_cap_bytes} bytes;"
                f" {self._seen - self._written} more bytes were discarded]\n"
            )
            os.write(self._log, note.encode())
        os.close(self._log)
        failure: Failure | None = None
        if self._stopped_by == "timeout":
            failure = Failure(
                FailureKind.TIMEOUT, f"timed out after {self.attempt.timeout:g}s", exit_code=code
            )
        elif self._stopped_by == "stop":
            failure = Failure(FailureKind.INTERRUPTED, "stopped by the runner", exit_code=code)
        elif code != 0:
            failure = Failure(FailureKind.ERROR, self._exit_message(code), exit_code=code)
        result = read_result_file(self.attempt.result_path)
        self._result = AttemptResult(
            failure=combine(failure, result),
            duration_s=time.monotonic() - self.started,
            exit_code=code,
            output_bytes=self._written,
            output_truncated=truncated,
            result=result,
            command=self.shown,
        )

    def _exit_message(self, code: int) -> str:
        if code < 0:
            return f"killed by signal {-code}"
        if self.shell and code == 127:
            return "exit status 127 (command not found)"
        return f"exit status {code}"


def run_command(command: Sequence[str] | str, attempt: Attempt, *, shell: bool) -> AttemptResult:
    """Run one attempt of a shell task to its end; never raises for what the command does."""
    attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
    return drive(ShellAttempt(command, attempt, shell=shell), attempt.stop)
