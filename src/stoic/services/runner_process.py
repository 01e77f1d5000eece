"""A runner in a process of its own, for an interface that must not run tasks itself: the web
console retries a failed task or continues a run this way.

A runner re-executes itself so that its environment block holds only what its plan's policy
lets tasks see (`stoic.run.environment`); a long-running server cannot do that to itself, and
its own environment must never reach a task. So the person's decision goes to `stoic retry` or
`stoic continue` in a new process, with the person named by `--as`, which checks, records and
runs exactly as from a shell. The caller learns what happened first: the process recorded
something about the run (the decision is on record, the run goes on), or it ended having
recorded nothing (refused: its stderr says why).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stoic.services.workspace import Workspace

__all__ = ["Started", "continue_in_process", "retry_in_process"]

_POLL_SECONDS = 0.05
_REFUSAL_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class Started:
    """What the runner process did first."""

    recorded: bool
    """It recorded something about the run: the decision is on record."""
    refusal: str | None
    """Why it ended with nothing recorded (its stderr), when it did."""


def retry_in_process(
    root: Path, run_id: str, task_id: str, *, reason: str, person: str, wait_seconds: float = 30
) -> Started:
    """`stoic retry RUN TASK --reason … --as PERSON` in a new process."""
    command = ["retry", run_id, task_id, "--reason", reason, "--as", person]
    return _start(root, run_id, command, wait_seconds, time.monotonic)


def continue_in_process(
    root: Path, run_id: str, *, person: str, wait_seconds: float = 30
) -> Started:
    """`stoic continue RUN --as PERSON` in a new process."""
    return _start(root, run_id, ["continue", run_id, "--as", person], wait_seconds, time.monotonic)


def _last_seq(root: Path, run_id: str) -> int:
    with Workspace.open(root) as workspace:
        last = workspace.tail(1, run_id=run_id)
        return last[-1].seq if last else 0


def _start(
    root: Path,
    run_id: str,
    command: Sequence[str],
    wait_seconds: float,
    clock: Callable[[], float],
) -> Started:
    before = _last_seq(root, run_id)
    process = subprocess.Popen(
        [sys.executable, "-P", "-m", "stoic", "-w", str(root), *command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ends = clock() + wait_seconds
    while process.poll() is None and clock() < ends:
        if _last_seq(root, run_id) > before:
            break
        time.sleep(_POLL_SECONDS)
    recorded = _last_seq(root, run_id) > before
    if process.poll() is not None and not recorded:
        assert process.stderr is not None
        said = process.stderr.read(_REFUSAL_LIMIT).decode(errors="replace").strip()
        process.stderr.close()
        return Started(False, said or f"exit code {process.returncode}")
    threading.Thread(target=_reap, args=(process,), daemon=True).start()
    return Started(recorded, None)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Read what the runner says until it ends (a full pipe would stall it), then reap it."""
    assert process.stderr is not None
    with process.stderr:
        while process.stderr.read(_REFUSAL_LIMIT):
            pass
    process.wait()
