"""The HTTP executor: one request through httpx; 2xx succeeds, everything else is a Failure."""

from __future__ import annotations

import email.utils
import os
import threading
import time
from datetime import UTC, datetime

import httpx

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.plan.models import HttpRequest
from stoic.run.attempt import Attempt, AttemptResult

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
    """One attempt of an HTTP task: the call runs in a thread that wakes the loop when done.

    httpx calls block, and an HTTP attempt ends by its own timeout: `stop` takes effect when
    the call returns.
    """

    def __init__(self, request: HttpRequest, attempt: Attempt) -> None:
        self._read, self._write = os.pipe()
        self._result: AttemptResult | None = None
        self._outcome: AttemptResult | None = None
        self._thread = threading.Thread(
            target=self._call, args=(request, attempt), name=f"stoic-http-{attempt.task_id}"
        )
        self._thread.start()

    def _call(self, request: HttpRequest, attempt: Attempt) -> None:
        try:
            self._outcome = call_http(request, attempt)
        except Exception as exc:  # reported as the attempt's failure, never lost
            failure = Failure(FailureKind.ERROR, f"{type(exc).__name__}: {exc}")
            self._outcome = AttemptResult(failure=failure, duration_s=0.0)
        finally:
            os.write(self._write, b"x")

    @property
    def result(self) -> AttemptResult | None:
        return self._result

    def fds(self) -> list[int]:
        return [] if self._result is not None else [self._read]

    def deadline(self) -> float | None:
        return None

    def on_ready(self, fd: int) -> None:
        self._thread.join()
        os.close(self._read)
        os.close(self._write)
        assert self._outcome is not None
        self._result = self._outcome

    def tick(self, now: float) -> None:
        del now

    def stop(self) -> None:
        """Nothing to do: the call ends by its timeout (30 s unless the task says)."""


def call_http(request: HttpRequest, attempt: Attempt) -> AttemptResult:
    """Make the request of one attempt, the response body going to the attempt's log."""
    attempt.log_path.parent.mkdir(parents=True, exist_ok=True)
    limit = request.timeout or attempt.timeout or DEFAULT_HTTP_TIMEOUT
    if attempt.timeout is not None:
        limit = min(limit, attempt.timeout)
    shown = f"{request.method} {request.url}"
    started = time.monotonic()
    content = request.body.encode() if request.body is not None else None
    try:
        with httpx.Client(timeout=limit, follow_redirects=False) as client:
            response = client.request(
                request.method,
                request.url,
                headers=request.headers,
                json=request.json_body if request.body is None else None,
                content=content,
            )
    except httpx.ConnectError as exc:
        failure = Failure(FailureKind.UNAVAILABLE, f"cannot connect: {exc}", partial=Partial.FALSE)
        return _ended(failure, started, shown, attempt, b"")
    except httpx.ConnectTimeout:
        failure = Failure(
            FailureKind.TIMEOUT, f"no connection within {limit:g}s", partial=Partial.FALSE
        )
        return _ended(failure, started, shown, attempt, b"")
    except httpx.TimeoutException:
        failure = Failure(FailureKind.TIMEOUT, f"no response within {limit:g}s")
        return _ended(failure, started, shown, attempt, b"")
    except httpx.HTTPError as exc:
        failure = Failure(FailureKind.ERROR, f"{type(exc).__name__}: {exc}")
        return _ended(failure, started, shown, attempt, b"")
    status = response.status_code
    body = response.content
    if 200 <= status < 300:
        return _ended(None, started, shown, attempt, body, status)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
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
        f"HTTP {status} {response.reason_phrase}".strip(),
        partial=partial,
        retry_after_s=retry_after if status in (429, 503) else None,
        http_status=status,
    )
    return _ended(refusal, started, shown, attempt, body, status)


def _ended(
    failure: Failure | None,
    started: float,
    shown: str,
    attempt: Attempt,
    body: bytes,
    status: int | None = None,
) -> AttemptResult:
    cap = attempt.output_cap_bytes
    with open(attempt.log_path, "wb") as log:  # noqa: PTH123
        if status is not None:
            log.write(f"HTTP {status}\n".encode())
        log.write(body[:cap])
        if len(body) > cap:
            log.write(f"\n[stoic: output cut at {cap} bytes]\n".encode())
    return AttemptResult(
        failure=failure,
        duration_s=time.monotonic() - started,
        output_bytes=min(len(body), cap),
        output_truncated=len(body) > cap,
        value={"http_status": status} if status is not None else None,
        command=shown,
    )
