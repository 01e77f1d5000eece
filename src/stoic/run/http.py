"""The HTTP executor: one request through httpx; 2xx succeeds, everything else is a Failure."""

from __future__ import annotations

import email.utils
import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.plan.models import HttpRequest
from stoic.run.attempt import Attempt, AttemptResult
from stoic.run.http_call import BODY_OUTPUTS_CAP, CUT_NOTE_ROOM
from stoic.run.loop import drive
from stoic.run.python_pool import WorkerPool

__all__ = ["DEFAULT_HTTP_TIMEOUT", "HttpAttempt", "call_http", "parse_retry_after"]

DEFAULT_HTTP_TIMEOUT = 30.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP-date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class HttpAttempt:
    """One attempt of an HTTP task: the call runs in a pooled worker process.

    The worker is a process, not a thread, so the attempt's limit is a deadline on the whole
    call (connection, headers and body together): when it passes, or the run is stopped, the
    worker is ended like any Python task's, however slowly the server trickles its answer.
    The body is streamed into the attempt's log up to the cap and never held in memory.
    """

    def __init__(self, request: HttpRequest, attempt: Attempt, pool: WorkerPool) -> None:
        limit = request.timeout or attempt.timeout or DEFAULT_HTTP_TIMEOUT
        if attempt.timeout is not None:
            limit = min(limit, attempt.timeout)
        self.shown = f"{request.method} {request.url}"
        self._result: AttemptResult | None = None
        params = {
            "method": request.method,
            "url": request.url,
            "headers": dict(request.headers),
            "json_body": request.json_body,
            "body": request.body,
            "timeout": limit,
            "cap": attempt.output_cap_bytes,
        }
        inner = replace(
            attempt, timeout=limit, output_cap_bytes=attempt.output_cap_bytes + CUT_NOTE_ROOM
        )
        self._call = pool.start(_CALL, params, inner, trusted=True)

    @property
    def result(self) -> AttemptResult | None:
        if self._result is None and self._call.result is not None:
            self._result = _judged(self._call.result, self.shown)
        return self._result

    @property
    def fd_source(self) -> object:
        """The worker's, as a Python task's: its pipes stay watched from one attempt to the
        next, and are told apart from another worker's whose descriptors took their numbers."""
        return self._call.fd_source

    def fds(self) -> list[int]:
        return self._call.fds()

    def deadline(self) -> float | None:
        return self._call.deadline()

    def on_ready(self, fd: int) -> None:
        self._call.on_ready(fd)

    def tick(self, now: float) -> None:
        self._call.tick(now)

    def stop(self) -> None:
        self._call.stop()


_CALL = "stoic.run.http_call:perform"


def call_http(
    request: HttpRequest, attempt: Attempt, stop: threading.Event | None = None
) -> AttemptResult:
    """Make the request of one attempt to its end, in a worker of its own."""
    pool = WorkerPool(1)
    try:
        return drive(HttpAttempt(request, attempt, pool), stop)
    finally:
        pool.close()


def _judged(ended: AttemptResult, shown: str) -> AttemptResult:
    """The worker's account of the response, as the attempt's result (DESIGN §7)."""
    answer = ended.outputs if ended.failure is None else None
    if not isinstance(answer, dict):  # the deadline, a stop, a crash or a log that failed
        return replace(ended, value=None, outputs=None, command=shown)
    status = answer.get("status")
    value: dict[str, Any] | None = {"http_status": status} if isinstance(status, int) else None
    if value is not None and answer.get("body_over_cap"):
        value["outputs_note"] = (
            f"the body was over {BODY_OUTPUTS_CAP // (1024 * 1024)} MiB, so it is not the"
            " task's outputs"
        )
    cut = ended.output_truncated or bool(answer.get("cut"))
    result = replace(
        ended, value=value, outputs=answer.get("body"), command=shown, output_truncated=cut
    )
    if "failure" in answer:
        failure = Failure(
            FailureKind(answer["failure"]),
            str(answer["message"]),
            partial=Partial.of(answer.get("partial")),
            http_status=status if isinstance(status, int) else None,
        )
        return replace(result, failure=failure)
    assert isinstance(status, int)
    if 200 <= status < 300:
        return result
    retry_after = parse_retry_after(answer.get("retry_after"))
    if status == 429:
        kind, partial = FailureKind.RATE_LIMITED, Partial.FALSE
    elif status == 503:
        kind, partial = FailureKind.UNAVAILABLE, Partial.FALSE
    elif status in (408, 504):
        kind, partial = FailureKind.TIMEOUT, Partial.UNKNOWN
    elif 400 <= status < 500:
        kind, partial = FailureKind.ERROR, Partial.FALSE
    else:
        kind, partial = FailureKind.ERROR, Partial.UNKNOWN
    refusal = Failure(
        kind,
        f"HTTP {status} {answer.get('reason') or ''}".strip(),
        partial=partial,
        retry_after_s=retry_after if status in (429, 503) else None,
        http_status=status,
    )
    return replace(result, failure=refusal)
