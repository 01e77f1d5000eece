"""What an executor is given for one attempt and what it hands back."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from stoic.core.escalations import EscalationRequest
from stoic.core.failure import Deferral, Failure, FailureKind, Partial
from stoic.core.policy import MASKED_VARIABLE
from stoic.core.task_outputs import OUTPUTS_HARD_CAP, LongInteger, refuse_long_integers
from stoic.core.verification import VerificationOutcome
from stoic.store.confined import LinkRefused, open_at, open_confined

__all__ = [
    "Attempt",
    "AttemptResult",
    "ResultFile",
    "open_task_file",
    "parse_result_file",
    "read_result_file",
    "read_tail",
]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of one task: identity, where its files go, and its limits."""

    run_id: str
    request_id: str
    task_id: str
    attempt: int
    attempt_id: str
    log_path: Path
    result_path: Path
    workspace_root: Path
    """Every file of the attempt is below it, reached without following a link (DESIGN §3)."""
    plan_dir: Path
    timeout: float | None
    output_cap_bytes: int
    kill_grace_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    """The task's declared secrets (`secrets:`): in its own processes' environment only."""
    masks: dict[str, str] = field(default_factory=dict)
    """Secret values masked in what the attempt's processes print, by variable name."""
    inputs: dict[str, Any] | None = None
    """Its dependencies' outputs, by task id (a Python task's `inputs` parameter)."""
    results_fd: int | None = None
    """An open descriptor of the folder `result_path` is in, checked once for links by whoever
    opened it (the runner, for the run); None: the path is walked from the root each time."""

    def with_env(self, extra: dict[str, str]) -> Attempt:
        return replace(self, env={**self.env, **extra})

    def stoic_env(self) -> dict[str, str]:
        """The variables every task sees (DESIGN §7)."""
        return {
            **self.env,
            **self.secrets,
            "STOIC_RUN_ID": self.run_id,
            "STOIC_TASK_ID": self.task_id,
            "STOIC_ATTEMPT": str(self.attempt),
            "STOIC_RESULT": str(self.result_path),
            **({MASKED_VARIABLE: ",".join(sorted(self.secrets))} if self.secrets else {}),
        }


@dataclass(frozen=True, slots=True)
class ResultFile:
    """What a task wrote to `$STOIC_RESULT`, or why it could not be read."""

    data: dict[str, Any] | None = None
    error: str | None = None
    escalation: EscalationRequest | None = None
    """The decision the task handed to a person (`{"escalate": {…}}`)."""
    escalation_error: str | None = None
    """Why the task's escalation request cannot be raised (two questions, an unknown mode …)."""
    deferral: Deferral | None = None
    """The call its gated agent's session stopped on (`{"deferred": {…}}`, the gate's)."""

    @property
    def failure(self) -> Failure | None:
        """The failure the task reported about itself, if any."""
        reported = (self.data or {}).get("failure")
        if not isinstance(reported, dict):
            return None
        try:
            kind = FailureKind(reported.get("kind", "error"))
        except ValueError:
            kind = FailureKind.ERROR
        retry_after = reported.get("retry_after_s")
        steps = (self.data or {}).get("steps_completed")
        partial = reported.get("partial")
        return Failure(
            kind=kind,
            message=str(reported.get("message") or f"the task reported {kind.value}"),
            partial=Partial.of(partial if isinstance(partial, bool) else _steps_partial(steps)),
            retry_after_s=float(retry_after) if isinstance(retry_after, int | float) else None,
        )


def _steps_partial(steps: object) -> bool | None:
    return True if isinstance(steps, int) and steps > 0 else None


