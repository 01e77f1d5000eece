"""Pause and resume (DESIGN §9): the workspace stops taking new work until a person says so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stoic.exceptions import UsageError

if TYPE_CHECKING:
    from stoic.store.workspace import Workspace

__all__ = ["RESUME_PROCEDURES", "pause", "resume"]

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
