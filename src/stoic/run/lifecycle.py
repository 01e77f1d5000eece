"""Runs are created, found and continued here; the Runner does the running.

`start_run` copies the plan into the run's folder and records its start; `continue_run` first
settles what a dead or stopped runner left (open attempts, unevaluated failures, approvals).
One runner works on a run at a time (a lock file in the run's folder); whether a run may start
or be taken up beside other live runs of its plan is the caller's rule (`Admit`), asked under
the workspace's writer lock.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

from stoic.core.graph import TaskState
from stoic.core.policy import Policy, approval_rule
from stoic.core.records import Decision, Record
from stoic.core.retry import retry_refusal
from stoic.core.run_state import RunFolder, RunView
from stoic.core.text import counted
from stoic.core.vocabulary import closest
from stoic.exceptions import UsageError, WorkspaceError, WorkspaceNotWritable
from stoic.plan.loader import Plan, PlanError, PlanInvalid, read_plan
from stoic.run import decisions as made
from stoic.run.agents import AgentSetup
from stoic.run.guard import describe_command, run_policy
from stoic.run.reporting import Reporter
from stoic.run.run_end import RunReport
from stoic.run.run_files import RunFiles
from stoic.run.runner import Runner
from stoic.run.task_user import resolve_task_user
from stoic.store.atomic import atomic_write
from stoic.store.confined import confined_dir
from stoic.store.leases import FileLeases
from stoic.store.processes import workspace_policy
from stoic.store.secrets import SecretsOfPlan, secrets_of_plan
from stoic.store.workspace import Workspace

__all__ = [
    "Admit",
    "amend_run",
    "check_run_id",
    "chosen_run_id",
    "continue_run",
    "escalation_target",
    "load_run",
    "load_run_folder",
    "new_run_id",
    "plan_policy",
    "plan_secrets",
    "retry_run",
    "run_files",
    "run_started_decision",
    "runnable_errors",
    "runner_working",
    "start_run",
    "unapprovable",
]


RUN_ID_FORMAT = re.compile(r"run-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
"""What `new_run_id` makes, and all a caller-chosen run id may be (it names a folder)."""


def new_run_id() -> str:
    return f"run-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"


def chosen_run_id(run_id: str | None) -> str:
    """The id a caller chose, checked, or a new one."""
    if run_id is None:
        return new_run_id()
    check_run_id(run_id)
    return run_id


def check_run_id(run_id: str) -> None:
    """Refuse a caller-chosen run id that `new_run_id` could not have made."""
    if RUN_ID_FORMAT.fullmatch(run_id) is None:
        raise UsageError(
            f"--run-id {run_id!r} is not a run id: it is run-YYYYMMDD-HHMMSS-xxxxxx"
            " (six hex digits)"
        )


def runnable_errors(plan: Plan, agents: AgentSetup, *, fresh: bool = False) -> list[PlanError]:
    """What stops a valid plan from running here: tasks that would run with nothing to run,
    agent tasks whose role or profile would not work, the agent CLI missing while an agent task
    would run; in file order. `stoic run` and `stoic plan check` both refuse a plan by this
    one list. A task the plan file marks done is not run (unless `fresh`)."""
    done = () if fresh else plan.done_in_file().keys()
    errors = agents.plan_errors(plan, done=done)
    for task in plan.tasks:
        if task.id in done:
            continue
        line, column = plan.task_positions.get(task.id, (1, 1))
        if task.run is None and task.call is None and task.http is None and task.agent is None:
            errors.append(
                PlanError(
                    line,
                    column,
                    f"task {task.id!r} has nothing to run",
                    "add run: [argv], call: module:function or http: {url: …}",
                )
            )
    return sorted(errors, key=lambda e: (e.line, e.column))


def plan_secrets(workspace: Workspace, plan: Plan) -> SecretsOfPlan:
    """The secrets the plan names, from stoic's environment or the workspace's [secrets]."""
    return secrets_of_plan(plan, workspace.settings.secrets, workspace.root, os.environ)


def agent_setup(workspace: Workspace) -> AgentSetup:
    """The workspace's agent roles and profiles; tasks see the runner's PATH."""
    return AgentSetup(workspace.settings.agents, os.environ.get("PATH"))


def plan_policy(workspace: Workspace, plan: Plan) -> Policy:
    """The policy a run of `plan` obeys: the workspace's, narrowed by the plan's."""
    return run_policy(workspace_policy(workspace.settings), plan.document.meta.policy)


def unapprovable(
    workspace: Workspace, plan: Plan, task_id: str, *, fresh: bool = False
) -> str | None:
    """Why `task_id` cannot be approved before a run of `plan` reaches it, or None: it must be
    a task of the plan that waits for approval (`approval: required` or the policy's
    `require_approval`), and one the run will run (not marked done in the file, unless
    `fresh`)."""
    specs = {spec.id: spec for spec in plan.tasks}
    spec = specs.get(task_id)
    if spec is None:
        guess = closest(task_id, specs)
        hint = f" (did you mean {guess!r}?)" if guess else ""
        return f"plan {plan.name} has no task {task_id!r} to approve{hint}"
    done = {} if fresh else plan.done_in_file()
    if task_id in done:
        return (
            f"task {task_id!r} is marked {done[task_id]} in the plan file: a run records it done"
            " and does not run it, so there is nothing to approve (--fresh runs every task)"
        )
    policy, role_of = plan_policy(workspace, plan), agent_setup(workspace).role_of
    if approval_rule(policy, spec.id, role_of(spec), spec.approval) is None:
        gated = [t.id for t in plan.tasks if approval_rule(policy, t.id, role_of(t), t.approval)]
        hint = f"tasks that wait for approval: {', '.join(gated)}" if gated else "none does"
        return (
            f"task {task_id!r} of plan {plan.name} needs no approval: it is not marked"
            f" approval: required and no require_approval rule names it ({hint})"
        )
    return None


Admit = Callable[[str | None], Mapping[str, Any]]
"""Asked under the workspace's writer lock, just before a run's start is recorded (with None)
or a run is taken up again (with its id): raises to refuse; what it returns goes into the start
record's inputs. Nobody else can start or continue a run between its answer and the lease."""