def parse_result_file(raw: bytes) -> ResultFile:
    """Parse a result file's bytes; a malformed file is kept as an error, never ignored."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return ResultFile(error=f"not valid JSON ({exc})")
    if not isinstance(data, dict):
        return ResultFile(error=f"a JSON object was expected, not {type(data).__name__}")
    try:
        refuse_long_integers(raw)
    except LongInteger as exc:
        return ResultFile(data=data, error=str(exc))
    rest = {k: v for k, v in data.items() if k != "outputs"}
    if len(raw) > RESULT_FILE_LIMIT and len(orjson.dumps(rest)) > RESULT_FILE_LIMIT:
        return ResultFile(
            error=f"over the {RESULT_FILE_LIMIT // 1024} KiB a result file may hold besides"
            " its `outputs` (a small JSON object; put bulky data in a file of its own)"
        )
    failure = data.get("failure")
    if failure is not None and not isinstance(failure, dict):
        return ResultFile(error='`failure` must be an object like {"kind": "timeout"}')
    if isinstance(failure, dict) and failure.get("kind") not in {k.value for k in FailureKind}:
        return ResultFile(data=data, error=f"unknown failure kind {failure.get('kind')!r}")
    steps = data.get("steps_completed")
    if steps is not None and (not isinstance(steps, int) or steps < 0):
        return ResultFile(data=data, error="`steps_completed` must be a whole number ≥ 0")
    if "deferred" in data:
        deferred = data["deferred"]
        ids = [deferred.get(k) if isinstance(deferred, dict) else None for k in _DEFERRAL_KEYS]
        if not all(isinstance(value, str) and value for value in ids):
            return ResultFile(data=data, error="`deferred` must name proposal_id and session_id")
        return ResultFile(data=data, deferral=Deferral(str(ids[0]), str(ids[1])))
    if "escalate" in data:
        try:
            request = EscalationRequest.from_json(data["escalate"])
        except ValueError as exc:
            return ResultFile(data=data, error=f"escalate: {exc}", escalation_error=str(exc))
        return ResultFile(data=data, escalation=request)
    return ResultFile(data=data)


_DEFERRAL_KEYS = ("proposal_id", "session_id")

RESULT_FILE_LIMIT = 64 * 1024
"""A result file is kept in its attempt's end record, so it is small (as a Python value) —
but for its `outputs`, which may be up to OUTPUTS_HARD_CAP and are kept on their own."""
_RESULT_READ_LIMIT = OUTPUTS_HARD_CAP + RESULT_FILE_LIMIT


def open_task_file(root: Path, path: Path, folder_fd: int | None = None) -> int:
    """Open, for reading, a file a task can write or replace (its result file, an attempt log):
    a plain file of its own only, so neither a link nor a hard link to another file is read
    in its place. `folder_fd`: the already checked folder `path` is in."""
    if folder_fd is None:
        fd = open_confined(root, path, os.O_RDONLY)
    else:
        fd = open_at(folder_fd, path, os.O_RDONLY)
    if os.fstat(fd).st_nlink != 1:
        os.close(fd)
        raise LinkRefused(
            errno.EMLINK, f"{path} is a hard link to another file (hint: move it away)"
        )
    return fd


def read_result_file(root: Path, path: Path, folder_fd: int | None = None) -> ResultFile | None:
    """The result file of an attempt, or None when the task wrote none.

    A link at its place (or on the way) is not followed: a task cannot have stoic read a file
    from elsewhere into the log. `folder_fd`: the already checked folder it is in (one open
    for the probe, instead of one per folder on the way).
    """
    try:
        fd = open_task_file(root, path, folder_fd)
    except FileNotFoundError:
        return None
    except LinkRefused as exc:
        return ResultFile(error=f"not read: {exc.strerror}")
    except OSError as exc:
        return ResultFile(error=f"unreadable ({exc.strerror})")
    try:
        size = os.fstat(fd).st_size
        if size > _RESULT_READ_LIMIT:  # never read a huge one
            return ResultFile(
                error=f"{size} bytes, over the {_RESULT_READ_LIMIT // 1024} KiB a result file"
                " may hold (a small JSON object; put bulky data in a file of its own)"
            )
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError as exc:
        return ResultFile(error=f"unreadable ({exc.strerror})")
    finally:
        os.close(fd)
    return parse_result_file(b"".join(chunks)[: _RESULT_READ_LIMIT + 1])


def read_tail(root: Path, path: Path, limit: int = 64 * 1024) -> str:
    """The last `limit` bytes of an attempt's log, as text ("" when it wrote nothing, or when
    what stands there is not the log stoic wrote: a link is never followed)."""
    try:
        fd = open_task_file(root, path)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - limit))
        return handle.read(limit).decode(errors="replace")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How an attempt ended."""

    failure: Failure | None
    duration_s: float
    exit_code: int | None = None
    output_bytes: int = 0
    output_truncated: bool = False
    result: ResultFile | None = None
    value: Any = None
    """What an HTTP task's response was (its status)."""
    outputs: Any = None
    """What the executor hands the task's dependents: a Python task's return value, an HTTP
    task's body (None: nothing; a result file's `outputs` is in `result`)."""
    sealed: dict[str, Any] | None = None
    """The outputs as the end record keeps them (`outputs`, or `outputs_file`)."""
    command: str = ""
    steps_completed: int = 0
    """Steps a Python task reported with `stoic.step_done()`."""
    iterations: tuple[dict[str, Any], ...] = ()
    """An iterate loop's checks, one per round."""
    verifications: tuple[VerificationOutcome, ...] = ()
    """What the task's verifiers said (each becomes its own record)."""
    summary: str | None = None
    """The completion summary from the task's `doc:`."""
    summary_error: str | None = None
    """Why the task's `doc:` gave no summary."""
    log_error: str | None = None
    """Why the attempt's log could not be written (the attempt failed for it)."""

    @property
    def succeeded(self) -> bool:
        return self.failure is None

    @property
    def outcome(self) -> str:
        """The outcome its end record names: succeeded, failed or interrupted."""
        if self.failure is None:
            return "succeeded"
        if self.failure.kind is FailureKind.INTERRUPTED:
            return "interrupted"
        return "failed"

    def details(self) -> dict[str, Any]:
        """What the end record keeps about the attempt, beyond the failure."""
        data: dict[str, Any] = {
            "duration_s": round(self.duration_s, 6),
            "output_bytes": self.output_bytes,
        }
        if self.exit_code is not None:
            data["exit_code"] = self.exit_code
        if self.output_truncated:
            data["output_truncated"] = True
        if self.result is not None:
            if self.result.data is not None:
                data["result"] = {k: v for k, v in self.result.data.items() if k != "outputs"}
            if self.result.error is not None:
                data["result_file_error"] = self.result.error
        if self.value is not None:
            data["value"] = self.value
        if self.sealed is not None:
            data.update(self.sealed)
        if self.steps_completed:
            data["steps_completed"] = self.steps_completed
        if self.iterations:
            data["iterations"] = list(self.iterations)
        if self.summary is not None:
            data["summary"] = self.summary
        if self.summary_error is not None:
            data["summary_error"] = self.summary_error
        if self.log_error is not None:
            data["log_error"] = self.log_error
        return data


