"""Starting an attempt: the executor a task names, wrapped in its stages when it has any.

Shell, Python and HTTP tasks start their executor directly; agent tasks run their agent CLI
through the shell executor with the command line the workspace's template gives. A task with an
iterate loop or verifiers runs as a `StagedAttempt`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from stoic.core.failure import Failure, FailureKind, OutputPatterns, kind_from_output
from stoic.core.policy import mask_secrets
from stoic.core.summaries import summarize
from stoic.core.verification import Report
from stoic.plan.models import TaskSpec, Verifier
from stoic.run.agents import AgentSetup
from stoic.run.attempt import Attempt, AttemptResult, read_tail
from stoic.run.guard import describe_command as describe
from stoic.run.http import HttpAttempt
from stoic.run.loop import Ended, Handle
from stoic.run.python_pool import WorkerPool
from stoic.run.shell import ShellAttempt
from stoic.run.stages import NotFound, StagedAttempt, verifier_not_found
from stoic.run.task_user import TaskUser

__all__ = ["Launcher", "kind_by_output", "masked_result", "with_summary"]

_DEFAULT_ITERATIONS = 3


class Launcher:
    """Knows how to start any task of one run."""

    def __init__(
        self,
        *,
        base_env: Mapping[bytes, bytes],
        pool: WorkerPool,
        plan_verifiers: Sequence[Verifier],
        max_iterations_default: int | None,
        agents: AgentSetup,
        user: TaskUser | None = None,
        check_timeout: float | None = None,
        gate_rules: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.gate_rules = list(gate_rules)
        """The plan's `meta.gate` rules: what its gated agents' hooks narrow the workspace's
        rules with."""
        self.base_env = base_env
        self.user = user
        """Who every process of a task runs as (runner.task_user), or stoic's own user."""
        self.pool = pool
        self.plan_verifiers = list(plan_verifiers)
        self.max_iterations_default = max_iterations_default or _DEFAULT_ITERATIONS
        self.agents = agents
        self.check_timeout = check_timeout
        """An iterate check's limit when it sets none (runner.default_timeout_seconds)."""
        self.stdin_fd = -1
        """/dev/null, opened by the runner for the run's length."""

    def launch(self, spec: TaskSpec, attempt: Attempt) -> Handle:
        """Start the attempt; an executor fault ends it on record instead of raising."""
        try:
            verifiers = [*self.plan_verifiers, *(spec.verify or ())]
            if spec.iterate is None and not verifiers:
                return self._start(spec, attempt, alone=True)
            iterate = spec.iterate
            if iterate is not None and iterate.timeout is None and self.check_timeout is not None:
                iterate = iterate.model_copy(update={"timeout": self.check_timeout})
            return StagedAttempt(
                attempt,
                lambda each: self._start(spec, each),
                self._command,
                iterate=iterate,
                max_iterations=(
                    iterate.max_iterations
                    if iterate is not None and iterate.max_iterations is not None
                    else self.max_iterations_default
                ),
                verifiers=verifiers,
                verifier_command=lambda verifier: self._verifier_command(verifier, attempt),
            )
        except Exception as exc:  # an executor fault must still end the attempt on record
            failure = Failure(
                FailureKind.ERROR, f"stoic could not run the task: {type(exc).__name__}: {exc}"
            )
            return Ended(AttemptResult(failure=failure, duration_s=0.0, command=describe(spec)))

    def _start(self, spec: TaskSpec, attempt: Attempt, *, alone: bool = False) -> Handle:
        if spec.run is not None:
            return self._command(spec.run, attempt, spec.shell, alone=alone)
        if spec.call is not None:
            return self.pool.start(spec.call, dict(spec.params), attempt)
        if spec.http is not None:
            return HttpAttempt(spec.http, attempt, self.pool)
        if spec.agent is not None:
            argv, env = self.agents.command_for(spec, attempt, self.gate_rules)
            return self._command(argv, attempt.with_env(env), False, alone=alone)
        raise AssertionError(f"task {spec.id} has nothing to run")  # refused before the run

    def _command(
        self, command: Sequence[str] | str, attempt: Attempt, shell: bool, *, alone: bool = False
    ) -> Handle:
        return ShellAttempt(
            command,
            attempt,
            shell=shell,
            base_env=self.base_env,
            stdin_fd=self.stdin_fd,
            user=self.user,
            alone=alone,
        )

    def _verifier_command(
        self, verifier: Verifier, attempt: Attempt
    ) -> tuple[Sequence[str] | str, bool] | NotFound | None:
        """The verifier's command line (a string runs through /bin/sh, as a task's `shell:
        true` string does); NotFound when its program is not there; None when its agent file
        is not there (tier 1: skipped)."""
        path = self.base_env.get(b"PATH", os.environb.get(b"PATH", b"")).decode()
        if verifier.agent is not None:
            if verifier.agent_file and not (attempt.plan_dir / verifier.agent_file).is_file():
                return None
            return self.agents.verifier_command(verifier, attempt.task_id)
        assert verifier.run is not None
        through_shell = isinstance(verifier.run, str)
        missing = verifier_not_found(verifier.run, attempt.plan_dir, path)
        if missing is not None:
            return NotFound(missing)
        return verifier.run, through_shell


