"""What one worker holds of the database runs it works on: their plans, as the database keeps
them, and their scratch folders on this host; a run it cannot carry out is refused, and a run
it has not used for a while is let go (its Python worker processes with it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from stoic.exceptions import StoicError
from stoic.run.fleet_plans import RunPlan
from stoic.run.run_files import RunFiles
from stoic.store import pg_work as work
from stoic.store.pg_driver import Conn

__all__ = ["RunRefused", "Runs"]

IDLE_RUN_SECONDS = 30.0
"""How long a worker keeps a run's plan and processes once it has nothing of it running."""


class RunRefused(Exception):
    """A run this worker cannot carry out (its plan copy is missing or changed)."""

    def __init__(self, run_id: str, why: str) -> None:
        super().__init__(why)
        self.run_id, self.why = run_id, why


class Runs:
    """The runs one worker holds, by run id."""

    def __init__(self, scratch: Path, concurrency: int) -> None:
        self.scratch, self.concurrency = scratch, concurrency
        self.plans: dict[str, RunPlan] = {}
        self.refused: set[str] = set()
        """Runs this worker found it cannot carry out: their items are left to others."""
        self._files: dict[str, RunFiles] = {}
        self._used: dict[str, float] = {}
        """When each run this worker holds a plan of was last used (`time.monotonic()`)."""
        self._stdin_fd = -1

    def plan(self, conn: Conn, run_id: str) -> RunPlan:
        """The run's plan as the database keeps it; a run whose plan copy is missing or not
        the plan it started with is refused (`RunRefused`): never run from a guess."""
        self._used[run_id] = time.monotonic()
        plan = self.plans.get(run_id)
        if plan is None:
            try:
                started, text = work.run_start(conn, run_id)
                plan = RunPlan.load(run_id, text, started, self.concurrency, self._stdin())
            except (LookupError, ValueError, StoicError) as exc:
                raise RunRefused(run_id, str(exc)) from exc
            self.plans[run_id] = plan
        return plan

    def files(self, run_id: str) -> RunFiles:
        files = self._files.get(run_id)
        if files is None:
            files = self._files[run_id] = RunFiles(self.scratch, run_id)
            (files.results).mkdir(parents=True, exist_ok=True)
        return files

    def let_idle_go(self, busy: set[str]) -> None:
        """Close what this worker holds for runs it has nothing running of (not in `busy`) and
        has not used for a while (their Python worker processes, their scratch folder's
        descriptors): a long-lived worker holds only the runs it works on."""
        now = time.monotonic()
        for run_id in [r for r, used in self._used.items() if r not in busy]:
            if now - self._used[run_id] < IDLE_RUN_SECONDS:
                continue
            del self._used[run_id]
            plan = self.plans.pop(run_id, None)
            if plan is not None:
                plan.close()
            files = self._files.pop(run_id, None)
            if files is not None:
                files.close()

    def close(self) -> None:
        for plan in self.plans.values():
            plan.close()
        for files in self._files.values():
            files.close()
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)

    def _stdin(self) -> int:
        """/dev/null, held open by the worker: every task's standard input."""
        if self._stdin_fd < 0:
            self._stdin_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        return self._stdin_fd
