"""Running an approved proposal's action or an executed one's rollback, once the store has
the claim on record (see `stoic.store.queue.Queue.begin_execution`).

The command sees only the environment its policy allows, reads nothing from stdin, runs in
its own session in the workspace folder, and what it prints comes back with the named secrets
it was given masked, so only masked output is ever recorded.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from stoic.store.processes import ProcessPolicy
from stoic.store.queue import ActionRan

__all__ = ["run_action"]


def run_action(process: ProcessPolicy, cwd: Path) -> ActionRan:
    """Run the command to its end; a command that cannot start exits 127, as a shell says."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            list(process.argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            cwd=cwd,
            start_new_session=True,
            env=process.env,
        )
        code, output = done.returncode, (done.stdout + done.stderr).decode(errors="replace")
        output = process.mask(output)
    except OSError as exc:
        code, output = 127, f"cannot start {process.argv[0]}: {exc.strerror or exc}"
    return ActionRan(code, output, time.monotonic() - started)
