"""Process groups: every task runs in its own, and is stopped as a whole."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

__all__ = ["kill_recorded_group", "process_start_time", "stop_group", "write_pid_file"]


def stop_group(pgid: int, grace_seconds: float) -> None:
    """TERM the whole group, wait up to `grace_seconds` for it to go, then KILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A group whose only member is an unreaped zombie leader is gone for our purposes.
    return any(_member_alive(pid, pgid) for pid in _pids())


def _pids() -> list[int]:
    try:
        return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    except OSError:
        return []


def _member_alive(pid: int, pgid: int) -> bool:
    stat = _stat_fields(pid)
    return stat is not None and int(stat[2]) == pgid and stat[0] != "Z"


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state is [0], pgid [2], start [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def process_start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot): tells a pid apart from its reuse."""
    stat = _stat_fields(pid)
    return stat[19] if stat is not None else None


def write_pid_file(path: Path, pid: int) -> None:
    """Remember a task's process group, so a later `stoic continue` can stop what survived."""
    path.write_text(f"{pid} {process_start_time(pid) or '-'}\n")


def kill_recorded_group(path: Path) -> bool:
    """KILL the group a pid file names if its leader is still the same process."""
    try:
        pid_text, start = path.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return False
    leader_start = process_start_time(pid)
    if leader_start is not None and leader_start != start:
        return False  # the pid now belongs to another process
    if leader_start is None and not _group_alive(pid):
        return False  # leader and members are all gone
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
        return True
    return False
