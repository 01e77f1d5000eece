"""A run's files: the plan copy, `state.json` and the execution log entries (DESIGN §3)."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import orjson

from stoic.core.graph import Analysis, TaskGraph
from stoic.core.records import Record
from stoic.core.run_document import attempt_entry, attempt_log, state_document
from stoic.core.run_state import RunView
from stoic.exceptions import WorkspaceNotWritable
from stoic.store.atomic import atomic_write, write_all
from stoic.store.confined import confined_dir, open_confined

__all__ = ["RunFiles"]


class RunFiles:
    """Where one run keeps its files inside the workspace."""

    def __init__(self, workspace_root: Path, run_id: str) -> None:
        self.workspace_root = workspace_root
        self.run_id = run_id
        self.folder = workspace_root / "runs" / run_id
        self.plan_copy = self.folder / "plan.yaml"
        self.state_file = self.folder / "state.json"
        self.lock_file = self.folder / "run.lock"
        self.results = self.folder / "results"
        self.execution_log = workspace_root / "logs" / "execution_log.md"
        self._folder = str(self.folder)
        self._execution_log_fd: int | None = None
        self._results_fd: int | None = None

    def attempt_log(self, task_id: str, attempt: int) -> Path:
        """Created with the attempt's first byte of output: a silent task leaves none."""
        return Path(f"{self._folder}/tasks/{task_id}/attempt-{attempt}.log")

    def relative_log(self, task_id: str, attempt: int) -> str:
        return attempt_log(self.run_id, task_id, attempt)

    def attempt_result(self, task_id: str, attempt: int) -> Path:
        """Where the task may write its result file ($STOIC_RESULT)."""
        return Path(f"{self._folder}/results/{task_id}.attempt-{attempt}.json")

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.workspace_root))

    def results_fd(self) -> int:
        """The results folder, opened once (no link on the way) and held until `close`: each
        attempt's result file is then probed with one open, not one per folder on the way."""
        if self._results_fd is None:
            with confined_dir(self.workspace_root, PurePath("runs", self.run_id, "results")) as fd:
                self._results_fd = os.dup(fd)
        return self._results_fd

    def close(self) -> None:
        for fd in (self._execution_log_fd, self._results_fd):
            if fd is not None:
                os.close(fd)
        self._execution_log_fd = self._results_fd = None

    def write_state(self, view: RunView, graph: TaskGraph, analysis: Analysis) -> None:
        """Replace state.json with the run as the log tells it."""
        document = state_document(view, graph, analysis)
        atomic_write(
            self.state_file,
            orjson.dumps(document, option=orjson.OPT_INDENT_2),
            root=self.workspace_root,
        )

    def append_execution_entry(self, end: Record, command: str) -> None:
        """One entry per attempt, rendered from its end record (durable by now) and the
        command its start record names: the entry is a projection of the log, appended
        without its own fsync, and `stoic audit` renders it again to compare."""
        entry = attempt_entry(end._asdict(), command)
        try:
            if self._execution_log_fd is None:
                self._execution_log_fd = open_confined(
                    self.workspace_root, self.execution_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                )
            write_all(self._execution_log_fd, entry.encode())
        except OSError as exc:
            raise WorkspaceNotWritable(
                f"cannot write {self.execution_log}: {exc.strerror or exc}"
            ) from exc
