"""Pause and resume (DESIGN §9): the workspace stops taking new work until a person says so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stoic.exceptions import UsageError

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["FLAG_LIMIT", "RESUME_PROCEDURES", "SIGNALS", "pause", "raise_flag", "resume"]

SIGNALS = {
    "dont-understand": "I don't fully understand this proposal",
    "rubber-stamping": "I'm approving without really reading",
    "spot-checking": "I'm only spot-checking external systems",
    "rushed": "decisions feel rushed",
    "unsure-effect": "I'm unsure what executing this would do",
    "batch-too-large": "the batch is too large to review well",
    "rejection-needs-investigation": "the rejections need investigating",
}
"""The trust signals a reviewer reports with `stoic flag`."""
FLAG_LIMIT = 3
"""Red flags in one review session (or since the last resume) that pause the workspace."""

RESUME_PROCEDURES = {
    "smaller-batch": "after a trust issue: review in smaller batches",
    "verification-batch": "after a system error: a verification batch, the audit clean first",
    "manual-verification": "after an execution failure: the next executions are confirmed by hand",
}


def pause(
    workspace: Workspace,
    *,
    reason: str,
    criterion: str,
    actor: str = "system:stoic",
    inputs: dict[str, Any] | None = None,
) -> bool:
    """Record a pause (the queue is left as it is); False when already paused."""
    if workspace.status().paused is not None:
        return False
    human = actor.startswith("human:")
    workspace.record(
        "pause",
        "paused",
        reason,
        source="human" if human else "system",
        actor=actor,
        trigger="explicit" if human else "reactive",
        inputs={"criterion": criterion, **(inputs or {})},
    )
    workspace.sync_projections()
    return True


def resume(
    workspace: Workspace,
    *,
    procedure: str,
    reason: str,
    actor: str,
    batch_size: int | None = None,
) -> None:
    """Resume, naming the procedure followed; a verification batch needs a clean audit first."""
    paused = workspace.status().paused
    if paused is None:
        raise UsageError("the workspace is not paused")
    if procedure == "smaller-batch" and batch_size is None:
        raise UsageError("--procedure smaller-batch needs --batch-size N")
    if procedure == "verification-batch" or paused.get("criterion") == "major_incident":
        report = workspace.audit()
        if not report.ok:
            raise UsageError(
                f"the audit is not clean ({len(report.violations)} violations): run `stoic audit`,"
                " repair what it names, then resume"
            )
    workspace.record(
        "pause",
        "resumed",
        reason,
        source="human",
        actor=actor,
        trigger="explicit",
        inputs={
            "procedure": procedure,
            "paused_by": paused.get("criterion"),
            **({"batch_size": batch_size} if batch_size is not None else {}),
        },
    )
    workspace.sync_projections()


def raise_flag(
    workspace: Workspace,
    *,
    signal: str,
    actor: str,
    note: str | None = None,
    session: str | None = None,
    session_flags: int | None = None,
    detected: bool = False,
) -> bool:
    """Record a red flag; returns True when it paused the workspace.

    Three flags in one review session pause it; outside a session, three since the last resume.
    """
    what = SIGNALS.get(signal, signal)
    workspace.record(
        "red_flag",
        "raised",
        f"Red flag: {what}" + (f" — {note}" if note else "") + ".",
        source="system" if detected else "human",
        actor=actor,
        trigger="reactive" if detected else "explicit",
        inputs={
            "signal": signal,
            "detected": detected,
            **({"session": session} if session else {}),
            **({"note": note} if note else {}),
        },
    )
    workspace.sync_projections()
    count = session_flags if session_flags is not None else workspace.status().flags_since_resume
    if count >= FLAG_LIMIT:
        scope = "in one review session" if session_flags is not None else "since the last resume"
        return pause(
            workspace,
            reason=f"{count} red flags {scope} (the last: {what})",
            criterion="red_flags",
            inputs={"flags": count},
        )
    return False
