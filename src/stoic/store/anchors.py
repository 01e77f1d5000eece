"""Checking the log against anchors kept outside the workspace (DESIGN §12).

An anchor is usually a recent head, so the log is read backwards from its end and only as far
as the oldest anchor; nothing here trusts a projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from stoic.core.audit import Anchor, Violation, check_anchor
from stoic.store.log import FileDecisionLog

__all__ = ["check_anchors", "log_head"]


def log_head(log: FileDecisionLog) -> Anchor | None:
    """The last whole record's seq and hash (None for an empty log)."""
    tail = log.tail_state()
    return Anchor(tail.last_seq, tail.last_hash) if tail.last_seq else None


def check_anchors(log: FileDecisionLog, anchors: Sequence[Anchor]) -> list[Violation]:
    """One violation for each anchor the log does not hold exactly."""
    if not anchors:
        return []
    tail = log.tail_state()
    wanted = {anchor.seq for anchor in anchors}
    oldest = min(wanted)
    found: dict[int, str] = {}
    last_seq = tail.last_seq
    for line in log.lines_reversed(tail.good_end):
        try:
            record = orjson.loads(line)
            seq, digest = record["seq"], record["hash"]
        except (orjson.JSONDecodeError, TypeError, KeyError):
            continue  # damage is the chain check's to report; an anchor there is simply absent
        if not isinstance(seq, int) or not isinstance(digest, str):
            continue
        last_seq = max(last_seq, seq)
        if seq in wanted and seq not in found:
            found[seq] = digest
        if seq < oldest or len(found) == len(wanted):
            break
    return [
        violation
        for anchor in anchors
        if (violation := check_anchor(anchor, found.get(anchor.seq), last_seq)) is not None
    ]
