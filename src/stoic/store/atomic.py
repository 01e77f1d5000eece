"""Durable file replacement: a file is either its old self or its new self, never half of each.

Both writers work inside the workspace `root` they are given, through `confined_dir`: no
folder on the way and no file they open may be a link planted in the workspace.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from stoic.exceptions import WorkspaceNotWritable
from stoic.store.confined import confined_dir, open_at, open_confined, relative_inside

__all__ = ["append_durably", "atomic_write", "fsync_dir", "write_all"]


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of `data`: a short write (a size limit, a full disk) is never lost
    count of; the next write says why it stopped."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def atomic_write(path: Path, data: bytes, *, root: Path, mode: int = 0o644) -> None:
    """Replace `path` (below `root`) with `data`: temp file, fsync, rename, fsync of the folder.
    The new file is created with `mode`, so a private one is never readable by others.

    A link standing at `path` is replaced, never written through; a link on the way is refused.
    """
    relative = relative_inside(root, path)
    tmp = f".{relative.name}.{os.getpid()}.{threading.get_native_id()}.tmp"
    try:
        with confined_dir(root, relative.parent) as folder:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            try:
                fd = open_at(folder, path.with_name(tmp), flags, mode)
            except FileExistsError:  # left by a dead process that had this pid and thread id
                os.unlink(tmp, dir_fd=folder)
                fd = open_at(folder, path.with_name(tmp), flags, mode)
            try:
                try:
                    write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, relative.name, src_dir_fd=folder, dst_dir_fd=folder)
                os.fsync(folder)
            except OSError:
                _remove(tmp, folder)
                raise
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot write {path}: {exc.strerror or exc}") from exc


def _remove(name: str, folder: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=folder)


def append_durably(path: Path, data: bytes, *, root: Path) -> None:
    """Append `data` to `path` (below `root`; created if need be) and fsync it: for logs kept
    as text. A link at `path` or on the way to it is refused, never followed."""
    try:
        fd = open_confined(root, path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot write {path}: {exc.strerror or exc}") from exc
