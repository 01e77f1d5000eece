"""One attempt of a task, in stages: the task, its iterate checks, then its verifiers.

The whole sequence is one `Handle` to the event loop, so checks and verifiers are child
processes watched like the task itself and never block other tasks. An iterate loop is not
recovery: the task goes round again inside the same attempt until its check reports no
failures, and escalates when it does not converge. Verifiers are fail-open (DESIGN §10): they
run only after the task succeeded and never turn a success into a failure, except a gate with
a critical or high finding, which escalates.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from stoic.core.escalations import EscalationMode, EscalationRequest
from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.text import counted, escape_controls
from stoic.core.verification import (
    CheckResult,
    VerificationOutcome,
    VerificationStatus,
    convergence,
    failure_count,
    parse_report,
    report_from_output,
)
from stoic.plan.loader import Plan, PlanError
from stoic.plan.models import Iterate, Verifier
from stoic.run.attempt import Attempt, AttemptResult, open_task_file, read_tail
from stoic.run.loop import Handle

__all__ = ["NotFound", "StagedAttempt", "verifier_not_found"]

_REPORT_READ_LIMIT = 4 * 1024 * 1024
QUOTED_LINES = 20
"""A loop that did not converge: its briefing quotes this many of the last lines written."""
_TAIL_BYTES = 16 * 1024

Launch = Callable[[Attempt], Handle]
StartCommand = Callable[[Sequence[str] | str, Attempt, bool], Handle]
"""Starts a command (argv, or a string for /bin/sh when the flag is true) as a handle."""


@dataclass(frozen=True, slots=True)
class NotFound:
    """A verifier whose program is not there: it cannot verify, and the user is told so."""

    reason: str


VerifierCommand = Callable[[Verifier], "tuple[Sequence[str] | str, bool] | NotFound | None"]
"""The command a verifier runs (a string runs through /bin/sh), NotFound when its program is
not there (incomplete, with the reason), or None when its agent file is not there (tier 1)."""

_SHELL_WORDS = frozenset(
    [
        "!",
        "{",
        "}",
        "[",
        ":",
        ".",
        "alias",
        "bg",
        "break",
        "case",
        "cd",
        "command",
        "continue",
        "eval",
        "exec",
        "exit",
        "export",
        "false",
        "fg",
        "for",
        "getopts",
        "hash",
        "if",
        "jobs",
        "kill",
        "local",
        "printf",
        "pwd",
        "read",
        "readonly",
        "return",
        "set",
        "shift",
        "test",
        "times",
        "trap",
        "true",
        "type",
        "ulimit",
        "umask",
        "unalias",
        "unset",
        "wait",
        "while",
        "until",
        "echo",
    ]
)
"""Words /bin/sh runs itself: a `run:` string starting with one needs no program on PATH."""
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def verifier_warnings(plan: Plan, path: str | None) -> list[PlanError]:
    """Each verifier of `plan` whose program is not found: a run would go on without it (they
    fail open) and record the task's verification incomplete, with this reason."""
    plan_dir = plan.path.absolute().parent
    warnings: list[PlanError] = []
    shared = plan.document.meta.verify or ()
    for verifier in shared:
        reason = verifier.run and verifier_not_found(verifier.run, plan_dir, path)
        if reason:
            warnings.append(_warning(1, 1, f"plan verifier {verifier.id!r}: {reason}"))
    for task in plan.tasks:
        line, column = plan.task_positions.get(task.id, (1, 1))
        for verifier in task.verify or ():
            reason = verifier.run and verifier_not_found(verifier.run, plan_dir, path)
            if reason:
                message = f"task {task.id!r}: verifier {verifier.id!r}: {reason}"
                warnings.append(_warning(line, column, message))
    return warnings


def _warning(line: int, column: int, message: str) -> PlanError:
    hint = "install it or fix its name: verifiers fail open, so the run would record the"
    return PlanError(line, column, message, f"{hint} verification incomplete")


