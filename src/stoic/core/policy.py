"""Policy and budget checks before every attempt (DESIGN §7): pure functions over data.

A retry never bypasses them: they run before first attempts, automatic retries and approved
recoveries alike.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BudgetLimits",
    "Policy",
    "Spent",
    "approval_rule",
    "budget_violation",
    "check_patterns",
    "policy_violation",
    "remaining_seconds",
]


@dataclass(frozen=True, slots=True)
class Policy:
    """What may run: executors allowed, command patterns forbidden, environment passed on."""

    allowed_executors: frozenset[str] = frozenset({"shell", "python", "http", "agent"})
    forbidden_commands: tuple[re.Pattern[str], ...] = ()
    env_passthrough: tuple[tuple[str, ...], ...] = (("*",),)
    """Glob lists; a variable reaches tasks when it matches a glob of every list."""
    require_approval: tuple[str, ...] = ()
    """Task-id globs, or `role:NAME` for agent roles, that need a person's approval to start."""

    def tighten(self, other: Policy) -> Policy:
        """Both policies at once: a plan can narrow the workspace's policy, never widen it."""
        return Policy(
            allowed_executors=self.allowed_executors & other.allowed_executors,
            forbidden_commands=self.forbidden_commands + other.forbidden_commands,
            env_passthrough=self.env_passthrough + other.env_passthrough,
            require_approval=self.require_approval + other.require_approval,
        )

    def passes_env(self, name: str) -> bool:
        return all(
            any(fnmatch.fnmatchcase(name, glob) for glob in globs) for globs in self.env_passthrough
        )

    @classmethod
    def build(
        cls,
        allowed_executors: Iterable[str] | None,
        forbidden_commands: Iterable[str],
        env_passthrough: Iterable[str] | None,
        require_approval: Iterable[str] = (),
    ) -> Policy:
        return cls(
            allowed_executors=(
                frozenset(allowed_executors)
                if allowed_executors is not None
                else cls().allowed_executors
            ),
            forbidden_commands=tuple(re.compile(pattern) for pattern in forbidden_commands),
            env_passthrough=(tuple(env_passthrough),) if env_passthrough is not None else (("*",),),
            require_approval=tuple(require_approval),
        )


def check_patterns(patterns: list[str]) -> list[str]:
    """Forbidden-command patterns must compile; raises ValueError naming the bad one."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return patterns


def approval_rule(
    policy: Policy, task_id: str, role: str | None, approval: str | None
) -> str | None:
    """Why a task may start only once a person approves it, or None."""
    if approval == "required":
        return "the task is marked approval: required"
    for rule in policy.require_approval:
        if rule.startswith("role:"):
            if role is not None and rule[5:] == role:
                return f"role {role!r} requires approval (policy require_approval)"
        elif fnmatch.fnmatchcase(task_id, rule):
            return f"task {task_id!r} requires approval (policy require_approval {rule!r})"
    return None


def policy_violation(policy: Policy, executor: str, command: str) -> str | None:
    """The rule an attempt would break, or None. `command` is the argv as one shell-quoted line."""
    if executor not in policy.allowed_executors:
        allowed = ", ".join(sorted(policy.allowed_executors)) or "none"
        return f"executor {executor!r} is not allowed (allowed: {allowed})"
    for pattern in policy.forbidden_commands:
        if pattern.search(command):
            return f"command matches forbidden pattern {pattern.pattern!r}"
    return None


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    max_seconds: float | None = None
    max_attempts: int | None = None
    max_cost: float | None = None


@dataclass(frozen=True, slots=True)
class Spent:
    seconds: float = 0.0
    attempts: int = 0
    cost: float = 0.0

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.seconds + other.seconds, self.attempts + other.attempts, self.cost + other.cost
        )


def budget_violation(limits: BudgetLimits, spent: Spent, scope: str) -> str | None:
    """Which budget is used up before the next attempt, or None."""
    if limits.max_attempts is not None and spent.attempts >= limits.max_attempts:
        return f"{scope} budget max_attempts={limits.max_attempts} used up ({spent.attempts} made)"
    if limits.max_seconds is not None and spent.seconds >= limits.max_seconds:
        return (
            f"{scope} budget max_seconds={limits.max_seconds:g} used up"
            f" ({spent.seconds:.1f}s spent)"
        )
    if limits.max_cost is not None and spent.cost >= limits.max_cost:
        return f"{scope} budget max_cost={limits.max_cost:g} used up ({spent.cost:g} spent)"
    return None


def remaining_seconds(limits: Sequence[tuple[BudgetLimits, Spent]]) -> float | None:
    """The least wall time any budget still allows, or None when none limits time."""
    left = [
        limit.max_seconds - spent.seconds
        for limit, spent in limits
        if limit.max_seconds is not None
    ]
    return min(left) if left else None
