"""The Python executor: a pool of worker processes that a crashing task cannot take down."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from stoic.core.escalations import EscalationRequest
from stoic.core.failure import Failure, FailureKind, Partial
from stoic.run.attempt import Attempt, AttemptResult, combine, read_result_file
from stoic.run.loop import drive
from stoic.run.shell import OutputLog, read_available
from stoic.run.task_user import TaskUser
from stoic.run.worker import read_frame, write_frame

__all__ = ["PythonAttempt", "WorkerPool"]


@dataclass(slots=True)
class _Worker:
    process: subprocess.Popen[bytes]
    request_fd: int
    reply_fd: int
    output_fd: int
    """The worker's stdout and stderr."""

    @classmethod
    def start(
        cls, env: Mapping[bytes, bytes] | None = None, user: TaskUser | None = None
    ) -> _Worker:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        output_read, output_write = os.pipe()
        process = subprocess.Popen(
            # -P: the folder stoic was started from is not on the worker's import path.
            [sys.executable, "-P", "-m", "stoic.run.worker", str(request_read), str(reply_write)],
            stdin=subprocess.DEVNULL,
            stdout=output_write,
            stderr=output_write,
            pass_fds=(request_read, reply_write),
            start_new_session=True,
            env=env if user is None else {**(env or {}), **user.environment()},
            user=user.uid if user is not None else None,
            group=user.gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )
        for fd in (request_read, reply_write, output_write):
            os.close(fd)
        os.set_blocking(output_read, False)
        return cls(process, request_write, reply_read, output_read)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def close(self) -> None:
        for fd in (self.request_fd, self.reply_fd, self.output_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
        self.process.wait()


class WorkerPool:
    """Up to `size` worker processes, started on first use; a dead worker is replaced."""

    def __init__(
        self,
        size: int,
        env: Mapping[bytes, bytes] | None = None,
        allowed_modules: Iterable[str] = (),
        user: TaskUser | None = None,
    ) -> None:
        self.size = size
        self.user = user
        self.env = dict(env) if env is not None else None
        self.allowed_modules = sorted(allowed_modules)
        """Packages `call:` may import besides the plan's folder (policy allowed_modules)."""
        self._idle: list[_Worker] = []
        self._busy = 0
        self.replaced = 0

    def checkout(self) -> _Worker:
        self._busy += 1
        if self._idle:
            return self._idle.pop()
        if self._busy > self.size:
            self._busy -= 1
            raise RuntimeError(f"all {self.size} workers are busy")
        return _Worker.start(self.env, self.user)

    def release(self, worker: _Worker) -> None:
        self._busy -= 1
        self._idle.append(worker)

    def retire(self, worker: _Worker) -> None:
        self._busy -= 1
        self.replaced += 1
        worker.close()

    def start(
        self, call: str, params: dict[str, Any], attempt: Attempt, *, trusted: bool = False
    ) -> PythonAttempt:
        """`trusted`: a call of stoic's own, imported without the plan's folder on the path."""
        return PythonAttempt(self, call, params, attempt, trusted=trusted)

    def run(
        self,
        call: str,
        params: dict[str, Any],
        attempt: Attempt,
        stop: threading.Event | None = None,
    ) -> AttemptResult:
        """Run one attempt to its end; never raises for what the task does."""
        return drive(self.start(call, params, attempt), stop)

    def close(self) -> None:
        workers, self._idle = self._idle, []
        for worker in workers:
            worker.close()


class PythonAttempt:
    """One attempt of a Python task in a pooled worker, driven by the event loop."""

    def __init__(
        self,
        pool: WorkerPool,
        call: str,
        params: dict[str, Any],
        attempt: Attempt,
        *,
        trusted: bool = False,
    ) -> None:
        self.pool = pool
        self.call = call
        self.attempt = attempt
        self.started = time.monotonic()
        self._result: AttemptResult | None = None
        self._stopped_by: str | None = None
        self._kill_at: float | None = None
        self._steps = 0
        self._result_file = True
        """Whether the result file is looked for: unless the worker saw none at its place."""
        self._deadline = self.started + attempt.timeout if attempt.timeout is not None else None
        self._output = OutputLog(
            attempt.log_path, attempt.output_cap_bytes, attempt.workspace_root, attempt.masks
        )
        self.worker = pool.checkout()
        request: dict[str, Any] = {
            "call": call,
            "params": params,
            "plan_dir": str(attempt.plan_dir),
            "allowed_modules": pool.allowed_modules,
            "env": attempt.stoic_env(),
            "trusted": trusted,
        }
        if attempt.inputs is not None:
            request["inputs"] = attempt.inputs
        try:
            write_frame(self.worker.request_fd, request)
        except OSError:
            self.pool.retire(self.worker)
            self._crashed("the worker process was gone before the call")

    @property
    def result(self) -> AttemptResult | None:
        return self._result

    @property
    def fd_source(self) -> _Worker:
        """The worker's pipes serve attempt after attempt: the event loop keeps them watched."""
        return self.worker

    def fds(self) -> list[int]:
        return [] if self._result is not None else [self.worker.reply_fd, self.worker.output_fd]

    def deadline(self) -> float | None:
        if self._result is not None:
            return None
        if self._kill_at is not None:
            return self._kill_at
        return self._deadline if self._stopped_by is None else None

    def on_ready(self, fd: int) -> None:
        if self._result is not None:
            return  # the worker was retired while other news of it was pending
        if fd == self.worker.output_fd:
            read_available(fd, self._output)
            if self._output.error is not None and self._stopped_by is None:
                self._begin_stop("log")  # output that cannot be kept is not run unwatched
            return
        try:
            reply = read_frame(self.worker.reply_fd)
        except (OSError, ValueError):
            reply = None
        self._drain_output()
        if reply is None:
            code = self.worker.process.wait()
            self.pool.retire(self.worker)
            if self._stopped_by == "log":
                self._end(None)  # _end records why
            elif self._stopped_by == "timeout":
                failure = Failure(FailureKind.TIMEOUT, f"timed out after {self.attempt.timeout:g}s")
                self._end(failure)
            elif self._stopped_by == "stop":
                self._end(Failure(FailureKind.INTERRUPTED, "stopped by the runner"))
            else:
                how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
                self._crashed(f"the worker process {how} during the task")
            return
        if self.attempt.secrets:  # what its code kept of them (a client, a global) goes too
            self.pool.retire(self.worker)
        else:
            self.pool.release(self.worker)
        self._steps = int(reply.get("steps_completed", 0))
        self._result_file = reply.get("result_file") is not False
        if reply["ok"]:
            self._end(None, reply.get("value"))
            return
        failure = Failure(
            kind=FailureKind(reply["kind"]),
            message=str(reply["message"]),
            partial=Partial.of(reply.get("partial")),
            retry_after_s=reply.get("retry_after_s"),
        )
        if "escalate" in reply:
            try:
                request = EscalationRequest.from_json(reply["escalate"])
            except ValueError as exc:
                failure = Failure(
                    FailureKind.ERROR,
                    f"the task asked to escalate, but {exc}",
                    partial=failure.partial,
                )
            else:
                failure = replace(failure, escalation=request)
        self._end(failure)

    def tick(self, now: float) -> None:
        if self._kill_at is not None and now >= self._kill_at:
            self.worker.signal(signal.SIGKILL)
            self._kill_at = None
        elif self._stopped_by is None and self._deadline is not None and now >= self._deadline:
            self._begin_stop("timeout")

    def stop(self) -> None:
        if self._result is None and self._stopped_by is None:
            self._begin_stop("stop")

    def _begin_stop(self, why: str) -> None:
        self._stopped_by = why
        self.worker.signal(signal.SIGTERM)
        self._kill_at = time.monotonic() + self.attempt.kill_grace_seconds

    def _drain_output(self) -> None:
        """What the task printed before it replied is in the pipe already: take all of it."""
        while True:
            try:
                chunk = os.read(self.worker.output_fd, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self._output.write(chunk)

    def _end(self, failure: Failure | None, value: Any = None) -> None:
        self._output.close()
        attempt = self.attempt
        result = None
        if self._result_file:
            root, path = attempt.workspace_root, attempt.result_path
            result = read_result_file(root, path, attempt.results_fd)
        failure = combine(failure, result)
        if self._output.error is not None and self._stopped_by != "stop":
            # stoic's own failure: what the task says of itself does not change it
            failure = self._output.failure(None, stopped=self._stopped_by == "log")
        self._result = AttemptResult(
            failure=failure,
            duration_s=time.monotonic() - self.started,
            output_bytes=self._output.written,
            output_truncated=self._output.truncated,
            result=result,
            outputs=value,
            command=self.call,
            steps_completed=self._steps,
            log_error=self._output.error,
        )

    def _crashed(self, message: str) -> None:
        self._output.close()
        self._result = AttemptResult(
            failure=Failure(FailureKind.CRASH, message),
            duration_s=time.monotonic() - self.started,
            command=self.call,
        )