def run_started_decision(
    run_id: str,
    plan: Plan,
    inputs: Mapping[str, object],
    plan_copy: str,
    done: int,
    fresh: bool,
) -> Decision:
    """The record that starts a run of `plan`, naming its copy (workspace-relative)."""
    return Decision(
        decision_type="run_lifecycle",
        decision_outcome="started",
        decision_reason=f"Run {run_id} of plan {plan.name} started with"
        f" {counted(len(plan.tasks), 'task')}{_done_note(done, fresh)}.",
        actor=made.ACTOR,
        decision_trigger="explicit",
        causal_role="pre_run",
        run_id=run_id,
        decision_inputs=dict(inputs),
        details={
            "plan": str(plan.path),
            "plan_name": plan.name,
            "plan_sha256": plan.sha256,
            "plan_copy": plan_copy,
            "plan_dir": str(plan.path.absolute().parent),
        },
    )


def _done_note(done: int, fresh: bool) -> str:
    if fresh:
        return "; the plan file's statuses are ignored (--fresh)"
    if done:
        return f", {done} of them done in the plan file"
    return ""


def start_run(
    workspace: Workspace,
    plan: Plan,
    *,
    workers: int | None,
    reporter: Reporter,
    approve: Sequence[str] = (),
    actor: str = "human:unknown",
    admit: Admit | None = None,
    fresh: bool = False,
    run_id: str | None = None,
) -> RunReport:
    """Create a run of `plan` and run it until nothing more can happen without a person; the
    gated tasks named in `approve` are approved by `actor` before the first start.

    Tasks the plan file marks done are recorded done (`execution/skipped`) right after the
    start, in the same commit, and are not run; `fresh` runs every task whatever its status."""
    resolve_task_user(workspace.settings.runner.task_user)  # refused before anything happens
    errors = runnable_errors(plan, agent_setup(workspace), fresh=fresh)
    errors += plan_secrets(workspace, plan).errors
    if errors:
        raise PlanInvalid(plan.path, sorted(errors, key=lambda e: (e.line, e.column)))
    for task_id in approve:
        refusal = unapprovable(workspace, plan, task_id, fresh=fresh)
        if refusal is not None:
            raise UsageError(refusal)
    run_id = chosen_run_id(run_id)
    files = RunFiles(workspace.root, run_id)
    workers = workers or workspace.settings.runner.workers
    done = {} if fresh else plan.done_in_file()
    statuses = "ignored (--fresh)" if fresh else "done tasks recorded" if done else "none done"
    specs = {spec.id: spec for spec in plan.tasks}
    with contextlib.ExitStack() as held:
        with workspace.transaction():
            admitted = admit(None) if admit is not None else {}
            inputs: dict[str, object] = {"tasks": len(plan.tasks), "workers": workers, **admitted}
            if fresh or done:
                inputs["plan_statuses"] = statuses
            _make_run_folder(files)
            atomic_write(files.plan_copy, plan.text.encode("utf-8"), root=files.workspace_root)
            held.enter_context(_run_lock(files))
            started = run_started_decision(
                run_id, plan, inputs, files.relative(files.plan_copy), len(done), fresh
            )
            skipped = [made.done_in_file_decision(run_id, t, word) for t, word in done.items()]
            approvals = [
                made.advance_approval_decision(
                    run_id, task_id, actor, describe_command(specs[task_id])
                )
                for task_id in dict.fromkeys(approve)
            ]
            stored_records = workspace.record_many([started, *skipped, *approvals])
        folder = RunFolder(run_id)
        for stored in stored_records:
            folder.feed(stored._asdict())
        return Runner(workspace, plan, files, folder, workers, reporter).execute()


