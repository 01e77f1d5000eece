"""The recovery matrix: every row of DESIGN §7 as a test, and its laws as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.recovery import (
    AttemptKind,
    RecoveryAction,
    RecoveryClass,
    RecoveryContext,
    classify,
    suggestion_for,
)

K, P, A, R = FailureKind, Partial, AttemptKind, RecoveryClass


def decide(
    kind: FailureKind,
    *,
    partial: Partial = P.FALSE,
    retry_after: float | None = None,
    idempotent: bool = True,
    attempt: AttemptKind = A.FIRST,
) -> tuple[RecoveryClass, str]:
    failure = Failure(kind, "it failed", partial=partial, retry_after_s=retry_after)
    decision = classify(failure, RecoveryContext(idempotent=idempotent, attempt_kind=attempt))
    assert decision.reason.startswith(f"{decision.recovery_class.value}: ")
    return decision.recovery_class, decision.rule


@pytest.mark.parametrize(
    ("case", "expected", "rule_part"),
    [
        # R1 safe
        ({"kind": K.TIMEOUT}, R.R1, "timeout is safe to retry once"),
        ({"kind": K.UNAVAILABLE, "idempotent": False}, R.R1, "unavailable"),
        ({"kind": K.RATE_LIMITED, "retry_after": 2}, R.R1, "after 2s"),
        ({"kind": K.CONTEXT_OVERFLOW}, R.R1, "context_overflow"),
        ({"kind": K.INTERRUPTED, "partial": P.UNKNOWN}, R.R1, "interrupted"),
        ({"kind": K.TIMEOUT, "partial": P.TRUE}, R.R1, "timeout"),  # idempotent: safe anyway
        # R2 risky
        ({"kind": K.RATE_LIMITED}, R.R2, "without a retry-after"),
        ({"kind": K.TOOL_ERROR}, R.R2, "another tool"),
        ({"kind": K.QUALITY}, R.R2, "another model"),
        ({"kind": K.TIMEOUT, "attempt": A.AUTOMATIC_RETRY}, R.R2, "R1 exhausted"),
        ({"kind": K.ERROR, "attempt": A.AUTOMATIC_RETRY}, R.R2, "R1 exhausted"),
        (
            {"kind": K.TIMEOUT, "partial": P.UNKNOWN, "idempotent": False},
            R.R2,
            "side effects are unknown",
        ),
        # R3 forbidden
        ({"kind": K.POLICY_VIOLATION}, R.R3, "policy violation"),
        ({"kind": K.BUDGET_EXHAUSTED}, R.R3, "budget exhausted"),
        ({"kind": K.SAFETY_TRIGGER}, R.R3, "safety trigger"),
        ({"kind": K.TIMEOUT, "attempt": A.APPROVED_RECOVERY}, R.R3, "loop prevention"),
        ({"kind": K.ERROR, "attempt": A.APPROVED_RECOVERY}, R.R3, "loop prevention"),
        (
            {"kind": K.TIMEOUT, "partial": P.TRUE, "idempotent": False},
            R.R3,
            "partial execution of a non-idempotent task",
        ),
        (
            {"kind": K.INTERRUPTED, "partial": P.UNKNOWN, "idempotent": False},
            R.R3,
            "interrupted: side effects unknown",
        ),
        (
            {
                "kind": K.TIMEOUT,
                "partial": P.TRUE,
                "idempotent": False,
                "attempt": A.AUTOMATIC_RETRY,
            },
            R.R3,
            "partial",
        ),
        # none
        ({"kind": K.ERROR}, R.NONE, "no applicable recovery for error"),
        ({"kind": K.CRASH}, R.NONE, "no applicable recovery for crash"),
    ],
)
def test_every_row_of_the_matrix(
    case: dict[str, object], expected: RecoveryClass, rule_part: str
) -> None:
    recovery_class, rule = decide(**case)  # type: ignore[arg-type]
    assert recovery_class is expected
    assert rule_part in rule


def test_outcomes_and_actions_follow_the_class() -> None:
    failure = Failure(K.TOOL_ERROR, "grep exploded")
    decision = classify(failure, RecoveryContext(idempotent=False))
    assert (decision.outcome, decision.action) == ("recovery_suggested", RecoveryAction.SUGGEST)
    suggestion = suggestion_for(failure, decision)
    assert suggestion["what_failed"] == "tool_error: grep exploded"
    assert suggestion["suggested"] and suggestion["trade_off"]
    r1 = classify(Failure(K.TIMEOUT, "t"), RecoveryContext(idempotent=True))
    assert (r1.outcome, r1.action) == ("recovery_applied", RecoveryAction.RETRY)
    none = classify(Failure(K.ERROR, "e"), RecoveryContext(idempotent=True))
    assert (none.outcome, none.action) == ("recovery_skipped", RecoveryAction.NONE)


failures = st.builds(
    Failure,
    kind=st.sampled_from(FailureKind),
    message=st.text(max_size=5),
    partial=st.sampled_from(Partial),
    retry_after_s=st.none() | st.floats(min_value=0, max_value=1e6),
    in_recovery=st.booleans(),
)
contexts = st.builds(
    RecoveryContext,
    idempotent=st.booleans(),
    attempt_kind=st.sampled_from(AttemptKind),
    retry_refused=st.none() | st.just("task budget max_attempts=1 used up (1 made)"),
)


@given(failures, contexts)
def test_every_failure_gets_exactly_one_class(failure: Failure, context: RecoveryContext) -> None:
    decision = classify(failure, context)
    assert decision.recovery_class in set(RecoveryClass)
    assert decision.reason.startswith(decision.recovery_class.value + ": ")
    assert classify(failure, context) == decision  # a function of its inputs only


@given(failures, st.booleans())
def test_an_automatic_retry_is_never_r1(failure: Failure, idempotent: bool) -> None:
    context = RecoveryContext(idempotent, AttemptKind.AUTOMATIC_RETRY)
    assert classify(failure, context).recovery_class is not RecoveryClass.R1


@given(failures, st.booleans())
def test_a_failed_approved_recovery_is_always_r3(failure: Failure, idempotent: bool) -> None:
    """Unless its agent's session stopped on a deferred call: that waits for a person."""
    context = RecoveryContext(idempotent, AttemptKind.APPROVED_RECOVERY)
    expected = RecoveryClass.NONE if failure.kind is K.DEFERRED else RecoveryClass.R3
    assert classify(failure, context).recovery_class is expected


