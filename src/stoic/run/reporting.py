"""What a run shows while it runs: a live view on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rich.console import Console

from stoic.core import next_steps
from stoic.core.graph import RunStatus
from stoic.core.run_state import TaskView
from stoic.core.text import counted, escape_controls
from stoic.core.verification import VerificationOutcome
from stoic.run.attempt import AttemptResult
from stoic.run.run_end import RunReport
from stoic.run.terminal import SafeConsole, plain_text

if TYPE_CHECKING:
    from stoic.plan.loader import Plan

__all__ = [
    "LiveReporter",
    "PlainReporter",
    "Reporter",
    "print_summary",
    "summary_lines",
]


class Reporter(Protocol):
    def run_started(self, run_id: str, plan: Plan, total: int) -> None: ...
    def attempt_started(self, task_id: str, attempt: int, command: str) -> None: ...
    def attempt_ended(
        self, task_id: str, attempt: int, outcome: str, result: AttemptResult
    ) -> None: ...
    def attempt_halted(self, task_id: str, rule: str) -> None: ...
    def verification_warning(self, task_id: str, outcome: VerificationOutcome) -> None: ...
    def stopping(self, signal_name: str) -> None: ...
    def pausing(self, reason: str) -> None: ...
    def run_ended(self, report: RunReport) -> None: ...


def _ended_text(task_id: str, attempt: int, outcome: str, result: AttemptResult) -> str:
    text = f"{outcome} {task_id} (attempt {attempt}, {result.duration_s:.2f}s)"
    if result.failure is not None:
        text += f": {result.failure.kind.value}: {result.failure.message}"
    if result.result is not None and result.result.error is not None:
        text += f" [result file: {result.result.error}]"
    return text


class PlainReporter:
    """One line per event on stdout: for logs, pipes and CI."""

    def __init__(self, console: Console, *, every_task: bool = False) -> None:
        self.console = console
        self.every_task = every_task
        """The end-of-run summary shows every task's row, not only those that need a look."""
        self.errors = SafeConsole(stderr=True, highlight=False)

    def _line(self, text: str) -> None:
        # Written as is: one event is one line however long (no wrapping at a guessed width),
        # and a plain line costs a write, not a layout pass.
        stream = self.console.file
        stream.write(f"{time.strftime('%H:%M:%S')} {escape_controls(text)}\n")
        stream.flush()

    def run_started(self, run_id: str, plan: Plan, total: int) -> None:
        self._line(f"run {run_id}: plan {plan.name}, {counted(total, 'task')}")

    def attempt_started(self, task_id: str, attempt: int, command: str) -> None:
        self._line(f"started {task_id} (attempt {attempt}): {command}")

    def attempt_ended(
        self, task_id: str, attempt: int, outcome: str, result: AttemptResult
    ) -> None:
        self._line(_ended_text(task_id, attempt, outcome, result))

    def attempt_halted(self, task_id: str, rule: str) -> None:
        self._line(f"halted {task_id} before it started: {rule}")

    def stopping(self, signal_name: str) -> None:
        self._line(f"{signal_name}: starting nothing new; stopping running tasks")

    def pausing(self, reason: str) -> None:
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)  # no escapes
        self._line(f"the workspace is paused ({shown}): starting nothing new")

    def verification_warning(self, task_id: str, outcome: VerificationOutcome) -> None:
        self.errors.print(
            f"WARNING: verifier {outcome.verifier} of task {task_id} could not verify:"
            f" {outcome.reason}; the work goes on (verification incomplete)",
            markup=False,
            soft_wrap=True,
        )

    def run_ended(self, report: RunReport) -> None:
        print_summary(self.console, report, every_task=self.every_task)


