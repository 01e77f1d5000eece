"""The shell executor: a command in its own process group, output streamed to a capped log."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.policy import StreamMask
from stoic.core.text import shortened
from stoic.run.attempt import Attempt, AttemptResult, combine, read_result_file, read_tail
from stoic.run.loop import drive
from stoic.run.task_outputs import inputs_path, retire_inputs
from stoic.run.task_user import TaskUser
from stoic.store.confined import LinkRefused, open_confined

__all__ = ["OutputLog", "ShellAttempt", "read_available", "run_command"]

_CHUNK = 64 * 1024
_LINGER_SECONDS = 0.05
"""After the command exits, how long output from children it left behind is still read."""


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


class OutputLog:
    """An attempt's log: created at the first byte of output, kept up to a cap.

    A log that cannot be written (a link or a file in its way, a full or read-only disk, a file
    size limit) never raises into the runner: `error` says why, later output is only counted,
    and the attempt that owns the log ends as a failure for it.
    """

    def __init__(
        self, path: Path, cap: int, root: Path, masks: Mapping[str, str] | None = None
    ) -> None:
        self.path = path
        self.cap = cap
        self.root = root
        self._mask = StreamMask(masks) if masks else None
        """Secrets never reach the log, even split across two reads of the pipe."""
        self.written = 0
        self.seen = 0
        self.error: str | None = None
        self._fd: int | None = None

    def write(self, chunk: bytes) -> None:
        if self._mask is not None:
            chunk = self._mask.feed(chunk)
        self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        if not chunk:
            return  # a silent task leaves no log
        self.seen += len(chunk)
        if self.error is not None or self.written >= self.cap:
            return
        kept = chunk[: self.cap - self.written]
        try:
            if self._fd is None:
                # O_EXCL: an attempt's log is new; one already there is evidence, or a hard
                # link planted to have stoic overwrite another file, and is never truncated.
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
                self._fd = open_confined(self.root, self.path, flags, create_parents=True)
            _keep_room(self._fd, len(kept))
            view = memoryview(kept)
            while view:  # a short write (a size limit, a full disk) is counted as it is
                written = os.write(self._fd, view)
                if written == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                self.written += written
                view = view[written:]
        except OSError as exc:
            self.error = f"cannot write the attempt log {self.path}: {exc.strerror or exc}"
            if isinstance(exc, LinkRefused):
                self.error = f"cannot write the attempt log: {exc.strerror}"
            elif isinstance(exc, FileExistsError):
                found = "a link" if self.path.is_symlink() else "a file"
                self.error = (
                    f"cannot write the attempt log {self.path}: {found} is already there"
                    " (stoic never writes over or through one; move it away)"
                )

    @property
    def truncated(self) -> bool:
        return self.seen > self.written

    def close(self) -> None:
        if self._mask is not None:
            mask, self._mask = self._mask, None
            self._keep(mask.flush())
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.truncated and self.error is None:
                note = (
                    f"\n[stoic: output cut at {self.cap} bytes;"
                    f" {self.seen - self.written} more bytes were discarded]\n"
                )
                os.write(fd, note.encode())
        except OSError as exc:
            self.error = f"cannot write the attempt log {self.path}: {exc.strerror or exc}"
        finally:
            os.close(fd)

    def failure(self, exit_code: int | None, *, stopped: bool) -> Failure:
        """The failure of an attempt whose log could not be written."""
        assert self.error is not None
        return Failure(
            FailureKind.ERROR,
            f"{self.error}; the task was stopped" if stopped else self.error,
            partial=Partial.UNKNOWN,
            exit_code=exit_code,
        )


RECORDS_ROOM = 1024 * 1024
"""Bytes of the workspace's disk an attempt log never takes: the records of its end (and the
state files they update) need them, so a full disk fails the attempt on record."""


def _keep_room(fd: int, size: int) -> None:
    disk = os.fstatvfs(fd)
    if disk.f_blocks and disk.f_bavail * disk.f_frsize < size + RECORDS_ROOM:
        raise OSError(
            errno.ENOSPC,
            f"the disk is (almost) full: stoic keeps its last {RECORDS_ROOM // 1024} KiB for the"
            " records",
        )


def read_available(fd: int, log: OutputLog) -> bool:
    """Copy what the pipe holds now into the log; False once the pipe is closed."""
    try:
        chunk = os.read(fd, _CHUNK)
    except BlockingIOError:
        return True
    if not chunk:
        return False
    log.write(chunk)
    return True


class ShellAttempt:
    """One attempt of a shell task, driven by the event loop."""

    def __init__(
        self,
        command: Sequence[str] | str,
        attempt: Attempt,
        *,
        shell: bool,
        base_env: Mapping[bytes, bytes] | None = None,
        stdin_fd: int | None = None,
        user: TaskUser | None = None,
        alone: bool = False,
    ) -> None:
        self.attempt = attempt
        self._alone = alone
        """This process is the whole attempt (no stage runs after it): at its end, its inputs
        file is retired, for the next attempt's to be written into."""
        self.argv: list[str] = (
            ["/bin/sh", "-c", str(command)] if shell else [str(part) for part in command]
        )
        self.shown = command if isinstance(command, str) else shlex.join(command)
        self.shell = shell
        self.started = time.monotonic()
        self._result: AttemptResult | None = None
        self._output = OutputLog(
            attempt.log_path, attempt.output_cap_bytes, attempt.workspace_root, attempt.masks
        )
        self._stopped_by: str | None = None
        self._exited_at: float | None = None
        self._kill_at: float | None = None
        self._pipe: int | None = None
        self._pidfd: int | None = None
        env = dict(base_env if base_env is not None else os.environb)
        for name, value in attempt.stoic_env().items():
            env[name.encode()] = value.encode()
        if user is not None:
            env.update(user.environment())
        self._as_user: subprocess.Popen[bytes] | None = None
        """The process, when it was started as the task user (Popen can change user)."""
        read_end, write_end = os.pipe()
        own_stdin = stdin_fd is None
        stdin = os.open(os.devnull, os.O_RDONLY) if stdin_fd is None else stdin_fd
        try:
            if user is None:
                self.pid = _spawn(self.argv, env, attempt.plan_dir, stdin, write_end)
            else:
                self._as_user = _spawn_as(self.argv, env, attempt.plan_dir, stdin, write_end, user)
                self.pid = self._as_user.pid
        except OSError as exc:
            os.close(read_end)
            if isinstance(exc, _NoFolder):
                message = str(exc.strerror)
            elif isinstance(exc, FileNotFoundError):
                message = f"command not found: {self.argv[0]}"
            elif isinstance(exc, PermissionError):
                message = f"command not executable: {self.argv[0]}"
            else:
                message = f"cannot start {self.argv[0]}: {exc.strerror or exc}"
            failure = Failure(FailureKind.ERROR, message, partial=Partial.FALSE)
            self._result = AttemptResult(failure=failure, duration_s=0.0, command=self.shown)
            return
        finally:
            os.close(write_end)
            if own_stdin:
                os.close(stdin)
        self._pipe = read_end
        os.set_blocking(self._pipe, False)
        self._pidfd = os.pidfd_open(self.pid)
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
        if self._result is not None:
            return
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
        if not read_available(self._pipe, self._output):
            os.close(self._pipe)
            self._pipe = None
        if self._output.error is not None and self._stopped_by is None:
            self._begin_stop("log")  # output that cannot be kept is not run unwatched

    def tick(self, now: float) -> None:
        if self._kill_at is not None and now >= self._kill_at:
            _signal_group(self.pid, signal.SIGKILL)
            self._kill_at = None
        if self._stopped_by is None and self._deadline is not None and now >= self._deadline:
            self._begin_stop("timeout")
        self._maybe_finish()

    def stop(self) -> None:
        if self._result is None and self._stopped_by is None:
            self._begin_stop("stop")

    def _begin_stop(self, why: str) -> None:
        self._stopped_by = why
        _signal_group(self.pid, signal.SIGTERM)
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
        _signal_group(self.pid, signal.SIGKILL)
        code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        if self._as_user is not None:
            self._as_user.returncode = code  # reaped here; Popen must not wait for it again
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        self._output.close()
        attempt = self.attempt
        inputs = attempt.env.get("STOIC_INPUTS")
        if self._alone and inputs is not None and attempt.results_fd is not None:
            given = inputs_path(
                attempt.workspace_root, attempt.run_id, attempt.task_id, attempt.attempt
            )
            if inputs == str(given):
                retire_inputs(attempt.results_fd, given)
        result = read_result_file(attempt.workspace_root, attempt.result_path, attempt.results_fd)
        failure: Failure | None = None
        if self._stopped_by == "timeout":
            failure = Failure(
                FailureKind.TIMEOUT, f"timed out after {self.attempt.timeout:g}s", exit_code=code
            )
        elif self._stopped_by == "stop":
            failure = Failure(FailureKind.INTERRUPTED, "stopped by the runner", exit_code=code)
        elif code != 0:
            failure = Failure(FailureKind.ERROR, self._exit_message(code), exit_code=code)
        failure = combine(failure, result)
        if self._output.error is not None and self._stopped_by != "stop":
            # stoic's own failure: what the task says of itself does not change it
            failure = self._output.failure(code, stopped=self._stopped_by == "log")
        self._result = AttemptResult(
            failure=failure,
            duration_s=time.monotonic() - self.started,
            exit_code=code,
            output_bytes=self._output.written,
            output_truncated=self._output.truncated,
            result=result,
            command=self.shown,
            log_error=self._output.error,
        )

    def _exit_message(self, code: int) -> str:
        if code < 0:
            return f"killed by signal {-code}"
        meaning = _SHELL_STATUSES.get(code) if self.shell or _runs_a_shell(self.argv) else None
        if meaning is None:
            return f"exit status {code}"
        said = _shell_said(read_tail(self.attempt.workspace_root, self.attempt.log_path, 4096))
        return (
            f"exit status {code} ({meaning}: {said})" if said else f"exit status {code} ({meaning})"
        )


