"""The control plane of `stoic serve`: a loop that follows the log's head, asks the control
service which runs can be taken up (`stoic.services.control`), and runs each in a runner.

A runner is a child process, `python -m stoic -w WS continue RUN_ID`: the same command, the
same service and the same signal handling as a person's `stoic continue`, so a runner that
crashes takes no server down with it and a runner's stop is recorded as `stoic run` records
one. One runner per run: the loop starts none for a run it already runs, and the run's lease
refuses a second runner from anywhere else (another server, a person's shell).

The loop reads the log's head every `poll` seconds and surveys the runs when it moved, when a
runner ended, and every `resurvey` seconds regardless — a runner killed with -9 writes nothing,
so only asking again notices that its lease was let go.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from stoic.services import control
from stoic.services.runs import new_run_id
from stoic.services.schedules import run_due_schedules
from stoic.services.workspace import Workspace

__all__ = ["ControlPlane", "Duty", "runner_command", "start_command"]

Duty = Callable[[], None]
"""Something the loop does on every turn (a schedule's check, say); it must return quickly."""

Clock = Callable[[], float]


def runner_command(workspace: Path, run_id: str) -> list[str]:
    """The command a runner runs: `stoic continue`, in this Python."""
    return [sys.executable, "-m", "stoic", "-w", str(workspace), "continue", run_id]


def start_command(workspace: Path, plan: Path, run_id: str) -> list[str]:
    """The command a scheduled run starts with: `stoic run`, its id chosen beforehand."""
    return [
        sys.executable,
        "-m",
        "stoic",
        "-w",
        str(workspace),
        "run",
        str(plan),
        "--run-id",
        run_id,
    ]


@dataclass(slots=True)
class _Runner:
    run_id: str
    process: subprocess.Popen[bytes]
    head: int
    """The log's head when it was started."""


@dataclass(slots=True)
class _Refused:
    """A runner that exited with an error: tried again once the log moves, or after a while."""

    head: int
    at: float


@dataclass(slots=True)
class ControlPlane:
    """Continues runs of one workspace in runners, until `stop`."""

    workspace: Path
    poll: float = 0.15
    resurvey: float = 1.0
    grace: float = 30.0
    """How long `stop` waits for runners it sent SIGTERM before it kills them."""
    retry_after: float = 5.0
    """How long a run whose runner exited with an error waits before another, the log unmoved."""
    duties: list[Duty] = field(default_factory=list)
    """Called on every turn of the loop: the hook for periodic work such as schedules."""
    clock: Clock = time.monotonic
    command: Callable[[Path, str], Sequence[str]] = runner_command
    runners: dict[str, _Runner] = field(default_factory=dict)
    surveys: int = 0
    """Surveys done since the start: a scraper (and a test) can tell the loop is turning."""
    _refused: dict[str, _Refused] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        """Start the loop in a thread of its own."""
        self._thread = threading.Thread(target=self._loop, name="stoic-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking runs up, send every runner SIGTERM (each records its running attempts
        interrupted and its end, as `stoic run` does), and wait for them up to `grace` seconds;
        one still going then is killed, and its run is a dead runner's for the next server."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            runners = list(self.runners.values())
        for runner in runners:
            with contextlib.suppress(ProcessLookupError):
                runner.process.send_signal(signal.SIGTERM)
        deadline = self.clock() + self.grace
        for runner in runners:
            try:
                runner.process.wait(timeout=max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                _say(f"runner of {runner.run_id} did not stop in {self.grace:g} s: killed")
                runner.process.kill()
                runner.process.wait()
        with self._lock:
            self.runners.clear()

    def adopt(self, run_id: str, command: Sequence[str]) -> None:
        """Run `command` as the runner of `run_id` (a new run this server starts): stopped on
        SIGTERM like the others, and no second runner of it is started meanwhile."""
        with self._lock:
            self.runners[run_id] = _Runner(run_id, _spawn(command), -1)

    def scheduled_runs(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Duty:
        """The duty that fires the workspace's due schedule slots, once a second at most: each
        fired slot's run is started by `stoic run --run-id`, a runner of this plane."""
        last = [float("-inf")]

        def duty() -> None:
            if self.clock() - last[0] < 1.0:
                return
            last[0] = self.clock()

            def launch(plan: Path, schedule: str) -> str:
                del schedule  # on the slot's records already
                run_id = new_run_id()
                self.adopt(run_id, start_command(self.workspace, plan, run_id))
                return run_id

            with Workspace.open(self.workspace) as workspace:
                run_due_schedules(workspace, now(), launch)

        return duty

    def running(self) -> list[str]:
        """The runs a runner of this plane is at now."""
        with self._lock:
            return [r.run_id for r in self.runners.values() if r.process.poll() is None]

    def _loop(self) -> None:
        surveyor = control.Surveyor()
        with Workspace.open(self.workspace) as workspace:
            seen_head = -1
            surveyed_at = float("-inf")
            while not self._stopping.is_set():
                ended = self._reap(seen_head)
                head = workspace.head().seq
                now = self.clock()
                if head != seen_head or ended or now - surveyed_at >= self.resurvey:
                    try:
                        self._take_up(workspace, surveyor.survey(workspace), now)
                        self.surveys += 1
                    except Exception as exc:  # a bad turn must not end the control plane
                        _say(f"control plane: the survey failed: {exc}")
                    seen_head, surveyed_at = head, now
                for duty in self.duties:
                    try:
                        duty()
                    except Exception as exc:
                        _say(f"control plane: a duty failed: {exc}")
                self._stopping.wait(self.poll)

    def _reap(self, head: int) -> bool:
        """Forget runners that ended; True when one did."""
        ended = False
        with self._lock:
            for run_id, runner in list(self.runners.items()):
                code = runner.process.poll()
                if code is None:
                    continue
                ended = True
                del self.runners[run_id]
                if code not in (0, 1, 3):  # completed, failed, waits for a person
                    self._refused[run_id] = _Refused(runner.head, self.clock())
        return ended

    def _take_up(self, workspace: Workspace, survey: control.Survey, now: float) -> None:
        for take in survey.take_up:
            if self._stopping.is_set():
                return
            with self._lock:
                if take.run_id in self.runners:
                    continue
                refused = self._refused.get(take.run_id)
                if refused is not None:
                    if refused.head == survey.head and now - refused.at < self.retry_after:
                        continue
                    del self._refused[take.run_id]
                _say(f"control plane: continuing {take.run_id}: {take.why}")
                process = _spawn(self.command(workspace.root, take.run_id))
                self.runners[take.run_id] = _Runner(take.run_id, process, survey.head)


def _spawn(command: Sequence[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # its signals are the server's to send
    )


def _say(line: str) -> None:
    print(f"stoic: {line}", file=sys.stderr, flush=True)
