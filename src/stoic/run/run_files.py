"""A run's files: the plan copy, `state.json` and the execution log entries (DESIGN §3)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from stoic.core.graph import Analysis, TaskGraph
from stoic.core.run_state import RunView, reconciliation
from stoic.core.timeline import run_reconciliation
from stoic.exceptions import WorkspaceNotWritable
from stoic.run.attempt import AttemptResult
from stoic.store.atomic import atomic_write, write_all
from stoic.store.confined import open_confined
from stoic.store.log import utc_timestamp

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

    def attempt_log(self, task_id: str, attempt: int) -> Path:
        """Created with the attempt's first byte of output: a silent task leaves none."""
        return Path(f"{self._folder}/tasks/{task_id}/attempt-{attempt}.log")

    def relative_log(self, task_id: str, attempt: int) -> str:
        return f"runs/{self.run_id}/tasks/{task_id}/attempt-{attempt}.log"

    def attempt_result(self, task_id: str, attempt: int) -> Path:
        """Where the task may write its result file ($STOIC_RESULT)."""
        return Path(f"{self._folder}/results/{task_id}.attempt-{attempt}.json")

    def relative(self, path: Path) -> str:
        return str(path.relative_to(self.workspace_root))

    def close(self) -> None:
        if self._execution_log_fd is not None:
            os.close(self._execution_log_fd)
            self._execution_log_fd = None

    def write_state(self, view: RunView, graph: TaskGraph, analysis: Analysis) -> None:
        """Replace state.json with the run as the log tells it."""
        document = state_document(view, graph, analysis, self)
        atomic_write(
            self.state_file,
            orjson.dumps(document, option=orjson.OPT_INDENT_2),
            root=self.workspace_root,
        )

    def append_execution_entry(
        self, task_id: str, attempt: int, result: AttemptResult, outcome: str
    ) -> None:
        """One entry per attempt; written after the attempt's end record is durable.

        The entry is a projection of that record: it is appended without its own fsync.
        """
        failure = (
            f" ({result.failure.kind.value}: {result.failure.message})" if result.failure else ""
        )
        log = self.relative_log(task_id, attempt) if result.output_bytes else "none (no output)"
        entry = (
            f"\n## {utc_timestamp()} · run {self.run_id} · task {task_id} · attempt {attempt}\n\n"
            f"- command: `{result.command}`\n"
            f"- result: {outcome}{failure}\n"
            f"- duration: {result.duration_s:.3f} s\n"
            f"- log: {log}\n"
        )
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


def state_document(
    view: RunView, graph: TaskGraph, analysis: Analysis, files: RunFiles
) -> dict[str, Any]:
    """The state.json document: the run's status and every task's."""
    started: Mapping[str, Any] = view.started or {}
    tasks: dict[str, Any] = {}
    for task_id in graph.ids:
        task = view.task(task_id)
        entry: dict[str, Any] = {
            "status": task.state.value,
            "readiness": analysis.readiness[task_id].value,
            "attempts": task.attempts,
            "duration_s": round(task.duration_s, 6),
        }
        if task.failure is not None:
            entry["failure"] = dict(task.failure)
        if task_id in analysis.blocked:
            entry["blocked_by"] = list(analysis.blocked[task_id])
        if task.attempts and task.log_bytes:
            entry["log"] = files.relative_log(task_id, task.attempts)
        if task.suggestion is not None:
            entry["suggestion"] = dict(task.suggestion)
        if task.escalation_id is not None:
            entry["escalation"] = task.escalation_id
        if task.verifications:
            entry["verifications"] = dict(task.verifications)
            skipped = any(v.get("status") == "skipped" for v in task.verifications.values())
            entry["verification_status"] = "incomplete" if skipped else "complete"
        if task.summary:
            entry["summary"] = task.summary
        entry["reconciliation"] = reconciliation(task)
        tasks[task_id] = entry
    return {
        "run_id": view.run_id,
        "status": analysis.status.value,
        "plan": started.get("plan"),
        "plan_sha256": started.get("plan_sha256"),
        "started_at": view.started_at,
        "last_seq": view.last_seq,
        "tasks": tasks,
        "reconciliation": run_reconciliation(view, graph.ids)["run"],
    }
