"""The workspace that services and interfaces open: the store, with notices delivered."""

from __future__ import annotations

from typing import ClassVar

from stoic.run.notifiers import deliver
from stoic.store.workspace import Deliverer
from stoic.store.workspace import Workspace as StoreWorkspace

__all__ = ["Workspace"]


class Workspace(StoreWorkspace):
    """An open workspace whose announcements reach the configured notifiers.

    Use `Workspace.init` or `Workspace.open`; close it (or use `with`).
    """

    deliverer: ClassVar[Deliverer | None] = staticmethod(deliver)
