"""The Runner: ready tasks run concurrently; every start is durable before the task starts.

What starts when is decided by the scheduling core (`core/scheduling.py`); this loop feeds it what
happens and does what it says: records, launches, reports and state.json. One thread records and
watches every attempt through the event loop. Records are group-committed: attempts' ends, their
recovery evaluations and the starts they unblock share one fsync (an end waits up to one append's
time for others to join it), and nothing starts before its start record is on disk. Every failure
gets exactly one recovery evaluation (DESIGN §7); policy and budgets are checked before every
attempt, retries included.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from stoic.core.failure import Failure, FailureKind, Partial, compile_patterns
from stoic.core.pause import PauseInForce
from stoic.core.policy import Spent
from stoic.core.records import Decision
from stoic.core.recovery import AttemptKind, RecoveryClass
from stoic.core.run_state import RunFolder, cost_of
from stoic.core.scheduling import Admission, Finish, Scheduler, Start
from stoic.plan.loader import Plan, PlanInvalid
from stoic.run import decisions as made
from stoic.run.agent_gate import RESUME_VARIABLE
from stoic.run.agents import AgentSetup
from stoic.run.attempt import Attempt, AttemptResult
from stoic.run.evaluation import Evaluator
from stoic.run.guard import (
    Guard,
    budget_exhausted_view,
    executor_of,
    limits_of,
    run_policy,
)
from stoic.run.guard import describe_command as describe
from stoic.run.handoff import Handoff
from stoic.run.launch import Launcher, kind_by_output, masked_result, with_summary
from stoic.run.loop import Ended, EventLoop, Handle, SignalWake
from stoic.run.process import kill_leftovers
from stoic.run.python_pool import WorkerPool
from stoic.run.reporting import Reporter
from stoic.run.run_end import (
    RunReport,
    lifecycle_reason,
    record_end,
    recorded_end,
    with_output_ends,
)
from stoic.run.run_files import RunFiles
from stoic.run.runner_turn import Evaluated, Running, Step
from stoic.run.task_outputs import InputsUnreadable, given_inputs, sealed_result
from stoic.run.task_user import resolve_task_user
from stoic.run.timeouts import DefaultTimeouts, default_timeout_view
from stoic.store.processes import allowed_environment, secrets_given, workspace_policy
from stoic.store.queue import Queue
from stoic.store.secrets import secrets_of_plan
from stoic.store.workspace import Workspace

__all__ = ["Runner"]

_STATE_EVERY_SECONDS = 1.0
_POLL_SECONDS = 0.5
"""The longest the loop waits before it looks again (signals, state.json)."""
_MAX_COMMIT_WINDOW = 0.005  # the longest an end waits for others to share its fsync
_END_OUTCOMES = frozenset({"succeeded", "failed", "halted", "interrupted"})


class Runner:
    """Runs what can run of one run, until nothing more can happen without a person."""

    def __init__(
        self,
        workspace: Workspace,
        plan: Plan,
        files: RunFiles,
        folder: RunFolder,
        workers: int,
        reporter: Reporter,
    ) -> None:
        self.workspace = workspace
        self.plan = plan
        self.files = files
        self.folder = folder
        self.workers = workers
        self.reporter = reporter
        settings = workspace.settings
        self.output_cap = settings.runner.output_cap_bytes
        self.default_timeouts = DefaultTimeouts(
            settings.runner.default_timeout_seconds, settings.agents.default_timeout_seconds
        )
        self.kill_grace = settings.runner.kill_grace_seconds
        policy = run_policy(workspace_policy(settings), plan.document.meta.policy)
        self.policy = policy
        self.specs = {spec.id: spec for spec in plan.tasks}
        agents = AgentSetup(settings.agents, os.environ.get("PATH"))
        started = folder.started or {}
        self.plan_dir = Path(str(started.get("plan_dir", plan.path.absolute().parent)))
        self.guard = Guard(
            policy,
            limits_of(plan.document.meta.budget),
            folder,
            role_of=agents.role_of,
            plan_dir=self.plan_dir,
            plan_verifiers=plan.document.meta.verify or (),
        )
        self.evaluator = Evaluator(
            files.run_id,
            self.specs,
            self.guard,
            {
                FailureKind.TIMEOUT: settings.recovery.timeout_retry_delay_seconds,
                FailureKind.UNAVAILABLE: settings.recovery.unavailable_retry_delay_seconds,
            },
        )
        found = secrets_of_plan(plan, settings.secrets, workspace.root, os.environ)
        if found.errors:  # refused before anything of this runner is recorded
            raise PlanInvalid(plan.path, found.errors)
        declared = {name.encode() for secrets in found.by_task.values() for name in secrets}
        self.base_env = {  # a declared secret reaches its tasks only, whatever passes env
            name: value
            for name, value in allowed_environment(policy).items()
            if name not in declared
        }
        self.secrets = found.by_task
        """Each task's declared secrets: its own processes' environment, no other's."""
        masks: dict[str, str] = {}
        for spec in plan.tasks:
            masks.update(secrets_given(policy, self.base_env, spec.env))
        masks.update(found.values())
        self.masks = dict(sorted(masks.items(), key=lambda item: -len(item[1])))
        """Every secret value of the run: masked in its records, notices and attempt logs."""
        workspace.masked = {**workspace.masked, **self.masks}
        self.task_user = resolve_task_user(settings.runner.task_user)
        self.pool = WorkerPool(
            workers,
            env=self.base_env,
            allowed_modules=policy.allowed_modules or (),
            user=self.task_user,
        )
        meta = plan.document.meta
        self.launcher = Launcher(
            base_env=self.base_env,
            pool=self.pool,
            plan_verifiers=meta.verify or (),
            max_iterations_default=meta.max_attempts_default,
            agents=agents,
            user=self.task_user,
            check_timeout=settings.runner.default_timeout_seconds,
            gate_rules=meta.gate or (),
        )
        self.output_patterns = compile_patterns(settings.recovery.output_patterns.items())
        self.handoff = Handoff(workspace, files.run_id, folder, self.specs)
        self.stdin_fd = -1
        self.results_fd: int | None = None
        self.stop_signal: int | None = None
        self.pause_watch = workspace.pause_watch()
        self.paused: PauseInForce | None = None
        self._state_written = 0.0
        self._state_every = _STATE_EVERY_SECONDS
        self._commit_window = 0.0  # how long the last append took (see `_gather`)

    # -- what a previous runner left ---------------------------------------------------------

    def settle_the_past(self, approve: Sequence[str], actor: str) -> None:
        """Interrupted attempts and unevaluated failures get their records; approvals too."""
        view = self.folder.view()
        pending: list[Decision] = []
        run_id = self.files.run_id
        for task_id in self.plan.graph.ids:
            task = view.task(task_id)
            open_attempt = task.open_attempt
            if open_attempt is not None:
                killed = kill_leftovers(run_id, task_id, open_attempt.attempt) > 0
                record, failure = made.interrupted_decision(
                    run_id, task_id, open_attempt.attempt, open_attempt.attempt_id, killed
                )
                pending.append(record)
                pending.append(
                    self.evaluator.evaluate(
                        task_id,
                        failure,
                        open_attempt.kind,
                        open_attempt.attempt,
                        open_attempt.attempt_id,
                    )[0]
                )
            elif task.awaiting_evaluation and task.failure is not None:
                failure = Failure.from_json(dict(task.failure))
                pending.append(
                    self.evaluator.evaluate(
                        task_id,
                        failure,
                        task.last_attempt_kind,
                        task.attempts,
                        task.last_attempt_id or "",
                    )[0]
                )
        queue = Queue(self.workspace)
        linked = {
            p.task_id: p.id
            for p in queue.state().proposals.values()
            if p.run_id == run_id and p.status.value == "pending" and p.task_id in approve
        }
        for task_id in approve:
            if task_id in linked:
                continue  # approved through its proposal, below
            task = view.task(task_id)
            suggestion = dict(task.suggestion or {}) or None
            pending.append(
                made.approval_decision(
                    run_id, task_id, actor, suggestion, recovery=task.attempts > 0
                )
            )
        for stored in self.workspace.record_many(pending):
            self.folder.feed(stored._asdict())
        for proposal_id in linked.values():
            queue.decide(proposal_id, "approved", actor=actor)
        if linked:
            for later in self.workspace.records(run_id=run_id, since_seq=self.folder.last_seq):
                self.folder.feed(later._asdict())
        self.handoff.escalate_owed()
        self.handoff.suspend_owed()
        self.handoff.propose_owed()
        self.handoff.resume_decided()

    def already_ended(self, since_seq: int) -> RunReport | None:
        """The run's end, reported again, if the log already holds it (see `recorded_end`)."""
        report = recorded_end(self.files.run_id, self.plan, self.folder, since_seq)
        if report is not None:
            report = with_output_ends(report, self.workspace.outputs, self.masks)
            self.reporter.run_ended(report)
        return report

    # -- the loop ----------------------------------------------------------------------------

    def execute(self) -> RunReport:
        """Feed the scheduling core what happens and do what it says, until it says finish."""
        graph = self.plan.graph
        core = Scheduler.from_view(
            graph,
            self.folder.view(shared=True),
            self.workers,
            time.monotonic(),
            datetime.now(UTC).isoformat(),
        )
        running: dict[int, tuple[Running, Handle]] = {}
        ended: list[tuple[Running, AttemptResult, str]] = []
        self.reporter.run_started(self.files.run_id, self.plan, len(graph.ids))
        self._write_state()
        self.files.results.mkdir(parents=True, exist_ok=True)
        if self.task_user is not None:
            self.task_user.own(self.files.results)  # where its result files go
        self.results_fd = self.files.results_fd()
        self.stdin_fd = self.launcher.stdin_fd = os.open(os.devnull, os.O_RDONLY)
        loop = EventLoop()
        wake = SignalWake(loop, self._on_signal)
        try:
            while True:
                self._stop_seen(core, running)
                core.clock(time.monotonic())
                step = Step()
                ended_cost = (
                    sum(cost_of(result.details()) for _, result, _ in ended)
                    if self.guard.run_budget.max_cost is not None
                    else 0.0
                )
                self._record_ends(step, ended, ended_cost)
                was_paused = self.paused is not None
                # The pause check and the starts it allows are one transaction on the log.
                with self.workspace.transaction():
                    self._admit(core, step, ended_cost)
                    self._append(step)
                for item in step.starting:  # each start is on disk: now the task may begin
                    running[item.index] = (item, self._launch(item))
                if self.paused is not None:
                    core.pause()
                    if not was_paused:  # said once the lock is let go
                        self.reporter.pausing(self.paused.reason)
                self._hand_over(core, step, ended)
                ended.clear()
                self._maybe_write_state()
                self._stop_seen(core, running)
                command = core.next()
                if isinstance(command, Finish):
                    break
                wait = _POLL_SECONDS
                if command.until is not None:
                    wait = max(0.0, min(wait, command.until - time.monotonic()))
                if not _finished(running) and loop.step(
                    [handle for _, handle in running.values()], wait
                ):
                    wake.drain()
                self._stop_seen(core, running)
                self._gather(loop, wake, running)
                for index in _finished(running):
                    item, handle = running.pop(index)
                    finished = self._result_of(item, handle)
                    outcome = finished.outcome
                    core.ended(index, outcome == "succeeded")  # a failure: evaluated next step
                    ended.append((item, finished, outcome))
        finally:
            for _, handle in running.values():
                handle.stop()  # on an error here, running tasks must not linger
            while any(handle.result is None for _, handle in running.values()):
                loop.step([h for _, h in running.values() if h.result is None], 0.1)
            self.pool.close()
            wake.restore()
            loop.close()
            os.close(self.stdin_fd)
            self.files.close()
        return self._finish()

    def _gather(
        self, loop: EventLoop, wake: SignalWake, running: dict[int, tuple[Running, Handle]]
    ) -> None:
        """Once an attempt has ended, wait up to as long as the last append took for the others
        running to end too: their ends and the starts they unblock share one fsync, instead of
        attempts ending out of step costing one each, for a delay of about one fsync."""
        if self.stop_signal is not None or not _finished(running):
            return
        until = time.monotonic() + self._commit_window
        while waiting := [handle for _, handle in running.values() if handle.result is None]:
            left = until - time.monotonic()
            if left <= 0:
                return
            if loop.step(waiting, left):
                wake.drain()
                return  # a signal: the loop sees to it first

    def _record_ends(
        self, step: Step, ended: list[tuple[Running, AttemptResult, str]], ended_cost: float
    ) -> None:
        """Each ended attempt's end and verifications, and each failure's one evaluation."""
        batch = step.batch
        for item, result, outcome in ended:
            batch.append(made.end_decision(item.attempt, result, outcome))
            batch += [
                made.verification_decision(item.attempt, verified)
                for verified in result.verifications
            ]
            if result.failure is not None:
                unrecorded = Spent(result.duration_s, 0, cost_of(result.details()))
                record, verdict = self._evaluate_attempt(
                    item, result.failure, unrecorded, ended_cost
                )
                batch.append(record)
                step.evaluated.append(verdict)

    def _admit(self, core: Scheduler, step: Step, ended_cost: float) -> None:
        """The starts the core asks for, each past the pause, its approval gate, the policy
        and the budgets; a refused one is halted and evaluated. Called under the log's lock."""
        halts = 0
        while (start := core.next_start()) is not None:
            if self.stop_signal is not None or self._pause_seen():
                core.admitted(start, Admission.NOT_NOW)
                break
            item = self._prepare(start)
            gate = self.guard.approval_needed(item.spec, item.attempt)
            if gate is not None:
                step.batch.append(gate)
                step.waiting.append(item.index)
                core.admitted(start, Admission.GATED)
                continue
            in_flight = Spent(attempts=len(step.starting) + halts, cost=ended_cost)
            admission = self.guard.admit(item.spec, item.attempt, in_flight)
            guard = admission.refusal
            if admission.timeout is not None:
                item.budget_bound = True
                item.attempt = replace(item.attempt, timeout=admission.timeout)
            if guard is None:
                step.starting.append(item)
                core.admitted(start, Admission.STARTED)
                continue
            core.admitted(start, Admission.HALTED)
            records, failure = guard
            record, verdict = self._evaluate_attempt(item, failure)
            step.batch += [*records, record]
            step.evaluated.append(verdict)
            step.halted.append((item.index, failure.message))
            halts += 1

    def _append(self, step: Step) -> None:
        """The step's records and its starts, in one append (one fsync)."""
        batch = step.batch
        batch += [self._start_decision(item) for item in step.starting]
        if not batch:
            return
        ends = step.ends
        began = time.monotonic()
        recorded = self.workspace.record_many(batch)
        self._commit_window = min(_MAX_COMMIT_WINDOW, time.monotonic() - began)
        for stored in recorded:
            self.folder.feed(stored._asdict())
            if stored.decision_type == "execution" and stored.decision_outcome in _END_OUTCOMES:
                ends[stored.attempt_id] = stored

    def _hand_over(
        self, core: Scheduler, step: Step, ended: list[tuple[Running, AttemptResult, str]]
    ) -> None:
        """Once the step is on the log: the core hears the decisions; proposals, escalations,
        the execution log and the reporter hear what happened."""
        ids = self.plan.graph.ids
        for verdict in step.evaluated:
            index = verdict.index
            waits = verdict.escalation is not None or verdict.deferral is not None
            core.decided(index, verdict.decision, waits, time.monotonic())
            if verdict.decision.recovery_class is RecoveryClass.R2:
                self.handoff.propose(ids[index], "recovery")
        for item, result, outcome in ended:
            task_id = ids[item.index]
            with self.workspace.projecting("logs/execution_log.md"):
                self.files.append_execution_entry(
                    step.ends[item.attempt.attempt_id], describe(item.spec)
                )
            self.reporter.attempt_ended(task_id, item.attempt.attempt, outcome, result)
            for verified in result.verifications:
                if verified.warning:
                    self.reporter.verification_warning(task_id, verified)
        for verdict in step.evaluated:  # after the attempt's end is reported
            if verdict.escalation is not None:
                self.handoff.escalate(ids[verdict.index], verdict.escalation)
            if verdict.deferral is not None:
                self.handoff.suspend(ids[verdict.index], verdict.deferral)
        for index in step.waiting:
            self.reporter.attempt_halted(ids[index], "waiting for approval")
            self.handoff.propose(ids[index], "approval")
        for index, rule in step.halted:
            self.reporter.attempt_halted(ids[index], rule)
        for item in step.starting:
            self.reporter.attempt_started(
                ids[item.index], item.attempt.attempt, describe(item.spec)
            )

    def _result_of(self, item: Running, handle: Handle) -> AttemptResult:
        """What the ended attempt gave, as it is recorded: a budget's limit, the kind its output
        names, its summary."""
        finished = handle.result
        assert finished is not None
        if item.budget_bound:
            finished = budget_exhausted_view(finished, item.attempt.timeout)
        elif item.timeout_default is not None:
            finished = default_timeout_view(finished, item.timeout_default)
        finished = kind_by_output(item.spec, item.attempt, finished, self.output_patterns)
        if finished.failure is None and item.spec.doc:
            finished = with_summary(finished, self.plan_dir / item.spec.doc)
        finished = sealed_result(self.files.workspace_root, item.attempt, finished, self.masks)
        if self.masks:  # the terminal sees what the log keeps
            finished = masked_result(finished, self.masks)
        return finished

    def _stop_seen(self, core: Scheduler, running: dict[int, tuple[Running, Handle]]) -> None:
        """Once a stop signal came, nothing more starts and the running attempts are stopped."""
        if self.stop_signal is not None and core.stop() is not None:
            for _, handle in running.values():
                handle.stop()

    def _pause_seen(self) -> bool:
        """Whether the workspace is paused; once it is, this run starts nothing more (running
        attempts finish and are recorded) and ends `paused` until `stoic continue`."""
        if self.paused is None:
            self.paused = self.pause_watch.check()
        return self.paused is not None

    def _on_signal(self, signum: int) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
            self.reporter.stopping(signal.Signals(signum).name)

    def _finish(self) -> RunReport:
        report = record_end(
            self.workspace, self.files, self.plan, self.folder, self.stop_signal, self.paused
        )
        self.reporter.run_ended(report)
        self.handoff.run_ended(report, lifecycle_reason(self.files.run_id, report.analysis))
        return report

    # -- recovery ----------------------------------------------------------------------------

    def _evaluate_attempt(
        self,
        item: Running,
        failure: Failure,
        unrecorded: Spent | None = None,
        run_cost_unrecorded: float = 0.0,
    ) -> tuple[Decision, Evaluated]:
        attempt = item.attempt
        record, decision = self.evaluator.evaluate(
            attempt.task_id,
            failure,
            item.kind,
            attempt.attempt,
            attempt.attempt_id,
            unrecorded,
            run_cost_unrecorded,
        )
        return record, Evaluated(item.index, decision, failure.escalation, failure.deferral)

    # -- attempts ----------------------------------------------------------------------------

    def _prepare(self, start: Start) -> Running:
        index, number = start.index, start.attempt
        spec = self.plan.tasks[index]
        task = self.folder.tasks.get(spec.id)
        kind = task.next_attempt_kind if task else AttemptKind.FIRST
        env = dict(spec.env)
        if task is not None and task.hint:
            env["STOIC_HINT"] = task.hint
        if task is not None and task.guidance:
            env["STOIC_GUIDANCE"] = task.guidance
        if task is not None and kind is AttemptKind.RESUMED and task.resume_session:
            env[RESUME_VARIABLE] = task.resume_session
        timeout, timeout_default = self.default_timeouts.of(spec)
        attempt = Attempt(
            run_id=self.files.run_id,
            request_id=made.request_id(self.files.run_id, spec.id),
            task_id=spec.id,
            attempt=number,
            attempt_id=os.urandom(8).hex(),
            log_path=self.files.attempt_log(spec.id, number),
            result_path=self.files.attempt_result(spec.id, number),
            workspace_root=self.files.workspace_root,
            plan_dir=self.plan_dir,
            timeout=timeout,
            output_cap_bytes=self.output_cap,
            kill_grace_seconds=self.kill_grace,
            env=env,
            secrets=self.secrets.get(spec.id, {}),
            masks=self.masks,
            results_fd=self.results_fd,
        )
        return Running(index, attempt, spec, kind, timeout_default=timeout_default)

    def _start_decision(self, item: Running) -> Decision:
        task = self.folder.tasks.get(item.spec.id)
        approved = (
            task.approved_by
            if task is not None and item.kind is not AttemptKind.AUTOMATIC_RETRY
            else None
        )
        limit = None
        if item.timeout_default is not None and not item.budget_bound:
            limit = {"timeout_s": item.attempt.timeout, "timeout_from": item.timeout_default}
        return made.start_decision(
            item.attempt,
            executor=executor_of(item.spec),
            command=describe(item.spec),
            kind=item.kind,
            approved_by=approved,
            log=self.files.relative_log(item.attempt.task_id, item.attempt.attempt),
            limit=limit,
        )

    def _launch(self, item: Running) -> Handle:
        try:
            attempt = given_inputs(self.files.workspace_root, self.folder, item.spec, item.attempt)
        except InputsUnreadable as exc:  # the dependent fails, never runs blind
            failure = Failure(FailureKind.ERROR, str(exc), partial=Partial.FALSE)
            shown = describe(item.spec)
            return Ended(AttemptResult(failure=failure, duration_s=0.0, command=shown))
        return self.launcher.launch(item.spec, attempt)

    # -- projections -------------------------------------------------------------------------

    def _write_state(self) -> None:
        started = time.monotonic()
        view = self.folder.view(shared=True)
        with self.workspace.projecting(self.files.relative(self.files.state_file)):
            self.files.write_state(view, self.plan.graph, view.analyse(self.plan.graph))
        self._state_written = time.monotonic()
        # A big run's state takes a while to write: never spend more than ~5% of the time on it.
        self._state_every = max(_STATE_EVERY_SECONDS, 20 * (self._state_written - started))

    def _maybe_write_state(self) -> None:
        if time.monotonic() - self._state_written >= self._state_every:
            self._write_state()


def _finished(running: dict[int, tuple[Running, Handle]]) -> list[int]:
    return [index for index, (_, handle) in running.items() if handle.result is not None]
