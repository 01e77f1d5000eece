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

import importlib

TYPE_CHECKING = False  # not `typing`'s: `stoic --version` imports nothing it does not use
if TYPE_CHECKING:
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
    from stoic.services.workspace import Workspace
    from stoic.steps import step_done
del TYPE_CHECKING

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

# Each exported name is imported from its module when first asked for: `stoic --version`, a
# task's worker (`stoic.steps`, `stoic.errors`) and a command that needs one service must not
# load the whole control plane that `Workspace` or the audit bring with them.
_HOMES = {
    "AuditReport": "stoic.core.audit",
    "Violation": "stoic.core.audit",
    "ViolationCode": "stoic.core.audit",
    "WorkspaceStatus": "stoic.core.projection",
    "Decision": "stoic.core.records",
    "Record": "stoic.core.records",
    "ConfigError": "stoic.exceptions",
    "InvalidDecision": "stoic.exceptions",
    "LogCorrupt": "stoic.exceptions",
    "LogTornTail": "stoic.exceptions",
    "ProjectionMismatch": "stoic.exceptions",
    "StoicError": "stoic.exceptions",
    "UsageError": "stoic.exceptions",
    "WaitTimedOut": "stoic.exceptions",
    "WorkspaceError": "stoic.exceptions",
    "WorkspaceExists": "stoic.exceptions",
    "WorkspaceNotFound": "stoic.exceptions",
    "WorkspaceNotWritable": "stoic.exceptions",
    "WorkspacePaused": "stoic.exceptions",
    "escalate": "stoic.failures",
    "Workspace": "stoic.services.workspace",
    "step_done": "stoic.steps",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'stoic' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
