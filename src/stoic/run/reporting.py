"""What a run shows while it runs: a live view on a terminal, one plain line per event elsewhere."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stoic.core import next_steps
from stoic.core.graph import RunStatus
from stoic.core.text import escape_controls
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

    def __init__(self, console: Console) -> None:
        self.console = console
        self.errors = SafeConsole(stderr=True, highlight=False)

    def _line(self, text: str) -> None:
        # Written as is: one event is one line however long (no wrapping at a guessed width),
        # and a plain line costs a write, not a layout pass.
        stream = self.console.file
        stream.write(f"{time.strftime('%H:%M:%S')} {escape_controls(text)}\n")
        stream.flush()

    def run_started(self, run_id: str, plan: Plan, total: int) -> None:
        self._line(f"run {run_id}: plan {plan.name}, {total} tasks")

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
        print_summary(self.console, report)


class LiveReporter(PlainReporter):
    """A progress bar with the tasks under way; finished tasks scroll above it."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
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


def print_summary(console: Console, report: RunReport) -> None:
    """Each task's status, duration and attempts; for a failed run, what blocks what."""
    table = Table(box=None, pad_edge=False, title=f"run {report.run_id}", title_justify="left")
    table.add_column("task")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("note")
    for task_id in report.plan.graph.ids:
        task = report.view.task(task_id)
        note = ""
        if task.failure is not None:
            note = f"{task.failure.get('failure_kind')}: {task.failure.get('message')}"
        if task.outcome == "skipped":
            note = "done in the plan file"
        roots = report.analysis.blocked.get(task_id)
        status = task.state.value
        if report.runner_gone and task.open_attempt is not None:
            status = "interrupted"
            note = f"its runner is gone; {next_steps.continue_run()} records it"
        if roots:
            status, note = "blocked", f"blocked by {', '.join(roots)}"
        duration = f"{task.duration_s:.2f}s" if task.attempts else "-"
        table.add_row(task_id, status, str(task.attempts), duration, plain_text(note))  # not markup
    console.print(table)
    for line in [*summary_lines(report), *_warnings(report)]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(_verdict(report), markup=False, highlight=False)


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
    """Verifiers that could not verify: visible in the summary, never silent."""
    lines = []
    for task_id in report.plan.graph.ids:
        for verifier, entry in report.view.task(task_id).verifications.items():
            if entry.get("status") == "skipped":
                lines.append(
                    f"WARNING: verification incomplete for {task_id}: {verifier} was skipped"
                    f" ({entry.get('reason')})"
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
        return (
            f"Run {report.run_id} was interrupted;"
            f" {next_steps.continue_run(report.run_id)} picks it up."
        )
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
        lines.append(f"  {task_id} failed")
    for task_id, roots in analysis.blocked.items():
        lines.append(f"  {task_id} is blocked by {', '.join(roots)} (root cause)")
    if analysis.failed:
        again = next_steps.retry(report.run_id, analysis.failed[0])
        lines.append(f"A person can run a failed task again in this run: {again}")
    return "\n".join(lines)
