"""The recovery matrix (DESIGN §7): every failure gets exactly one class, action and reason.

Pure and table-driven. The rules are tried in order; the first that matches decides. Read top
to bottom, they are the table of DESIGN §7:

- R3 forbidden: policy violation, budget exhausted, safety trigger; the failed attempt was a
  human-approved recovery (loop prevention); partial execution of a non-idempotent task
  (an interruption counts: its side effects are unknown); a recovery whose attempt the budget or
  policy would refuse (never an R1 or R2 that cannot happen).
- R2 risky: an automatic retry that also failed; `rate_limited` without retry-after;
  `tool_error`; `quality`; a safe kind on a non-idempotent task whose side effects are unknown.
- R1 safe: `timeout`, `unavailable`, `rate_limited` with retry-after, `context_overflow`,
  `interrupted` — with no partial execution, or on an idempotent task.
- none: `escalated` (right after loop prevention): a task that handed its decision to a person
  (DESIGN §9) is not recovered automatically, the escalation decides; and anything else
  (`error`, `crash`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from stoic.core.failure import Failure, FailureKind, Partial

__all__ = [
    "RULES",
    "AttemptKind",
    "RecoveryAction",
    "RecoveryClass",
    "RecoveryContext",
    "RecoveryDecision",
    "classify",
    "retry_delay",
    "retry_wait_left",
]


class RecoveryClass(StrEnum):
    R1 = "R1"  # safe: retried exactly once, automatically
    R2 = "R2"  # risky: suggested to a human, no retry until approved
    R3 = "R3"  # forbidden: the failure stands
    NONE = "none"  # no applicable recovery: the failure stands


class RecoveryAction(StrEnum):
    RETRY = "retry"
    SUGGEST = "suggest"
    NONE = "none"


class AttemptKind(StrEnum):
    """What kind of attempt failed: it bounds what may follow."""

    FIRST = "first"
    AUTOMATIC_RETRY = "automatic_retry"  # after R1
    APPROVED_RECOVERY = "approved_recovery"  # after R2, approved by a person
    RESUMED = "resumed"  # a gated agent's session, once its deferred call is decided


OUTCOME_OF_CLASS = {
    RecoveryClass.R1: "recovery_applied",
    RecoveryClass.R2: "recovery_suggested",
    RecoveryClass.R3: "recovery_skipped",
    RecoveryClass.NONE: "recovery_skipped",
}
ACTION_OF_CLASS = {
    RecoveryClass.R1: RecoveryAction.RETRY,
    RecoveryClass.R2: RecoveryAction.SUGGEST,
    RecoveryClass.R3: RecoveryAction.NONE,
    RecoveryClass.NONE: RecoveryAction.NONE,
}


@dataclass(frozen=True, slots=True)
class RecoveryContext:
    """What the classifier needs to know besides the failure."""

    idempotent: bool
    attempt_kind: AttemptKind = AttemptKind.FIRST
    retry_refused: str | None = None
    """The policy or budget rule that would refuse the task's next attempt, if one would: the
    caller checks it with what the failed attempt spent (the classifier reads no clock)."""
    retry_delays: Mapping[FailureKind, float] = field(default_factory=dict)
    """Seconds before an automatic retry, by kind, when the upstream named none (settings)."""


@dataclass(frozen=True, slots=True)
class RecoveryDecision:
    recovery_class: RecoveryClass
    rule: str
    """The rule that decided, in words; the record's reason starts with the class and this."""
    delay_s: float | None = None
    """R1 only: seconds to wait before the automatic retry starts."""

    @property
    def action(self) -> RecoveryAction:
        return ACTION_OF_CLASS[self.recovery_class]

    @property
    def outcome(self) -> str:
        """The recovery_evaluation outcome to record."""
        return OUTCOME_OF_CLASS[self.recovery_class]

    @property
    def reason(self) -> str:
        return f"{self.recovery_class.value}: {self.rule}"


_FORBIDDEN_KINDS = {
    FailureKind.POLICY_VIOLATION: "policy violation",
    FailureKind.BUDGET_EXHAUSTED: "budget exhausted",
    FailureKind.SAFETY_TRIGGER: "safety trigger",
}
_RISKY_KINDS = frozenset({FailureKind.RATE_LIMITED, FailureKind.TOOL_ERROR, FailureKind.QUALITY})
_SAFE_KINDS = frozenset(
    {
        FailureKind.TIMEOUT,
        FailureKind.UNAVAILABLE,
        FailureKind.CONTEXT_OVERFLOW,
        FailureKind.INTERRUPTED,
    }
)


def _safe_kind(failure: Failure) -> bool:
    if failure.kind is FailureKind.RATE_LIMITED:
        return failure.retry_after_s is not None
    return failure.kind in _SAFE_KINDS


def _partial(failure: Failure) -> bool:
    """Side effects known to have happened (an interruption counts: nobody knows)."""
    return failure.partial is Partial.TRUE or failure.kind is FailureKind.INTERRUPTED


def _needs_attempt(failure: Failure, context: RecoveryContext) -> bool:
    """Whether the rules below would give R1 or R2: a recovery that runs the task again."""
    return (
        context.attempt_kind is AttemptKind.AUTOMATIC_RETRY
        or _safe_kind(failure)
        or failure.kind in _RISKY_KINDS
    )


Check = Callable[[Failure, RecoveryContext], bool]
Rule = tuple[RecoveryClass, Check, Callable[[Failure, RecoveryContext], str]]

