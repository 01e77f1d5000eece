"""`quarantine/<time>/`: where a repair puts what it would otherwise remove (DESIGN §3).

A repair never deletes evidence. A file it is about to replace or remove is renamed into the
quarantine folder under its own workspace path, and bytes it cuts from the log are written
there first; the `audit/repaired` record names the folder and every path in it.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import fsync_dir, write_all

__all__ = ["QUARANTINE", "Quarantine"]

QUARANTINE = Path("quarantine")


class Quarantine:
    """One repair's quarantine folder, made on first use."""

    def __init__(self, root: Path, *, now: datetime | None = None) -> None:
        self.root = root
        moment = now or datetime.now(UTC)
        self.relative = QUARANTINE / moment.strftime("%Y%m%dT%H%M%S.%fZ")
        self.kept: list[str] = []
        """Workspace paths (relative) moved or written into the folder, in order."""

    @property
    def folder(self) -> Path:
        return self.root / self.relative

    def move(self, relative: str) -> bool:
        """Rename a workspace file into the quarantine; False when there is no such file."""
        source = self._inside(relative)
        folder = self.root
        for part in Path(relative).parent.parts:  # reached through real folders only
            folder = folder / part
            if folder.is_symlink():
                raise WorkspaceNotWritable(
                    f"cannot quarantine {relative}: {folder} is a link, not a folder; a repair"
                    " never follows one"
                )
            if not _is_folder(folder):
                return False
        try:
            os.lstat(source)
        except FileNotFoundError:
            return False
        target = self._target(relative)
        try:
            source.rename(target)  # a planted link is moved as a link, never followed
            fsync_dir(target.parent)
            fsync_dir(source.parent)
        except OSError as exc:
            raise _not_writable(target, exc) from exc
        self.kept.append(relative)
        return True

    def keep_bytes(self, relative: str, data: bytes) -> None:
        """Write `data` (what is about to be cut) into the quarantine, durably."""
        target = self._target(relative)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(target.parent)
        except OSError as exc:
            raise _not_writable(target, exc) from exc
        self.kept.append(relative)

    def _inside(self, relative: str) -> Path:
        path = Path(relative)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError(f"not a workspace path: {relative!r}")
        return self.root / path

    def _target(self, relative: str) -> Path:
        """The place for `relative` inside the folder; every folder on the way is a real one."""
        self._inside(relative)
        folder = self.root
        for part in (*self.relative.parts, *Path(relative).parent.parts):
            folder = folder / part
            try:
                folder.mkdir(0o755)
                fsync_dir(folder.parent)
            except FileExistsError:
                pass
            except OSError as exc:
                raise _not_writable(folder, exc) from exc
            if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link or a file planted there
                raise WorkspaceNotWritable(
                    f"cannot quarantine into {folder}: it is not a folder (a link?); nothing"
                    " was moved"
                )
        return folder / Path(relative).name


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _not_writable(path: Path, exc: OSError) -> WorkspaceNotWritable:
    return WorkspaceNotWritable(f"cannot quarantine {path}: {exc.strerror or exc}")