def combine(failure: Failure | None, result: ResultFile | None) -> Failure | None:
    """The attempt's failure once the result file has had its say.

    A well-formed result file that reports a failure decides the kind; a malformed one is
    recorded but the exit status decides. A request to escalate turns the attempt into an
    `escalated` failure (the task waits for a person); one that cannot be raised fails it.
    """
    if result is not None and result.deferral is not None:
        deferral = result.deferral
        return Failure(
            FailureKind.DEFERRED,
            f"the agent's session stopped: its call {deferral.proposal_id} waits for a person",
            exit_code=failure.exit_code if failure is not None else None,
            deferral=deferral,
        )
    if result is not None and (result.escalation or result.escalation_error):
        return _escalation_failure(failure, result)
    reported = result.failure if result is not None and result.error is None else None
    if reported is None:
        steps = (result.data or {}).get("steps_completed") if result is not None else None
        if failure is not None and isinstance(steps, int) and steps > 0:
            return replace(failure, partial=Partial.TRUE)  # a step was done before it failed
        return failure
    if failure is None:
        return reported
    return Failure(
        kind=reported.kind,
        message=reported.message,
        partial=reported.partial if reported.partial is not Partial.UNKNOWN else failure.partial,
        retry_after_s=reported.retry_after_s,
        http_status=failure.http_status,
        exit_code=failure.exit_code,
    )


def _escalation_failure(failure: Failure | None, result: ResultFile) -> Failure:
    steps = (result.data or {}).get("steps_completed")
    partial = failure.partial if failure is not None else Partial.of(_steps_partial(steps))
    exit_code = failure.exit_code if failure is not None else None
    if result.escalation is None:
        return Failure(
            FailureKind.ERROR,
            f"the task asked to escalate, but {result.escalation_error}",
            partial=partial,
            exit_code=exit_code,
        )
    request = result.escalation
    return Failure(
        FailureKind.ESCALATED,
        f"the task escalated ({request.mode.value}): {request.question}",
        partial=partial,
        exit_code=exit_code,
        escalation=request,
    )
