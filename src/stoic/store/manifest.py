"""Writing `manifests/queue_manifest.json`: one row patched in place, or the whole file anew.

The manifest is a projection of the log (DESIGN §8) and the one workspace file patched in place
rather than replaced: replacing it would write every proposal's row for every decision, so the
cost of one approval would grow with the queue. Its layout (`stoic.core.manifest`) puts each
row at a fixed offset.

A patch is made only over a manifest that already reflects every proposal record before the
new one: its header's `last_seq` reaches that record and its length matches its layout.
Anything else — no file, an older format, a damaged or a lagging one (a writer killed between
its record and its manifest) — is rendered whole from the fold and replaced atomically.

The row is written and synced before the header, whose `last_seq` is the commit mark: a writer
killed in between leaves a header that lags, and the next writer renders the file anew.
`stoic audit` compares every row with the log either way.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from stoic.core.manifest import (
    CLOSE,
    PAGE,
    ManifestHeader,
    header_region,
    read_header,
    render,
    slot,
)
from stoic.core.proposals import QueueState
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import atomic_write
from stoic.store.confined import LinkRefused, open_confined
from stoic.store.log import utc_timestamp

__all__ = ["MANIFEST", "reflected_seq", "update_manifest", "write_manifest"]

MANIFEST = Path("manifests/queue_manifest.json")


def write_manifest(root: Path, state: QueueState) -> None:
    """Lay the whole manifest out from the fold and replace the file atomically."""
    data, _layout = render(state, utc_timestamp())
    atomic_write(root / MANIFEST, data, root=root)


def reflected_seq(root: Path) -> int | None:
    """The `last_seq` the manifest on disk reflects: 0 when there is none yet, None when it
    cannot be read as a manifest of this version (that is the audit's to name)."""
    try:
        fd = open_confined(root, root / MANIFEST, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    except LinkRefused:
        return None
    try:
        found = _header(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return found.last_seq if found is not None else None


def _header(fd: int, size: int) -> ManifestHeader | None:
    found = read_header(os.pread(fd, PAGE, 0))
    if found is not None and PAGE < found.layout.header_bytes < size:
        found = read_header(os.pread(fd, found.layout.header_bytes, 0))
    return found


def update_manifest(root: Path, state: QueueState, proposal_id: str, reflected_seq: int) -> None:
    """Bring the manifest in line after one new record about `proposal_id`.

    `reflected_seq` is the seq of the proposal record before the new one: the manifest on disk
    must reflect it for a patch to be right.
    """
    path = root / MANIFEST
    try:
        patched = _patch(root, path, state, proposal_id, reflected_seq)
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not patched:
        write_manifest(root, state)


def _patch(root: Path, path: Path, state: QueueState, proposal_id: str, reflected_seq: int) -> bool:
    try:
        # Never write through a link planted in its place: replacing it is safe, following is not.
        fd = open_confined(root, path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        size = os.fstat(fd).st_size
        found = _header(fd, size)
        if found is None or found.last_seq < reflected_seq:
            return False
        layout = found.layout
        index = state.position[proposal_id]
        rows = len(state.position)
        appended = index == rows - 1 and size == layout.size(rows - 1)
        if not appended and size != layout.size(rows):
            return False
        laid = slot(state.row(proposal_id), index, layout)
        header = header_region(state, utc_timestamp(), layout)
        if laid is None or header is None:
            return False
        _write_at(fd, laid + CLOSE if appended else laid, layout.offset(index))
        os.fdatasync(fd)
        _write_at(fd, header, 0)
        os.fdatasync(fd)
        return True
    finally:
        os.close(fd)


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