@given(failures, contexts)
def test_a_deferred_session_is_never_retried_or_suggested_in_any_attempt(
    failure: Failure, context: RecoveryContext
) -> None:
    deferred = Failure(K.DEFERRED, failure.message, partial=failure.partial)
    decision = classify(deferred, context)
    assert decision.recovery_class is RecoveryClass.NONE
    assert decision.outcome == "recovery_skipped"
    assert decision.rule.startswith("deferred: a person decides the tool call")


@given(failures, contexts)
def test_r1_only_when_side_effects_are_excluded_or_harmless(
    failure: Failure, context: RecoveryContext
) -> None:
    if classify(failure, context).recovery_class is RecoveryClass.R1:
        assert context.idempotent or failure.partial is Partial.FALSE
        assert failure.kind is not FailureKind.RATE_LIMITED or failure.retry_after_s is not None


@given(failures, contexts)
def test_an_escalated_failure_is_never_retried_or_suggested(
    failure: Failure, context: RecoveryContext
) -> None:
    escalated = Failure(K.ESCALATED, failure.message, partial=failure.partial)
    decision = classify(escalated, context)
    assert decision.outcome == "recovery_skipped"
    if context.attempt_kind is not AttemptKind.APPROVED_RECOVERY:
        assert decision.recovery_class is RecoveryClass.NONE
        assert decision.rule.startswith("escalated: a person decides")


@given(failures, contexts)
def test_a_recovery_the_budget_or_policy_would_refuse_is_r3_at_the_failure(
    failure: Failure, context: RecoveryContext
) -> None:
    """Never an R1 or R2 whose attempt cannot start: the evaluation says R3 at once."""
    refused = RecoveryContext(context.idempotent, context.attempt_kind, "run budget used up")
    allowed = RecoveryContext(context.idempotent, context.attempt_kind, None)
    decision = classify(failure, refused)
    assert decision.recovery_class in (RecoveryClass.R3, RecoveryClass.NONE)
    if classify(failure, allowed).recovery_class in (RecoveryClass.R1, RecoveryClass.R2):
        assert decision.recovery_class is RecoveryClass.R3
        assert "run budget used up" in decision.rule
    else:
        assert decision == classify(failure, allowed)  # nothing to refuse: the same decision
