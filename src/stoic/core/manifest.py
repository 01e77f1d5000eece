"""The bytes of `manifests/queue_manifest.json`, laid out so one decision rewrites one row.

The manifest (DESIGN §8) is ordinary JSON — `jq` reads it like any other file — whose padding
is whitespace: a header region of `header_bytes` (the manifest's fields, spaces, then
`,"proposals":[`), one slot of `row_bytes` per proposal in creation order (a newline, a
separator — a space for the first row, a comma after —, the row, spaces), then `\\n]}\\n`.

Every row sits at `header_bytes + index * row_bytes` and every row is on its own line, so a
decision patches its proposal's slot and the header in place, and a new proposal writes one
slot at the end: the cost of a decision does not grow with the queue. A row or a header that
outgrows its room makes the writer lay the whole file out again, with room to spare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from stoic.core.proposals import ProposalStatus, QueueState

__all__ = [
    "CLOSE",
    "MANIFEST_VERSION",
    "PAGE",
    "Layout",
    "ManifestHeader",
    "header_region",
    "manifest_document",
    "read_header",
    "render",
    "slot",
]

MANIFEST_VERSION = 2
PAGE = 4096
"""The header region is a whole number of pages: patching it rewrites whole pages only."""
MIN_ROW_BYTES = 160
_HEADER_ROOM = 1024
"""Spare header bytes when laying out: new proposal types and longer counts fit for a while."""
_OPEN = b',"proposals":['
CLOSE = b"\n]}\n"
"""What follows the last row."""
_GROWTH = max(len(status.value) for status in ProposalStatus) - min(
    len(status.value) for status in ProposalStatus
)
_LEAD = re.compile(
    rb'\{"manifest_version":(\d+),"layout":\{"header_bytes":(\d+),"row_bytes":(\d+)\}'
)


@dataclass(frozen=True, slots=True)
class Layout:
    header_bytes: int
    row_bytes: int

    def offset(self, index: int) -> int:
        """Where the slot of the `index`-th proposal (in creation order) starts."""
        return self.header_bytes + index * self.row_bytes

    def size(self, rows: int) -> int:
        """The file's length with `rows` proposals."""
        return self.offset(rows) + len(CLOSE)


@dataclass(frozen=True, slots=True)
class ManifestHeader:
    """What a writer needs to know of a manifest on disk before patching it."""

    layout: Layout
    last_seq: int


def _fields(state: QueueState, generated_at: str, layout: Layout) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "layout": {"header_bytes": layout.header_bytes, "row_bytes": layout.row_bytes},
        "generated_at": generated_at,
        "last_seq": state.last_seq,
        "summary": {f"total_{status.value}": state.counts[status] for status in ProposalStatus},
        "pending_by_type": dict(sorted(state.pending_by_type.items())),
        "pending_by_confidence": dict(sorted(state.pending_by_band.items())),
        "oldest_pending": state.oldest_pending(),
        "newest_pending": state.newest_pending(),
    }


def header_region(state: QueueState, generated_at: str, layout: Layout) -> bytes | None:
    """The first `layout.header_bytes` of the file; None when the fields no longer fit."""
    body = orjson.dumps(_fields(state, generated_at, layout))[:-1]
    room = layout.header_bytes - len(body) - len(_OPEN)
    if room < 0:
        return None
    return body + b" " * room + _OPEN


def slot(row: bytes, index: int, layout: Layout) -> bytes | None:
    """The `index`-th row's slot; None when the row does not fit the layout's width."""
    room = layout.row_bytes - len(row) - 2
    if room < 0:
        return None
    return b"\n" + (b"," if index else b" ") + row + b" " * room


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def render(state: QueueState, generated_at: str) -> tuple[bytes, Layout]:
    """The whole manifest, laid out afresh with room for rows to change status and grow."""
    rows = state.rows()
    widest = max((len(row) for row in rows), default=0)
    row_bytes = max(MIN_ROW_BYTES, _round_up(widest + 2 + _GROWTH, 32))
    probe = Layout(header_bytes=PAGE * 1024, row_bytes=row_bytes)
    needed = len(orjson.dumps(_fields(state, generated_at, probe))) + len(_OPEN) + _HEADER_ROOM
    layout = Layout(header_bytes=_round_up(needed, PAGE), row_bytes=row_bytes)
    header = header_region(state, generated_at, layout)
    assert header is not None  # laid out to fit
    parts = [header]
    for index, row in enumerate(rows):
        laid = slot(row, index, layout)
        assert laid is not None  # as wide as the widest row
        parts.append(laid)
    parts.append(CLOSE)
    return b"".join(parts), layout


def read_header(head: bytes) -> ManifestHeader | None:
    """The layout and last_seq of a manifest whose first bytes are `head`.

    `head` must hold the whole header region (a caller reads `PAGE` bytes, then more if the
    layout says so). None for anything else: an older manifest, a damaged one, a hand edit
    that moved the layout — the writer then lays the file out again from the log.
    """
    lead = _LEAD.match(head)
    if lead is None or int(lead[1]) != MANIFEST_VERSION:
        return None
    layout = Layout(header_bytes=int(lead[2]), row_bytes=int(lead[3]))
    if layout.header_bytes % PAGE or layout.row_bytes < MIN_ROW_BYTES:
        return None
    region = head[: layout.header_bytes]
    if len(region) != layout.header_bytes or not region.endswith(_OPEN):
        return None
    try:
        fields = orjson.loads(region[: -len(_OPEN)] + b"}")
        last_seq = int(fields["last_seq"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return ManifestHeader(layout=layout, last_seq=last_seq)


def manifest_document(state: QueueState, generated_at: str) -> dict[str, Any]:
    """The manifest as data, for comparing with what a file holds (layout aside)."""
    fields = _fields(state, generated_at, Layout(0, 0))
    del fields["layout"]
    return {**fields, "proposals": [orjson.loads(row) for row in state.rows()]}