_SHELL_STATUSES = {127: "command not found", 126: "command not executable"}
"""What a POSIX shell means by these statuses: it could not find, or could not run, a command."""
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash"})


def _runs_a_shell(argv: Sequence[str]) -> bool:
    """`["bash", "-c", "…"]` is a shell string too: its 127 means what `sh -c`'s does."""
    return len(argv) > 2 and Path(argv[0]).name in _SHELLS and argv[1] == "-c"


def _shell_said(tail: str) -> str | None:
    """The shell's own line about the command it could not run (`sh: 1: deploy: not found`)."""
    for line in reversed(tail.splitlines()):
        if line.rstrip().endswith(("not found", "Permission denied", "Is a directory")):
            return shortened(line.strip(), 120)
    return None


def _spawn(argv: list[str], env: Mapping[bytes, bytes], cwd: Path, stdin: int, out: int) -> int:
    """Start `argv` in a new session with stdin, stdout and stderr set; returns its pid.

    posix_spawn does in one call what Popen does in many; it has no working-directory
    argument, so the runner's thread (the only one that starts processes) steps into the
    plan's folder for the moment of the spawn.
    """
    actions = [
        (os.POSIX_SPAWN_DUP2, stdin, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, out, 2),
    ]
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            os.chdir(cwd)
        except OSError as exc:
            raise _NoFolder(exc.errno, f"cannot enter {cwd}: {exc.strerror}") from None
        try:
            return os.posix_spawnp(
                argv[0], argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULTED
            )
        finally:
            os.fchdir(here)
    finally:
        os.close(here)