RULES: tuple[Rule, ...] = (
    (  # first: a session waiting on a person's decision has not failed a recovery
        RecoveryClass.NONE,
        lambda f, c: f.kind is FailureKind.DEFERRED,
        lambda f, c: "deferred: a person decides the tool call; the session resumes after",
    ),
    (
        RecoveryClass.R3,
        lambda f, c: f.kind in _FORBIDDEN_KINDS,
        lambda f, c: f"{_FORBIDDEN_KINDS[f.kind]} ({f.message}); no recovery is allowed",
    ),
    (
        RecoveryClass.R3,
        lambda f, c: c.attempt_kind is AttemptKind.APPROVED_RECOVERY or f.in_recovery,
        lambda f, c: "loop prevention: a human-approved recovery failed; the failure stands",
    ),
    (
        RecoveryClass.NONE,
        lambda f, c: f.kind is FailureKind.ESCALATED,
        lambda f, c: "escalated: a person decides through the escalation; nothing is retried",
    ),
    (
        RecoveryClass.R3,
        lambda f, c: not c.idempotent and _partial(f),
        lambda f, c: (
            "partial execution of a non-idempotent task"
            + (" (interrupted: side effects unknown)" if f.kind is FailureKind.INTERRUPTED else "")
            + "; running it again could repeat them"
        ),
    ),
    (
        RecoveryClass.R3,
        lambda f, c: c.retry_refused is not None and _needs_attempt(f, c),
        lambda f, c: (
            f"{f.kind.value}, and the attempt a recovery needs may not start: {c.retry_refused};"
            " the failure stands"
        ),
    ),
    (
        RecoveryClass.R2,
        lambda f, c: c.attempt_kind is AttemptKind.AUTOMATIC_RETRY,
        lambda f, c: "R1 exhausted, manual intervention suggested",
    ),
    (
        RecoveryClass.R1,
        lambda f, c: _safe_kind(f) and (c.idempotent or f.partial is Partial.FALSE),
        lambda f, c: (
            f"{f.kind.value} is safe to retry once"
            + (f" after {f.retry_after_s:g}s" if f.retry_after_s is not None else "")
        ),
    ),
    (
        RecoveryClass.R2,
        lambda f, c: _safe_kind(f),
        lambda f, c: (
            f"{f.kind.value} on a non-idempotent task whose side effects are unknown;"
            " a retry needs a person's approval"
        ),
    ),
    (
        RecoveryClass.R2,
        lambda f, c: f.kind is FailureKind.RATE_LIMITED,
        lambda f, c: "rate limited without a retry-after; a person should choose when to retry",
    ),
    (
        RecoveryClass.R2,
        lambda f, c: f.kind is FailureKind.TOOL_ERROR,
        lambda f, c: "tool error; another tool is suggested",
    ),
    (
        RecoveryClass.R2,
        lambda f, c: f.kind is FailureKind.QUALITY,
        lambda f, c: "quality problem; another model or approach is suggested",
    ),
)


def classify(failure: Failure, context: RecoveryContext) -> RecoveryDecision:
    """The one recovery decision for `failure`: the first matching rule, else none. An R1
    decision carries its retry's delay."""
    for recovery_class, matches, explain in RULES:
        if matches(failure, context):
            delay = (
                retry_delay(failure, context.retry_delays)
                if recovery_class is RecoveryClass.R1
                else None
            )
            return RecoveryDecision(recovery_class, explain(failure, context), delay)
    return RecoveryDecision(RecoveryClass.NONE, f"no applicable recovery for {failure.kind.value}")


def retry_delay(failure: Failure, defaults: Mapping[FailureKind, float]) -> float:
    """Seconds before an automatic retry of `failure`: what the upstream said, else the
    configured delay of its kind, else none."""
    if failure.retry_after_s is not None:
        return failure.retry_after_s
    return defaults.get(failure.kind, 0.0)


def retry_wait_left(delay_s: float, decided_at: str, now: str) -> float:
    """What is left at `now` of the delay of an automatic retry decided at `decided_at` (RFC
    3339 times, as records carry them): a run continued while its retry waits waits the rest."""
    return max(0.0, delay_s - (_epoch_seconds(now) - _epoch_seconds(decided_at)))


_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?(?:([Zz])|([+-])(\d\d):?(\d\d))"
)


def _epoch_seconds(stamp: str) -> float:
    """Seconds since 1970 of an RFC 3339 time with its offset (pure: no clock, no tz data)."""
    match = _RFC3339.fullmatch(stamp)
    if match is None:
        raise ValueError(f"not an RFC 3339 time with an offset: {stamp!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    year -= month <= 2  # days from the civil calendar, counted from March (leap day last)
    era = year // 400
    of_era = year - era * 400
    of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + of_era * 365 + of_era // 4 - of_era // 100 + of_year - 719468
    seconds = days * 86400 + hour * 3600 + minute * 60 + second + float(match.group(7) or 0)
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        seconds -= offset if match.group(9) == "+" else -offset
    return seconds


SUGGESTIONS = {
    FailureKind.RATE_LIMITED: (
        "retry later, at a time a person picks",
        "waiting costs time; retrying too early is refused again",
    ),
    FailureKind.TOOL_ERROR: (
        "retry with another tool or a fixed tool configuration",
        "another tool may behave differently; review its output",
    ),
    FailureKind.QUALITY: (
        "retry with another model or approach",
        "a different model costs more or changes the result's style",
    ),
}


def suggestion_for(failure: Failure, decision: RecoveryDecision) -> dict[str, str]:
    """What an R2 suggestion carries: what failed, what is suggested, the trade-off."""
    suggested, trade_off = SUGGESTIONS.get(
        failure.kind,
        (
            "retry once more after checking why it failed",
            "a retry may repeat side effects the failed attempts already had",
        ),
    )
    return {
        "what_failed": f"{failure.kind.value}: {failure.message}",
        "suggested": suggested,
        "trade_off": trade_off,
        "rule": decision.rule,
    }
