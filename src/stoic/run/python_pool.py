"""The Python executor: a pool of worker processes that a crashing task cannot take down."""

from __future__ import annotations

import contextlib
import os
import queue
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.run.attempt import Attempt, AttemptResult, combine, read_result_file
from stoic.run.process import stop_group
from stoic.run.worker import read_frame, write_frame

__all__ = ["WorkerPool"]


@dataclass(slots=True)
class _Worker:
    process: subprocess.Popen[bytes]
    request_fd: int
    reply_fd: int

    @classmethod
    def start(cls) -> _Worker:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "stoic.run.worker", str(request_read), str(reply_write)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(request_read, reply_write),
            start_new_session=True,
        )
        os.close(request_read)
        os.close(reply_write)
        return cls(process, request_write, reply_read)

    def close(self, grace_seconds: float = 0) -> None:
        for fd in (self.request_fd, self.reply_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.process.poll() is None:
            stop_group(self.process.pid, grace_seconds)
        self.process.wait()


class WorkerPool:
    """Up to `size` worker processes, started on first use; a dead worker is replaced."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._started = 0
        self._lock = threading.Lock()
        self._all: list[_Worker] = []
        self.replaced = 0

    def _checkout(self) -> _Worker:
        while True:
            try:
                return self._idle.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if self._started < self.size:
                    self._started += 1
                    worker = _Worker.start()
                    self._all.append(worker)
                    return worker
            with contextlib.suppress(queue.Empty):
                return self._idle.get(timeout=0.05)

    def _retire(self, worker: _Worker, grace_seconds: float) -> None:
        worker.close(grace_seconds)
        with self._lock:
            self._started -= 1
            self._all.remove(worker)
            self.replaced += 1

    def run(self, call: str, params: dict[str, Any], attempt: Attempt) -> AttemptResult:
        """Run one attempt of a Python task in a worker; never raises for what the task does."""
        attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
        worker = self._checkout()
        started = time.monotonic()
        request = {
            "call": call,
            "params": params,
            "plan_dir": str(attempt.plan_dir),
            "env": attempt.stoic_env(),
            "log": str(attempt.log_path),
        }
        try:
            write_frame(worker.request_fd, request)
        except OSError:
            self._retire(worker, 0)
            return self._crashed(call, started, "the worker process was gone before the call")
        deadline = started + attempt.timeout if attempt.timeout is not None else None
        while True:
            wait = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            ready, _, _ = select.select([worker.reply_fd], [], [], wait)
            if ready:
                break
            if attempt.stop.is_set():
                self._retire(worker, attempt.kill_grace_seconds)
                failure = Failure(FailureKind.INTERRUPTED, "stopped by the runner")
                return self._ended(failure, started, call, attempt)
            if deadline is not None and time.monotonic() >= deadline:
                self._retire(worker, attempt.kill_grace_seconds)
                failure = Failure(FailureKind.TIMEOUT, f"timed out after {attempt.timeout:g}s")
                return self._ended(failure, started, call, attempt)
        try:
            reply = read_frame(worker.reply_fd)
        except (OSError, ValueError):
            reply = None
        if reply is None:
            code = worker.process.wait()
            self._retire(worker, 0)
            how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            return self._crashed(call, started, f"the worker process {how} during the task")
        self._idle.put(worker)
        if reply["ok"]:
            return self._ended(None, started, call, attempt, value=reply.get("value"))
        failure = Failure(
            kind=FailureKind(reply["kind"]),
            message=str(reply["message"]),
            partial=Partial.of(reply.get("partial")),
            retry_after_s=reply.get("retry_after_s"),
        )
        return self._ended(failure, started, call, attempt)

    def _ended(
        self,
        failure: Failure | None,
        started: float,
        call: str,
        attempt: Attempt,
        value: Any = None,
    ) -> AttemptResult:
        result = read_result_file(attempt.result_path)
        try:
            size = attempt.log_path.stat().st_size
        except OSError:
            size = 0
        return AttemptResult(
            failure=combine(failure, result),
            duration_s=time.monotonic() - started,
            output_bytes=size,
            result=result,
            value=value,
            command=call,
        )

    @staticmethod
    def _crashed(call: str, started: float, message: str) -> AttemptResult:
        failure = Failure(FailureKind.CRASH, message)
        return AttemptResult(failure=failure, duration_s=time.monotonic() - started, command=call)

    def close(self) -> None:
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            worker.close()
