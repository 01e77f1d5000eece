"""What the contract tests share: reading records back, and a notifier that records."""

from __future__ import annotations

from typing import Any

from stoic.store.config import NotifierSettings
from stoic.store.workspace import Workspace


def outcomes(workspace: Workspace, decision_type: str) -> list[str]:
    """The outcomes of every record of one type, in log order."""
    return [r.decision_outcome for r in workspace.records(decision_type=decision_type)]


def notified(workspace: Workspace) -> list[str]:
    """The events the recording notifier was told of, in log order."""
    return [
        str(r.decision_inputs["event"])
        for r in workspace.records(decision_type="notification")
        if r.decision_outcome == "sent"
    ]


def record_notices(workspace: Workspace) -> None:
    """Give the open workspace one command notifier (`true`): every notice it delivers is then
    on record as notification/sent."""
    notifier = NotifierSettings(kind="command", command=["true"])
    workspace.settings = workspace.settings.model_copy(update={"notifiers": [notifier]})


def last(workspace: Workspace, decision_type: str) -> Any:
    """The last record of one type."""
    found = list(workspace.records(decision_type=decision_type))
    assert found, f"no {decision_type} record"
    return found[-1]
