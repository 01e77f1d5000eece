"""stoic: a control plane for autonomous work that stays honest when things go wrong.

The public API::

    import stoic

    ws = stoic.Workspace.init(".stoic")          # or stoic.Workspace.open(".stoic")
    ws.record("execution", "started", "Task build started.", run_id="r1", task_id="build")
    for record in ws.records(run_id="r1"):
        print(record.seq, record.decision_type, record.decision_outcome)
    report = ws.audit()
"""

from __future__ import annotations

import typing

from stoic.core.audit import AuditReport, Violation, ViolationCode
from stoic.core.projection import WorkspaceStatus
from stoic.core.records import Decision, Record
from stoic.exceptions import (
    ConfigError,
    InvalidDecision,
    LogCorrupt,
    LogTornTail,
    ProjectionMismatch,
    StoicError,
    UsageError,
    WaitTimedOut,
    WorkspaceError,
    WorkspaceExists,
    WorkspaceNotFound,
    WorkspaceNotWritable,
    WorkspacePaused,
)
from stoic.failures import escalate
from stoic.steps import step_done

if typing.TYPE_CHECKING:
    from stoic.services.workspace import Workspace

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "ConfigError",
    "Decision",
    "InvalidDecision",
    "LogCorrupt",
    "LogTornTail",
    "ProjectionMismatch",
    "Record",
    "StoicError",
    "UsageError",
    "Violation",
    "ViolationCode",
    "WaitTimedOut",
    "Workspace",
    "WorkspaceError",
    "WorkspaceExists",
    "WorkspaceNotFound",
    "WorkspaceNotWritable",
    "WorkspacePaused",
    "WorkspaceStatus",
    "__version__",
    "escalate",
    "step_done",
]


def __getattr__(name: str) -> object:
    # A task's worker imports `stoic.steps` or `stoic.errors`: it must not load the whole
    # control plane (services, runtime, store) that `Workspace` brings with it.
    if name == "Workspace":
        from stoic.services.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'stoic' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "Workspace"})
