"""A worker of database runs (DESIGN §13): claims ready tasks, runs them, records their ends.

Any number of workers on any number of hosts share one database. Each turn of a worker's loop:

- **claims** ready tasks with `SELECT … FOR UPDATE SKIP LOCKED` in a transaction at the head
  of the log that also appends their `execution/started` records (durable before the task
  starts), each with a lease and a fencing token the record names;
- **runs** them with the local runner's executors, all watched by one event loop;
- **renews** its leases by heartbeat, from a thread of its own (`fleet_heartbeat`); a lease it
  no longer holds — taken over, or run out with no renewal — stops that task, and its end is
  never written;
- **records each end** only after checking its fencing token under the row's lock, then the
  failure's one recovery evaluation (the matrix decides: an automatic retry becomes ready again
  after its delay), the dependents the end makes ready (`core.scheduling.newly_ready`) and, when
  the run has nothing left ready or running, the run's end from its whole graph;
- **takes over** the tasks of leases that ran out (their worker died, hung or lost the network):
  each attempt is recorded `interrupted` and the matrix decides — one retry for an idempotent
  task; a person, for any other.

It wakes on `LISTEN stoic_work` and looks again every `poll_s` whatever it heard, so it works
behind a pooler that drops notifications.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace

from stoic.core.failure import Failure, FailureKind, Partial
from stoic.core.recovery import AttemptKind
from stoic.core.scheduling import newly_ready
from stoic.exceptions import WorkspaceError
from stoic.run import decisions as made
from stoic.run.attempt import AttemptResult
from stoic.run.fleet_chain import Known, next_tasks
from stoic.run.fleet_heartbeat import Claimed, Heartbeat
from stoic.run.fleet_inputs import ask_inputs, inputs_of, keep_outputs_file
from stoic.run.fleet_items import Asked, Prepared, Running, WorkerOptions, worker_name
from stoic.run.fleet_plans import RunPlan
from stoic.run.fleet_records import end_if_done, evaluate_failure, fenced, take_over_expired
from stoic.run.fleet_review import carried
from stoic.run.fleet_runs import RunRefused, Runs
from stoic.run.fleet_wake import Wake
from stoic.run.guard import describe_command, executor_of
from stoic.run.launch import kind_by_output
from stoic.run.loop import Ended, EventLoop, Handle, SignalWake
from stoic.run.process import kill_leftovers
from stoic.run.task_outputs import InputsUnreadable, sealed_result
from stoic.run.timeouts import default_timeout_view
from stoic.store import pg_work as work
from stoic.store.pg_driver import translated
from stoic.store.pg_store import AtHead, PostgresStore

__all__ = ["FleetWorker", "WorkerOptions", "worker_name"]

_TAKE_OVER_AT_ONCE = 50


class FleetWorker:
    """One worker process's loop (`stoic worker`)."""

    def __init__(
        self,
        store: PostgresStore,
        url: str,
        options: WorkerOptions,
        *,
        name: str | None = None,
        say: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.store = store
        self.url = url
        self.options = options
        self.name = name or worker_name()
        self.say = say
        """Where the worker tells what it does, one line at a time (the CLI prints it)."""
        self.runs = Runs(options.scratch, options.concurrency)
        self.running: dict[str, Running] = {}
        """By fence."""
        self.stop_signal: int | None = None
        self._stop_by = 0.0
        """After a stop signal: when the running tasks are stopped (`time.monotonic()`)."""
        self._pauses = work.PauseFollower()
        self._wake = Wake(url, say, options.poll_s)
        self._where: dict[int, tuple[str, str, int]] = {}
        """Each running claim's run, task and attempt, by fence, for the watchdog's thread."""
        self._beat = Heartbeat(url, self.name, options.lease_s, say, self._kill_lost)
        self._known = Known()
        self.stats = {"claimed": 0, "ended": 0, "lost": 0, "taken_over": 0}

    # -- the loop ----------------------------------------------------------------------------

    def serve(self) -> None:
        """Work until a signal (or, with `exit_when_idle`, until nothing is left to do).

        A database that cannot be reached (restarted, a cut link) stops nothing: each turn
        that fails is said and tried again a poll later; an end not recorded yet stays in hand
        until it is, or until its lease is found lost."""
        loop = EventLoop()
        wake = SignalWake(loop, self._on_signal)
        options = self.options
        next_look = 0.0
        self._beat.start()
        try:
            while True:
                now = time.monotonic()
                if now >= next_look:
                    self._wake.listen(loop)
                if self.stop_signal is not None:
                    if now >= self._stop_by:
                        for item in self.running.values():
                            item.handle.stop()
                    if not self.running:
                        return
                elif now >= next_look:
                    next_look = now + options.poll_s
                    claimed = self._turn(self._look)
                    if (
                        options.exit_when_idle
                        and not claimed
                        and not self.running
                        and self._nothing_left()
                    ):
                        return
                self._fence(now)
                claims = self._claims()
                self._where = {
                    item.claim.fence: (item.claim.run_id, item.claim.task_id, item.claim.attempt)
                    for item in self.running.values()
                }
                self._beat.hold(claims)
                due = self._beat.next_deadline(claims) if claims else None
                until = next_look if self.stop_signal is None else max(self._stop_by, now)
                wait = max(0.0, min(until, until if due is None else due) - now)
                wait = min(wait, options.poll_s)
                extras = loop.step([item.handle for item in self.running.values()], wait)
                if self._wake.heard(loop, extras) and len(self.running) < options.concurrency:
                    next_look = 0.0
                wake.drain()
                ended = [item for item in self.running.values() if item.handle.result is not None]
                # What the ends made ready was claimed with them; with nothing left running,
                # look now (for leftovers, or to find the worker idle).
                if (
                    ended
                    and self._turn(functools.partial(self._record_ends, ended))
                    and self.stop_signal is None
                    and not self.running
                ):
                    next_look = 0.0
        finally:
            self._beat.close()
            wake.restore()
            loop.close()
            self._wake.close()
            self.runs.close()

    def _turn(self, work_of_turn: Callable[[], int]) -> int:
        """Run one turn's database work; a database error is said and the turn given up."""
        try:
            return work_of_turn()
        except WorkspaceError as exc:
            self.say(f"the database failed this turn ({exc}); trying again")
            return 0
        except RunRefused as refused:  # what the turn wrote is undone with its transaction
            self.runs.refused.add(refused.run_id)
            self.say(f"run {refused.run_id} cannot be carried out here: {refused.why}")
            return 0

    def _on_signal(self, signum: int) -> None:
        """The first SIGTERM or SIGINT drains: nothing more is claimed, and the running tasks
        have `drain_s` to end; the second (or the drain's end) stops them, recorded
        interrupted (the matrix decides)."""
        name = signal.Signals(signum).name
        if self.stop_signal is None and self.options.drain_s > 0:
            self.stop_signal = signum
            self._stop_by = time.monotonic() + self.options.drain_s
            self.say(
                f"{name}: claiming nothing more; the running tasks have"
                f" {self.options.drain_s:g}s to end (again: stop them now)"
            )
            return
        self.stop_signal = signum
        self._stop_by = 0.0
        self.say(f"{name}: stopping the running tasks")

    # -- claims ------------------------------------------------------------------------------

    def _look(self) -> int:
        """Take over what ran out, then claim what is ready; returns how many were claimed.
        One read first, outside the log's lock, says whether either has anything to do: a look
        that finds nothing costs no durable commit."""
        with translated("look for work"), self.store.connection() as conn:
            peek = work.peek(conn, self.name, self._held(), self.runs.refused)
            for run_id in peek.runs:  # a big plan is read now, not under the log's lock
                if run_id not in self.runs.plans:
                    self.runs.plan(conn, run_id)
        if peek.to_take_over:
            self._take_over()
        claimed = self._claim() if peek.ready else 0
        self.runs.let_idle_go({item.claim.run_id for item in self.running.values()})
        return claimed

    def _nothing_left(self) -> bool:
        """No item nobody holds, ready now or after a retry's delay (unknown: not idle)."""
        try:
            with translated("count the work left"), self.store.connection() as conn:
                return work.items_of_others(conn, self.runs.refused) == 0
        except WorkspaceError as exc:
            self.say(f"the database failed this turn ({exc}); trying again")
            return False

    def _claim(self) -> int:
        free = self.options.concurrency - len(self.running)
        if free <= 0:
            return 0
        asked = time.monotonic()
        self._known.head = None
        with self.store.writing("claim work from the database") as writing:
            started, count, claimed_all = self._claim_in(writing, free, Asked())
            fences = self._ask_fences(writing)
        self._took(fences, writing, settled=claimed_all)
        self._launch(started, Claimed(asked, time.monotonic()))
        return count

    def _claim_in(
        self, writing: AtHead, free: int, asked: Asked
    ) -> tuple[list[Prepared], int, bool]:
        """Claim up to `free` ready items in `writing` (nothing while paused or stopping):
        their start records, what to launch once the transaction commits, how many it
        claimed, and whether it claimed every item ready (none is left for other workers)."""
        if free <= 0 or self.stop_signal is not None:
            return [], 0, False
        if self._pauses.check(writing.conn, asked.pause) is not None:
            return [], 0, False
        ids = [os.urandom(8).hex() for _ in range(free)]
        claims = work.claim_ready(
            writing.conn, self.name, free, self.options.lease_s, ids, self.runs.refused
        )
        started = [p for claim in claims if (p := self._admit(writing, claim, asked)) is not None]
        self.stats["claimed"] += len(claims)
        return started, len(claims), len(claims) < free

    def _launch(self, started: list[Prepared], claimed: Claimed) -> None:
        for ready in started:  # each start record is durable: now the task may start
            spec = ready.plan.specs[ready.claim.task_id]
            handle: Handle = (
                ready.plan.launcher.launch(spec, ready.attempt)
                if ready.blind is None
                else Ended(
                    AttemptResult(
                        failure=ready.blind, duration_s=0.0, command=describe_command(spec)
                    )
                )
            )
            item = Running(
                ready.claim,
                ready.plan,
                ready.attempt,
                ready.kind,
                handle,
                ready.timeout_default,
                claimed,
            )
            self.running[str(item.claim.fence)] = item
            self.say(
                f"started {item.claim.run_id} {item.claim.task_id} attempt {item.claim.attempt}"
            )

    def _admit(
        self, writing: AtHead, claim: work.Claim, asked: Asked, *, known: bool = False
    ) -> Prepared | None:
        """The claim's start record (fence and worker named), or the policy's refusal and its
        evaluation; returns what to launch. `known`: written from what the worker knows, which
        a refusal is not (`_Unknown`: the long way)."""
        plan = self.runs.plan(writing.conn, claim.run_id)
        spec = plan.specs[claim.task_id]
        files = self.runs.files(claim.run_id)
        attempt, timeout_default = plan.attempt(
            claim.task_id, claim.attempt, claim.attempt_id, files, self.options.scratch
        )
        kind = AttemptKind(claim.attempt_kind)
        blind: Failure | None = None
        try:
            attempt = inputs_of(
                writing,
                plan.run_id,
                spec,
                attempt,
                self.options.scratch,
                asked.inputs.pop((claim.run_id, claim.task_id), None),
            )
        except InputsUnreadable as exc:  # the dependent fails, never runs blind
            blind = Failure(FailureKind.ERROR, str(exc), partial=Partial.FALSE)
        attempt = carried(writing, attempt, kind)
        admission = plan.guard.admit(spec, attempt)
        if admission.refusal is not None:
            if known:
                raise _Unknown
            records, failure = admission.refusal
            writing.append(records)
            evaluate_failure(writing, plan, claim, failure, kind)
            self._end_if_done(writing, plan)
            return None
        limit = None
        if timeout_default is not None:
            limit = {"timeout_s": attempt.timeout, "timeout_from": timeout_default}
        start = made.start_decision(
            attempt,
            executor=executor_of(spec),
            command=describe_command(spec),
            kind=kind,
            approved_by=None,
            log=files.relative_log(claim.task_id, claim.attempt),
            limit=limit,
        )
        if known:  # its item inserted claimed, with its start record
            writing.append_if(
                fenced(start, claim), *work.claimed_check(claim, self.options.lease_s)
            )
        else:
            writing.append([fenced(start, claim)])
        return Prepared(claim, plan, attempt, kind, timeout_default, blind)

    # -- heartbeats --------------------------------------------------------------------------

    def _held(self) -> set[int]:
        """The fences of every claim in hand, lost ones too (ending, or their end not yet
        recorded): never taken over by this worker as if never launched."""
        return {item.claim.fence for item in self.running.values()}

    def _claims(self) -> dict[int, Claimed]:
        return {item.claim.fence: item.claimed for item in self.running.values() if not item.lost}

    def _kill_lost(self, fence: int) -> None:
        """From the watchdog's thread: the processes of a claim whose lease ran out are
        killed at once, though the loop may be stuck on a cut link (it marks the claim lost,
        and records nothing of it, when it comes round)."""
        where = self._where.get(fence)  # a snapshot the loop replaces whole: safe to read
        if where is not None:
            run_id, task_id, attempt = where
            killed = kill_leftovers(run_id, task_id, attempt)
            self.say(
                f"lost the lease of {run_id} {task_id} attempt {attempt} by this host's clock:"
                f" {'stopped it' if killed else 'nothing of it was left'}"
            )

    def _fence(self, now: float) -> None:
        """Stop every task whose lease this worker no longer holds (`Heartbeat.lost`): its end
        is recorded interrupted — by this worker if its fence is still the row's, else by
        the worker that took it over."""
        lost = self._beat.lost(self._claims(), now)
        for item in self.running.values():
            if item.claim.fence in lost and not item.lost:
                item.lost = True
                item.handle.stop()
                self.stats["lost"] += 1
                self.say(
                    f"lost the lease of {item.claim.run_id} {item.claim.task_id}"
                    f" attempt {item.claim.attempt}: stopping it (recorded interrupted, unless"
                    " another worker has taken it over)"
                )

    # -- ends --------------------------------------------------------------------------------

    def _record_ends(self, ended: list[Running]) -> int:
        """Record the ended attempts in one transaction, each after its fencing check, with its
        output, and claim what they make ready; raises, keeping them in hand, when the
        database fails. A chain's step goes in one round trip where it can (`fleet_chain`)."""
        results = {id(item): self._result_of(item) for item in ended}
        free = self.options.concurrency - len(self.running) + len(ended)
        tasks = None
        if self.stop_signal is None and self._pauses.in_force is None:
            each = [(item.claim, item.plan, results[id(item)]) for item in ended]
            tasks = next_tasks(each, free, self._known, self.runs.refused)
        if tasks is not None:
            try:
                return self._record_known(ended, results, tasks[:free], tasks[free:])
            except (WorkspaceError, _Unknown):
                pass  # the log moved on, a claim was lost, a task is there: the long way
        return self._record_checked(ended, results, free)

    def _record_known(
        self,
        ended: list[Running],
        results: dict[int, AttemptResult],
        take: list[tuple[str, str]],
        leave: list[tuple[str, str]],
    ) -> int:
        """The ends, the claims of the tasks in `take` and the readiness of those in `leave`,
        written from what the worker knows, nothing read (`fleet_chain`)."""
        asked_at = time.monotonic()
        known, self._known.head = self._known.head, None
        first = AttemptKind.FIRST.value
        claims = [
            work.Claim(
                run, task, 1, first, os.urandom(8).hex(), self.name, self._known.fences.pop()
            )
            for run, task in take
        ]
        with self.store.writing("record the ends of attempts", known) as writing:
            for item in ended:
                result = results[id(item)]
                self._keep_output(writing, item)
                keep_outputs_file(writing, item.claim.run_id, result, self.options.scratch)
                end = fenced(made.end_decision(item.attempt, result, result.outcome), item.claim)
                writing.append_if(end, *work.finished_check(item.claim))
            work.make_ready(writing.conn, [work.Ready(run, task, 1, first) for run, task in leave])
            started = [self._admit(writing, claim, Asked(), known=True) for claim in claims]
            fences = self._ask_fences(writing)
        self._took(fences, writing, settled=not leave)
        self.stats["claimed"] += len(claims)
        self._ended(ended, results, [p for p in started if p is not None], asked_at)
        return len(ended)

    def _record_checked(
        self, ended: list[Running], results: dict[int, AttemptResult], free: int
    ) -> int:
        """The ends written the long way: the head, the pauses and the fencing checks read
        first (one round trip), then what they make ready claimed oldest first."""
        asked_at = time.monotonic()
        self._known.head = None
        with self.store.writing("record the ends of attempts") as writing:
            asked = Asked(self._pauses.ask(writing.conn), free=free)
            held = work.held_of(writing.conn, [item.claim for item in ended])
            touched: dict[str, RunPlan] = {}
            continued: set[str] = set()  # runs an end made work ready in: not ending now
            count = 0
            for item in ended:
                if item.claim.fence not in held:
                    item.lost = True
                    continue
                self._keep_output(writing, item)
                if ready := self._record_end(writing, item, results[id(item)], asked):
                    continued.add(item.claim.run_id)
                    count += ready
                touched[item.claim.run_id] = item.plan
            for run_id, plan in touched.items():
                if run_id not in continued:
                    self._end_if_done(writing, plan)
            # What the ends made ready (a chain's next task) is claimed in the same commit; the
            # other workers are woken only for what this one leaves.
            started, _, claimed_all = self._claim_in(writing, free, asked)
            if count and (not claimed_all or self.runs.refused):
                work.wake_workers(writing.conn)
            fences = self._ask_fences(writing)
        self._took(fences, writing, settled=claimed_all)
        self._ended(ended, results, started, asked_at)
        return len(ended)

    def _ask_fences(self, writing: AtHead) -> work.Asked | None:
        wanted = self._known.wanted(self.options.concurrency)
        return work.ask_fences(writing.conn, wanted) if wanted else None

    def _took(self, fences: work.Asked | None, writing: AtHead, *, settled: bool) -> None:
        """After a commit: the fencing tokens it took, and its head, known while nothing it
        saw is left ready unclaimed (`settled`) and no pause is in force."""
        if fences is not None:
            self._known.fences += [int(fence) for (fence,) in fences.fetchall()]
        if settled and writing.records and self._pauses.in_force is None:
            self._known.head = writing.head

    def _ended(
        self,
        ended: list[Running],
        results: dict[int, AttemptResult],
        started: list[Prepared],
        asked_at: float,
    ) -> None:
        """After the ends' commit: they leave the worker's hands, and what it claimed starts."""
        for item in ended:
            self.running.pop(str(item.claim.fence), None)
            claim = item.claim
            if item.lost:
                self.say(
                    f"refused: the end of {claim.run_id} {claim.task_id} attempt {claim.attempt}"
                    f" (fence {claim.fence}) — its claim is no longer this worker's: another"
                    " worker took it over"
                )
            else:
                self.stats["ended"] += 1
                outcome = results[id(item)].outcome
                self.say(f"{outcome} {claim.run_id} {claim.task_id} attempt {claim.attempt}")
        self._launch(started, Claimed(asked_at, time.monotonic()))

    def _result_of(self, item: Running) -> AttemptResult:
        finished = item.handle.result
        assert finished is not None
        if item.lost:  # stopped because its lease ran out, however it ended
            why = "its worker stopped it: the lease ran out with no renewal getting through"
            failure = Failure(FailureKind.INTERRUPTED, why, partial=Partial.UNKNOWN)
            return replace(finished, failure=failure)
        if item.timeout_default is not None:
            finished = default_timeout_view(finished, item.timeout_default)
        spec = item.plan.specs[item.claim.task_id]
        finished = kind_by_output(spec, item.attempt, finished, item.plan.output_patterns)
        return sealed_result(self.options.scratch, item.attempt, finished, {})

    def _keep_output(self, writing: AtHead, item: Running) -> None:
        """The attempt's log, kept in the transaction of its end, under its fencing check."""
        try:
            data = item.attempt.log_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:  # the end says the attempt ran; its log is said to be lost
            self.say(f"the output of {item.claim.task_id} could not be read: {exc}")
            return
        work.store_output(writing.conn, item.claim, data)

    def _record_end(
        self, writing: AtHead, item: Running, result: AttemptResult, asked: Asked
    ) -> int:
        """Its end, its evaluation or the dependents it makes ready; returns how many it made
        ready (its run then has work left: no need to ask). The inputs of those it may claim
        are asked for now, to come with the claim."""
        claim, plan = item.claim, item.plan
        outcome = result.outcome
        keep_outputs_file(writing, claim.run_id, result, self.options.scratch)
        writing.append([fenced(made.end_decision(item.attempt, result, outcome), claim)])
        if result.failure is None:
            work.finish(writing.conn, claim, None)
            candidates = plan.dependents.get(claim.task_id, ())
            needed = {dep for task in candidates for dep in plan.specs[task].dependency_ids}
            needed.discard(claim.task_id)  # done: its end is in this transaction
            done = work.done_tasks(writing.conn, claim.run_id, sorted(needed)) | {claim.task_id}
            dependencies = {task: plan.specs[task].dependency_ids for task in candidates}
            ready = newly_ready(claim.task_id, plan.dependents, dependencies, done)
            work.make_ready(
                writing.conn,
                [work.Ready(claim.run_id, task, 1, AttemptKind.FIRST.value) for task in ready],
                wake=False,
            )
            for task in ready[: max(0, asked.free - len(asked.inputs))]:
                if (sent := ask_inputs(writing, claim.run_id, plan.specs[task])) is not None:
                    asked.inputs[(claim.run_id, task)] = sent
            return len(ready)
        evaluate_failure(writing, plan, claim, result.failure, item.kind)
        return 0

    def _end_if_done(self, writing: AtHead, plan: RunPlan) -> None:
        if (status := end_if_done(writing, plan)) is not None:
            self.say(f"run {plan.run_id} ended: {status}")

    # -- taking over -------------------------------------------------------------------------

    def _take_over(self) -> None:
        self._known.head = None
        with self.store.writing("take over tasks whose lease ran out") as writing:
            expired, ended = take_over_expired(
                writing, self.runs, self.name, self._held(), _TAKE_OVER_AT_ONCE
            )
        for claim in expired:
            self.stats["taken_over"] += 1
            whose = (
                "this worker's claim was never launched (its commit was not heard)"
                if claim.worker == self.name
                else f"the lease of {claim.worker} ran out"
            )
            self.say(
                f"took over {claim.run_id} {claim.task_id} attempt {claim.attempt}: {whose};"
                " recorded interrupted"
            )
        for run_id, status in ended:
            self.say(f"run {run_id} ended: {status}")


class _Unknown(Exception):
    """What the worker knows does not settle a step (a claim's admission refused it)."""
