"""`stoic.errors` is `stoic.failures` — the failures a task raises to tell stoic what went
wrong — under the name DESIGN §7 gives it: `from stoic.errors import Timeout` keeps working
and names the same class."""

from __future__ import annotations

from stoic.failures import (
    BudgetExhausted,
    ContextOverflow,
    Escalated,
    FailureKind,
    PolicyViolation,
    QualityError,
    RateLimited,
    SafetyTrigger,
    TaskFailure,
    Timeout,
    ToolError,
    Unavailable,
    escalate,
)

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