def load_run(workspace: Workspace, run_id: str) -> tuple[Plan, RunView, RunFiles]:
    """The plan copy and the log's view of an existing run."""
    plan, folder, files = load_run_folder(workspace, run_id)
    return plan, folder.view(), files


def load_run_folder(workspace: Workspace, run_id: str) -> tuple[Plan, RunFolder, RunFiles]:
    """The plan the run runs now (as amended) and the run's fold, which a reader can feed on."""
    files = run_files(workspace, run_id)
    folder = RunFolder(run_id)
    for record in workspace.records(run_id=run_id):
        folder.feed(record._asdict())
    if folder.started is None:
        raise _no_run(workspace, run_id)
    amendment = folder.amendment
    source = folder.started if amendment is None else amendment
    copy = files.plan_copy if amendment is None else workspace.root / str(amendment["plan_copy"])
    plan = read_plan(copy)
    if plan.sha256 != source.get("plan_sha256"):
        raise WorkspaceError(
            f"{copy} no longer matches the plan the run started with"
            + (" (as amended)" if amendment is not None else "")
            + f" (sha256 {source.get('plan_sha256')}); restore it before continuing"
        )
    return plan, folder, files


def amend_run(workspace: Workspace, run_id: str, plan_path: Path) -> dict[str, object]:
    """Check an amended plan for a run and keep a copy of it; returns what the record keeps.

    The amended plan is validated like any plan; tasks the run already has on record must stay.
    The copy is a new file, so the plan the run ran so far is never overwritten.
    """
    files = run_files(workspace, run_id)
    if not files.plan_copy.is_file():
        raise _no_run(workspace, run_id)
    amended = read_plan(plan_path)
    # An amended plan's statuses are not read: every task in it can run.
    errors = runnable_errors(amended, agent_setup(workspace), fresh=True)
    errors += plan_secrets(workspace, amended).errors
    if errors:
        raise PlanInvalid(amended.path, errors)
    with _run_lock(files):
        current, folder, files = load_run_folder(workspace, run_id)
        new_specs = {task.id: task for task in amended.tasks}
        lost = [task_id for task_id in folder.tasks if task_id not in new_specs]
        if lost:
            raise UsageError(
                f"the amended plan {plan_path} drops task {lost[0]!r}, which run {run_id} already"
                " has on record; keep it (mark it skipped or change what it runs)"
            )
        old_specs = {task.id: task for task in current.tasks}
        changes = {
            "added": [t for t in new_specs if t not in old_specs],
            "changed": [
                t for t, spec in new_specs.items() if t in old_specs and spec != old_specs[t]
            ],
        }
        number = len(list(files.folder.glob("plan.amended-*.yaml"))) + 1
        copy = files.folder / f"plan.amended-{number}.yaml"
        atomic_write(copy, amended.text.encode("utf-8"), root=files.workspace_root)
    return {
        "plan": str(plan_path),
        "plan_copy": files.relative(copy),
        "plan_sha256": amended.sha256,
        "previous_sha256": current.sha256,
        **changes,
    }


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def run_files(workspace: Workspace, run_id: str) -> RunFiles:
    """A run's files; an id that is not a plain name (`../x`) is refused, never followed."""
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id (they look like run-20261123-101500-3fa2c1)")
    return RunFiles(workspace.root, run_id)


