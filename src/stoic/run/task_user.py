"""`runner.task_user`: when stoic runs as root, the processes it starts for tasks run as another
user, who cannot read the runner's memory or environment, nor write its log."""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from stoic.exceptions import ConfigError

__all__ = ["TaskUser", "resolve_task_user"]


@dataclass(frozen=True, slots=True)
class TaskUser:
    uid: int
    gid: int
    name: str
    home: str

    def environment(self) -> dict[bytes, bytes]:
        """What names the user in a task's environment: its own, never the runner's."""
        return {
            b"HOME": self.home.encode(),
            b"USER": self.name.encode(),
            b"LOGNAME": self.name.encode(),
        }

    def own(self, folder: Path) -> None:
        """A folder the task user writes (its result files): theirs alone."""
        os.chown(folder, self.uid, self.gid, follow_symlinks=False)
        folder.chmod(0o700, follow_symlinks=False)


def resolve_task_user(setting: str) -> TaskUser | None:
    """The user `runner.task_user` names, or None when unset; refused unless stoic is root."""
    if not setting:
        return None
    if os.geteuid() != 0:
        raise ConfigError(
            f"runner.task_user is {setting!r}, but stoic is running as uid {os.geteuid()}: only"
            " root can run tasks as another user (hint: unset it, or run stoic as root)"
        )
    try:
        entry = pwd.getpwuid(int(setting)) if setting.isdigit() else pwd.getpwnam(setting)
    except KeyError:
        raise ConfigError(f"runner.task_user: no user {setting!r} on this machine") from None
    if entry.pw_uid == 0:
        raise ConfigError(
            f"runner.task_user {setting!r} is root: tasks would run as stoic itself"
            " (hint: name an unprivileged user)"
        )
    return TaskUser(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
