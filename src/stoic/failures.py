"""The failures a task raises to tell stoic what went wrong (DESIGN §7).

    from stoic.failures import RateLimited

    def fetch(url: str) -> dict:
        ...
        raise RateLimited("the API said slow down", retry_after=30)

Each maps to a failure kind; any other exception is kind `error`. `partial=True` says a side
effect already happened; `partial=False` says none did; leave it out when unsure. `stoic.errors`
is this module under the name DESIGN §7 gives it. The errors stoic itself raises to its caller
are another tree: `stoic.exceptions`.
"""

from __future__ import annotations

import typing

from stoic.core.failure import FailureKind

__all__ = [
    "BudgetExhausted",
    "ContextOverflow",
    "Escalated",
    "FailureKind",
    "PolicyViolation",
    "QualityError",
    "RateLimited",
    "SafetyTrigger",
    "TaskFailure",
    "Timeout",
    "ToolError",
    "Unavailable",
    "escalate",
]


class TaskFailure(Exception):
    """Base of the exceptions that name their failure kind."""

    kind: typing.ClassVar[FailureKind] = FailureKind.ERROR

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


class Escalated(TaskFailure):
    """The task hands a decision to a person (DESIGN §9); raised by `stoic.escalate`."""

    kind = FailureKind.ESCALATED

    def __init__(
        self, question: str, *, mode: str = "ambiguity", context: str = "", title: str = ""
    ) -> None:
        super().__init__(f"the task escalated ({mode}): {question}", partial=None)
        self.request: dict[str, typing.Any] = {
            "mode": mode,
            "question": question,
            "context": context,
            "title": title,
        }


def escalate(question: str, *, mode: str = "ambiguity", context: str = "", title: str = "") -> None:
    """Stop the task and ask a person exactly one question; the run waits for the answer.

    `mode` is one of DESIGN §9's failure modes (ambiguity, infeasible, scope-creep, …); the
    answer comes back on the next attempt in `$STOIC_GUIDANCE`.
    """
    raise Escalated(question, mode=mode, context=context, title=title)