def verifier_not_found(
    command: Sequence[str] | str, plan_dir: Path, path: str | None
) -> str | None:
    """ "command not found: NAME" when the program a verifier's `run:` names is not there; a
    string is read as /bin/sh reads its first command word (assignments skipped, builtins
    need no program)."""
    if isinstance(command, str):
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = [w for w in lexer if not _ASSIGNMENT.match(w)]
        except ValueError:
            return None  # the shell will say what is wrong with it
        program = words[0] if words else ""
        if not program or program in _SHELL_WORDS or not any(c.isalnum() for c in program):
            return None
    else:
        program = command[0] if command else ""
        if not program:
            return "command not found: (empty)"
    if "/" in program:
        found = (plan_dir / program).exists()
    else:
        found = shutil.which(program, path=path) is not None
    return None if found else f"command not found: {program}"


class StagedAttempt:
    """The task, then its checks (iterate), then its verifiers, as one handle."""

    def __init__(
        self,
        attempt: Attempt,
        launch: Launch,
        start_command: StartCommand,
        *,
        iterate: Iterate | None,
        max_iterations: int,
        verifiers: Sequence[Verifier],
        verifier_command: VerifierCommand,
    ) -> None:
        self.attempt = attempt
        self.launch = launch
        self.start_command = start_command
        self.iterate = iterate
        self.max_iterations = max_iterations
        self.verifiers = list(verifiers)
        self.verifier_command = verifier_command
        self.started = time.monotonic()
        self.checks: list[CheckResult] = []
        self.outcomes: list[VerificationOutcome] = []
        self.task_result: AttemptResult | None = None
        self._stage = "task"
        self._iteration = 1
        self._stopped = False
        self._verifier_index = -1
        self._verifier_started = 0.0
        self._through_shell = False
        self._check_started = 0.0
        self._result: AttemptResult | None = None
        self.generation = 0
        """Changes with every stage: its descriptors are new ones (see EventLoop._sync)."""
        first = attempt.with_env({"STOIC_ITERATION": "1"}) if iterate is not None else attempt
        self._current: Handle = launch(first)
        self._advance_if_done()

    # -- Handle ------------------------------------------------------------------------------

    @property
    def result(self) -> AttemptResult | None:
        return self._result

    def fds(self) -> Iterable[int]:
        return self._current.fds() if self._result is None else ()

    def deadline(self) -> float | None:
        if self._result is not None:
            return None
        if self._current.result is not None:
            return time.monotonic()  # a stage that ended at once: advance on the next tick
        return self._current.deadline()

    def on_ready(self, fd: int) -> None:
        self._current.on_ready(fd)
        self._advance_if_done()

    def tick(self, now: float) -> None:
        if self._current.result is None:
            self._current.tick(now)
        self._advance_if_done()

    def stop(self) -> None:
        if self._result is None and not self._stopped:
            self._stopped = True
            self._current.stop()
            self._advance_if_done()

    # -- stages ------------------------------------------------------------------------------

    def _advance_if_done(self) -> None:
        while self._result is None and self._current.result is not None:
            self.generation += 1
            ended = self._current.result
            if self._stage == "task":
                self._task_ended(ended)
            elif self._stage == "check":
                self._check_ended(ended)
            else:
                self._verifier_ended(ended)

    def _paths(self, suffix: str) -> Attempt:
        base = self.attempt
        log = base.log_path.with_name(f"{base.log_path.stem}.{suffix}.log")
        result = base.result_path.with_name(
            base.result_path.name.removesuffix(".json") + f".{suffix}.json"
        )
        return replace(base, log_path=log, result_path=result)

    def _task_ended(self, ended: AttemptResult) -> None:
        self.task_result = ended
        if ended.failure is not None:
            self._finish(ended.failure)
        elif self.iterate is not None:
            if self._stopped:  # the check never ran: the task has not shown it converged
                self._finish(Failure(FailureKind.INTERRUPTED, "stopped before its check ran"))
            else:
                self._start_check()
        else:
            self._next_verifier()  # when stopped, each verifier is recorded as not run

    def _start_check(self) -> None:
        assert self.iterate is not None
        self._stage = "check"
        attempt = self._paths(f"check-{self._iteration}")
        attempt = replace(attempt, timeout=self.iterate.timeout)
        self._check_started = time.monotonic()
        self._current = self.start_command(self.iterate.check, attempt, False)

    def _check_ended(self, ended: AttemptResult) -> None:
        assert self.iterate is not None
        if self._stopped:
            self._finish(Failure(FailureKind.INTERRUPTED, "stopped by the runner"))
            return
        if ended.log_error is not None:  # a check whose output cannot be kept fails the attempt
            self.task_result = replace(self.task_result or ended, log_error=ended.log_error)
            self._finish(ended.failure)
            return
        data = ended.result.data if ended.result is not None else None
        count = failure_count(data, ended.exit_code)
        self.checks.append(
            CheckResult(
                iteration=self._iteration,
                failures=count,
                exit_code=ended.exit_code,
                duration_s=time.monotonic() - self._check_started,
                log=self._relative(self._paths(f"check-{self._iteration}").log_path),
            )
        )
        verdict = convergence(
            [check.failures for check in self.checks],
            max_iterations=self.max_iterations,
            stall_after=self.iterate.stall_after,
        )
        if verdict.converged:
            self._next_verifier()
        elif verdict.go_on:
            self._iteration += 1
            attempt = self._paths(f"iteration-{self._iteration}")
            attempt = replace(
                attempt,
                env={
                    **attempt.env,
                    "STOIC_ITERATION": str(self._iteration),
                    "STOIC_CHECK_RESULT": str(
                        self._paths(f"check-{self._iteration - 1}").result_path
                    ),
                },
            )
            self._stage = "task"
            self._current = self.launch(attempt)
        else:
            self._finish(self._not_converged(verdict.why))

    def _not_converged(self, why: str) -> Failure:
        task = self.attempt.task_id
        request = EscalationRequest(
            mode=EscalationMode.CONVERGENCE,
            title=f"{task} did not converge",
            question=(
                f"Task {task} did not converge ({why}): should it go on with another approach"
                " (say which in the note), or stop here?"
            ),
            context=f"The check `{shlex.join(self.iterate.check if self.iterate else [])}`"
            f" reported failures per iteration: {why}.\n{self._last_lines()}",
        )
        return Failure(
            FailureKind.ESCALATED,
            f"did not converge: {why}",
            partial=Partial.TRUE,
            escalation=request,
        )

    def _last_lines(self) -> str:
        """The last lines the task wrote in its last iteration, escaped, for the briefing."""
        n = self._iteration
        log = self.attempt.log_path if n == 1 else self._paths(f"iteration-{n}").log_path
        lines = read_tail(self.attempt.workspace_root, log, _TAIL_BYTES).splitlines()[
            -QUOTED_LINES:
        ]
        if not any(line.strip() for line in lines):
            return f"Its last iteration ({n}) wrote nothing to {self._relative(log)}."
        quoted = "\n".join(f"> {escape_controls(line)}" for line in lines if line.strip())
        return f"The last lines it wrote (iteration {n}, {self._relative(log)}):\n{quoted}"

    def _next_verifier(self) -> None:
        self._stage = "verify"
        while True:
            self._verifier_index += 1
            if self._verifier_index >= len(self.verifiers):
                self._finish(None)
                return
            verifier = self.verifiers[self._verifier_index]
            if self._stopped:
                self.outcomes.append(
                    VerificationOutcome(
                        verifier.id,
                        VerificationStatus.INCOMPLETE,
                        reason="the run was stopped before it ran",
                        gate=verifier.gate,
                    )
                )
                continue
            command = self.verifier_command(verifier)
            if command is None:
                self.outcomes.append(
                    VerificationOutcome(
                        verifier.id,
                        VerificationStatus.ABSENT,
                        reason=f"{_what(verifier)} not found",
                        gate=verifier.gate,
                    )
                )
                continue
            if isinstance(command, NotFound):
                self.outcomes.append(
                    VerificationOutcome(
                        verifier.id,
                        VerificationStatus.INCOMPLETE,
                        reason=command.reason,
                        gate=verifier.gate,
                    )
                )
                continue
            argv, through_shell = command
            self._through_shell = through_shell
            attempt = self._paths(f"verify-{verifier.id}")
            attempt = replace(
                attempt,
                timeout=verifier.timeout,
                secrets={},  # a verifier judges the work: it is not given the task's secrets
                env={
                    **attempt.env,
                    "STOIC_REPORT": str(attempt.result_path),
                    "STOIC_VERIFIED_TASK": self.attempt.task_id,
                    "STOIC_TASK_LOG": str(self.attempt.log_path),
                },
            )
            attempt.result_path.unlink(missing_ok=True)
            self._verifier_started = time.monotonic()
            self._current = self.start_command(argv, attempt, through_shell)
            return

    def _verifier_ended(self, ended: AttemptResult) -> None:
        verifier = self.verifiers[self._verifier_index]
        attempt = self._paths(f"verify-{verifier.id}")
        duration = time.monotonic() - self._verifier_started
        log = self._relative(attempt.log_path) if ended.output_bytes else None
        outcome = _judge(verifier, ended, attempt, duration, log, self._through_shell)
        self.outcomes.append(outcome)
        self._next_verifier()

    def _relative(self, path: Path) -> str:
        parts = path.parts
        return "/".join(parts[parts.index("runs") :]) if "runs" in parts else str(path)

    def _finish(self, failure: Failure | None) -> None:
        base = self.task_result or AttemptResult(failure=failure, duration_s=0.0)
        blocking = [o for o in self.outcomes if o.blocks]
        if failure is None and blocking:
            failure = _gate_blocked(self.attempt.task_id, blocking)
        self._result = replace(
            base,
            failure=failure,
            duration_s=time.monotonic() - self.started,
            iterations=tuple(check.to_json() for check in self.checks),
            verifications=tuple(self.outcomes),
        )


