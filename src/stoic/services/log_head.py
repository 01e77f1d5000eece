"""Whether a fold a server keeps still stands for the log as it is now.

A fold kept between looks (the users' roster, the control plane's survey) is good only while
the log still begins with the records it folded. The log's head alone cannot tell: a log
restored from a backup and appended past the old head has a longer head and other records.
The record the fold stopped at, read back at its seq, can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stoic.store.interface import Head
    from stoic.store.workspace import Workspace

__all__ = ["holds"]


def holds(workspace: Workspace, seen: Head) -> bool:
    """Whether the log still has the record `seen` names, at its seq with its hash: a fold up
    to `seen` is then a fold of this log's first records. One bisection and one read."""
    if seen.seq == 0:
        return True
    record = next(workspace.read(seen.seq - 1), None)
    return record is not None and record.seq == seen.seq and record.hash == seen.hash
