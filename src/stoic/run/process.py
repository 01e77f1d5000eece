"""Finding and stopping what a dead runner's tasks left running."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["kill_leftovers"]


def _environ(pid: int) -> dict[bytes, bytes] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (entry.partition(b"=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def kill_leftovers(run_id: str, task_id: str, attempt: int) -> int:
    """KILL the process groups of processes started for one attempt; returns how many.

    Every task process carries STOIC_RUN_ID, STOIC_TASK_ID and STOIC_ATTEMPT in the
    environment it was started with, and so do its children: that is how they are found,
    with no state written on the way to starting them.
    """
    wanted = {
        b"STOIC_RUN_ID": run_id.encode(),
        b"STOIC_TASK_ID": task_id.encode(),
        b"STOIC_ATTEMPT": str(attempt).encode(),
    }
    own_group = os.getpgid(0)
    groups: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        environ = _environ(int(entry.name))
        if environ is None or any(environ.get(k) != v for k, v in wanted.items()):
            continue
        with contextlib.suppress(ProcessLookupError):
            group = os.getpgid(int(entry.name))
            if group != own_group:
                groups.add(group)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
    return len(groups)