def _spawn_as(
    argv: list[str], env: Mapping[bytes, bytes], cwd: Path, stdin: int, out: int, user: TaskUser
) -> subprocess.Popen[bytes]:
    """The same, as the task user: its uid, its group, no supplementary groups of the runner."""
    try:
        return subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=out,
            stderr=out,
            cwd=cwd,
            env=env,
            start_new_session=True,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
        )
    except OSError as exc:
        if exc.filename == str(cwd):
            raise _NoFolder(
                exc.errno, f"cannot enter {cwd} as {user.name}: {exc.strerror}"
            ) from None
        raise


_DEFAULTED = tuple(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})
"""Every signal at its default in a task, none ignored as stoic ignores SIGPIPE and SIGXFSZ (a
task in a pipeline ends at a closed pipe, as in a terminal). Named, each is set once; else the
child asks after every signal before it sets it, which doubles what posix_spawn costs there."""


class _NoFolder(OSError):
    pass


def run_command(
    command: Sequence[str] | str,
    attempt: Attempt,
    *,
    shell: bool,
    stop: threading.Event | None = None,
) -> AttemptResult:
    """Run one attempt of a shell task to its end; never raises for what the command does.

    Setting `stop` stops it (it ends as interrupted).
    """
    return drive(ShellAttempt(command, attempt, shell=shell), stop)