def _no_run(workspace: Workspace, run_id: str) -> UsageError:
    known = sorted(path.name for path in (workspace.root / "runs").glob("run-*"))[-5:]
    hint = f" (recent runs: {', '.join(known)})" if known else ""
    return UsageError(f"no run {run_id!r} in this workspace{hint}")


def continue_run(
    workspace: Workspace,
    run_id: str,
    *,
    workers: int | None,
    reporter: Reporter,
    approve: Sequence[str] = (),
    actor: str = "human:unknown",
    admit: Admit | None = None,
) -> RunReport:
    """Continue a run: open attempts of a dead runner become interrupted failures (and are
    evaluated), suggestions named in `approve` are approved by `actor`, then the run goes on.

    The run is read once, under its lock, so what is decided here is what the log says now.
    """
    files = run_files(workspace, run_id)
    if not files.plan_copy.is_file():
        raise _no_run(workspace, run_id)
    resolve_task_user(workspace.settings.runner.task_user)
    with _taken_up(workspace, files, run_id, admit):
        plan, folder, files = load_run_folder(workspace, run_id)
        suspended = [
            t
            for t in plan.graph.ids
            if folder.tasks.get(t) and folder.tasks[t].state is TaskState.SUSPENDED
        ]
        for task_id in approve:
            if task_id not in suspended:
                waiting = ", ".join(suspended) or "none"
                raise UsageError(
                    f"task {task_id!r} of run {run_id} has no suggestion waiting for approval"
                    f" (suspended tasks: {waiting})"
                )
        runner = Runner(
            workspace, plan, files, folder, workers or workspace.settings.runner.workers, reporter
        )
        settled_from = folder.last_seq
        runner.settle_the_past(approve, actor)
        ended = runner.already_ended(settled_from)
        return ended if ended is not None else runner.execute()


def retry_run(
    workspace: Workspace,
    run_id: str,
    tasks: Sequence[str],
    *,
    reason: str,
    actor: str,
    workers: int | None,
    reporter: Reporter,
    admit: Admit | None = None,
) -> tuple[list[Record], RunReport]:
    """A person runs failed tasks again in their run: what a previous runner left is settled,
    each retry is recorded (linked to the task's failed attempt), then the run goes on.

    Every task is checked under the run's lock, against the log as it is then, before anything
    is recorded; one that cannot be retried refuses the whole retry. The run is taken up as
    `continue_run` takes it up, asking `admit` under the writer lock.
    """
    files = run_files(workspace, run_id)
    if not files.plan_copy.is_file():
        raise _no_run(workspace, run_id)
    resolve_task_user(workspace.settings.runner.task_user)
    with _taken_up(workspace, files, run_id, admit):
        plan, folder, files = load_run_folder(workspace, run_id)
        view = folder.view(shared=True)
        analysis = view.analyse(plan.graph)
        for task_id in tasks:
            refusal = retry_refusal(run_id, task_id, plan.graph.ids, view, analysis)
            if refusal is not None:
                raise UsageError(refusal)
        retries = []
        for task_id in dict.fromkeys(tasks):
            task = view.task(task_id)
            failure = task.failure or {}
            retries.append(
                made.retry_decision(
                    run_id,
                    task_id,
                    actor,
                    reason,
                    attempt=task.attempts,
                    attempt_id=task.last_attempt_id if task.attempts > 0 else None,
                    failure_kind=failure.get("failure_kind"),
                )
            )
        runner = Runner(
            workspace, plan, files, folder, workers or workspace.settings.runner.workers, reporter
        )
        runner.settle_the_past((), actor)
        recorded = workspace.record_many(retries)
        for stored in recorded:
            folder.feed(stored._asdict())
        return recorded, runner.execute()


