"""Attempt outputs in the file backend: `runs/<run_id>/tasks/<task_id>/attempt-<n>.log`.

An output is a new file, never one already there: that is evidence, or a hard link planted to
have stoic overwrite another file. Reading refuses links and hard links for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from stoic.exceptions import WorkspaceError, WorkspaceNotWritable
from stoic.store.confined import LinkRefused, open_confined
from stoic.store.leases import run_folder

__all__ = ["FileOutputWriter", "FileOutputs", "output_path"]

_CHUNK = 64 * 1024


def output_path(root: Path, run_id: str, task_id: str, attempt: int) -> Path:
    return run_folder(root, run_id) / "tasks" / task_id / f"attempt-{attempt}.log"


class FileOutputWriter:
    """One attempt's output file, open for appending."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def write(self, chunk: bytes) -> int:
        if self._fd is None:
            raise WorkspaceError(f"the attempt log {self.path} is closed")
        try:
            return os.write(self._fd, chunk)
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"cannot write the attempt log {self.path}: {exc.strerror or exc}"
            ) from exc

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class FileOutputs:
    """The attempt outputs of one workspace."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open_writer(self, run_id: str, task_id: str, attempt: int) -> FileOutputWriter:
        path = output_path(self.root, run_id, task_id, attempt)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        try:
            fd = open_confined(self.root, path, flags, create_parents=True)
        except LinkRefused as exc:
            raise WorkspaceError(f"cannot write the attempt log: {exc.strerror}") from exc
        except FileExistsError as exc:
            raise WorkspaceError(
                f"cannot write the attempt log {path}: a file is already there"
                " (stoic never writes over or through one; move it away)"
            ) from exc
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"cannot write the attempt log {path}: {exc.strerror or exc}"
            ) from exc
        return FileOutputWriter(fd, path)

    def read(self, run_id: str, task_id: str, attempt: int) -> Iterator[bytes]:
        path = output_path(self.root, run_id, task_id, attempt)
        try:
            fd = open_confined(self.root, path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise WorkspaceError(f"cannot read the attempt log {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as handle:
            if os.fstat(fd).st_nlink != 1:
                raise WorkspaceError(
                    f"cannot read the attempt log {path}: it is a hard link to another file"
                    " (hint: move it away)"
                )
            while chunk := handle.read(_CHUNK):
                yield chunk