def _what(verifier: Verifier) -> str:
    if verifier.agent is not None:
        return f"agent {verifier.agent}"
    command = verifier.run or ""
    return command if isinstance(command, str) else shlex.join(command)


def _judge(
    verifier: Verifier,
    ended: AttemptResult,
    attempt: Attempt,
    duration: float,
    log: str | None,
    through_shell: bool = False,
) -> VerificationOutcome:
    """Tiers 2 and 3 become incomplete with their reason; a valid report decides."""

    def skipped(reason: str) -> VerificationOutcome:
        return VerificationOutcome(
            verifier.id,
            VerificationStatus.INCOMPLETE,
            duration,
            reason=reason,
            gate=verifier.gate,
            log=log,
        )

    failure = ended.failure
    if ended.log_error is not None:
        return skipped(ended.log_error)
    if failure is not None and failure.kind is FailureKind.TIMEOUT:
        return skipped(f"timed out after {verifier.timeout:g}s")
    if failure is not None and failure.kind is FailureKind.INTERRUPTED:
        return skipped("stopped with the run")
    if ended.exit_code is None and failure is not None:
        return skipped(failure.message)  # it could not start
    if through_shell and ended.exit_code == 127:  # /bin/sh: a command in the string is missing
        return skipped(f"command not found (exit status 127 from /bin/sh): {verifier.run}")
    if ended.exit_code not in (0, None):
        return skipped(f"exit status {ended.exit_code}")
    try:
        if ended.result is not None:
            if ended.result.error is not None:
                raise ValueError(f"not a report: {ended.result.error}")
            report = parse_report(ended.result.data)
        else:
            report = report_from_output(_read(attempt.workspace_root, attempt.log_path))
    except ValueError as exc:
        return skipped(str(exc))
    return VerificationOutcome(
        verifier.id, report.outcome, duration, report=report, gate=verifier.gate, log=log
    )


def _read(root: Path, path: Path) -> bytes:
    try:
        fd = open_task_file(root, path)
    except FileNotFoundError:
        return b""
    except OSError as exc:  # a link in its place is not followed: the report is incomplete
        raise ValueError(f"its output cannot be read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read(_REPORT_READ_LIMIT)


def _gate_blocked(task_id: str, blocking: Sequence[VerificationOutcome]) -> Failure:
    findings = [f for outcome in blocking if outcome.report for f in outcome.report.blocking]
    gates = ", ".join(outcome.verifier for outcome in blocking)
    request = EscalationRequest(
        mode=EscalationMode.SECURITY_ALERT,
        title=f"gate {gates} blocked {task_id}",
        question=(
            f"Gate {gates} found {counted(len(findings), 'critical or high finding')}"
            f" in task {task_id}:"
            " should the task be redone with a fix (say which in the note), or stop here?"
        ),
        context="\n".join(f"Finding {finding.line()}" for finding in findings),
    )
    return Failure(
        FailureKind.ESCALATED,
        f"gate {gates} blocked what follows: {counted(len(findings), 'critical or high finding')}",
        partial=Partial.TRUE,
        escalation=request,
    )
