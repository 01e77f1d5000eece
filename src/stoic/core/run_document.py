"""A run's `state.json` and its `execution_log.md` entries, rendered from its records (pure).

Both files are projections of the log: the runner writes them from the records it has just
made durable, and the audit renders them again from a replay and compares (DESIGN §12). So
everything they show comes from a record: times are the records' `decided_at`, never a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stoic.core.graph import Analysis, TaskGraph
from stoic.core.run_state import RunView, reconciliation
from stoic.core.timeline import run_reconciliation

__all__ = [
    "EXECUTION_LOG_HEADER",
    "LoggedEntry",
    "attempt_entry",
    "attempt_log",
    "logged_entries",
    "proposal_entry",
    "state_document",
]

EXECUTION_LOG_HEADER = "# Execution log\n\nOne entry per execution attempt.\n"


def attempt_log(run_id: str, task_id: str, attempt: int) -> str:
    """Where an attempt's output is kept, relative to the workspace."""
    return f"runs/{run_id}/tasks/{task_id}/attempt-{attempt}.log"


def state_document(view: RunView, graph: TaskGraph, analysis: Analysis) -> dict[str, Any]:
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
            entry["log"] = attempt_log(view.run_id, task_id, task.attempts)
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


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f`]")


def _shown(text: object) -> str:
    """One line, no control characters (a terminal shows the file as it is)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def attempt_entry(end: Mapping[str, Any], command: str) -> str:
    """The entry for one attempt, from its end record and the command its start record names."""
    inputs, details = end["decision_inputs"], end["details"]
    failure = (
        f" ({_shown(inputs.get('failure_kind'))}: {_shown(inputs.get('message'))})"
        if "failure_kind" in inputs
        else ""
    )
    attempt = int(end.get("attempt") or 0)
    run_id, task_id = str(end.get("run_id")), str(end.get("task_id"))
    log = (
        attempt_log(run_id, task_id, attempt) if details.get("output_bytes") else "none (no output)"
    )
    return (
        f"\n## {end['decided_at']} · run {_shown(run_id)} · task {_shown(task_id)} · attempt"
        f" {attempt} · seq {end['seq']}\n\n"
        f"- command: `{_shown(command)}`\n"
        f"- result: {_shown(end['decision_outcome'])}{failure}\n"
        f"- duration: {float(details.get('duration_s', 0.0)):.3f} s\n"
        f"- log: {_shown(log)}\n"
    )


def proposal_entry(record: Mapping[str, Any]) -> str:
    """The entry for an executed (or rolled back) proposal's command, from its record."""
    inputs, details = record["decision_inputs"], record["details"]
    return (
        f"\n## {record['decided_at']} · proposal {_shown(record.get('proposal_id'))} ·"
        f" seq {record['seq']}\n\n"
        f"- command: `{_shown(details.get('command', ''))}`\n"
        f"- result: {_shown(inputs.get('result'))} (exit {_shown(details.get('exit_code'))})\n"
        f"- duration: {float(details.get('duration_s', 0.0)):.3f} s\n"
    )


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """One entry as `execution_log.md` holds it."""

    line: int
    """The line its heading is on."""
    seq: int | None
    """The seq of the record it says it reflects (None: not an entry stoic writes)."""
    text: str


_HEADING = re.compile(r"^## .* · seq (\d+)$")
_ENTRY_START = re.compile(r"^\n(?=## )", re.MULTILINE)


def logged_entries(body: str, first_line: int) -> Iterator[LoggedEntry]:
    """The entries of `execution_log.md` after its header (`body`, starting at `first_line`).

    An entry begins at a blank line followed by a `## ` heading (fields never hold a newline,
    so nothing else can); it ends where the next begins. Text before the first is yielded
    with seq None.
    """
    starts = [match.start() for match in _ENTRY_START.finditer(body)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(body)
        text = body[start:end]
        if not text:
            continue
        lines = text.split("\n")
        match = _HEADING.match(lines[1]) if len(lines) > 1 and not lines[0] else None
        yield LoggedEntry(
            line=first_line + body.count("\n", 0, start) + 1,
            seq=int(match.group(1)) if match else None,
            text=text,
        )
