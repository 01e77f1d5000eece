"""The file backend's watch on the workspace pause (DESIGN §9): no task starts after a pause.

A pause is recorded by another process (`stoic stop`, a failed audit, a third red flag …). The
runner asks, in the same transaction that appends its start records, so no start slips in
between a pause and the check for it; this watch reads only the lines the log gained since it
last looked, from a byte offset that never leaves the file backend.
"""

from __future__ import annotations

import orjson

from stoic.core import next_steps
from stoic.core.pause import PauseInForce, pause_after
from stoic.core.projection import WorkspaceStatus
from stoic.exceptions import LogCorrupt
from stoic.store.log import FileDecisionLog
from stoic.store.projections import Stamp

__all__ = ["PauseWatch"]

_PAUSE_LINE = b'"decision_type":"pause"'
"""Only lines holding this can be pause records (canonical JSON); the rest are not parsed."""


class PauseWatch:
    """Follows the decision log for pauses and resumes, from where the status projection ends."""

    def __init__(self, log: FileDecisionLog, stamp: Stamp[WorkspaceStatus]) -> None:
        """`stamp`: the status projection caught up with the log and checked against it."""
        self.log = log
        paused = stamp.state.paused
        self.offset = stamp.log_offset
        self.in_force = (
            PauseInForce(int(paused.get("seq", 0)), str(paused["reason"]), str(paused["criterion"]))
            if paused is not None
            else None
        )
        log.follow_appends(self._appended)

    def _appended(self, start: int, payload: bytes) -> None:
        """Lines this process appended right where the watch had read to, none of them a pause
        record, are read past without reading them back; anything else is read by `check`."""
        if start == self.offset and _PAUSE_LINE not in payload:
            self.offset = start + len(payload)

    def check(self) -> PauseInForce | None:
        """The pause in force now. The caller holds the log's writer lock, so the answer stays
        true until it lets go: nobody can record a pause in between."""
        assert self.log.held_here(), "check the pause in the transaction that appends the starts"
        if self.log.end_under_lock() == self.offset:
            return self.in_force  # nothing was appended since it last looked
        # To the log's end as one open file sees it: under the writer lock it cannot grow.
        for _line, offset, raw, complete in self.log.lines(self.offset):
            if not complete:
                break  # a torn tail: appends are refused until it is repaired
            if _PAUSE_LINE in raw:
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise LogCorrupt(
                        f"{self.log.path}: the line at byte {offset} is not a valid record;"
                        f" run {next_steps.audit()}"
                    ) from None
                self.in_force = pause_after(self.in_force, record)
            self.offset = offset + len(raw) + 1
        return self.in_force
