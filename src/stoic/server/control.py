"""The control plane of `stoic serve`: a loop that follows the log's head, asks the control
service which runs can be taken up (`stoic.services.control`), and runs each in a runner.

A runner is a child process, `python -m stoic -w WS continue RUN_ID`: the same command, the
same service and the same signal handling as a person's `stoic continue`, so a runner that
crashes takes no server down with it and a runner's stop is recorded as `stoic run` records
one. One runner per run: the loop starts none for a run it already runs, and the run's lease
refuses a second runner from anywhere else (another server, a person's shell).

The loop reads the log's head every `poll` seconds and surveys the runs when it moved, when a
runner ended, and every `resurvey` seconds regardless — a runner killed with -9 writes nothing,
so only asking again notices that its lease was let go. A runner that ended with its run's
records as they were (refused, say) is followed by the next only after a wait that grows with
each such end: however busy the log, a refusal that persists is not retried in a storm.
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

from stoic.exceptions import StoicError
from stoic.services import control, db_runs
from stoic.services.db_notices import DatabaseAnnouncer
from stoic.services.runs import new_run_id
from stoic.services.schedules import LaunchFailed, run_due_schedules
from stoic.services.workspace import Workspace
from stoic.store.config import Settings

__all__ = ["ControlPlane", "Duty", "runner_command", "start_command"]

Duty = Callable[[], None]
"""Something the loop does on every turn (a schedule's check, say); it must return quickly."""

Clock = Callable[[], float]


def runner_command(workspace: Path, run_id: str) -> list[str]:
    """The command a runner runs: `stoic continue`, in this Python (`-P`: never a `stoic`
    package in the folder it starts in)."""
    return [sys.executable, "-P", "-m", "stoic", "-w", str(workspace), "continue", run_id]


def start_command(workspace: Path, plan: Path, run_id: str) -> list[str]:
    """The command a scheduled run starts with: `stoic run`, its id chosen beforehand."""
    return [
        sys.executable,
        "-P",
        "-m",
        "stoic",
        "-w",
        str(workspace),
        "run",
        str(plan),
        "--run-id",
        run_id,
    ]


def _start_in_database(url: str, plan: Path, settings: Settings) -> str:
    """A scheduled run of a workspace that names a database, recorded there for its workers;
    a refusal (the plan at its limit, the database paused …) is the launch's failure."""
    try:
        return db_runs.start_database_run(url, plan, settings=settings).run_id
    except StoicError as exc:
        raise LaunchFailed(
            f"the run was not recorded in the database: {exc}", exit_code=2, stderr=str(exc)
        ) from None


@dataclass(slots=True)
class _Runner:
    run_id: str
    process: subprocess.Popen[bytes]
    seq: int
    """The run's last record when it was started (-1: a new run, started by this plane)."""
    tries: int = 0
    """Runners before it that ended with the run's records as they were."""
    last_line: list[str] = field(default_factory=list)
    """Its last stderr line, when its stderr is read (a scheduled run's start)."""
    reader: threading.Thread | None = None
    """What reads its stderr, done once the runner's stderr is closed."""


@dataclass(slots=True)
class _Ended:
    """A runner that ended: the next is started at once if the run has a record since (the
    runner took it further), else only after a wait that grows with each such end."""

    seq: int
    at: float
    tries: int


@dataclass(slots=True)
class ControlPlane:
    """Continues runs of one workspace in runners, until `stop`."""

    workspace: Path
    poll: float = 0.15
    resurvey: float = 1.0
    grace: float = 30.0
    """How long `stop` waits for runners it sent SIGTERM before it kills them."""
    retry_after: float = 5.0
    """How long a run whose runner ended with no record of it waits for the next runner; the
    wait doubles with each such end, up to `retry_cap`, whatever else the log records."""
    retry_cap: float = 60.0
    duties: list[Duty] = field(default_factory=list)
    """Called on every turn of the loop: the hook for periodic work such as schedules."""
    clock: Clock = time.monotonic
    command: Callable[[Path, str], Sequence[str]] = runner_command
    runners: dict[str, _Runner] = field(default_factory=dict)
    surveys: int = 0
    """Surveys done since the start: a scraper (and a test) can tell the loop is turning."""
    _ended: dict[str, _Ended] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _notices: threading.Thread | None = None
    _notices_bound: float = 0.0
    """The longest the delivery under way may take (the slowest notifier's timeout, and a
    second): how long `stop` waits for the notices' thread to record it."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _surveyor: control.Surveyor = field(default_factory=control.Surveyor)
    _seen_head: int = -1
    _surveyed_at: float = float("-inf")

    @property
    def started(self) -> bool:
        """Whether `start` was called: only a started plane has runners to stop."""
        return self._thread is not None

    def start(self) -> None:
        """Start the loop in a thread of its own."""
        self._thread = threading.Thread(target=self._loop, name="stoic-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop taking runs up, send every runner SIGTERM (each records its running attempts
        interrupted and its end, as `stoic run` does), and wait for them up to `grace` seconds;
        one still going then is killed, and its run is a dead runner's for the next server.

        The runners are signalled first and the loop is waited for only within the grace: a
        turn of the loop (a duty on the writer lock, a long survey) delays no runner's stop. A
        second Ctrl-C while waiting kills the runners at once: none is left running. The
        notices' thread ends after the delivery under way, which is recorded: a server started
        again does not tell it twice."""
        with self._lock:
            self._stopping.set()  # under the lock: no runner is added after this
            runners = list(self.runners.values())
        try:
            for runner in runners:
                with contextlib.suppress(ProcessLookupError):
                    runner.process.send_signal(signal.SIGTERM)
            deadline = self.clock() + self.grace
            if self._thread is not None:
                self._thread.join(timeout=max(0.0, deadline - self.clock()))
            for runner in runners:
                try:
                    runner.process.wait(timeout=max(0.0, deadline - self.clock()))
                except subprocess.TimeoutExpired:
                    _say(f"runner of {runner.run_id} did not stop in {self.grace:g} s: killed")
                    _kill(runner)
            if self._notices is not None:  # the delivery under way is made and recorded
                self._notices.join(timeout=self._notices_bound)
        except KeyboardInterrupt:
            _say("stopping now: the runners still going are killed")
            for runner in runners:
                _kill(runner)
        with self._lock:
            self.runners.clear()

    def adopt(self, run_id: str, command: Sequence[str]) -> None:
        """Run `command` as the runner of `run_id` (a new run this server starts): stopped on
        SIGTERM like the others, and no second runner of it is started meanwhile."""
        self._adopt(run_id, command)

    def _adopt(self, run_id: str, command: Sequence[str]) -> _Runner:
        with self._lock:
            if self._stopping.is_set():
                raise RuntimeError("the server is stopping")
            runner = _Runner(run_id, _spawn(command, piped=True), -1)
            runner.reader = threading.Thread(
                target=_pass_on, args=(runner,), name="stoic-runner-stderr", daemon=True
            )
            runner.reader.start()
            self.runners[run_id] = runner
        return runner

    def _until_started(self, workspace: Workspace, runner: _Runner, since: int) -> None:
        """Return once the run's own start record is on the log; raise when its runner ended
        without one (refused: the plan at its limit, the workspace paused …), saying how."""
        while True:
            code = runner.process.poll()
            for record in workspace.records(since_seq=since, decision_type="run_lifecycle"):
                if record.run_id == runner.run_id and record.decision_outcome == "started":
                    return
                since = record.seq
            if code is not None:
                if runner.reader is not None:
                    runner.reader.join()  # its stderr to the end: the last line is in
                said = f": {runner.last_line[-1]}" if runner.last_line else ""
                raise LaunchFailed(
                    f"its starter exited {code} before the run started{said}",
                    exit_code=code,
                    stderr=runner.last_line[-1] if runner.last_line else "",
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.process.wait(timeout=self.poll)

    def scheduled_runs(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Duty:
        """The duty that fires the workspace's due schedule slots, once a second at most: each
        fired slot's run is started by `stoic run --run-id`, a runner of this plane."""
        last = [float("-inf")]

        def duty() -> None:
            if self.clock() - last[0] < 1.0:
                return
            last[0] = self.clock()

            with Workspace.open(self.workspace) as workspace:

                def launch(plan: Path, schedule: str) -> str:
                    del schedule  # on the slot's records already
                    url = workspace.settings.store.url
                    if url:  # the workspace's runs are its database's: its workers run it
                        return _start_in_database(url, plan, workspace.settings)
                    run_id = new_run_id()
                    since = workspace.head().seq
                    runner = self._adopt(run_id, start_command(self.workspace, plan, run_id))
                    # Slots fire one at a time and each waits for its run's start: the next
                    # slot's concurrency check counts this run, and `started` is recorded
                    # only for a run that did start.
                    self._until_started(workspace, runner, since)
                    return run_id

                run_due_schedules(workspace, now(), launch)

        return duty

    def database_notices(self) -> Duty:
        """The duty that starts, once, the thread that tells the workspace's notifiers what
        the database it names records (`stoic.services.db_notices`), a second at a time until
        the plane stops: a notifier that is slow to answer never holds this loop up."""
        started = threading.Event()

        def follow() -> None:
            announcer: DatabaseAnnouncer | None = None
            said = ""
            while not self._stopping.wait(1.0):
                try:
                    with Workspace.open(self.workspace) as workspace:
                        url = workspace.settings.store.url or None
                        if announcer is not None and announcer.url != url:
                            announcer.close()
                            announcer = None
                        if url is not None:
                            timeouts = [n.timeout for n in workspace.settings.notifiers]
                            self._notices_bound = max(timeouts, default=0.0) + 1.0
                            announcer = announcer or DatabaseAnnouncer(url)
                            announcer.turn(workspace, self._stopping)
                except Exception as exc:  # a bad turn must not end the notices
                    if str(exc) != said:  # once, not every second while it lasts
                        said = str(exc)
                        _say(f"control plane: the database's notices failed: {exc}")
                else:
                    said = ""
            if announcer is not None:
                announcer.close()

        def duty() -> None:
            if not started.is_set():
                started.set()
                self._notices = threading.Thread(target=follow, name="stoic-notices", daemon=True)
                self._notices.start()

        return duty

    def running(self) -> list[str]:
        """The runs a runner of this plane is at now."""
        with self._lock:
            return [r.run_id for r in self.runners.values() if r.process.poll() is None]

    def _loop(self) -> None:
        with Workspace.open(self.workspace) as workspace:
            while not self._stopping.is_set():
                self.turn(workspace)
                self._stopping.wait(self.poll)

    def turn(self, workspace: Workspace) -> None:
        """One turn of the loop: forget ended runners, survey when due, take runs up, and do
        the duties. The loop's thread calls it; a test may call it itself (clock injected)."""
        ended = self._reap()
        head = workspace.head().seq
        now = self.clock()
        if head != self._seen_head or ended or now - self._surveyed_at >= self.resurvey:
            try:
                self._take_up(workspace, self._surveyor.survey(workspace), now)
                self.surveys += 1
            except Exception as exc:  # a bad turn must not end the control plane
                _say(f"control plane: the survey failed: {exc}")
            self._seen_head, self._surveyed_at = head, now
        for duty in self.duties:
            if self._stopping.is_set():
                return
            try:
                duty()
            except Exception as exc:
                _say(f"control plane: a duty failed: {exc}")

    def _reap(self) -> bool:
        """Forget runners that ended; True when one did. Whether one took its run further is
        told by the run's records at the next survey, not by its exit code."""
        ended = False
        with self._lock:
            for run_id, runner in list(self.runners.items()):
                if runner.process.poll() is None:
                    continue
                ended = True
                del self.runners[run_id]
                if runner.seq >= 0:
                    self._ended[run_id] = _Ended(runner.seq, self.clock(), runner.tries)
        return ended

    def _take_up(self, workspace: Workspace, survey: control.Survey, now: float) -> None:
        offered = {take.run_id for take in survey.take_up}
        for run_id in [run_id for run_id in self._ended if run_id not in offered]:
            del self._ended[run_id]  # nothing to take up now: a later runner starts afresh
        for take in survey.take_up:
            with self._lock:
                if self._stopping.is_set():
                    return
                if take.run_id in self.runners:
                    continue
                tries = 0
                ended = self._ended.get(take.run_id)
                if ended is not None:
                    if ended.seq == take.seq:  # its last runner recorded nothing of it
                        wait = min(self.retry_after * 2**ended.tries, self.retry_cap)
                        if now - ended.at < wait:
                            continue
                        tries = ended.tries + 1
                    del self._ended[take.run_id]
                _say(f"control plane: continuing {take.run_id}: {take.why}")
                process = _spawn(self.command(workspace.root, take.run_id))
                self.runners[take.run_id] = _Runner(take.run_id, process, take.seq, tries)


def _spawn(command: Sequence[str], *, piped: bool = False) -> subprocess.Popen[bytes]:
    """Start a runner in a session of its own: its signals are the server's to send."""
    return subprocess.Popen(
        list(command),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if piped else None,
        start_new_session=True,
    )


def _pass_on(runner: _Runner) -> None:
    """Pass the runner's stderr on to the server's, keeping its last line."""
    stream = runner.process.stderr
    assert stream is not None
    with stream:
        for raw in stream:
            text = raw.decode("utf-8", "replace")
            sys.stderr.write(text)
            sys.stderr.flush()
            if text.strip():
                runner.last_line[:] = [text.strip()]


def _kill(runner: _Runner) -> None:
    with contextlib.suppress(ProcessLookupError):
        runner.process.kill()
    runner.process.wait()


def _say(line: str) -> None:
    print(f"stoic: {line}", file=sys.stderr, flush=True)
