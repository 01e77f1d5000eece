"""The one shape every failure takes before it is classified (DESIGN §7)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stoic.core.escalations import EscalationRequest

__all__ = [
    "Failure",
    "FailureKind",
    "OutputPatterns",
    "Partial",
    "compile_patterns",
    "kind_from_output",
]


class FailureKind(StrEnum):
    """What went wrong, as far as the executor could tell."""

    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    CONTEXT_OVERFLOW = "context_overflow"
    POLICY_VIOLATION = "policy_violation"
    BUDGET_EXHAUSTED = "budget_exhausted"
    SAFETY_TRIGGER = "safety_trigger"
    TOOL_ERROR = "tool_error"
    QUALITY = "quality"
    CRASH = "crash"  # the process running the task died without reporting
    INTERRUPTED = "interrupted"  # the runner stopped or died while the task ran
    ESCALATED = "escalated"  # the task (or its iterate loop) handed the decision to a person
    DEFERRED = "deferred"  # a gated agent stopped: one of its tool calls waits for a person
    ERROR = "error"  # anything not recognised


class Partial(StrEnum):
    """Did any side effect happen before the failure?"""

    TRUE = "true"
    FALSE = "false"
    UNKNOWN = "unknown"

    @classmethod
    def of(cls, value: bool | None) -> Partial:
        return cls.UNKNOWN if value is None else (cls.TRUE if value else cls.FALSE)


@dataclass(frozen=True, slots=True)
class Deferral:
    """A gated agent's session that stopped on a call its gate deferred (DESIGN §15): the call's
    proposal, and the session to resume once a person has decided it."""

    proposal_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt, normalised: the classifier sees only this."""

    kind: FailureKind
    message: str
    partial: Partial = Partial.UNKNOWN
    retry_after_s: float | None = None
    http_status: int | None = None
    exit_code: int | None = None
    in_recovery: bool = False
    escalation: EscalationRequest | None = None
    """What a person is asked, when the kind is `escalated`."""
    deferral: Deferral | None = None
    """The tool call that waits, when the kind is `deferred`."""

    def to_json(self) -> dict[str, Any]:
        """The failure as a record stores it (in `decision_inputs`)."""
        data: dict[str, Any] = {
            "failure_kind": self.kind.value,
            "message": self.message,
            "partial": self.partial.value,
            "in_recovery": self.in_recovery,
        }
        for name in ("retry_after_s", "http_status", "exit_code"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.escalation is not None:
            data["escalation"] = self.escalation.to_json()
        if self.deferral is not None:
            data["deferral"] = {
                "proposal_id": self.deferral.proposal_id,
                "session_id": self.deferral.session_id,
            }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Failure:
        return cls(
            kind=FailureKind(data["failure_kind"]),
            message=str(data.get("message", "")),
            partial=Partial(data.get("partial", "unknown")),
            retry_after_s=data.get("retry_after_s"),
            http_status=data.get("http_status"),
            exit_code=data.get("exit_code"),
            in_recovery=bool(data.get("in_recovery", False)),
            escalation=(
                EscalationRequest.from_json(data["escalation"])
                if isinstance(data.get("escalation"), dict)
                else None
            ),
            deferral=_deferral(data.get("deferral")),
        )


def _deferral(data: Any) -> Deferral | None:
    if not isinstance(data, dict):
        return None
    proposal_id, session_id = data.get("proposal_id"), data.get("session_id")
    if isinstance(proposal_id, str) and isinstance(session_id, str):
        return Deferral(proposal_id, session_id)
    return None


OutputPatterns = tuple[tuple["FailureKind", tuple[re.Pattern[str], ...]], ...]
_RETRY_AFTER = re.compile(
    r"(?i)(?:retry|try again)[ -]?(?:after|in)[:= ]*(\d+(?:\.\d+)?)\s*(ms|s|sec|seconds?)?\b"
)


def compile_patterns(patterns: Iterable[tuple[str, Sequence[str]]]) -> OutputPatterns:
    """The configured output patterns (kind, regexes), compiled once per run."""
    return tuple(
        (FailureKind(kind), tuple(re.compile(pattern) for pattern in found))
        for kind, found in patterns
    )


def kind_from_output(
    text: str, patterns: OutputPatterns
) -> tuple[FailureKind, float | None] | None:
    """The failure kind a failed command's output names, and a retry-after it states.

    Used only for a plain `error`: what the output says ("rate limit exceeded, retry after
    20s") is the best knowledge there is of why a command failed.
    """
    for kind, compiled in patterns:
        if any(pattern.search(text) for pattern in compiled):
            found = _RETRY_AFTER.search(text)
            retry_after = None
            if found is not None:
                retry_after = float(found.group(1))
                if (found.group(2) or "").lower() == "ms":
                    retry_after /= 1000
            return kind, retry_after
    return None