def with_summary(result: AttemptResult, doc: Path) -> AttemptResult:
    """The attempt's completion summary from its document; a missing or empty one says why."""
    try:
        text = doc.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return replace(result, summary_error=f"{doc}: {why}")
    summary = summarize(text).text()
    if summary is None:
        return replace(
            result,
            summary_error=f"{doc} has no ## Root Cause, **Root Need:** or ## Summary to summarize",
        )
    return replace(result, summary=summary)


def kind_by_output(
    spec: TaskSpec, attempt: Attempt, result: AttemptResult, patterns: OutputPatterns
) -> AttemptResult:
    """A command's plain error gets its kind from its output (DESIGN §7 output patterns)."""
    failure = result.failure
    if failure is None or failure.kind is not FailureKind.ERROR or not result.output_bytes:
        return result
    if result.log_error is not None:
        return result  # stoic could not keep the output: that, not the output, is the failure
    if spec.call is not None or spec.http is not None:
        return result  # their failures come from exceptions and status codes
    found = kind_from_output(read_tail(attempt.workspace_root, attempt.log_path), patterns)
    if found is None:
        return result
    kind, retry_after = found
    return replace(
        result,
        failure=replace(
            failure,
            kind=kind,
            retry_after_s=retry_after,
            message=f"{failure.message}; its output says {kind.value}",
        ),
    )


def masked_result(result: AttemptResult, secrets: Mapping[str, str]) -> AttemptResult:
    """The attempt's result as it is shown while the run goes on and handed to people (its
    failure and escalation, its verifiers' findings), with the run's secrets masked as they
    are in its records."""

    def mask(text: str) -> str:
        return mask_secrets(text, secrets)

    failure = result.failure
    if failure is not None:
        escalation = failure.escalation
        if escalation is not None:  # its briefing is written from it, as it is shown
            escalation = replace(
                escalation,
                title=mask(escalation.title),
                question=mask(escalation.question),
                context=mask(escalation.context),
            )
        failure = replace(failure, message=mask(failure.message), escalation=escalation)
    outcomes = tuple(
        replace(
            outcome,
            reason=mask(outcome.reason) if outcome.reason else outcome.reason,
            report=Report(
                tuple(
                    replace(
                        finding,
                        id=mask(finding.id),
                        category=mask(finding.category),
                        description=mask(finding.description),
                        recommendation=mask(finding.recommendation),
                    )
                    for finding in outcome.report.findings
                )
            )
            if outcome.report is not None
            else None,
        )
        for outcome in result.verifications
    )
    return replace(result, failure=failure, verifications=outcomes)