@contextlib.contextmanager
def _taken_up(
    workspace: Workspace, files: RunFiles, run_id: str, admit: Admit | None
) -> Iterator[None]:
    """Hold `run_id`'s lock for a runner taking it up again, admitted by `admit` under the
    writer lock, so nobody starts or takes up a run of its plan between the answer and the
    lock."""
    with contextlib.ExitStack() as held:
        with workspace.transaction():
            held.enter_context(_run_lock(files))
            if admit is not None:
                admit(run_id)
        yield


@contextlib.contextmanager
def escalation_target(workspace: Workspace, run_id: str, task_id: str) -> Iterator[None]:
    """Hold the run while a person escalates `task_id` of `run_id` from outside it.

    The task must exist and still be open (not succeeded or skipped), and no runner may be
    working on the run: it would not see the escalation. The run stays locked until the
    escalation is on record. From inside a task, `stoic escalate` goes through the task's
    result file instead.
    """
    with contextlib.ExitStack() as stack:
        files = run_files(workspace, run_id)
        if not files.plan_copy.is_file():
            raise _no_run(workspace, run_id)
        try:
            stack.enter_context(_run_lock(files))
        except UsageError:
            raise UsageError(
                f"run {run_id} is running right now: escalate from inside the task (without"
                " --run/--task), or once the run has stopped"
            ) from None
        plan, folder, _ = load_run_folder(workspace, run_id)
        if task_id not in plan.graph.ids:
            raise UsageError(f"run {run_id} has no task {task_id!r}")
        state = folder.tasks[task_id].state if task_id in folder.tasks else TaskState.PENDING
        if state in (TaskState.SUCCEEDED, TaskState.SKIPPED):
            raise UsageError(
                f"task {task_id} of run {run_id} has already {state.value}: an escalation"
                " suspends open work only"
            )
        yield


def _make_run_folder(files: RunFiles) -> None:
    """A new `runs/<run_id>/results/`, never made through a link planted at `runs/`."""
    try:
        with confined_dir(files.workspace_root, PurePath("runs"), create=True) as runs:
            try:
                os.mkdir(files.run_id, 0o755, dir_fd=runs)  # a new run: it is not there yet
            except FileExistsError:
                raise UsageError(
                    f"run {files.run_id} exists already: a new run needs a new id"
                ) from None
        with confined_dir(
            files.workspace_root, PurePath(files.relative(files.results)), create=True
        ):
            pass
    except OSError as exc:
        raise WorkspaceNotWritable(f"cannot create {files.folder}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _run_lock(files: RunFiles) -> Iterator[None]:
    """One runner per run: a second `stoic run`/`continue` of the same run is refused.

    The lease is the runner's liveness too (see `stoic.store.leases`), so `runner_working`
    can tell a run that is going from one whose runner is gone.
    """
    with FileLeases(files.workspace_root).holding(files.run_id):
        yield


def runner_working(files: RunFiles) -> bool:
    """Whether a runner holds the run's lease right now: a reader's answer, never recorded."""
    return FileLeases(files.workspace_root).held_by(files.run_id) is not None
