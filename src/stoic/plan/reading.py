"""Reading a file a person named (a plan, `stoic.toml`): a regular file, and not without end.

`Path.read_bytes()` on a FIFO waits for a writer forever, and on `/dev/zero` reads until memory
runs out; either from a mistyped path or a planted file would hang or crash the command. The
file is opened without blocking, checked to be a regular file, and read up to a limit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["NotARegularFile", "TooLarge", "read_bounded"]


class NotARegularFile(Exception):
    """The path is a FIFO, a device, a socket or a folder."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class TooLarge(Exception):
    """The file holds more than the limit."""


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at `path`; raises NotARegularFile, TooLarge or OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(_KINDS.get(stat.S_IFMT(mode), "not a regular file"))
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"more than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