class LiveReporter(PlainReporter):
    """A progress bar with the tasks under way; finished tasks scroll above it."""

    def __init__(self, console: Console, *, every_task: bool = False) -> None:
        from rich.progress import (  # a terminal's only: plain lines need none of it
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__(console, every_task=every_task)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bar = self.progress.add_task("running", total=0)
        self.running: set[str] = set()

    def _line(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def run_started(self, run_id: str, plan: Plan, total: int) -> None:
        self.progress.update(self.bar, total=total)
        self.progress.start()
        super().run_started(run_id, plan, total)

    def attempt_started(self, task_id: str, attempt: int, command: str) -> None:
        self.running.add(task_id)
        self._describe()

    def attempt_ended(
        self, task_id: str, attempt: int, outcome: str, result: AttemptResult
    ) -> None:
        self.running.discard(task_id)
        self.progress.advance(self.bar)
        self._describe()
        super().attempt_ended(task_id, attempt, outcome, result)

    def _describe(self) -> None:
        shown = ", ".join(sorted(self.running)[:3]) + (" …" if len(self.running) > 3 else "")
        self.progress.update(self.bar, description=f"running {shown}" if shown else "waiting")

    def run_ended(self, report: RunReport) -> None:
        self.progress.stop()
        super().run_ended(report)


_SHOWN_BLOCKED = 10
"""Blocked tasks the short summary names; the rest are counted (`--tasks` shows every one)."""
_QUIET_STATUSES = frozenset({"succeeded", "skipped", "pending", "running"})
"""Rows the short summary only counts: nothing there asks anything of a person."""


@dataclass(frozen=True, slots=True)
class _Row:
    task_id: str
    status: str
    attempts: int
    duration: str
    note: str


def _rows(report: RunReport) -> list[_Row]:
    """Each task's status as a person reads it: blocked and interrupted are told apart."""
    rows = []
    blocked = report.analysis.blocked
    view = report.view
    gone = report.runner_gone
    for task_id in report.plan.graph.ids:
        task = view.task(task_id)
        status, note = task.state.value, _note(task)
        if task.outcome == "skipped":
            note = "done in the plan file"
        if gone and task.open_attempt is not None:
            status = "interrupted"
            note = f"its runner is gone; {next_steps.continue_run()} records it"
        roots = blocked.get(task_id)
        if roots:
            status, note = "blocked", f"blocked by {', '.join(roots)}"
        elif status == "suspended":
            status = "waiting"
            recovery = task.suggestion is not None and not task.gated
            waits_on = task.escalation_id or ("a suggested recovery" if recovery else "approval")
            note = f"waiting for a person ({waits_on})"
        duration = f"{task.duration_s:.2f}s" if task.attempts else "-"
        rows.append(_Row(task_id, status, task.attempts, duration, note))
    return rows


def _note(task: TaskView) -> str:
    if task.rejected_by is not None:
        why = f": {task.rejected_reason}" if task.rejected_reason else ""
        return f"rejected by {task.rejected_by}{why}"
    if task.failure is not None:
        return f"{task.failure.get('failure_kind')}: {task.failure.get('message')}"
    return ""


def print_summary(console: Console, report: RunReport, *, every_task: bool = False) -> None:
    """What the run came to: counts by status, then the tasks that need a look (failed,
    blocked, waiting, interrupted); `every_task` adds each task's row.

    The short form is the default because a run of thousands of tasks is not read row by row,
    and laying out a row of a table costs more than running a small task.
    """
    rows = _rows(report)
    counts = Counter(row.status for row in rows)
    shown = ", ".join(f"{count} {status}" for status, count in sorted(counts.items(), key=_order))
    say = functools.partial(console.print, markup=False, highlight=False, soft_wrap=True)
    say(f"run {report.run_id}: {counted(len(rows), 'task')}: {shown}")
    if every_task:
        _table(console, rows)
    else:
        wanted = [row for row in rows if row.status not in _QUIET_STATUSES]
        blocked = [row for row in wanted if row.status == "blocked"]
        hidden = blocked[_SHOWN_BLOCKED:]
        if hidden:
            dropped = {row.task_id for row in hidden}
            wanted = [row for row in wanted if row.task_id not in dropped]
        if wanted:
            _table(console, wanted)
        if hidden:
            say(f"… and {len(hidden)} more blocked")
        if len(wanted) < len(rows):
            say(f"Every task's row: {next_steps.run_status(report.run_id, tasks=True)}.")
    for line in [*summary_lines(report), *_warnings(report)]:
        say(line)
    say(_verdict(report))


_STATUS_ORDER = ("succeeded", "skipped", "failed", "blocked", "waiting", "interrupted")


def _order(item: tuple[str, int]) -> tuple[int, str]:
    status = item[0]
    return (_STATUS_ORDER.index(status) if status in _STATUS_ORDER else len(_STATUS_ORDER), status)


def _table(console: Console, rows: list[_Row]) -> None:
    from rich.table import Table  # only a summary with rows to show imports it

    table = Table(box=None, pad_edge=False)
    table.add_column("task")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("note")
    for row in rows:  # a task's words are shown as written, never as markup
        table.add_row(
            plain_text(row.task_id),
            row.status,
            str(row.attempts),
            row.duration,
            plain_text(row.note),
        )
    console.print(table)


def summary_lines(report: RunReport) -> list[str]:
    """Each task's completion summary (from its `doc:`), or why there is none."""
    lines = []
    for task_id in report.plan.graph.ids:
        task = report.view.task(task_id)
        if task.summary:
            lines.append(f"{task_id}: {task.summary}")
        elif task.summary_error:
            lines.append(f"{task_id}: no summary ({task.summary_error})")
    return lines


def _warnings(report: RunReport) -> list[str]:
    """Verifiers that could not verify, and those whose report found something: visible in
    the summary, never silent."""
    lines = []
    for task_id in report.plan.graph.ids:
        for verifier, entry in report.view.task(task_id).verifications.items():
            status = entry.get("status")
            if status == "skipped":
                lines.append(
                    f"WARNING: verification incomplete for {task_id}: {verifier} was skipped"
                    f" ({entry.get('reason')})"
                )
            elif status in ("WARN", "FAIL"):
                counts = entry.get("counts") or {}
                found = ", ".join(f"{n} {severity}" for severity, n in counts.items() if n)
                lines.append(
                    f"verifier {verifier} of {task_id} reported {status} ({found}): its findings"
                    " are in its verification record"
                )
    return lines


def _verdict(report: RunReport) -> str:
    analysis = report.analysis
    if report.status is RunStatus.COMPLETED:
        return f"Run {report.run_id} completed: every task succeeded."
    if report.status is RunStatus.RUNNING:
        return f"Run {report.run_id} is running: a runner is working on it."
    if report.status is RunStatus.INTERRUPTED and report.runner_gone:
        return (
            f"Run {report.run_id} is not running: its runner is gone without recording an end"
            f" (killed?); {next_steps.continue_run(report.run_id)} picks it up."
        )
    if report.status is RunStatus.INTERRUPTED:
        lines = [
            f"Run {report.run_id} was interrupted;"
            f" {next_steps.continue_run(report.run_id)} goes on with what can still run."
        ]
        for task_id in analysis.failed:  # cut, and not safe to run again by itself
            lines.append(f"  {task_id} failed: it runs again only when a person says so")
        if analysis.failed:
            again = next_steps.retry(report.run_id, analysis.failed[0])
            lines.append(f"A person can run a failed task again in this run: {again}")
        return "\n".join(lines)
    if report.status is RunStatus.PAUSED:
        return (
            f"Run {report.run_id} is paused with the workspace: nothing more was started;"
            f" after {next_steps.resume()}, {next_steps.continue_run(report.run_id)} goes on."
        )
    if report.status is RunStatus.AWAITING_HUMAN:
        waiting = []
        for task_id in analysis.awaiting_human:
            task = report.view.task(task_id)
            held = ", ".join(filter(None, (task.proposal_id, task.escalation_id)))
            waiting.append(f"{task_id} ({held})" if held else task_id)
        return f"Run {report.run_id} is waiting for a person: {', '.join(waiting)}."
    lines = [f"Run {report.run_id} FAILED: no task can run again."]
    for task_id in analysis.failed:
        end = report.output_ends.get(task_id)
        if end and end not in _note(report.view.task(task_id)):
            lines.append(f"  {task_id} failed; its output ends: {end}")
        else:
            lines.append(f"  {task_id} failed")
    blocked = list(analysis.blocked.items())
    for task_id, roots in blocked[:_SHOWN_BLOCKED]:
        lines.append(f"  {task_id} is blocked by {', '.join(roots)} (root cause)")
    if len(blocked) > _SHOWN_BLOCKED:
        lines.append(f"  … and {len(blocked) - _SHOWN_BLOCKED} more blocked behind them")
    if analysis.failed:
        again = next_steps.retry(report.run_id, analysis.failed[0])
        lines.append(f"A person can run a failed task again in this run: {again}")
    return "\n".join(lines)
