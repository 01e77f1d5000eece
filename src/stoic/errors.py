"""Exceptions a Python task raises to say how it failed (DESIGN §7).

    from stoic.errors import RateLimited

    def fetch(url: str) -> dict:
        ...
        raise RateLimited("the API said slow down", retry_after=30)

Each maps to a failure kind; any other exception is kind `error`. `partial=True` says a side
effect already happened; `partial=False` says none did; leave it out when unsure.
"""

from __future__ import annotations

from typing import ClassVar

from stoic.core.failure import FailureKind

__all__ = [
    "BudgetExhausted",
    "ContextOverflow",
    "PolicyViolation",
    "QualityError",
    "RateLimited",
    "SafetyTrigger",
    "TaskFailure",
    "Timeout",
    "ToolError",
    "Unavailable",
]


class TaskFailure(Exception):
    """Base of the exceptions that name their failure kind."""

    kind: ClassVar[FailureKind] = FailureKind.ERROR

    def __init__(self, message: str = "", *, partial: bool | None = None) -> None:
        super().__init__(message)
        self.message = message or type(self).__name__
        self.partial = partial


class Timeout(TaskFailure):
    kind = FailureKind.TIMEOUT


class Unavailable(TaskFailure):
    kind = FailureKind.UNAVAILABLE


class RateLimited(TaskFailure):
    kind = FailureKind.RATE_LIMITED

    def __init__(
        self, message: str = "", retry_after: float | None = None, *, partial: bool | None = None
    ) -> None:
        super().__init__(message, partial=partial)
        self.retry_after = retry_after


class ContextOverflow(TaskFailure):
    kind = FailureKind.CONTEXT_OVERFLOW


class PolicyViolation(TaskFailure):
    kind = FailureKind.POLICY_VIOLATION


class BudgetExhausted(TaskFailure):
    kind = FailureKind.BUDGET_EXHAUSTED


class SafetyTrigger(TaskFailure):
    kind = FailureKind.SAFETY_TRIGGER


class ToolError(TaskFailure):
    kind = FailureKind.TOOL_ERROR


class QualityError(TaskFailure):
    kind = FailureKind.QUALITY
