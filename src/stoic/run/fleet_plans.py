"""What a worker knows of each database run it works on: the plan as the run recorded it.

A database run records its plan copy (`run_files`) and where its plan lives (`plan_dir`) at its
start; a worker on any host reads both from the database, never from a local file that may
differ. What a database run cannot do yet is refused when it starts (`database_run_refusal`),
so a worker never meets a task whose needs it would have to skip.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stoic.core.failure import FailureKind, OutputPatterns, compile_patterns
from stoic.core.policy import Policy, approval_rule
from stoic.core.run_state import RunFolder
from stoic.plan.loader import Plan, parse_plan
from stoic.plan.models import TaskSpec
from stoic.run import decisions as made
from stoic.run.agents import AgentSetup
from stoic.run.attempt import Attempt
from stoic.run.guard import Guard, limits_of
from stoic.run.launch import Launcher
from stoic.run.python_pool import WorkerPool
from stoic.run.run_files import RunFiles
from stoic.run.task_user import resolve_task_user
from stoic.run.timeouts import DefaultTimeouts
from stoic.store.config import Settings
from stoic.store.processes import allowed_environment, run_policy, workspace_policy

__all__ = ["RunPlan", "database_run_refusal", "recorded_plan", "run_settings"]

_UNSUPPORTED_TASK_KEYS = (
    ("agent", "an agent"),
    ("secrets", "secrets"),
    ("budget", "a budget"),
    ("verify", "verifiers"),
    ("iterate", "an iterate loop"),
    ("doc", "a completion summary (doc)"),
    ("max_attempts", "max_attempts"),
)


def database_run_refusal(plan: Plan, settings: Settings) -> str | None:
    """Why `plan` cannot run on a database yet, in one sentence; None when it can.

    Workers run shell, Python and HTTP tasks with their dependencies, timeouts, environment,
    idempotency and the policy; what needs a person before it starts, or a part of the runner
    that workers do not have yet, is refused here rather than skipped there."""
    meta = plan.document.meta
    for key, what in (
        ("budget", "a run budget"),
        ("verify", "plan verifiers"),
        ("gate", "gate rules"),
        ("secrets", "secrets"),
        ("max_attempts_default", "a default bound on attempts"),
    ):
        if getattr(meta, key, None):
            return (
                f"plan {plan.name} has {what} (meta.{key}), which database runs do not support yet"
            )
    policy = run_policy(workspace_policy(settings), meta.policy)
    for spec in plan.tasks:
        for key, what in _UNSUPPORTED_TASK_KEYS:
            if getattr(spec, key, None):
                return (
                    f"task {spec.id} of plan {plan.name} has {what} ({key}), which database"
                    " runs do not support yet; run it in a files workspace"
                )
        rule = approval_rule(policy, spec.id, None, spec.approval)
        if rule is not None:
            return (
                f"task {spec.id} of plan {plan.name} needs a person's approval ({rule}), which"
                " database runs do not support yet; run it in a files workspace"
            )
    return None


def recorded_plan(run_id: str, plan_text: bytes, started: Mapping[str, Any]) -> Plan:
    """A database run's plan copy as its start names it, checked against the sha256 the start
    records (a `ValueError` when it does not match; `PlanInvalid` when it cannot be read)."""
    details = started.get("details") or {}
    plan = parse_plan(plan_text.decode("utf-8"), str(details.get("plan", "plan.yaml")))
    if plan.sha256 != details.get("plan_sha256"):
        raise ValueError(f"the plan copy of run {run_id} does not match its start record's sha256")
    return plan


_RECORDED_SETTINGS = {"policy", "runner", "recovery"}


def run_settings(settings: Settings) -> dict[str, Any]:
    """What of the workspace's settings a database run keeps in its start record, for every
    worker to run it by: its policy, the runner's limits and who tasks run as, the recovery
    delays and output patterns. None of them is secret (a policy names secrets, never holds
    them)."""
    return settings.model_dump(mode="json", include=_RECORDED_SETTINGS)


@dataclass(slots=True)
class RunPlan:
    """One database run as a worker runs its tasks."""

    run_id: str
    plan: Plan
    specs: Mapping[str, TaskSpec]
    dependents: Mapping[str, tuple[str, ...]]
    plan_dir: Path
    policy: Policy
    guard: Guard
    launcher: Launcher
    pool: WorkerPool
    timeouts: DefaultTimeouts
    output_patterns: OutputPatterns
    retry_delays: Mapping[FailureKind, float]
    settings: Settings

    @classmethod
    def load(
        cls,
        run_id: str,
        plan_text: bytes,
        started: Mapping[str, Any],
        concurrency: int,
        stdin_fd: int,
    ) -> RunPlan:
        """The run as its start recorded it: its plan copy (checked against the start's
        sha256) and the settings it runs by (`run_settings`), whatever the worker's host has.
        `stdin_fd`: /dev/null, held open by the worker, every task's standard input."""
        details = started.get("details") or {}
        settings = Settings.model_validate(details.get("settings") or {})
        plan = recorded_plan(run_id, plan_text, started)
        plan_dir = Path(str(details.get("plan_dir", ".")))
        policy = run_policy(workspace_policy(settings), plan.document.meta.policy)
        dependents: dict[str, list[str]] = {spec.id: [] for spec in plan.tasks}
        for spec in plan.tasks:
            for dep in spec.dependency_ids:
                dependents[dep].append(spec.id)
        agents = AgentSetup(settings.agents, os.environ.get("PATH"))
        guard = Guard(
            policy, limits_of(None), RunFolder(run_id), role_of=agents.role_of, plan_dir=plan_dir
        )
        base_env = allowed_environment(policy)
        user = resolve_task_user(settings.runner.task_user)
        pool = WorkerPool(
            concurrency, env=base_env, allowed_modules=policy.allowed_modules or (), user=user
        )
        launcher = Launcher(
            base_env=base_env,
            pool=pool,
            plan_verifiers=(),
            max_iterations_default=None,
            agents=agents,
            user=user,
            check_timeout=settings.runner.default_timeout_seconds,
        )
        launcher.stdin_fd = stdin_fd
        return cls(
            run_id=run_id,
            plan=plan,
            specs={spec.id: spec for spec in plan.tasks},
            dependents={task: tuple(ids) for task, ids in dependents.items()},
            plan_dir=plan_dir,
            policy=policy,
            guard=guard,
            launcher=launcher,
            pool=pool,
            timeouts=DefaultTimeouts(
                settings.runner.default_timeout_seconds, settings.agents.default_timeout_seconds
            ),
            output_patterns=compile_patterns(settings.recovery.output_patterns.items()),
            retry_delays={
                FailureKind.TIMEOUT: settings.recovery.timeout_retry_delay_seconds,
                FailureKind.UNAVAILABLE: settings.recovery.unavailable_retry_delay_seconds,
            },
            settings=settings,
        )

    def attempt(
        self, task_id: str, number: int, attempt_id: str, files: RunFiles, scratch: Path
    ) -> tuple[Attempt, str | None]:
        """The attempt of a claim, its files in this host's `scratch`, and the setting whose
        default timeout bounds it (None: the plan gave one, or none applies)."""
        spec = self.specs[task_id]
        timeout, timeout_default = self.timeouts.of(spec)
        runner = self.settings.runner
        return Attempt(
            run_id=self.run_id,
            request_id=made.request_id(self.run_id, task_id),
            task_id=task_id,
            attempt=number,
            attempt_id=attempt_id,
            log_path=files.attempt_log(task_id, number),
            result_path=files.attempt_result(task_id, number),
            workspace_root=scratch,
            plan_dir=self.plan_dir,
            timeout=timeout,
            output_cap_bytes=runner.output_cap_bytes,
            kill_grace_seconds=runner.kill_grace_seconds,
            env=dict(spec.env),
        ), timeout_default

    def close(self) -> None:
        self.pool.close()
