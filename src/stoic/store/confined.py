"""Files inside the workspace, opened without ever following a link planted in it (DESIGN §3).

`O_NOFOLLOW` guards only a path's last component, so every folder between the workspace root
and the file is opened one at a time, relative to the one before, with
`O_NOFOLLOW | O_DIRECTORY`: a link (or a file) where a folder belongs is refused, whatever it
points to and however late it was planted, because the walk holds each real folder open.
The root itself is the user's choice and may be reached through a link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePath

__all__ = [
    "LinkRefused",
    "confined_dir",
    "open_at",
    "open_confined",
    "read_confined",
    "relative_inside",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkRefused(OSError):
    """A link, or something that is not a folder or a plain file, stands where the workspace
    has a folder or a file.

    An OSError, so every caller that turns a failed write into a clear error handles it too.
    """


def relative_inside(root: Path, path: Path) -> PurePath:
    """`path` as a path below `root`; a path that leaves it is refused, never followed."""
    # Plain string work: every workspace file is opened through here, and PurePath.relative_to
    # costs more than the opens themselves.
    base, full = os.fspath(root).rstrip("/"), os.fspath(path)
    rest = full[len(base) + 1 :] if full.startswith(base + "/") else ""
    parts = [part for part in rest.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise LinkRefused(errno.EXDEV, f"{path} is not inside {root}", str(path))
    return PurePath(*parts)


@contextlib.contextmanager
def confined_dir(root: Path, folder: PurePath, *, create: bool = False) -> Iterator[int]:
    """An open descriptor of `root/folder`, every component checked; `create` makes the
    missing ones (as `mkdir -p` would, but never through a link), each one's entry fsynced in
    its parent, so a file made inside it and fsynced is not lost with its folder on a crash."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walked = root
        for name in folder.parts:
            walked = walked / name
            if create:
                try:
                    os.mkdir(name, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                else:
                    os.fsync(fd)
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(exc, walked, "folder") from exc
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def open_confined(
    root: Path, path: Path, flags: int, mode: int = 0o644, *, create_parents: bool = False
) -> int:
    """Open `path` (below `root`) with `flags`; no component of it may be a link."""
    relative = relative_inside(root, path)
    with confined_dir(root, relative.parent, create=create_parents) as folder:
        return open_at(folder, path, flags, mode)


def open_at(folder: int, path: Path, flags: int, mode: int = 0o644) -> int:
    """Open the file named `path.name` in the already checked `folder`, never through a link.

    Only a plain file is opened: a FIFO or a device planted there would block the reader (or
    feed it forever), so the open does not wait (O_NONBLOCK, which plain files ignore) and
    anything else is refused.
    """
    try:
        fd = os.open(
            path.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode, dir_fd=folder
        )
    except OSError as exc:
        raise _refusal(exc, path, "file") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LinkRefused(errno.EINVAL, f"{path} is not a plain file (hint: move it away)")
    return fd


def read_confined(root: Path, path: Path) -> bytes:
    """The whole of `path` (below `root`), read without following a link."""
    fd = open_confined(root, path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _refusal(exc: OSError, path: Path, what: str) -> OSError:
    """A link or a stray file in the way becomes a LinkRefused that says so; other errors
    (missing, full, read-only) pass as they are."""
    if exc.errno == errno.ENXIO:  # a FIFO nobody reads, or a device
        return LinkRefused(exc.errno, f"{path} is not a plain file (hint: move it away)")
    if exc.errno == errno.ELOOP or (exc.errno == errno.ENOTDIR and what == "folder"):
        if path.is_symlink():
            found = "is a link; stoic never follows a link inside the workspace"
        else:
            found = f"is not a folder; stoic keeps a {what} there"
        return LinkRefused(exc.errno, f"{path} {found} (hint: move it away)", str(path))
    if exc.filename is None:
        exc.filename = str(path)
    return exc
